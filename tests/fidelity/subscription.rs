//! Cases from PostgreSQL's own logical replication test suite (`src/test/subscription/t/`)
//! that apply to an audit lake, written for walaudit: what the publisher does, and what the
//! lake must then hold. The file named in each test's doc is the one the case comes from.

use super::{assert_table_equals_source, drain, lake_dir, lake_value};
use crate::support::shared;

/// 001_rep_changes: key updates (`a = -a`), and a primary key with INCLUDE columns, whose old
/// key carries only the key column.
#[tokio::test(flavor = "multi_thread")]
async fn key_updates_and_include_columns() {
    let db = shared().await.fresh_db("sub_keys").await.unwrap();
    db.execute(
        "CREATE TABLE tab_rep (a int PRIMARY KEY);
         CREATE TABLE tab_include (a int, b text, PRIMARY KEY (a) INCLUDE (b));
         INSERT INTO tab_rep SELECT generate_series(1, 10);
         INSERT INTO tab_include SELECT g, 'b' || g FROM generate_series(1, 10) g;",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    db.execute(
        "INSERT INTO tab_rep SELECT generate_series(11, 50);
         DELETE FROM tab_rep WHERE a > 20;
         UPDATE tab_rep SET a = -a;
         INSERT INTO tab_include SELECT g, 'b' || g FROM generate_series(11, 50) g;
         DELETE FROM tab_include WHERE a > 20;
         UPDATE tab_include SET a = -a;",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "tab_rep", &["a"]).await;
    assert_table_equals_source(&db, &lake, "tab_include", &["a", "b"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(min(a) AS VARCHAR) FROM current.public.tab_rep"
        )
        .await,
        "-20"
    );
}

/// 001_rep_changes: REPLICA IDENTITY FULL tables with duplicates; each update consumes one
/// copy.
#[tokio::test(flavor = "multi_thread")]
async fn full_identity_updates_consume_one_copy_each() {
    let db = shared().await.fresh_db("sub_full").await.unwrap();
    db.execute(
        "CREATE TABLE tab_full AS SELECT generate_series(1, 10) AS a;
         INSERT INTO tab_full SELECT generate_series(1, 10);
         CREATE TABLE tab_full2 (x text);
         INSERT INTO tab_full2 VALUES ('a'), ('b'), ('b');
         ALTER TABLE tab_full REPLICA IDENTITY FULL;
         ALTER TABLE tab_full2 REPLICA IDENTITY FULL;",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    db.execute(
        "UPDATE tab_full SET a = a * a;
         UPDATE tab_full2 SET x = 'bb' WHERE x = 'b';
         UPDATE tab_full SET a = a + 1 WHERE a = 25;
         INSERT INTO tab_full VALUES (0);",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "tab_full", &["a"]).await;
    assert_table_equals_source(&db, &lake, "tab_full2", &["x"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(count(*) AS VARCHAR) FROM current.public.tab_full"
        )
        .await,
        "21"
    );
}

/// 001_rep_changes (`tab_mixed`): a 500,000-character value, an update that leaves it out
/// (unchanged TOAST), then the column is dropped: the dropped column is never filled again.
#[tokio::test(flavor = "multi_thread")]
async fn toast_then_dropped_column() {
    let db = shared().await.fresh_db("sub_mixed").await.unwrap();
    db.execute(
        "CREATE TABLE tab_mixed (a int PRIMARY KEY, b text, c numeric(6,2));
         INSERT INTO tab_mixed VALUES (1, 'foo', 1.1);",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    db.execute(
        "INSERT INTO tab_mixed VALUES (2, 'bar', 2.2);
         UPDATE tab_mixed SET b = 'baz' WHERE a = 1;
         UPDATE tab_mixed SET b = repeat('xyzzy', 100000) WHERE a = 2;
         UPDATE tab_mixed SET c = 3.3 WHERE a = 2;",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "tab_mixed", &["a", "b", "c"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(character_length(b) AS VARCHAR) FROM current.public.tab_mixed \
             WHERE a = 2"
        )
        .await,
        "500000"
    );
    db.execute(
        "UPDATE tab_mixed SET b = 'bar', c = 2.2 WHERE a = 2;
         ALTER TABLE tab_mixed DROP COLUMN b;
         UPDATE tab_mixed SET c = 11.11 WHERE a = 1;
         UPDATE tab_mixed SET c = 22.22 WHERE a = 2;",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "tab_mixed", &["a", "c"]).await;
    // The dropped column stays in the lake, null from the drop on: not 'baz' or 'bar' again.
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(count(*) AS VARCHAR) FROM current.public.tab_mixed WHERE b IS NULL"
        )
        .await,
        "2"
    );
}

/// 017_stream_ddl: columns added between the inserts of one transaction, with tuples of
/// different widths in the same transaction.
#[tokio::test(flavor = "multi_thread")]
async fn ddl_inside_transactions() {
    let db = shared().await.fresh_db("sub_ddl").await.unwrap();
    db.execute(
        "CREATE TABLE test_tab (a int PRIMARY KEY, b varchar);
         INSERT INTO test_tab VALUES (1, 'foo'), (2, 'bar');",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    db.execute(
        "BEGIN; INSERT INTO test_tab VALUES (3, md5('3')); ALTER TABLE test_tab ADD COLUMN c INT;
         SAVEPOINT s1; INSERT INTO test_tab VALUES (4, md5('4'), -4); COMMIT;
         BEGIN; INSERT INTO test_tab SELECT i, md5(i::text), -i FROM generate_series(5, 1000) i;
         ALTER TABLE test_tab ADD COLUMN d INT; SAVEPOINT s1;
         INSERT INTO test_tab SELECT i, md5(i::text), -i, 2*i FROM generate_series(1001, 2000) i;
         COMMIT;
         BEGIN; INSERT INTO test_tab VALUES (2001, md5('2001'), -2001, 4002);
         ALTER TABLE test_tab ADD COLUMN e INT; SAVEPOINT s1;
         INSERT INTO test_tab VALUES (2002, md5('2002'), -2002, 4004, -6006); COMMIT;
         BEGIN; INSERT INTO test_tab SELECT i, md5(i::text), -i, 2*i, -3*i
             FROM generate_series(2003, 5000) i;
         ALTER TABLE test_tab ADD COLUMN f INT; COMMIT;
         INSERT INTO test_tab SELECT i, md5(i::text), -i, 2*i, -3*i, 4*i
             FROM generate_series(5001, 5005) i;",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "test_tab", &["a", "b", "c", "d", "e", "f"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT concat_ws(',', count(*), count(c), count(d), count(e), count(f)) \
             FROM current.public.test_tab"
        )
        .await,
        "5005,5002,4005,3004,5"
    );
}

/// Streamed transactions (protocol v2, `logical_decoding_work_mem = 64kB`) in the database
/// of `db`.
async fn stream_small(db: &crate::support::TestDb) {
    db.execute(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET logical_decoding_work_mem = %L', \
         current_database(), '64kB'); END $$",
    )
    .await
    .unwrap();
}

/// 019_stream_subxact_ddl_abort: columns added and dropped in subtransactions of a streamed
/// transaction that are rolled back leave no trace.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_ddl_in_rolled_back_subtransactions() {
    let db = shared().await.fresh_db("sub_stream_ddl").await.unwrap();
    stream_small(&db).await;
    db.execute(
        "CREATE TABLE test_tab (a int PRIMARY KEY, b varchar);
         INSERT INTO test_tab VALUES (1, 'foo'), (2, 'bar');",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    db.execute(
        "BEGIN;
         INSERT INTO test_tab SELECT i, md5(i::text) FROM generate_series(3, 500) i;
         ALTER TABLE test_tab ADD COLUMN c INT; SAVEPOINT s1;
         INSERT INTO test_tab SELECT i, md5(i::text), -i FROM generate_series(501, 1000) i;
         ALTER TABLE test_tab ADD COLUMN d INT; SAVEPOINT s2;
         INSERT INTO test_tab SELECT i, md5(i::text), -i, 2*i FROM generate_series(1001, 1500) i;
         ALTER TABLE test_tab ADD COLUMN e INT; SAVEPOINT s3;
         INSERT INTO test_tab SELECT i, md5(i::text), -i, 2*i, -3*i
             FROM generate_series(1501, 2000) i;
         ALTER TABLE test_tab DROP COLUMN c;
         ROLLBACK TO s1;
         INSERT INTO test_tab SELECT i, md5(i::text), i FROM generate_series(501, 1000) i;
         COMMIT;",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "test_tab", &["a", "b", "c"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT concat_ws(',', count(*), count(c), min(c)) FROM current.public.test_tab"
        )
        .await,
        "1000,500,501"
    );
    // No change of the rolled-back subtransactions is in the change log.
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(count(*) AS VARCHAR) FROM public.test_tab WHERE a > 1000 OR c < 0"
        )
        .await,
        "0"
    );
}

/// 015_stream and 018_stream_subxact_abort: two large streamed transactions interleaved and
/// committed in the other order, and subtransactions rolled back inside a streamed one.
#[tokio::test(flavor = "multi_thread")]
async fn interleaved_streamed_transactions_and_subtransaction_aborts() {
    let db = shared().await.fresh_db("sub_stream").await.unwrap();
    stream_small(&db).await;
    db.execute(
        "CREATE TABLE test_tab (a int PRIMARY KEY, b varchar);
         INSERT INTO test_tab VALUES (1, 'foo'), (2, 'bar');",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;

    let s1 = db.connect().await.unwrap();
    let s2 = db.connect().await.unwrap();
    s1.batch_execute(
        "BEGIN;
         INSERT INTO test_tab SELECT i, md5(i::text) FROM generate_series(3, 5000) i;
         UPDATE test_tab SET b = md5(b) WHERE mod(a, 2) = 0;
         DELETE FROM test_tab WHERE mod(a, 3) = 0;",
    )
    .await
    .unwrap();
    s2.batch_execute(
        "BEGIN;
         INSERT INTO test_tab SELECT i, md5(i::text) FROM generate_series(5001, 9999) i;
         DELETE FROM test_tab WHERE a > 5000;
         COMMIT;",
    )
    .await
    .unwrap();
    s1.batch_execute("COMMIT").await.unwrap();
    // 018: savepoints rolled back and released inside streamed transactions (padded so that
    // each one streams).
    db.execute(
        "BEGIN;
         INSERT INTO test_tab SELECT i, md5(i::text) FROM generate_series(10001, 11000) i;
         SAVEPOINT s1; INSERT INTO test_tab SELECT i, 'x' FROM generate_series(11001, 12000) i;
         SAVEPOINT s2; INSERT INTO test_tab SELECT i, 'y' FROM generate_series(12001, 13000) i;
         ROLLBACK TO s2;
         INSERT INTO test_tab SELECT i, 'z' FROM generate_series(13001, 14000) i;
         ROLLBACK TO s1;
         SAVEPOINT s4; INSERT INTO test_tab SELECT i, 'w' FROM generate_series(14001, 15000) i;
         RELEASE s4;
         COMMIT;
         BEGIN; INSERT INTO test_tab SELECT i, 'gone' FROM generate_series(20001, 22000) i;
         ROLLBACK;",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "test_tab", &["a", "b"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(count(*) AS VARCHAR) FROM current.public.test_tab"
        )
        .await,
        // 3334 from the interleaved pair, 1000 + 1000 from the savepoint transaction.
        "5334"
    );
}

/// 010_truncate: several tables in one TRUNCATE, RESTART IDENTITY, and CASCADE to a table
/// that references the truncated one.
#[tokio::test(flavor = "multi_thread")]
async fn truncate_several_tables_and_cascade() {
    let db = shared().await.fresh_db("sub_truncate").await.unwrap();
    db.execute(
        "CREATE TABLE tab1 (a serial PRIMARY KEY, v int);
         CREATE TABLE tab3 (a int PRIMARY KEY);
         CREATE TABLE tab4 (x int PRIMARY KEY, y int REFERENCES tab3);
         INSERT INTO tab1 (v) SELECT generate_series(1, 5);
         INSERT INTO tab3 SELECT generate_series(1, 5);
         INSERT INTO tab4 SELECT g, g FROM generate_series(1, 5) g;",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    db.execute(
        "TRUNCATE tab1 RESTART IDENTITY;
         INSERT INTO tab1 (v) VALUES (10), (11);
         TRUNCATE tab3, tab4;
         INSERT INTO tab3 VALUES (7), (8); INSERT INTO tab4 VALUES (1, 7);",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    for (table, columns) in [
        ("tab1", &["a", "v"][..]),
        ("tab3", &["a"][..]),
        ("tab4", &["x", "y"][..]),
    ] {
        assert_table_equals_source(&db, &lake, table, columns).await;
    }
    db.execute("TRUNCATE tab3 CASCADE; INSERT INTO tab3 VALUES (9)")
        .await
        .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "tab3", &["a"]).await;
    assert_table_equals_source(&db, &lake, "tab4", &["x", "y"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(count(*) AS VARCHAR) FROM current.public.tab4"
        )
        .await,
        "0"
    );
}

/// 004_sync and 025_rep_changes_for_schema: a table created with rows (CREATE TABLE AS) while
/// the engine streams is both streamed and loaded; each row counts once.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_created_with_rows_counts_each_row_once() {
    let db = shared().await.fresh_db("sub_ctas").await.unwrap();
    db.execute("CREATE TABLE tab_rep (a int PRIMARY KEY); INSERT INTO tab_rep VALUES (1)")
        .await
        .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    // The engine refuses a published table without a replica identity: give it one.
    db.execute(
        "CREATE TABLE tab_rep_next AS SELECT generate_series(1, 10) AS a;
         ALTER TABLE tab_rep_next REPLICA IDENTITY FULL;",
    )
    .await
    .unwrap();
    db.execute("INSERT INTO tab_rep_next SELECT generate_series(1, 10)")
        .await
        .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    // A second pass loads the table added to the publication, if the first did not.
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "tab_rep_next", &["a"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(count(*) AS VARCHAR) FROM current.public.tab_rep_next"
        )
        .await,
        "20"
    );
}

/// 100_bugs (#16643): the slot exists before the engine starts and rows arrive between its
/// creation and the historical load; keyless rows count once. A table added to the
/// publication later is loaded with its earlier rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_pre_created_slot_and_a_table_added_later() {
    let db = shared().await.fresh_db("sub_precreated").await.unwrap();
    // Keyless and insert-only: the publication publishes inserts only.
    db.execute(
        "CREATE TABLE t (f int); CREATE TABLE t2 (f int);
         INSERT INTO t SELECT generate_series(1, 3000);
         INSERT INTO t2 SELECT generate_series(1, 3000);
         CREATE PUBLICATION walaudit FOR TABLE t WITH (publish = 'insert');",
    )
    .await
    .unwrap();
    db.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        db.name
    ))
    .await
    .unwrap();
    db.execute(
        "INSERT INTO t SELECT generate_series(1, 3000);
         INSERT INTO t2 SELECT generate_series(1, 3000);",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "t", &["f"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(count(*) AS VARCHAR) FROM current.public.t"
        )
        .await,
        "6000"
    );
    db.execute("ALTER PUBLICATION walaudit ADD TABLE t2")
        .await
        .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "t2", &["f"]).await;
    assert_eq!(
        lake_value(
            &lake,
            "SELECT CAST(count(*) AS VARCHAR) FROM current.public.t2"
        )
        .await,
        "6000"
    );
}

/// 011_generated: generated columns are not published (PostgreSQL 15): the lake has the
/// other columns of every row, from the load and the stream alike, and no generated column.
#[tokio::test(flavor = "multi_thread")]
async fn generated_columns_are_not_published() {
    let db = shared().await.fresh_db("sub_generated").await.unwrap();
    db.execute(
        "CREATE TABLE tab1 (a int PRIMARY KEY, b int GENERATED ALWAYS AS (a * 2) STORED);
         INSERT INTO tab1 (a) VALUES (1), (2), (3);",
    )
    .await
    .unwrap();
    let (dir, lake) = lake_dir();
    drain(&db, dir.path(), &lake, &[]).await;
    db.execute("INSERT INTO tab1 VALUES (4), (5); UPDATE tab1 SET a = 6 WHERE a = 5")
        .await
        .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_table_equals_source(&db, &lake, "tab1", &["a"]).await;
    let columns = lake_value(
        &lake,
        "SELECT string_agg(column_name, ',') FROM information_schema.columns \
         WHERE table_catalog = 'lake' AND table_name = 'tab1' AND column_name NOT LIKE '\\_%'",
    )
    .await;
    assert_eq!(columns, "a");
}
