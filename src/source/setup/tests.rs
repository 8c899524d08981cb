use super::*;

fn table(schema: &str, name: &str, ident: char, pk: bool) -> PublicationTable {
    PublicationTable {
        schema: schema.into(),
        table: name.into(),
        replica_identity: ident,
        has_primary_key: pk,
        publishes_update_delete: true,
    }
}

#[test]
fn replica_identity_problems_name_each_table_and_fix() {
    let tables = [
        table("public", "ok_pk", 'd', true),
        table("public", "nopk", 'd', false),
        table("Sales", "Orders", 'n', true),
        table("public", "full", 'f', false),
        table("public", "by_index", 'i', false),
        PublicationTable {
            publishes_update_delete: false,
            ..table("public", "ins", 'n', false)
        },
    ];
    let fixes = replica_identity_fixes(&tables);
    assert_eq!(fixes.len(), 2, "{fixes:?}");
    assert!(fixes[0].contains("ALTER TABLE \"public\".\"nopk\" REPLICA IDENTITY FULL;"));
    assert!(fixes[0].contains("no primary key"));
    assert!(fixes[1].contains("ALTER TABLE \"Sales\".\"Orders\" REPLICA IDENTITY FULL;"));
    let err = check_replica_identity(&tables).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("2 published table(s) have no replica identity"),
        "{msg}"
    );
    assert!(check_replica_identity(&tables[..1]).is_ok());
    assert!(msg.contains("; run: ALTER TABLE \"public\""), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
}

#[test]
fn publication_sql() {
    assert_eq!(
        create_publication_sql("walaudit", None),
        "CREATE PUBLICATION \"walaudit\" FOR ALL TABLES"
    );
    let tables = vec!["public.orders".to_owned(), "items".to_owned()];
    assert_eq!(
        create_publication_sql("p", Some(&tables)),
        "CREATE PUBLICATION \"p\" FOR TABLE \"public\".\"orders\", \"items\""
    );
}

fn slot() -> SlotState {
    SlotState {
        name: "s".into(),
        plugin: Some("pgoutput".into()),
        slot_type: "logical".into(),
        database: Some("app".into()),
        temporary: false,
        active: false,
        active_pid: None,
        wal_status: Some("reserved".into()),
        confirmed_flush: Lsn(10),
        restart_lsn: Some(Lsn(5)),
    }
}

#[test]
fn slot_checks() {
    assert!(check_slot(&slot(), "app").is_ok());
    let err = check_slot(&slot(), "other").unwrap_err();
    assert!(
        err.to_string().contains("for database app, not other"),
        "{err}"
    );
    let err = check_slot(
        &SlotState {
            plugin: Some("wal2json".into()),
            ..slot()
        },
        "app",
    )
    .unwrap_err();
    assert!(err.to_string().contains("output plugin wal2json"), "{err}");
    assert!(
        err.to_string().contains("pg_drop_replication_slot('s')"),
        "{err}"
    );
    let err = check_slot(
        &SlotState {
            wal_status: Some("lost".into()),
            ..slot()
        },
        "app",
    )
    .unwrap_err();
    assert!(matches!(err, SourceError::SlotLost { .. }));
    let err = check_slot(
        &SlotState {
            slot_type: "physical".into(),
            ..slot()
        },
        "app",
    )
    .unwrap_err();
    assert!(err.to_string().contains("physical slot"), "{err}");
}
