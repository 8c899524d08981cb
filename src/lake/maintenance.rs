//! Table maintenance: compaction (`optimize`), removal of unreferenced files (`vacuum`),
//! checkpoints.
//!
//! ```text
//!  walaudit lake optimize|vacuum|checkpoint [--table s.t]  ──► every Delta table under the lake
//!                                                             (catalog::list_tables)
//!  LakeSink (run)  ──► optimize a change table every N commits, on the sink task
//! ```
//!
//! Checkpoints are also written automatically by delta-rs after every commit whose version + 1
//! is a multiple of `delta.checkpointInterval` (20 for walaudit tables), and expired log entries
//! (older than `delta.logRetentionDuration`) are cleaned up then.
//!
//! # Invariants
//! * Maintenance commits carry no data change: readers and the exactly-once markers (the `txn`
//!   actions, kept by the log across commits) are unaffected.
//! * `vacuum` keeps the table's `delta.deletedFileRetentionDuration` (7 days by default): time
//!   travel and readers of older versions keep working within it.

use std::num::NonZeroU64;

use deltalake::operations::optimize::Metrics;
use deltalake::{DeltaResult, DeltaTable};

/// Target size of compacted files.
pub const TARGET_FILE_SIZE: u64 = 128 << 20;

/// Compact small files of `table` into files of about [`TARGET_FILE_SIZE`].
pub async fn optimize(table: DeltaTable) -> DeltaResult<(DeltaTable, Metrics)> {
    let target = NonZeroU64::new(TARGET_FILE_SIZE).expect("non-zero");
    table.optimize().with_target_size(target).await
}

/// Remove files no version within the retention period references; returns how many.
pub async fn vacuum(table: DeltaTable) -> DeltaResult<(DeltaTable, usize)> {
    let (table, metrics) = table.vacuum().await?;
    Ok((table, metrics.files_deleted.len()))
}

/// Write a checkpoint of the table's current version and drop expired log entries.
pub async fn checkpoint(table: &DeltaTable) -> DeltaResult<usize> {
    deltalake::checkpoints::create_checkpoint(table, None).await?;
    deltalake::checkpoints::cleanup_metadata(table, None).await
}
