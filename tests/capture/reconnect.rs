//! The engine survives a server restart: it reconnects and nothing is lost or doubled.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use walaudit::pipeline::{self, RetryPolicy};
use walaudit::sink::{MemorySink, MemoryStore};

use super::{changes_json, field, options, prepare};
use crate::support::{ClusterOptions, PgCluster, StopMode};

async fn wait_for<T: std::fmt::Debug>(
    store: &Arc<Mutex<MemoryStore>>,
    txns: usize,
    run: &mut tokio::task::JoinHandle<T>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.lock().unwrap().txns.len() < txns {
        if run.is_finished() {
            panic!("the engine stopped: {:?}", run.await);
        }
        assert!(
            Instant::now() < deadline,
            "only {} txns",
            store.lock().unwrap().txns.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_restart_mid_stream_reconnects_and_delivers_everything_once() {
    let mut cluster = PgCluster::start_async(ClusterOptions::default())
        .await
        .unwrap();
    let db = cluster.fresh_db("reconnect").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let slot = prepare(&db).await.unwrap();
    let store = Arc::new(Mutex::new(MemoryStore::default()));
    let cancel = CancellationToken::new();
    let mut opts = options(&db, &slot, 1 << 20);
    opts.drain = false;
    let retry = RetryPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        max_attempts: Some(100),
    };
    let sink = MemorySink::new(Arc::clone(&store));
    let mut run = tokio::spawn(pipeline::run_resilient(opts, sink, cancel.clone(), retry));

    for id in 1..=20 {
        db.execute(&format!("INSERT INTO t VALUES ({id})"))
            .await
            .unwrap();
    }
    wait_for(&store, 20, &mut run).await;
    tokio::task::block_in_place(|| cluster.restart(StopMode::Fast)).unwrap();
    let client = db.connect().await.unwrap();
    for id in 21..=40 {
        client
            .batch_execute(&format!("INSERT INTO t VALUES ({id})"))
            .await
            .unwrap();
    }
    wait_for(&store, 40, &mut run).await;
    cancel.cancel();
    run.await.unwrap().unwrap();

    let txns = store.lock().unwrap().txns.clone();
    let ids: Vec<_> = changes_json(&txns).iter().map(|c| field(c, "id")).collect();
    assert_eq!(ids, (1..=40).map(|i| json!(i)).collect::<Vec<_>>());
    drop(client);
    drop(db);
    cluster.shutdown_async().await.unwrap();
}
