//! Capture against a real server: a known workload in, exactly those changes out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use walaudit::capture::{AssemblerConfig, Change, TxnMeta};
use walaudit::cli::tail::change_json;
use walaudit::pipeline::{self, PipelineOptions, RunSummary, SlotMode};
use walaudit::sink::{MemorySink, MemoryStore, StoredTxn};
use walaudit::source::ConnParams;

use crate::support::TestDb;

mod actor;
mod connect;
mod errors;
mod metrics;
mod reconnect;
mod restart;
mod slot;
mod tail;
mod transactions;
mod types;
mod workload;

/// Pipeline options for `db` reading permanent slot `slot` of publication `walaudit`.
pub fn options(db: &TestDb, slot: &str, max_memory: usize) -> PipelineOptions {
    PipelineOptions {
        source: ConnParams::parse(&db.url).expect("test URL parses"),
        slot: SlotMode::Permanent {
            name: slot.into(),
            create: false,
        },
        publication: "walaudit".into(),
        create_publication: false,
        publication_tables: Vec::new(),
        status_interval: Duration::from_millis(200),
        assembler: AssemblerConfig {
            max_memory,
            spill_dir: None,
            chunk_changes: 1000,
            context_prefix: "walaudit".into(),
        },
        drain: true,
        metrics: Default::default(),
        streaming: None,
    }
}

/// Create publication `walaudit` for all tables and a slot, before the workload; returns the
/// slot's name (the database's, so unique in the shared cluster).
pub async fn prepare(db: &TestDb) -> Result<String> {
    db.execute("CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await?;
    db.create_slot().await?;
    Ok(db.name.clone())
}

/// Drain the slot into `store`; returns the run summary.
pub async fn drain_into(
    db: &TestDb,
    slot: &str,
    store: &Arc<Mutex<MemoryStore>>,
    max_memory: usize,
) -> Result<RunSummary> {
    let sink = MemorySink::new(Arc::clone(store));
    let run = pipeline::run(
        options(db, slot, max_memory),
        sink,
        CancellationToken::new(),
    );
    Ok(tokio::time::timeout(Duration::from_secs(120), run).await??)
}

/// Drain the slot into a new store; returns the stored transactions.
pub async fn drain(db: &TestDb, slot: &str) -> Result<Vec<StoredTxn>> {
    let store = Arc::new(Mutex::new(MemoryStore::default()));
    drain_into(db, slot, &store, 64 << 20).await?;
    let txns = store.lock().unwrap().txns.clone();
    Ok(txns)
}

/// Every change as tail's JSON object, in order, without the volatile fields.
pub fn changes_json(txns: &[StoredTxn]) -> Vec<Value> {
    txns.iter()
        .flat_map(|t| t.changes.iter().map(move |c| stable_json(&t.meta, c)))
        .collect()
}

/// tail's JSON for a change, minus lsn, xid and commit time (they differ per run).
pub fn stable_json(meta: &TxnMeta, change: &Change) -> Value {
    let mut v = change_json(meta, change);
    let object = v.as_object_mut().expect("an object");
    for volatile in ["lsn", "xid", "commit_ts"] {
        object.remove(volatile);
    }
    v
}

/// The value of column `name` in the row of `change`, as tail prints it.
pub fn field(v: &Value, name: &str) -> Value {
    v["row"][name].clone()
}
