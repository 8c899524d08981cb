//! A finished historical load replaces what the lake held of the table before its consistent
//! point: the stream's changes before it are in its snapshot too (no double copies of keyless
//! rows), and a re-snapshot after a gap (an invalidated slot) drops rows the lake missed the
//! deletes of.

use super::{assert_same_rows, drain};
use crate::snapshot::{check, config, walaudit};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn a_load_after_streamed_inserts_counts_each_keyless_row_once() {
    let db = shared().await.fresh_db("fid_reload_keyless").await.unwrap();
    db.execute(
        "CREATE TABLE events (kind text, qty int);
         ALTER TABLE events REPLICA IDENTITY FULL;
         INSERT INTO events VALUES ('a', 1), ('a', 1), ('b', 2);",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    drain(&db, dir.path(), &lake, &["--snapshot", "never"]).await;
    db.execute("INSERT INTO events VALUES ('a', 1), ('c', 3)")
        .await
        .unwrap();
    drain(&db, dir.path(), &lake, &["--snapshot", "never"]).await;
    // The load's snapshot holds the two streamed rows as well.
    let cfg = config(dir.path(), "");
    let out = walaudit(&db, &cfg, &lake, &["snapshot", "--tables", "public.events"])
        .output()
        .await
        .unwrap();
    check(&out, "snapshot --tables public.events");
    db.execute(
        "DELETE FROM events WHERE ctid = (SELECT ctid FROM events WHERE kind = 'a' LIMIT 1)",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_same_rows(
        &db,
        &lake,
        "SELECT kind, CAST(qty AS VARCHAR) AS qty FROM current.public.events",
        "SELECT kind, qty::text FROM events",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_snapshot_after_a_gap_drops_rows_deleted_during_it() {
    let db = shared().await.fresh_db("fid_reload_gap").await.unwrap();
    db.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int);
         INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 10) g;",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    drain(&db, dir.path(), &lake, &[]).await;

    // The slot is lost (as after an invalidation); what happens meanwhile never reaches the lake.
    db.execute(&format!("SELECT pg_drop_replication_slot('{}')", db.name))
        .await
        .unwrap();
    db.execute("DELETE FROM accounts WHERE id <= 3; UPDATE accounts SET balance = 0 WHERE id = 4")
        .await
        .unwrap();
    // The recovery the README gives: start again (a new slot), re-snapshot the table.
    drain(&db, dir.path(), &lake, &[]).await;
    let cfg = config(dir.path(), "");
    let out = walaudit(
        &db,
        &cfg,
        &lake,
        &["snapshot", "--tables", "public.accounts"],
    )
    .output()
    .await
    .unwrap();
    check(&out, "snapshot --tables public.accounts");
    db.execute(
        "INSERT INTO accounts VALUES (11, 110); UPDATE accounts SET balance = 1 WHERE id = 5",
    )
    .await
    .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_same_rows(
        &db,
        &lake,
        "SELECT CAST(id AS VARCHAR) AS id, CAST(balance AS VARCHAR) AS balance \
         FROM current.public.accounts",
        "SELECT id::text, balance::text FROM accounts",
    )
    .await;
}
