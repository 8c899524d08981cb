//! Slot safety: an idle captured table does not make the slot retain the server's WAL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use walaudit::pipeline;
use walaudit::sink::{MemorySink, MemoryStore};

use super::options;
use crate::support::shared;

/// Bytes of WAL the slot holds back: the server's position minus its confirmed position.
const RETAINED: &str = "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint \
                        FROM pg_replication_slots WHERE slot_name = current_database()";

#[tokio::test(flavor = "multi_thread")]
async fn idle_captured_tables_do_not_retain_wal_of_busy_ones() {
    let db = shared().await.fresh_db("idle_slot").await.unwrap();
    db.execute(
        "CREATE TABLE captured (id int PRIMARY KEY);
         CREATE TABLE busy (id int PRIMARY KEY, payload text);
         CREATE PUBLICATION walaudit FOR TABLE captured;",
    )
    .await
    .unwrap();
    db.create_slot().await.unwrap();
    let store = Arc::new(Mutex::new(MemoryStore::default()));
    let cancel = CancellationToken::new();
    let mut opts = options(&db, &db.name, 1 << 20);
    opts.drain = false;
    opts.status_interval = Duration::from_millis(100);
    let run = tokio::spawn(pipeline::run(
        opts,
        MemorySink::new(Arc::clone(&store)),
        cancel.clone(),
    ));

    // About 16 MB of WAL from a table the slot does not capture.
    for batch in 0..40 {
        db.execute(&format!(
            "INSERT INTO busy SELECT g, repeat('w', 300) FROM generate_series({}, {}) g",
            batch * 1000 + 1,
            batch * 1000 + 1000
        ))
        .await
        .unwrap();
    }
    let produced: i64 = db
        .scalar(
            // The insert position: the test cluster commits asynchronously, so the write
            // position may still lag by up to wal_buffers.
            "SELECT (pg_current_wal_insert_lsn() - restart_lsn)::bigint FROM pg_replication_slots \
             WHERE slot_name = current_database()",
        )
        .await
        .unwrap();
    assert!(
        produced > 10_000_000,
        "the workload wrote {produced} bytes of WAL"
    );

    // The slot keeps up: its retained WAL falls to a small bound.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut retained: i64 = db.scalar(RETAINED).await.unwrap();
    while retained > 1_000_000 {
        assert!(
            Instant::now() < deadline,
            "slot still retains {retained} bytes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        retained = db.scalar(RETAINED).await.unwrap();
    }
    assert!(
        store.lock().unwrap().txns.is_empty(),
        "nothing captured from `busy`"
    );

    // And capture still works after that.
    db.execute("INSERT INTO captured VALUES (1)").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.lock().unwrap().txns.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the captured insert did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(store.lock().unwrap().txns[0].changes.len(), 1);
}
