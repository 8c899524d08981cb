use std::sync::Arc;

use super::*;
use crate::capture::ColumnInfo;
use crate::config::S3Config;
use crate::decode::ReplicaIdentity;
use crate::decode::pgtype::PgType;
use crate::lake::table::{LakeTable, change_table_spec, engine_table_spec};
use crate::lake::transactions_schema;

fn info(schema: &str, name: &str, keys: &[&str], identity: ReplicaIdentity) -> TableInfo {
    let column = |name: &str, pg_type| ColumnInfo {
        name: name.into(),
        type_oid: 0,
        type_modifier: -1,
        is_key: keys.contains(&name),
        pg_type,
    };
    TableInfo {
        oid: 1,
        schema: schema.into(),
        name: name.into(),
        replica_identity: identity,
        columns: vec![column("id", PgType::Int8), column("note", PgType::Text)],
    }
}

#[test]
fn properties_name_the_source_table_and_its_key() {
    let props = change_table_properties(&info("public", "t", &["id"], ReplicaIdentity::Default));
    assert_eq!(
        props,
        vec![
            ("walaudit.sourceTable".to_owned(), "public.t".to_owned()),
            ("walaudit.keyColumns".to_owned(), r#"["id"]"#.to_owned()),
            ("walaudit.replicaIdentity".to_owned(), "default".to_owned()),
        ]
    );
    assert_eq!(
        engine_table_name(TRANSACTIONS_TABLE),
        "_walaudit/transactions"
    );
}

#[tokio::test]
async fn lists_and_discovers_the_tables_of_a_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = LakeLocation::new(dir.path().to_str().unwrap(), &S3Config::default()).unwrap();
    let keyed = info("Sales", "Order Items", &["id"], ReplicaIdentity::Default);
    let full = info("public", "audit", &["id", "note"], ReplicaIdentity::Full);
    for table in [&keyed, &full] {
        LakeTable::open(change_table_spec(&lake, table, "walaudit:s", 1).unwrap())
            .await
            .unwrap();
    }
    let spec = engine_table_spec(
        &lake,
        TRANSACTIONS_TABLE,
        transactions_schema(),
        "walaudit:s",
        1,
    );
    LakeTable::open(spec).await.unwrap();
    // Folders that are not tables: no log, an empty log, too shallow, too deep.
    std::fs::create_dir_all(dir.path().join("public/empty")).unwrap();
    std::fs::create_dir_all(dir.path().join("public/starting/_delta_log")).unwrap();
    std::fs::create_dir_all(dir.path().join("deep/a/b/_delta_log")).unwrap();
    std::fs::write(dir.path().join("public/notes.txt"), "x").unwrap();

    let listed = list_tables(&lake).await.unwrap();
    let names: Vec<String> = listed.iter().map(TableRef::display_name).collect();
    assert_eq!(
        names,
        [
            "Sales.Order Items",
            "_walaudit/transactions",
            "public.audit"
        ]
    );
    assert_eq!(listed[0].kind, TableKind::Change);
    assert_eq!(listed[1].kind, TableKind::Engine);
    assert_eq!(listed[0].url, lake.table_url("Sales", "Order Items"));
    assert_eq!(listed[1].url, lake.engine_table_url(TRANSACTIONS_TABLE));

    let found = discover(&lake).await.unwrap();
    let names: Vec<String> = found.iter().map(CatalogTable::qualified_name).collect();
    assert_eq!(
        names,
        [
            "Sales.Order Items",
            "_walaudit.transactions",
            "public.audit"
        ]
    );
    let (sales, engine, audit) = (&found[0], &found[1], &found[2]);
    assert_eq!(sales.kind, TableKind::Change);
    assert_eq!(sales.key_columns, ["id"]);
    assert_eq!(sales.source_columns, ["id", "note"]);
    assert!(!sales.multiset);
    assert!(audit.multiset, "REPLICA IDENTITY FULL rows are a multiset");
    assert_eq!(engine.kind, TableKind::Engine);
    assert!(engine.key_columns.is_empty() && engine.source_columns.is_empty());
}

#[tokio::test]
async fn a_missing_local_lake_is_not_created_for_readers() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = LakeLocation::existing(missing.to_str().unwrap(), Default::default()).unwrap_err();
    assert!(matches!(err, LakeError::NotFound { .. }), "{err:?}");
    assert!(!missing.exists());
    let lake = LakeLocation::new(missing.to_str().unwrap(), &S3Config::default()).unwrap();
    assert!(missing.is_dir());
    assert!(list_tables(&lake).await.unwrap().is_empty());
    let reader = LakeLocation::existing(missing.to_str().unwrap(), Default::default()).unwrap();
    assert_eq!(reader.root(), lake.root());
}

#[test]
fn credentials_stay_out_of_debug_and_display() {
    let s3 = S3Config {
        access_key_id: Some("AKIDEXAMPLE".into()),
        secret_access_key: Some("very-secret".into()),
        ..S3Config::default()
    };
    let lake = LakeLocation::new("s3://bucket/lake", &s3).unwrap();
    assert_eq!(
        lake.storage_options()["aws_secret_access_key"],
        "very-secret"
    );
    let shown = format!("{lake:?} {}", lake.display());
    assert!(
        !shown.contains("very-secret") && !shown.contains("AKIDEXAMPLE"),
        "{shown}"
    );
    assert!(shown.contains("aws_secret_access_key"), "{shown}");
    let with_store = lake.with_object_store(Arc::new(object_store::memory::InMemory::new()));
    assert!(format!("{with_store:?}").contains("object_store: true"));
}
