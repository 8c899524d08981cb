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

use super::LakeError;

/// Target size of compacted files.
pub const TARGET_FILE_SIZE: u64 = 128 << 20;

/// Compact small files of `table` into files of about [`TARGET_FILE_SIZE`], each with the
/// bloom filters of its key columns ([`super::pruning`]).
pub async fn optimize(table: DeltaTable) -> DeltaResult<(DeltaTable, Metrics)> {
    let target = NonZeroU64::new(TARGET_FILE_SIZE).expect("non-zero");
    let writer = super::pruning::compaction_properties(&super::pruning::table_key_columns(&table));
    table
        .optimize()
        .with_target_size(target)
        .with_writer_properties(writer)
        .await
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

/// `walaudit lake optimize|vacuum|checkpoint`.
#[derive(Clone, Copy, Debug, clap::Subcommand)]
pub enum Action {
    /// Compact small files into files of about 128 MiB.
    Optimize,
    /// Delete files no longer referenced by any version within the retention period (7 days).
    Vacuum,
    /// Write a checkpoint of the current version and remove expired log entries.
    Checkpoint,
}

/// Runs `action` on every Delta table of `lake`, or only on `only` (`schema.table` or
/// `_walaudit/name`), logging what each did.
pub async fn run_all(
    lake: &super::storage::LakeLocation,
    only: Option<&str>,
    action: Action,
) -> Result<(), LakeError> {
    let mut tables = super::catalog::list_tables(lake).await?;
    if let Some(only) = only {
        tables.retain(|table| table.display_name() == only);
        if tables.is_empty() {
            return Err(LakeError::NoSuchTable {
                lake: lake.display().to_string(),
                table: only.to_owned(),
            });
        }
    }
    for found in tables {
        let name = found.display_name();
        let Some(table) = found.open(lake).await? else {
            continue;
        };
        match action {
            Action::Optimize => {
                let (_, m) = optimize(table)
                    .await
                    .map_err(|e| LakeError::delta("optimize", name.clone(), e))?;
                tracing::info!(
                    table = %name, files_added = m.num_files_added,
                    files_removed = m.num_files_removed, "optimized"
                );
            }
            Action::Vacuum => {
                let (_, deleted) = vacuum(table)
                    .await
                    .map_err(|e| LakeError::delta("vacuum", name.clone(), e))?;
                tracing::info!(table = %name, files_deleted = deleted, "vacuumed");
            }
            Action::Checkpoint => {
                let cleaned = checkpoint(&table)
                    .await
                    .map_err(|e| LakeError::delta("checkpoint", name.clone(), e))?;
                tracing::info!(table = %name, log_files_removed = cleaned, "checkpointed");
            }
        }
    }
    Ok(())
}
