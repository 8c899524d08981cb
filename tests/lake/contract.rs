//! The `capture → lake` seam's contract (`walaudit::sink`), run against both sinks: the
//! in-memory `MemorySink` and the Delta `LakeSink`. Each clause is one test per sink.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use walaudit::Lsn;
use walaudit::capture::{Change, Op, TableInfo, TxnMeta};
use walaudit::decode::{Cell, PgType};
use walaudit::lake::LakeSink;
use walaudit::sink::{MemorySink, MemoryStore, Sink};

use super::{open, rows, session, sink_options};
use crate::query::lake::{change, table, txn};

/// Opens sinks over one durable storage and reads back what it holds.
trait Storage {
    type S: Sink;
    /// A new sink over the storage (as after a restart).
    fn open(&self) -> impl Future<Output = Self::S>;
    /// The ids of the stored rows, in commit order.
    fn ids(&self) -> impl Future<Output = Vec<String>>;
}

struct Memory(Arc<Mutex<MemoryStore>>);

impl Storage for Memory {
    type S = MemorySink;
    async fn open(&self) -> MemorySink {
        MemorySink::new(Arc::clone(&self.0))
    }
    async fn ids(&self) -> Vec<String> {
        let store = self.0.lock().unwrap();
        store.txns[..store.durable_count]
            .iter()
            .flat_map(|t| t.changes.iter().map(id_of))
            .collect()
    }
}

struct Lake(tempfile::TempDir);

impl Lake {
    fn dir(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }
}

impl Storage for Lake {
    type S = LakeSink;
    async fn open(&self) -> LakeSink {
        // Large thresholds: only flush() and drop decide what is durable.
        LakeSink::open(sink_options(&self.dir(), "contract", 1_000_000))
            .await
            .unwrap()
    }
    async fn ids(&self) -> Vec<String> {
        let Ok(delta) = open(&self.dir(), "public", "t").await else {
            return Vec::new();
        };
        let ctx = session(&delta).await.unwrap();
        rows(
            &ctx,
            "SELECT CAST(id AS VARCHAR) FROM t ORDER BY _lsn, _seq",
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
    }
}

fn id_of(c: &Change) -> String {
    match &c.row[0] {
        Cell::Text(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

fn t() -> Arc<TableInfo> {
    table("public", "t", &[("id", PgType::Int8)], &["id"])
}

/// Transaction `n` at LSN n·0x100 inserting `ids`.
fn tx(n: u64, ids: &[&str]) -> (TxnMeta, Vec<Change>) {
    let table = t();
    let changes = ids
        .iter()
        .enumerate()
        .map(|(seq, id)| change(&table, Op::Insert, seq as u64, &[Some(id)]))
        .collect();
    (txn(n * 0x100, n as i64, Some("alice")), changes)
}

/// Hands `txn` over the way the pipeline does: its changes in chunks of `chunk`, then commit.
async fn hand_over<S: Sink>(sink: &mut S, (meta, changes): (TxnMeta, Vec<Change>), chunk: usize) {
    for part in changes.chunks(chunk) {
        sink.write(&meta, part.to_vec()).await.unwrap();
    }
    sink.commit(&meta, Vec::new()).await.unwrap();
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Ordering and durability: transactions in commit order, chunked; the durable position never
/// moves backward and, after flush, is the last transaction's end.
async fn order_and_durability(storage: impl Storage) {
    let mut sink = storage.open().await;
    let mut durable = vec![sink.durable_lsn()];
    hand_over(&mut sink, tx(1, &["1", "2"]), 1).await;
    durable.push(sink.durable_lsn());
    hand_over(&mut sink, tx(2, &["3", "4", "5"]), 2).await;
    durable.push(sink.durable_lsn());
    let flushed = sink.flush().await.unwrap();
    durable.push(sink.durable_lsn());
    assert!(durable.windows(2).all(|w| w[0] <= w[1]), "{durable:?}");
    assert_eq!(flushed, Lsn(0x208));
    assert_eq!(sink.durable_lsn(), Lsn(0x208));
    assert_eq!(storage.ids().await, ids(&["1", "2", "3", "4", "5"]));
}

/// Idempotency on replay: a new sink over the same storage skips what it holds durably.
async fn replay_is_skipped(storage: impl Storage) {
    let mut sink = storage.open().await;
    hand_over(&mut sink, tx(1, &["1", "2"]), 8).await;
    hand_over(&mut sink, tx(2, &["3"]), 8).await;
    sink.flush().await.unwrap();
    drop(sink);
    let mut sink = storage.open().await;
    // A new sink may not know yet what earlier runs stored (the lake sink opens tables
    // lazily), but it never claims more.
    assert!(sink.durable_lsn() <= Lsn(0x208));
    // The server resends from a confirmed position that was lost.
    hand_over(&mut sink, tx(1, &["1", "2"]), 1).await;
    hand_over(&mut sink, tx(2, &["3"]), 1).await;
    hand_over(&mut sink, tx(3, &["4"]), 1).await;
    assert_eq!(sink.flush().await.unwrap(), Lsn(0x308));
    assert_eq!(storage.ids().await, ids(&["1", "2", "3", "4"]));
}

/// Shutdown: dropping a sink without flush loses only what was never durable; the replay
/// then stores it once.
async fn drop_without_flush(storage: impl Storage) {
    let mut sink = storage.open().await;
    hand_over(&mut sink, tx(1, &["1"]), 8).await;
    sink.flush().await.unwrap();
    hand_over(&mut sink, tx(2, &["2"]), 8).await;
    drop(sink);
    let mut sink = storage.open().await;
    // Whatever the sink reports, it never claims what was not handed over.
    let durable = sink.durable_lsn();
    assert!(durable <= Lsn(0x208), "{durable:?}");
    hand_over(&mut sink, tx(1, &["1"]), 8).await;
    hand_over(&mut sink, tx(2, &["2"]), 8).await;
    assert_eq!(sink.flush().await.unwrap(), Lsn(0x208));
    assert_eq!(storage.ids().await, ids(&["1", "2"]));
}

fn memory() -> Memory {
    Memory(Arc::new(Mutex::new(MemoryStore::default())))
}

fn lake() -> Lake {
    Lake(tempfile::tempdir().unwrap())
}

#[tokio::test]
async fn memory_sink_order_and_durability() {
    order_and_durability(memory()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_sink_order_and_durability() {
    order_and_durability(lake()).await;
}

#[tokio::test]
async fn memory_sink_replay_is_skipped() {
    replay_is_skipped(memory()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_sink_replay_is_skipped() {
    replay_is_skipped(lake()).await;
}

#[tokio::test]
async fn memory_sink_drop_without_flush() {
    drop_without_flush(memory()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_sink_drop_without_flush() {
    drop_without_flush(lake()).await;
}
