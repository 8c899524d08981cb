//! Restart: nothing lost, nothing doubled after the durable position.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use walaudit::pipeline;
use walaudit::sink::{MemorySink, MemoryStore};

use super::{changes_json, drain_into, field, options, prepare};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn restart_mid_stream_delivers_everything_once_in_order() {
    let db = shared().await.fresh_db("restart").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let slot = prepare(&db).await.unwrap();
    let insert_range = |from: i32, to: i32| {
        let db = &db;
        async move {
            for id in from..=to {
                db.execute(&format!("INSERT INTO t VALUES ({id})"))
                    .await
                    .unwrap();
            }
        }
    };
    let store = Arc::new(Mutex::new(MemoryStore::default()));

    // Run 1: ten transactions, durable and confirmed.
    insert_range(1, 10).await;
    let first = drain_into(&db, &slot, &store, 1 << 20).await.unwrap();
    assert_eq!(store.lock().unwrap().durable_count, 10);

    // Run 2: the sink holds back acknowledgements; stop it mid-stream.
    insert_range(11, 40).await;
    store.lock().unwrap().hold_acks = true;
    let cancel = CancellationToken::new();
    let mut opts = options(&db, &slot, 1 << 20);
    opts.drain = false;
    let run = tokio::spawn(pipeline::run(
        opts,
        MemorySink::new(Arc::clone(&store)),
        cancel.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.lock().unwrap().txns.len() < 25 {
        assert!(Instant::now() < deadline, "run 2 made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    let second = run.await.unwrap().unwrap();
    assert_eq!(
        second.durable_lsn, first.durable_lsn,
        "nothing new was durable"
    );
    {
        let mut store = store.lock().unwrap();
        assert!(store.txns.len() >= 25);
        // Three more became durable, but the confirmation never reached the server.
        store.durable_count += 3;
        store.hold_acks = false;
    }

    // Run 3: a crash loses what was not durable; the server resends from its confirmed
    // position; the sink skips the three it already holds.
    insert_range(41, 45).await;
    drain_into(&db, &slot, &store, 1 << 20).await.unwrap();
    let store = store.lock().unwrap();
    let ids: Vec<_> = changes_json(&store.txns)
        .iter()
        .map(|c| field(c, "id"))
        .collect();
    assert_eq!(ids, (1..=45).map(|i| json!(i)).collect::<Vec<_>>());
    let lsns: Vec<_> = store.txns.iter().map(|t| t.meta.commit_lsn).collect();
    assert!(
        lsns.windows(2).all(|w| w[0] < w[1]),
        "commit order, no duplicates"
    );
    assert_eq!(store.durable_count, 45);

    // The server's confirmed position is the durable end of the last transaction.
    let confirmed: String = db
        .scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = current_database()")
        .await
        .unwrap();
    assert_eq!(
        confirmed,
        store.txns.last().unwrap().meta.end_lsn.to_string()
    );
}
