//! Schema evolution mid-stream: added, dropped and retyped columns keep every value; lossless
//! widenings keep their column.

use super::{assert_unique, drain_to_lake, marker, open, pg_rows, rows, session, setup};
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
    // int → bigint widens: the column is rewritten as long and keeps its name.
    db.execute("ALTER TABLE t ALTER COLUMN a TYPE bigint")
        .await
        .unwrap();
    // int → text does not: it continues as text in b2__text.
    db.execute("ALTER TABLE t ADD COLUMN b2 int").await.unwrap();
    db.execute("INSERT INTO t VALUES (7, 70, 'c7', 7)")
        .await
        .unwrap();
    db.execute("ALTER TABLE t ALTER COLUMN b2 TYPE text")
        .await
        .unwrap();
    db.execute("INSERT INTO t VALUES (4, 4000000000, 'c4', 'x4')")
        .await
        .unwrap();
    db.execute("UPDATE t SET a = 5 WHERE id = 1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Run in two parts so the second starts from a Delta table that already evolved.
    drain_to_lake(&db, &slot, dir.path(), 1000, true)
        .await
        .unwrap();
    db.execute("INSERT INTO t VALUES (6, 6, 'c6', 'x6')")
        .await
        .unwrap();
    drain_to_lake(&db, &slot, dir.path(), 1000, true)
        .await
        .unwrap();

    let delta = open(dir.path(), "public", "t").await.unwrap();
    let ctx = session(&delta).await.unwrap();
    assert_eq!(assert_unique(&ctx).await.unwrap(), 7);
    let schema = delta.snapshot().unwrap().snapshot().arrow_schema();
    assert_eq!(
        schema.field_with_name("a").unwrap().data_type(),
        &deltalake::arrow::datatypes::DataType::Int64
    );
    assert!(schema.field_with_name("a__text").is_err(), "{schema:?}");
    let got = rows(
        &ctx,
        "SELECT _op, CAST(id AS VARCHAR) AS id, CAST(a AS VARCHAR) AS a, b, c, \
                CAST(b2 AS VARCHAR) AS b2, b2__text \
         FROM t ORDER BY _lsn, _seq",
    )
    .await
    .unwrap();
    let row = |v: [&str; 7]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            row(["c", "1", "10", "one", "NULL", "NULL", "NULL"]),
            row(["c", "2", "20", "two", "c2", "NULL", "NULL"]),
            row(["c", "3", "30", "NULL", "c3", "NULL", "NULL"]),
            row(["c", "7", "70", "NULL", "c7", "7", "NULL"]),
            row(["c", "4", "4000000000", "NULL", "c4", "NULL", "x4"]),
            row(["u", "1", "5", "NULL", "NULL", "NULL", "NULL"]),
            row(["c", "6", "6", "NULL", "c6", "NULL", "x6"]),
        ]
    );

    // The widening and the diversion are each recorded once in _walaudit/messages.
    let messages = open(dir.path(), "_walaudit", "messages").await.unwrap();
    let ctx = session(&messages).await.unwrap();
    let recorded = rows(
        &ctx,
        "SELECT content_text FROM t WHERE prefix = 'walaudit.schema' ORDER BY _lsn",
    )
    .await
    .unwrap();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(
        recorded[0][0].contains("\"event\":\"type_widened\"")
            && recorded[0][0].contains("\"column\":\"a\""),
        "{recorded:?}"
    );
    assert!(
        recorded[1][0].contains("\"written_as\":\"b2__text\""),
        "{recorded:?}"
    );
}

/// Every widening the README lists keeps its column: the change table is rewritten with the
/// wider type once, every value before and after the change is exact, and a restart neither
/// doubles nor loses a change.
#[tokio::test(flavor = "multi_thread")]
async fn lossless_widenings_keep_their_column() {
    let db = shared().await.fresh_db("lake_widenings").await.unwrap();
    db.execute(
        "CREATE TABLE w (id int PRIMARY KEY, s smallint, i int, s8 smallint, f real, \
                         d numeric(10,2), d2 numeric(10,2))",
    )
    .await
    .unwrap();
    let slot = setup(&db).await.unwrap();
    db.execute(
        "INSERT INTO w VALUES (1, 32767, 2147483647, -32768, 1.5, 12345678.90, 1.25), \
                              (2, -32768, -2147483648, 32767, -0.25, -0.01, 99999999.99)",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    drain_to_lake(&db, &slot, dir.path(), 1000, true)
        .await
        .unwrap();

    for (column, to) in [
        ("s", "int"),
        ("i", "bigint"),
        ("s8", "bigint"),
        ("f", "double precision"),
        ("d", "numeric(12,2)"),
        ("d2", "numeric(14,4)"),
    ] {
        db.execute(&format!("ALTER TABLE w ALTER COLUMN {column} TYPE {to}"))
            .await
            .unwrap();
    }
    db.execute(
        "INSERT INTO w VALUES (3, 2147483647, 9223372036854775807, -9000000000000000000, \
                              0.1, 1234567890.12, 1234567890.1234)",
    )
    .await
    .unwrap();
    db.execute("UPDATE w SET s = s - 1, d2 = d2 + 0.0001 WHERE id = 2")
        .await
        .unwrap();
    drain_to_lake(&db, &slot, dir.path(), 1000, true)
        .await
        .unwrap();
    // A restart after the rewrite resumes from the markers the rewrite kept.
    db.execute("UPDATE w SET i = i - 1 WHERE id = 3")
        .await
        .unwrap();
    drain_to_lake(&db, &slot, dir.path(), 1000, true)
        .await
        .unwrap();

    let delta = open(dir.path(), "public", "w").await.unwrap();
    let schema = delta.snapshot().unwrap().snapshot().arrow_schema();
    use deltalake::arrow::datatypes::DataType;
    for (column, want) in [
        ("s", DataType::Int32),
        ("i", DataType::Int64),
        ("s8", DataType::Int64),
        ("f", DataType::Float64),
        ("d", DataType::Decimal128(12, 2)),
        ("d2", DataType::Decimal128(14, 4)),
    ] {
        assert_eq!(
            schema.field_with_name(column).unwrap().data_type(),
            &want,
            "{column}"
        );
        let text = format!("{column}__text");
        assert!(schema.field_with_name(&text).is_err(), "{text} exists");
    }
    assert!(marker(&delta, &slot).await.unwrap().is_some());
    let ctx = session(&delta).await.unwrap();
    // 2 inserts, 1 insert, 2 updates: each once.
    assert_eq!(assert_unique(&ctx).await.unwrap(), 5);
    // The lake's latest image per key equals the source on every column.
    let lake = rows(
        &ctx,
        "SELECT CAST(id AS VARCHAR) AS id, CAST(s AS VARCHAR) AS s, CAST(i AS VARCHAR) AS i, \
                CAST(s8 AS VARCHAR) AS s8, CAST(f AS VARCHAR) AS f, CAST(d AS VARCHAR) AS d, \
                CAST(d2 AS VARCHAR) AS d2 \
         FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY _lsn DESC, _seq DESC) \
               AS n FROM t) WHERE n = 1 ORDER BY id",
    )
    .await
    .unwrap();
    let source = pg_rows(
        &db,
        "SELECT id::text, s::text, i::text, s8::text, f::text, d::text, d2::text \
         FROM w ORDER BY id",
    )
    .await
    .unwrap();
    assert_eq!(lake, source);
    // Rows written before the change read back exactly in the wider type.
    let first = rows(
        &ctx,
        "SELECT CAST(s AS VARCHAR) AS s, CAST(d2 AS VARCHAR) AS d2 FROM t \
         WHERE id = 1 AND _op = 'c'",
    )
    .await
    .unwrap();
    assert_eq!(first, vec![vec!["32767".to_owned(), "1.2500".to_owned()]]);
}
