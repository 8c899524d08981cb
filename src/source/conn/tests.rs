use super::*;

#[test]
fn commands_are_quoted() {
    assert_eq!(
        create_slot_sql("walaudit", true, SnapshotAction::Export),
        "CREATE_REPLICATION_SLOT \"walaudit\" TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"
    );
    assert_eq!(
        create_slot_sql("s", false, SnapshotAction::NoExport),
        "CREATE_REPLICATION_SLOT \"s\" LOGICAL pgoutput NOEXPORT_SNAPSHOT"
    );
    let options = [
        ("proto_version".to_owned(), "2".to_owned()),
        (
            "publication_names".to_owned(),
            super::super::quote::publication_names(&["p'1"]),
        ),
    ];
    assert_eq!(
        start_replication_sql("s", Lsn(0x16_B374_D848), &options),
        "START_REPLICATION SLOT \"s\" LOGICAL 16/B374D848 (\"proto_version\" '2', \
         \"publication_names\" '\"p''1\"')"
    );
    assert_eq!(
        start_replication_sql("s", Lsn::ZERO, &[]),
        "START_REPLICATION SLOT \"s\" LOGICAL 0/0"
    );
}

#[test]
fn versions() {
    assert_eq!(
        parse_version("15.8 (Debian 15.8-1.pgdg120+1)"),
        Some(150_008)
    );
    assert_eq!(parse_version("16.0"), Some(160_000));
    assert_eq!(parse_version("17beta1"), Some(170_000));
    assert_eq!(parse_version("9.6.24"), Some(90_624));
    assert_eq!(parse_version("10.23"), Some(100_023));
    assert_eq!(parse_version("devel"), None);
}
