//! Schema evolution mid-stream: added, dropped and retyped columns keep every value.

use super::{assert_unique, drain_to_lake, open, rows, session, setup};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn added_dropped_and_retyped_columns_keep_every_value() {
    let db = shared().await.fresh_db("lake_evolution").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY, a int, b text)")
        .await
        .unwrap();
    let slot = setup(&db).await.unwrap();
    db.execute("INSERT INTO t VALUES (1, 10, 'one')")
        .await
        .unwrap();
    db.execute("ALTER TABLE t ADD COLUMN c text").await.unwrap();
    db.execute("INSERT INTO t VALUES (2, 20, 'two', 'c2')")
        .await
        .unwrap();
    db.execute("ALTER TABLE t DROP COLUMN b").await.unwrap();
    db.execute("INSERT INTO t VALUES (3, 30, 'c3')")
        .await
        .unwrap();
    // int → bigint: the Delta int column cannot hold it; it continues as text in a__text.
    db.execute("ALTER TABLE t ALTER COLUMN a TYPE bigint")
        .await
        .unwrap();
    db.execute("INSERT INTO t VALUES (4, 4000000000, 'c4')")
        .await
        .unwrap();
    db.execute("UPDATE t SET a = 5 WHERE id = 1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Run in two parts so the second starts from a Delta table that already evolved.
    drain_to_lake(&db, &slot, dir.path(), 1000, true)
        .await
        .unwrap();
    db.execute("INSERT INTO t VALUES (6, 6, 'c6')")
        .await
        .unwrap();
    drain_to_lake(&db, &slot, dir.path(), 1000, true)
        .await
        .unwrap();

    let delta = open(dir.path(), "public", "t").await.unwrap();
    let ctx = session(&delta).await.unwrap();
    assert_eq!(assert_unique(&ctx).await.unwrap(), 6);
    let got = rows(
        &ctx,
        "SELECT _op, CAST(id AS VARCHAR) AS id, CAST(a AS VARCHAR) AS a, a__text, b, c \
         FROM t ORDER BY _lsn, _seq",
    )
    .await
    .unwrap();
    let row = |v: [&str; 6]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            row(["c", "1", "10", "NULL", "one", "NULL"]),
            row(["c", "2", "20", "NULL", "two", "c2"]),
            row(["c", "3", "30", "NULL", "NULL", "c3"]),
            row(["c", "4", "NULL", "4000000000", "NULL", "c4"]),
            row(["u", "1", "NULL", "5", "NULL", "NULL"]),
            row(["c", "6", "NULL", "6", "NULL", "c6"]),
        ]
    );

    // The type change is recorded once in _walaudit/messages.
    let messages = open(dir.path(), "_walaudit", "messages").await.unwrap();
    let ctx = session(&messages).await.unwrap();
    let recorded = rows(
        &ctx,
        "SELECT content_text FROM t WHERE prefix = 'walaudit.schema'",
    )
    .await
    .unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0][0].contains("\"written_as\":\"a__text\""),
        "{recorded:?}"
    );
}
