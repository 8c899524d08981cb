//! One Delta table of the lake: open or create it, read its exactly-once marker, append to it.
//!
//! ```text
//!  open(url) ──► load ──(not a table)──► create (schema, properties) ──► read marker
//!  append(batches, marker) ──► write (schema merge) + txn actions in ONE commit
//!        └─(transient error)──► backoff, reload, marker landed? done : retry
//! ```
//!
//! # Exactly-once marker
//! Each commit carries `txn` actions (README, "The lake on storage", "Exactly-once marker"):
//! * `walaudit:<slot>` = the commit LSN of the last *complete* transaction in the table;
//! * `walaudit:<slot>:partial` and `walaudit:<slot>:partial-seq` = the commit LSN and last `_seq`
//!   of a transaction whose changes to this table were only partly written (a huge transaction
//!   flushed before its end, so memory stays bounded). Partial markers are written only then.
//!
//! A change `(lsn, seq)` is held by the table iff `lsn ≤ complete` or
//! `(lsn = partial, seq ≤ partial-seq)`.
//!
//! # Invariants
//! * A commit's markers never go backward (checked against the stored ones; delta-rs does not).
//! * A retried commit is never applied twice: before retrying, the stored markers are re-read and
//!   a commit that landed despite the error counts as done.

use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{StructType, Transaction};
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use url::Url;

use super::LakeError;
use super::catalog::{
    CHECKPOINT_INTERVAL, LOG_RETENTION, PROP_CHECKPOINT_INTERVAL, PROP_LOG_RETENTION,
    change_table_properties, engine_table_name,
};
use super::schema::change_schema;
use super::storage::LakeLocation;
use crate::Lsn;
use crate::backoff::Backoff;
use crate::capture::TableInfo;
use crate::recovery::Recovery;

/// What a table holds of the source's changes (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marker {
    /// Commit LSN of the last transaction written completely.
    pub complete: Option<Lsn>,
    /// Commit LSN and last seq of a transaction written in part.
    pub partial: Option<(Lsn, u64)>,
}

impl Marker {
    /// The table holds change `seq` of the transaction committed at `lsn`.
    pub fn holds(&self, lsn: Lsn, seq: u64) -> bool {
        self.complete.is_some_and(|c| lsn <= c)
            || self.partial.is_some_and(|(p, s)| p == lsn && seq <= s)
    }

    /// The table holds every change of the transaction committed at `lsn`.
    pub fn holds_txn(&self, lsn: Lsn) -> bool {
        self.complete.is_some_and(|c| lsn <= c)
    }

    /// `self` is at or past `other`.
    fn covers(&self, other: &Marker) -> bool {
        let complete = other
            .complete
            .is_none_or(|o| self.complete.is_some_and(|c| c >= o));
        let partial = other.partial.is_none_or(|(lsn, seq)| self.holds(lsn, seq));
        complete && partial
    }
}

/// How a retried commit recognises that an earlier attempt landed although its answer was lost.
enum Landed<'a> {
    /// The stored markers cover this one.
    Marker(Marker),
    /// The table's log holds this app id at this version.
    App(&'a str, i64),
    /// Nothing identifies the commit (bookkeeping rows): a retry may write it again.
    Unknown,
}

/// How a table is opened: identity, schema for creation, properties.
#[derive(Clone, Debug)]
pub struct TableSpec {
    /// The lake the table is in (storage options, store).
    pub lake: LakeLocation,
    pub url: Url,
    /// Name for logs and errors (`schema.table` or `_walaudit/name`).
    pub name: String,
    pub schema: SchemaRef,
    /// Extra configuration (custom `walaudit.*` keys) set at creation.
    pub properties: Vec<(String, String)>,
    /// `walaudit:<slot>`.
    pub app_id: String,
    /// Attempts of a commit on transient errors.
    pub attempts: u32,
    /// Columns that get a Parquet bloom filter in every file written (the key columns of a
    /// change table: [`super::pruning`]).
    pub bloom_columns: Vec<String>,
}

/// An open Delta table of the lake.
pub struct LakeTable {
    spec: TableSpec,
    table: DeltaTable,
    marker: Marker,
    commits: u64,
}

impl LakeTable {
    /// Open the table at `spec.url`, creating it when it does not exist.
    pub async fn open(spec: TableSpec) -> Result<LakeTable, LakeError> {
        let err = |action, e| LakeError::delta(action, spec.name.clone(), e);
        if let Some(path) = spec
            .url
            .to_file_path()
            .ok()
            .filter(|_| spec.url.scheme() == "file")
        {
            std::fs::create_dir_all(&path)
                .map_err(|e| err("create", DeltaTableError::generic(e.to_string())))?;
        }
        let mut table = spec
            .lake
            .table_builder(&spec.url)
            .map_err(|e| err("locate", e))?
            .build()
            .map_err(|e| err("open", e))?;
        match table.load().await {
            Ok(()) => {}
            Err(DeltaTableError::NotATable(_)) => {
                table = create(&table, &spec).await.map_err(|e| err("create", e))?;
                tracing::info!(table = %spec.name, "created delta table");
            }
            Err(e) => return Err(err("open", e)),
        }
        let marker = read_marker(&table, &spec.app_id)
            .await
            .map_err(|e| err("read", e))?;
        tracing::debug!(table = %spec.name, ?marker, "opened delta table");
        Ok(LakeTable {
            spec,
            table,
            marker,
            commits: 0,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What the table durably holds.
    pub fn marker(&self) -> Marker {
        self.marker
    }

    /// The table's current Arrow schema (after any schema merges).
    pub fn arrow_schema(&self) -> Result<SchemaRef, LakeError> {
        let state = self
            .table
            .snapshot()
            .map_err(|e| LakeError::delta("read", self.name(), e))?;
        Ok(state.snapshot().arrow_schema())
    }

    /// Commits made through this handle.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// The columns every file written gets a bloom filter on.
    pub fn bloom_columns(&self) -> &[String] {
        &self.spec.bloom_columns
    }

    /// The underlying table (for maintenance operations between appends).
    pub fn delta(&self) -> &DeltaTable {
        &self.table
    }

    /// Replace the handle after a maintenance operation committed.
    pub fn set_delta(&mut self, table: DeltaTable) {
        self.table = table;
    }

    /// Append `batches` and move the marker to `marker`, in one Delta commit. New columns in the
    /// batches are merged into the table's schema.
    pub async fn append(
        &mut self,
        batches: Vec<RecordBatch>,
        marker: Marker,
    ) -> Result<(), LakeError> {
        self.check_forward(&marker)?;
        let now = chrono_millis();
        let mut txns = Vec::with_capacity(3);
        if let Some(complete) = marker.complete {
            txns.push(Transaction::new_with_last_update(
                &self.spec.app_id,
                lsn_i64(complete),
                now,
            ));
        }
        if let Some((lsn, seq)) = marker.partial {
            let app = &self.spec.app_id;
            txns.push(Transaction::new_with_last_update(
                format!("{app}:partial"),
                lsn_i64(lsn),
                now,
            ));
            let seq = i64::try_from(seq).unwrap_or(i64::MAX);
            txns.push(Transaction::new_with_last_update(
                format!("{app}:partial-seq"),
                seq,
                now,
            ));
        }
        self.write(batches, txns, None, Landed::Marker(marker))
            .await?;
        self.marker = marker;
        Ok(())
    }

    /// The version the table's log holds for `app_id` (a `txn` action), if any.
    pub async fn app_version(&self, app_id: &str) -> Result<Option<i64>, LakeError> {
        let err = |e| LakeError::delta("read", self.spec.name.clone(), e);
        let state = self.table.snapshot().map_err(err)?;
        let log = self.table.log_store();
        state
            .transaction_version(log.as_ref(), app_id)
            .await
            .map_err(err)
    }

    /// Append `batches` in one Delta commit that also records `app_id = version` (when given),
    /// without touching the exactly-once marker. Used by historical loads (each chunk carries
    /// its own app id) and the engine's bookkeeping tables. A retried commit that landed despite
    /// the error (its app id holds `version`) counts as done; a commit racing another with the
    /// same app id fails (delta-rs' conflict check), so a chunk can land only once.
    pub async fn append_tagged(
        &mut self,
        batches: Vec<RecordBatch>,
        tag: Option<(&str, i64)>,
    ) -> Result<(), LakeError> {
        self.append_tagged_with(batches, tag, None).await
    }

    /// [`append_tagged`](Self::append_tagged) with Parquet writer properties (`None`: delta-rs'
    /// defaults, plus the bloom filters of [`TableSpec::bloom_columns`]).
    pub async fn append_tagged_with(
        &mut self,
        batches: Vec<RecordBatch>,
        tag: Option<(&str, i64)>,
        writer: Option<WriterProperties>,
    ) -> Result<(), LakeError> {
        let txns = tag
            .map(|(app, version)| Transaction::new_with_last_update(app, version, chrono_millis()))
            .into_iter()
            .collect();
        let landed = tag.map_or(Landed::Unknown, |(app, version)| Landed::App(app, version));
        self.write(batches, txns, writer, landed).await
    }

    /// One append commit carrying `txns`, retried with backoff on transient errors; before a
    /// retry the table is reloaded and a commit that `landed` despite the error counts as done.
    async fn write(
        &mut self,
        batches: Vec<RecordBatch>,
        txns: Vec<Transaction>,
        writer: Option<WriterProperties>,
        landed: Landed<'_>,
    ) -> Result<(), LakeError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut attempt = 1;
        loop {
            let props = CommitProperties::default().with_application_transactions(txns.clone());
            let mut write = self
                .table
                .clone()
                .write(batches.clone())
                .with_save_mode(SaveMode::Append)
                .with_schema_mode(SchemaMode::Merge)
                .with_commit_properties(props);
            match &writer {
                Some(writer) => write = write.with_writer_properties(writer.clone()),
                None if !self.spec.bloom_columns.is_empty() => {
                    write = write.with_writer_properties(super::pruning::writer_properties(
                        &self.spec.bloom_columns,
                        true,
                    ));
                }
                None => {}
            }
            match write.await {
                Ok(table) => {
                    self.table = table;
                    self.commits += 1;
                    return Ok(());
                }
                Err(e) => {
                    let e = LakeError::delta("append to", self.spec.name.clone(), e);
                    if e.recovery() != Recovery::Retry || attempt >= self.spec.attempts {
                        return Err(e);
                    }
                    tracing::warn!(
                        table = %self.spec.name, attempt, error = %crate::report::Chain(&e),
                        "delta commit failed: retrying"
                    );
                    tokio::time::sleep(backoff.next_delay()).await;
                    attempt += 1;
                    if self.reload().await.is_ok() && self.landed(&landed).await {
                        self.commits += 1;
                        return Ok(());
                    }
                    if let Landed::Marker(marker) = &landed {
                        self.check_forward(marker)?;
                    }
                }
            }
        }
    }

    /// Whether the table (just reloaded) holds the commit described by `landed`.
    async fn landed(&self, landed: &Landed<'_>) -> bool {
        match landed {
            Landed::Marker(marker) => self.marker.covers(marker),
            Landed::App(app, version) => {
                self.app_version(app).await.ok().flatten() == Some(*version)
            }
            Landed::Unknown => false,
        }
    }

    /// Reload the table's state and marker from storage.
    pub async fn reload(&mut self) -> Result<(), LakeError> {
        let err = |e| LakeError::delta("reload", self.spec.name.clone(), e);
        self.table.update_state().await.map_err(err)?;
        self.marker = read_marker(&self.table, &self.spec.app_id)
            .await
            .map_err(err)?;
        Ok(())
    }

    fn check_forward(&self, marker: &Marker) -> Result<(), LakeError> {
        match (self.marker.complete, marker.complete) {
            (Some(stored), new) if new.is_none_or(|n| n < stored) => {
                Err(LakeError::VersionWentBack {
                    table: self.spec.name.clone(),
                    app_id: self.spec.app_id.clone(),
                    stored: lsn_i64(stored),
                    attempted: new.map_or(-1, lsn_i64),
                })
            }
            _ => Ok(()),
        }
    }
}

async fn create(table: &DeltaTable, spec: &TableSpec) -> Result<DeltaTable, DeltaTableError> {
    let schema: StructType = spec.schema.as_ref().try_into_kernel()?;
    let mut config: Vec<(String, Option<String>)> = vec![
        (
            PROP_CHECKPOINT_INTERVAL.into(),
            Some(CHECKPOINT_INTERVAL.into()),
        ),
        (PROP_LOG_RETENTION.into(), Some(LOG_RETENTION.into())),
    ];
    config.extend(
        spec.properties
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone()))),
    );
    let name = spec
        .name
        .rsplit(['.', '/'])
        .next()
        .unwrap_or(&spec.name)
        .to_owned();
    table
        .create()
        .with_table_name(name)
        .with_columns(schema.fields().cloned())
        .with_configuration(config)
        .with_raise_if_key_not_exists(false)
        .with_save_mode(SaveMode::Ignore)
        .await
}

async fn read_marker(table: &DeltaTable, app_id: &str) -> Result<Marker, DeltaTableError> {
    let state = table.snapshot()?;
    let log = table.log_store();
    let log = log.as_ref();
    let complete = state
        .transaction_version(log, app_id)
        .await?
        .map(lsn_from_i64);
    let partial_lsn = state
        .transaction_version(log, format!("{app_id}:partial"))
        .await?
        .map(lsn_from_i64);
    let partial_seq = state
        .transaction_version(log, format!("{app_id}:partial-seq"))
        .await?;
    let partial = match (partial_lsn, partial_seq) {
        (Some(lsn), Some(seq)) if complete.is_none_or(|c| lsn > c) => {
            Some((lsn, u64::try_from(seq).unwrap_or(0)))
        }
        _ => None,
    };
    Ok(Marker { complete, partial })
}

fn lsn_i64(lsn: Lsn) -> i64 {
    i64::try_from(lsn.0).unwrap_or(i64::MAX)
}

fn lsn_from_i64(v: i64) -> Lsn {
    Lsn(u64::try_from(v).unwrap_or(0))
}

fn chrono_millis() -> Option<i64> {
    Some(crate::clock::unix_millis())
}

/// How the engine's own table `_walaudit/<name>` is opened (and created).
pub fn engine_table_spec(
    lake: &LakeLocation,
    name: &str,
    schema: arrow_schema::SchemaRef,
    app_id: &str,
    attempts: u32,
) -> TableSpec {
    TableSpec {
        lake: lake.clone(),
        url: lake.engine_table_url(name),
        name: engine_table_name(name),
        schema,
        properties: Vec::new(),
        app_id: app_id.to_owned(),
        attempts,
        bloom_columns: Vec::new(),
    }
}

/// How the change table of `info` is opened (and created, with its properties).
pub fn change_table_spec(
    lake: &LakeLocation,
    info: &TableInfo,
    app_id: &str,
    attempts: u32,
) -> Result<TableSpec, LakeError> {
    let properties = change_table_properties(info);
    let bloom_columns = super::pruning::key_columns(&properties.iter().cloned().collect());
    Ok(TableSpec {
        lake: lake.clone(),
        url: lake.table_url(&info.schema, &info.name),
        name: info.qualified_name(),
        schema: change_schema(info)?,
        properties,
        app_id: app_id.to_owned(),
        attempts,
        bloom_columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::catalog::TRANSACTIONS_TABLE;

    fn spec(dir: &std::path::Path) -> TableSpec {
        let lake = super::super::LakeLocation::new(
            dir.to_str().unwrap(),
            &crate::config::S3Config::default(),
        )
        .unwrap();
        TableSpec {
            url: lake.engine_table_url(TRANSACTIONS_TABLE),
            lake,
            name: engine_table_name(TRANSACTIONS_TABLE),
            schema: super::super::transactions_schema(),
            properties: vec![("walaudit.custom".into(), "x".into())],
            app_id: "walaudit:test".into(),
            attempts: 1,
            bloom_columns: Vec::new(),
        }
    }

    #[tokio::test]
    async fn markers_survive_reopen_and_never_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = LakeTable::open(spec(dir.path())).await.unwrap();
        assert_eq!(table.marker(), Marker::default());
        let mut rows = super::super::engine::TxnRows::default();
        let meta = crate::capture::TxnMeta {
            xid: 1,
            commit_lsn: Lsn(100),
            end_lsn: Lsn(108),
            commit_ts_micros: 0,
            origin: None,
            context: None,
            change_count: 1,
            streamed: false,
        };
        rows.append(&meta, &["public.t".into()]);
        let partial = Marker {
            complete: None,
            partial: Some((Lsn(100), 3)),
        };
        table.append(vec![rows.finish()], partial).await.unwrap();
        assert_eq!(
            LakeTable::open(spec(dir.path())).await.unwrap().marker(),
            partial
        );
        rows.append(&meta, &[]);
        let done = Marker {
            complete: Some(Lsn(100)),
            partial: None,
        };
        table.append(vec![rows.finish()], done).await.unwrap();
        rows.append(&meta, &[]);
        let partial_later = Marker {
            complete: Some(Lsn(100)),
            partial: Some((Lsn(200), 0)),
        };
        table
            .append(vec![rows.finish()], partial_later)
            .await
            .unwrap();
        let reopened = LakeTable::open(spec(dir.path())).await.unwrap();
        assert_eq!(reopened.marker(), partial_later);
        let config = reopened
            .delta()
            .snapshot()
            .unwrap()
            .metadata()
            .configuration()
            .clone();
        assert_eq!(config["walaudit.custom"], "x");
        rows.append(&meta, &[]);
        let back = Marker {
            complete: Some(Lsn(50)),
            partial: None,
        };
        let err = table.append(vec![rows.finish()], back).await.unwrap_err();
        assert!(matches!(err, LakeError::VersionWentBack { .. }), "{err}");
    }

    #[test]
    fn marker_holds() {
        let m = Marker {
            complete: Some(Lsn(100)),
            partial: Some((Lsn(200), 5)),
        };
        assert!(m.holds(Lsn(100), 99) && m.holds(Lsn(50), 0));
        assert!(m.holds(Lsn(200), 5) && !m.holds(Lsn(200), 6));
        assert!(!m.holds(Lsn(150), 0) && !m.holds(Lsn(300), 0));
        assert!(m.holds_txn(Lsn(100)) && !m.holds_txn(Lsn(200)));
        let later = Marker {
            complete: Some(Lsn(200)),
            partial: None,
        };
        assert!(later.covers(&m) && !m.covers(&later));
        assert!(Marker::default().covers(&Marker::default()));
    }
}
