//! Commit order, savepoints, aborts, and a 200,000-row transaction streamed and spilled.

use std::sync::{Arc, Mutex};

use serde_json::json;
use walaudit::sink::MemoryStore;

use super::{changes_json, drain, drain_into, field, prepare};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn interleaved_transactions_leave_in_commit_order() {
    let db = shared().await.fresh_db("interleave").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY, who text)")
        .await
        .unwrap();
    let slot = prepare(&db).await.unwrap();
    let a = db.connect().await.unwrap();
    let b = db.connect().await.unwrap();
    a.batch_execute("BEGIN; INSERT INTO t VALUES (1, 'a')")
        .await
        .unwrap();
    b.batch_execute("BEGIN; INSERT INTO t VALUES (2, 'b')")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO t VALUES (3, 'a')")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO t VALUES (4, 'b'); COMMIT")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO t VALUES (5, 'a'); COMMIT")
        .await
        .unwrap();
    let txns = drain(&db, &slot).await.unwrap();
    let got = changes_json(&txns);
    let ids: Vec<_> = got.iter().map(|c| field(c, "id")).collect();
    assert_eq!(
        ids,
        vec![json!(2), json!(4), json!(1), json!(3), json!(5)],
        "b committed first"
    );
    let seqs: Vec<_> = got.iter().map(|c| c["seq"].clone()).collect();
    assert_eq!(seqs, vec![json!(0), json!(1), json!(0), json!(1), json!(2)]);
    assert!(txns[0].meta.commit_lsn < txns[1].meta.commit_lsn);
}

#[tokio::test(flavor = "multi_thread")]
async fn rolled_back_savepoint_and_aborted_transaction_leave_nothing() {
    let db = shared().await.fresh_db("rollback").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let slot = prepare(&db).await.unwrap();
    db.execute(
        "BEGIN; INSERT INTO t VALUES (1); SAVEPOINT s; INSERT INTO t VALUES (2);
         ROLLBACK TO SAVEPOINT s; INSERT INTO t VALUES (3); COMMIT;",
    )
    .await
    .unwrap();
    db.execute("BEGIN; INSERT INTO t VALUES (4); ROLLBACK;")
        .await
        .unwrap();
    db.execute("INSERT INTO t VALUES (5)").await.unwrap();
    let got = changes_json(&drain(&db, &slot).await.unwrap());
    let ids: Vec<_> = got.iter().map(|c| field(c, "id")).collect();
    assert_eq!(ids, vec![json!(1), json!(3), json!(5)]);
}

/// 200,000 rows in one transaction with a savepoint rolled back in the middle: the server
/// streams it (protocol v2, `logical_decoding_work_mem` = 64kB in the test cluster), capture
/// spills it to disk under a 4 MiB budget, and every surviving row arrives once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn huge_transaction_streams_and_spills_within_the_memory_limit() {
    const ROWS: i64 = 200_000;
    const BUDGET: usize = 4 << 20;
    let db = shared().await.fresh_db("huge").await.unwrap();
    db.execute("CREATE TABLE big (id bigint PRIMARY KEY, payload text)")
        .await
        .unwrap();
    let slot = prepare(&db).await.unwrap();
    db.execute(&format!(
        "BEGIN;
         INSERT INTO big SELECT g, repeat('x', 40) || g FROM generate_series(1, {half}) g;
         SAVEPOINT s;
         INSERT INTO big SELECT g, 'rolled back' FROM generate_series(-5000, -1) g;
         ROLLBACK TO SAVEPOINT s;
         INSERT INTO big SELECT g, repeat('x', 40) || g FROM generate_series({next}, {ROWS}) g;
         COMMIT;",
        half = ROWS / 2,
        next = ROWS / 2 + 1,
    ))
    .await
    .unwrap();
    let store = Arc::new(Mutex::new(MemoryStore::default()));
    let summary = drain_into(&db, &slot, &store, BUDGET).await.unwrap();
    let stats = &summary.capture;
    assert_eq!(summary.protocol_version, 2);
    assert!(
        stats.spill_events > 0 && stats.spilled_bytes > 0,
        "spilled: {stats:?}"
    );
    assert!(
        stats.peak_memory <= BUDGET,
        "peak {} > budget {BUDGET}",
        stats.peak_memory
    );
    assert_eq!(stats.subxacts_aborted, 1, "{stats:?}");
    let store = store.lock().unwrap();
    assert_eq!(store.txns.len(), 1);
    let txn = &store.txns[0];
    assert!(txn.meta.streamed, "the server streamed it");
    assert_eq!(txn.meta.change_count, ROWS as u64);
    assert_eq!(txn.changes.len(), ROWS as usize);
    for (i, change) in txn.changes.iter().enumerate() {
        assert_eq!(change.seq, i as u64);
        let json = super::stable_json(&txn.meta, change);
        assert_eq!(field(&json, "id"), json!(i as i64 + 1), "row {i}");
    }
}
