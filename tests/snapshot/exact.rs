//! A 2,000,000-row table under concurrent inserts, updates and deletes during the load ends
//! exactly equal to the source.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{
    assert_current_equals_source, assert_single_read_per_key, check, config, loads, walaudit,
};
use crate::support::shared;

const ROWS: i64 = 2_000_000;

/// Columns rendered the same way by DataFusion (lake) and Postgres (source).
pub const BIG_COLUMNS: [(&str, &str); 5] = [
    ("CAST(id AS VARCHAR)", "id::text"),
    ("CAST(a AS VARCHAR)", "a::text"),
    ("b", "b"),
    ("CAST(d AS VARCHAR)", "d::text"),
    (
        "CAST(CAST(c AS BIGINT) AS VARCHAR)",
        "((extract(epoch FROM c) * 1000000)::bigint)::text",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn two_million_rows_under_concurrent_writes_equal_the_source() {
    let db = shared().await.fresh_db("snap_exact").await.unwrap();
    db.execute(&format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, a int NOT NULL, b text, d numeric(12,2), \
                           c timestamptz NOT NULL);
         INSERT INTO big SELECT g, g % 1000, md5(g::text), (g % 100000) / 100.0, \
                                timestamptz '2024-01-01' + g * interval '1 second'
         FROM generate_series(1, {ROWS}) g;"
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    let cfg = config(dir.path(), "chunk_rows = 200000\nworkers = 2");

    // Writers hit every part of the key range (and beyond it) for as long as the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (Arc::clone(&stop), Arc::clone(&writes));
        let client = db.connect().await.unwrap();
        tokio::spawn(async move {
            let mut i: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = (i * 7919) % ROWS + 1;
                let sql = format!(
                    "BEGIN;
                     UPDATE big SET a = a + 1, b = 'u' || {i} WHERE id = {id};
                     DELETE FROM big WHERE id = {del};
                     INSERT INTO big VALUES ({new}, {i}, 'new', 1.5, now());
                     COMMIT;",
                    del = (id + 104_729) % ROWS + 1,
                    new = ROWS + i,
                );
                client.batch_execute(&sql).await.unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let out = walaudit(&db, &cfg, &lake, &["run", "--drain"])
        .output()
        .await
        .unwrap();
    check(&out, "run --drain with the initial load");
    let during = writes.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    // Catch up with the changes after the first drain's marker.
    let out = walaudit(&db, &cfg, &lake, &["run", "--drain"])
        .output()
        .await
        .unwrap();
    check(&out, "second run --drain");

    let records = loads(&lake).await;
    let big = records
        .iter()
        .find(|r| r.table == "public.big")
        .expect("a load record for big");
    assert_eq!(big.status, "done", "{big:?}");
    assert_eq!(big.kind, "initial");
    assert!(big.chunks >= 8, "planned {} chunks", big.chunks);
    // One snapshot: every chunk read in it, so rows written = the count in that snapshot.
    assert_eq!(big.source_rows, Some(big.rows_written), "{big:?}");
    assert!(during > 0, "the writers ran during the load");
    let reads = assert_single_read_per_key(&lake, "big", "id").await;
    assert_eq!(reads, big.rows_written);
    assert_current_equals_source(&db, &lake, "big", &BIG_COLUMNS, "CAST(id AS BIGINT)").await;
    eprintln!(
        "snapshot of {ROWS} rows: {} rows written in {} ms with {during} concurrent write \
         transactions",
        big.rows_written,
        big.duration_ms.unwrap_or(0)
    );
}
