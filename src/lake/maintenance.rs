//! Table maintenance: compaction (`optimize`), removal of unreferenced files (`vacuum`),
//! checkpoints.
//!
//! ```text
//!  walaudit lake optimize|vacuum|checkpoint [--table s.t]  ──► every Delta table under the lake
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
use deltalake::{DeltaResult, DeltaTable, DeltaTableBuilder};
use url::Url;

use super::LakeError;
use super::storage::{ENGINE_DIR, LakeLocation};

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

/// Open an existing table of the lake.
pub async fn open(lake: &LakeLocation, url: &Url) -> Result<DeltaTable, LakeError> {
    let name = url.to_string();
    let table = DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| LakeError::delta("locate", name.clone(), e))?
        .with_storage_options(lake.storage_options().clone())
        .load()
        .await
        .map_err(|e| LakeError::delta("open", name, e))?;
    Ok(table)
}

/// Every Delta table of the lake (`<schema>/<table>` and `_walaudit/<name>`), as
/// `(name, url)` sorted by name: directories two levels down holding a `_delta_log`.
pub async fn list_tables(lake: &LakeLocation) -> Result<Vec<(String, Url)>, LakeError> {
    let err = |source| LakeError::delta("list", lake.display(), source);
    let store =
        deltalake::logstore::store_for(lake.root(), lake.storage_options().clone()).map_err(err)?;
    let mut tables = Vec::new();
    let top = store
        .list_with_delimiter(None)
        .await
        .map_err(|e| err(deltalake::DeltaTableError::from(e)))?;
    for schema in top.common_prefixes {
        let Some(schema_name) = schema.filename().map(str::to_owned) else {
            continue;
        };
        let inner = store
            .list_with_delimiter(Some(&schema))
            .await
            .map_err(|e| err(deltalake::DeltaTableError::from(e)))?;
        for table in inner.common_prefixes {
            let Some(table_name) = table.filename().map(str::to_owned) else {
                continue;
            };
            let log = table.clone().join("_delta_log");
            let has_log = store
                .list_with_delimiter(Some(&log))
                .await
                .is_ok_and(|l| !l.objects.is_empty());
            if !has_log {
                continue;
            }
            let (name, url) = if schema_name == ENGINE_DIR {
                (
                    format!("{ENGINE_DIR}/{table_name}"),
                    lake.engine_table_url(&table_name),
                )
            } else {
                (
                    format!("{schema_name}.{table_name}"),
                    lake.table_url(&schema_name, &table_name),
                )
            };
            tables.push((name, url));
        }
    }
    tables.sort();
    Ok(tables)
}
