//! The lake's catalog: where its Delta tables are, what they are called, and what their
//! walaudit properties say (README, "The lake on storage", "Layout"). The writer, the query
//! layer, maintenance and the historical load all find and name tables here.
//!
//! ```text
//!  <lake>/<schema>/<table>/_delta_log/   the change table of <schema>.<table>    TableKind::Change
//!  <lake>/_walaudit/<name>/_delta_log/   an engine table (transactions, ...)     TableKind::Engine
//!
//!  list_tables(lake) ──► list with delimiter, two levels ──► TableRef (folders with a log)
//!  discover(lake)    ──► list_tables ──► open in parallel ──► CatalogTable (change tables
//!                                                             described from their properties)
//! ```
//!
//! # Invariants
//! * The names and property keys here are the on-storage contract other tools read; they are
//!   defined once, here, and written by [`change_table_properties`] only.
//! * A folder without a `_delta_log` (or whose first commit is not written yet) is not a table.
//! * A change table's SQL name comes from its `walaudit.sourceTable` property, so a name that
//!   needed escaping in the object store is still the Postgres name.

use std::collections::HashMap;

use deltalake::{DeltaTable, DeltaTableError, Path};
use futures_util::{StreamExt, TryStreamExt};
use url::Url;

use super::LakeError;
use super::schema::{ACTOR, BEFORE, COMMIT_TS, LSN, METADATA_COLUMNS, OP, SEQ, UNAVAILABLE};
use super::storage::LakeLocation;
use crate::capture::TableInfo;

/// Folder of the engine's own tables inside the lake (also their SQL schema).
pub const ENGINE_DIR: &str = "_walaudit";
/// Folder of a Delta table's log.
pub const DELTA_LOG_DIR: &str = "_delta_log";
/// Engine table: one row per transaction written.
pub const TRANSACTIONS_TABLE: &str = "transactions";
/// Engine table: the logical messages that are not audit context.
pub const MESSAGES_TABLE: &str = "messages";
/// Engine table: the audit record of historical loads (spec in `snapshot::record`).
pub const LOADS_TABLE: &str = "snapshots";
/// Engine table: the chunk plans of historical loads (spec in `snapshot::record`).
pub const CHUNKS_TABLE: &str = "snapshot_chunks";
/// `_walaudit/jobs`: every version of every validation job definition.
pub const JOBS_TABLE: &str = "jobs";
/// `_walaudit/check_runs`: one row per validation run.
pub const CHECK_RUNS_TABLE: &str = "check_runs";
/// `_walaudit/check_results`: one row per check of a run.
pub const CHECK_RESULTS_TABLE: &str = "check_results";
/// `_walaudit/alert_events`: every change of an alert's state.
pub const ALERT_EVENTS_TABLE: &str = "alert_events";
/// Delta app id of the validation history commits.
pub const CHECKS_APP_ID: &str = "walaudit-checks";
/// `_walaudit/reconciliations`: the transfer audit records, one row per run and window.
pub const RECONCILIATIONS_TABLE: &str = "reconciliations";
/// `_walaudit/reconciliation_diffs`: the differing keys a run found.
pub const RECONCILIATION_DIFFS_TABLE: &str = "reconciliation_diffs";
/// The Delta application id of reconciliation writes.
pub const RECONCILE_APP_ID: &str = "walaudit-reconcile";

/// Delta property: commits between checkpoints.
pub const PROP_CHECKPOINT_INTERVAL: &str = "delta.checkpointInterval";
/// Value of [`PROP_CHECKPOINT_INTERVAL`] for walaudit tables.
pub const CHECKPOINT_INTERVAL: &str = "20";
/// Delta property: how long log entries are kept once checkpointed.
pub const PROP_LOG_RETENTION: &str = "delta.logRetentionDuration";
/// Value of [`PROP_LOG_RETENTION`] for walaudit tables.
pub const LOG_RETENTION: &str = "interval 7 days";
/// Custom table property: the source table, `schema.table`.
pub const PROP_SOURCE_TABLE: &str = "walaudit.sourceTable";
/// Custom table property: JSON array of the replica-identity key columns, in order.
pub const PROP_KEY_COLUMNS: &str = "walaudit.keyColumns";
/// Custom table property: the source table's replica identity when the table was created
/// (`default`, `index`, `full`, `nothing`); with `full` the views treat rows as a multiset.
pub const PROP_REPLICA_IDENTITY: &str = "walaudit.replicaIdentity";

/// App id of the load log's commits (`_walaudit/snapshots`, `_walaudit/snapshot_chunks`).
pub const LOAD_LOG_APP_ID: &str = "walaudit-snapshot-log";

/// `walaudit:<slot>`: the app id of a table's exactly-once marker (README, "Exactly-once
/// marker"); the partial markers add `:partial` and `:partial-seq` (`table`).
pub fn marker_app_id(slot: &str) -> String {
    format!("walaudit:{slot}")
}

/// `walaudit-snapshot:<load>:<chunk>`: the app id a historical load's chunk commits with
/// (version = its row count).
pub fn chunk_app_id(load_id: &str, chunk: u32) -> String {
    format!("walaudit-snapshot:{load_id}:{chunk}")
}

/// Tables opened at once while discovering (each open reads the table's log).
const OPEN_CONCURRENCY: usize = 16;

/// `_walaudit/<name>`: how an engine table is named in logs, errors and `walaudit lake --table`.
pub fn engine_table_name(name: &str) -> String {
    format!("{ENGINE_DIR}/{name}")
}

/// The walaudit properties a change table is created with (read back by [`discover`]).
pub fn change_table_properties(info: &TableInfo) -> Vec<(String, String)> {
    let keys: Vec<&str> = info
        .columns
        .iter()
        .filter(|c| c.is_key)
        .map(|c| c.name.as_str())
        .collect();
    vec![
        (PROP_SOURCE_TABLE.into(), info.qualified_name()),
        (
            PROP_KEY_COLUMNS.into(),
            serde_json::to_string(&keys).unwrap_or_default(),
        ),
        (
            PROP_REPLICA_IDENTITY.into(),
            info.replica_identity.name().into(),
        ),
    ]
}

/// Whether a table is a change table (with current and as-of views) or an engine table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    Change,
    Engine,
}

/// A Delta table found in the lake, not opened yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRef {
    pub kind: TableKind,
    /// The schema folder (`_walaudit` for engine tables), as the object store names it.
    pub schema: String,
    /// The table folder, as the object store names it.
    pub name: String,
    /// The table's location, ending with `/`.
    pub url: Url,
}

impl TableRef {
    /// `schema.table` for a change table, `_walaudit/name` for an engine table.
    pub fn display_name(&self) -> String {
        match self.kind {
            TableKind::Change => format!("{}.{}", self.schema, self.name),
            TableKind::Engine => engine_table_name(&self.name),
        }
    }

    /// Opens the table; `None` when its folder holds no table (yet).
    pub async fn open(&self, lake: &LakeLocation) -> Result<Option<DeltaTable>, LakeError> {
        let name = self.display_name();
        let builder = lake
            .table_builder(&self.url)
            .map_err(|e| LakeError::delta("locate", name.clone(), e))?;
        match builder.load().await {
            Ok(table) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => {
                tracing::debug!(table = %name, "no delta table in lake folder: skipped");
                Ok(None)
            }
            Err(e) => Err(LakeError::delta(
                "open",
                format!("{name} at {}", self.url),
                e,
            )),
        }
    }
}

/// Every Delta table of the lake (`<schema>/<table>` and `_walaudit/<name>`): the folders two
/// levels down that hold a `_delta_log`, sorted by schema and name.
pub async fn list_tables(lake: &LakeLocation) -> Result<Vec<TableRef>, LakeError> {
    let store = lake.root_store()?;
    let list_err = |source: deltalake::ObjectStoreError| LakeError::List {
        lake: lake.display(),
        source: Box::new(source),
    };
    let mut folders = Vec::new();
    for schema in store
        .list_with_delimiter(None)
        .await
        .map_err(list_err)?
        .common_prefixes
    {
        let tables = store
            .list_with_delimiter(Some(&schema))
            .await
            .map_err(list_err)?;
        folders.extend(tables.common_prefixes);
    }
    let store = &store;
    let mut tables: Vec<TableRef> = futures_util::stream::iter(folders)
        .map(|folder| async move {
            let log = folder.clone().join(DELTA_LOG_DIR);
            let has_log = store
                .list_with_delimiter(Some(&log))
                .await
                .is_ok_and(|l| !l.objects.is_empty());
            Ok::<_, LakeError>(has_log.then(|| table_ref(lake, &folder)).flatten())
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_filter_map(|table| async move { Ok(table) })
        .try_collect()
        .await?;
    tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    Ok(tables)
}

/// The table in `folder` (`<schema>/<table>` under the lake root).
fn table_ref(lake: &LakeLocation, folder: &Path) -> Option<TableRef> {
    let parts: Vec<String> = folder.parts().map(|p| p.as_ref().to_owned()).collect();
    let [schema, name] = parts.as_slice() else {
        return None;
    };
    let url = Url::parse(&format!("{}{folder}/", lake.root())).ok()?;
    let kind = match schema.as_str() {
        ENGINE_DIR => TableKind::Engine,
        _ => TableKind::Change,
    };
    Some(TableRef {
        kind,
        schema: schema.clone(),
        name: name.clone(),
        url,
    })
}

/// One opened Delta table of the lake, with what its walaudit properties say.
#[derive(Debug)]
pub struct CatalogTable {
    /// SQL schema: the Postgres schema, or `_walaudit`.
    pub schema: String,
    /// SQL table name: the Postgres table name.
    pub name: String,
    pub kind: TableKind,
    pub table: DeltaTable,
    /// For change tables: the columns that identify a row, in key order; all source columns
    /// when the source table has no key. Empty for engine tables.
    pub key_columns: Vec<String>,
    /// For change tables: the source columns, in table order. Empty for engine tables.
    pub source_columns: Vec<String>,
    /// For change tables: rows are a multiset of whole rows (no key, or REPLICA IDENTITY
    /// FULL, whose key is every column).
    pub multiset: bool,
}

impl CatalogTable {
    /// `schema.table` as in Postgres.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// The table's location.
    pub fn url(&self) -> String {
        self.table.table_url().to_string()
    }
}

/// Lists the lake and opens every Delta table in it, sorted by SQL schema and name.
pub async fn discover(lake: &LakeLocation) -> Result<Vec<CatalogTable>, LakeError> {
    let found = list_tables(lake).await?;
    let mut tables: Vec<CatalogTable> = futures_util::stream::iter(found)
        .map(|table| async move {
            let Some(delta) = table.open(lake).await? else {
                return Ok(None);
            };
            let mut opened = CatalogTable {
                schema: table.schema.clone(),
                name: table.name.clone(),
                kind: TableKind::Engine,
                table: delta,
                key_columns: Vec::new(),
                source_columns: Vec::new(),
                multiset: false,
            };
            if table.kind == TableKind::Change {
                describe_change_table(&mut opened, &table.url)?;
            }
            Ok::<_, LakeError>(Some(opened))
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_filter_map(|table| async move { Ok(table) })
        .try_collect()
        .await?;
    tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
    Ok(tables)
}

/// Reads the walaudit properties and the source columns of a change table.
fn describe_change_table(found: &mut CatalogTable, url: &Url) -> Result<(), LakeError> {
    let bad = |key, detail: String| LakeError::BadMetadata {
        url: url.to_string(),
        key,
        detail,
    };
    let snapshot = found
        .table
        .snapshot()
        .map_err(|e| bad(PROP_SOURCE_TABLE, e.to_string()))?;
    let config: HashMap<String, String> = snapshot.metadata().configuration().clone();
    let arrow = snapshot.snapshot().arrow_schema();
    if let Some(source) = config.get(PROP_SOURCE_TABLE) {
        let (schema, name) = source
            .split_once('.')
            .ok_or_else(|| bad(PROP_SOURCE_TABLE, format!("{source:?} is not schema.table")))?;
        found.schema = schema.to_owned();
        found.name = name.to_owned();
    }
    found.source_columns = arrow
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !METADATA_COLUMNS.contains(&n.as_str()))
        .collect();
    for required in [OP, LSN, SEQ, COMMIT_TS, BEFORE, ACTOR, UNAVAILABLE] {
        if arrow.field_with_name(required).is_err() {
            return Err(bad("schema", format!("the column {required} is missing")));
        }
    }
    let keys: Vec<String> = match config.get(PROP_KEY_COLUMNS) {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            bad(
                PROP_KEY_COLUMNS,
                format!("{json:?} is not a JSON array of names: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    if let Some(unknown) = keys.iter().find(|k| !found.source_columns.contains(k)) {
        return Err(bad(
            PROP_KEY_COLUMNS,
            format!("the key column {unknown:?} is not a column of the table"),
        ));
    }
    // A table created before the replica-identity property existed: REPLICA IDENTITY FULL
    // made every column of that moment a key column.
    let full = config.get(PROP_REPLICA_IDENTITY).map(String::as_str) == Some("full")
        || (!keys.is_empty() && keys.len() == found.source_columns.len());
    found.multiset = keys.is_empty() || full;
    found.key_columns = if keys.is_empty() {
        found.source_columns.clone()
    } else {
        keys
    };
    found.kind = TableKind::Change;
    Ok(())
}

#[cfg(test)]
mod tests;
