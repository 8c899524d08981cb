//! The historical pipeline's own log, two Delta tables under `<lake>/_walaudit/`:
//!
//! * `snapshots`: the audit record of every table load (one row per status change; the latest
//!   row of a `(load_id, source_table)` is its state): source rows, rows written, start, end,
//!   duration, status, error.
//! * `snapshot_chunks`: each load's chunk plan (`planned` rows, written before any copy) and
//!   every finished chunk (`done` rows).
//!
//! Both are append-only. Whether a chunk is in the lake is decided by the change table itself
//! (the chunk's commit carries its own `txn` app id, see `load`), never by these rows, so a
//! crash between the two commits cannot lose or double a chunk.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures_util::StreamExt as _;

use super::SnapshotError;
use super::plan::{Bound, Chunk};
use crate::lake::rows::utc_micros as ts;
use crate::lake::sink::engine_table_spec;
use crate::lake::storage::LakeLocation;
use crate::lake::table::LakeTable;

use crate::lake::catalog::{CHUNKS_TABLE, LOAD_LOG_APP_ID, LOADS_TABLE};

/// Why a table is being loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadKind {
    /// Part of the first load of the captured tables.
    Initial,
    /// The table appeared in the publication later.
    Added,
    /// Asked for with `walaudit snapshot --tables`.
    Requested,
}

impl LoadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadKind::Initial => "initial",
            LoadKind::Added => "added",
            LoadKind::Requested => "requested",
        }
    }
}

/// One row of `_walaudit/snapshots`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadRecord {
    pub load_id: String,
    pub slot: String,
    pub table: String,
    pub kind: String,
    /// `running`, `done`, `failed` or `interrupted`.
    pub status: String,
    /// `_lsn` of the rows copied last (the consistent point of the snapshot they were read in).
    pub snapshot_lsn: Option<i64>,
    /// `count(*)` of the table in the snapshot of the last chunks copied.
    pub source_rows: Option<i64>,
    pub rows_written: i64,
    pub chunks: i64,
    /// Chunks found already in the lake when the load resumed.
    pub chunks_skipped: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub recorded_at: i64,
}

impl LoadRecord {
    pub fn finished(&self) -> bool {
        self.status == "done"
    }
}

/// One row of `_walaudit/snapshot_chunks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRecord {
    pub load_id: String,
    pub table: String,
    pub chunk: Chunk,
    /// `planned` or `done`.
    pub status: String,
    pub rows: Option<i64>,
    pub snapshot_lsn: Option<i64>,
    pub recorded_at: i64,
}

pub fn loads_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("load_id", DataType::Utf8, false),
        Field::new("slot", DataType::Utf8, false),
        Field::new("source_table", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("snapshot_lsn", DataType::Int64, true),
        Field::new("source_rows", DataType::Int64, true),
        Field::new("rows_written", DataType::Int64, false),
        Field::new("chunks", DataType::Int64, false),
        Field::new("chunks_skipped", DataType::Int64, false),
        Field::new("started_at", ts(), false),
        Field::new("finished_at", ts(), true),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("recorded_at", ts(), false),
    ]))
}

pub fn chunks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("load_id", DataType::Utf8, false),
        Field::new("source_table", DataType::Utf8, false),
        Field::new("chunk", DataType::Int64, false),
        Field::new("lower", DataType::Utf8, true),
        Field::new("upper", DataType::Utf8, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("snapshot_lsn", DataType::Int64, true),
        Field::new("recorded_at", ts(), false),
    ]))
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    crate::clock::unix_micros()
}

/// The two log tables of one lake.
pub struct LoadLog {
    loads: LakeTable,
    chunks: LakeTable,
}

impl LoadLog {
    pub async fn open(lake: &LakeLocation, attempts: u32) -> Result<LoadLog, SnapshotError> {
        let spec =
            |name: &str, schema| engine_table_spec(lake, name, schema, LOAD_LOG_APP_ID, attempts);
        Ok(LoadLog {
            loads: LakeTable::open(spec(LOADS_TABLE, loads_schema())).await?,
            chunks: LakeTable::open(spec(CHUNKS_TABLE, chunks_schema())).await?,
        })
    }

    /// Appends load records (one commit).
    pub async fn record_loads(&mut self, records: &[LoadRecord]) -> Result<(), SnapshotError> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = loads_batch(records)?;
        Ok(self.loads.append_tagged(vec![batch], None).await?)
    }

    /// Appends chunk records (one commit).
    pub async fn record_chunks(&mut self, records: &[ChunkRecord]) -> Result<(), SnapshotError> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = chunks_batch(records)?;
        Ok(self.chunks.append_tagged(vec![batch], None).await?)
    }

    /// The latest record of every `(load_id, table)`, oldest load first.
    pub async fn loads(&mut self) -> Result<Vec<LoadRecord>, SnapshotError> {
        self.loads.reload().await?;
        let mut latest: HashMap<(String, String), LoadRecord> = HashMap::new();
        for batch in scan(&self.loads).await? {
            for r in loads_from_batch(&batch)? {
                let key = (r.load_id.clone(), r.table.clone());
                match latest.get(&key) {
                    Some(old) if old.recorded_at > r.recorded_at => {}
                    _ => {
                        latest.insert(key, r);
                    }
                }
            }
        }
        let mut all: Vec<LoadRecord> = latest.into_values().collect();
        all.sort_by(|a, b| (a.started_at, &a.table).cmp(&(b.started_at, &b.table)));
        Ok(all)
    }

    /// The planned chunks of a load's table, by index.
    pub async fn planned_chunks(
        &mut self,
        load_id: &str,
        table: &str,
    ) -> Result<Vec<Chunk>, SnapshotError> {
        self.chunks.reload().await?;
        let mut chunks: Vec<Chunk> = Vec::new();
        for batch in scan(&self.chunks).await? {
            for r in chunks_from_batch(&batch)? {
                if r.load_id == load_id && r.table == table && r.status == "planned" {
                    chunks.push(r.chunk);
                }
            }
        }
        chunks.sort_by_key(|c| c.index);
        chunks.dedup_by_key(|c| c.index);
        Ok(chunks)
    }
}

async fn scan(table: &LakeTable) -> Result<Vec<RecordBatch>, SnapshotError> {
    let err = |e| crate::lake::LakeError::delta("read", table.name().to_owned(), e);
    let (_, mut stream) = table.delta().scan_table().await.map_err(err)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.map_err(|e| err(e.into()))?);
    }
    Ok(batches)
}

fn loads_batch(records: &[LoadRecord]) -> Result<RecordBatch, SnapshotError> {
    let text = |f: &dyn Fn(&LoadRecord) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::new();
        records.iter().for_each(|r| b.append_option(f(r)));
        Arc::new(b.finish())
    };
    let long = |f: &dyn Fn(&LoadRecord) -> Option<i64>| -> ArrayRef {
        let mut b = Int64Builder::new();
        records.iter().for_each(|r| b.append_option(f(r)));
        Arc::new(b.finish())
    };
    let time = |f: &dyn Fn(&LoadRecord) -> Option<i64>| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
        records.iter().for_each(|r| b.append_option(f(r)));
        Arc::new(b.finish())
    };
    let columns = vec![
        text(&|r| Some(&r.load_id)),
        text(&|r| Some(&r.slot)),
        text(&|r| Some(&r.table)),
        text(&|r| Some(&r.kind)),
        text(&|r| Some(&r.status)),
        long(&|r| r.snapshot_lsn),
        long(&|r| r.source_rows),
        long(&|r| Some(r.rows_written)),
        long(&|r| Some(r.chunks)),
        long(&|r| Some(r.chunks_skipped)),
        time(&|r| Some(r.started_at)),
        time(&|r| r.finished_at),
        long(&|r| r.duration_ms),
        text(&|r| r.error.as_deref()),
        time(&|r| Some(r.recorded_at)),
    ];
    RecordBatch::try_new(loads_schema(), columns).map_err(SnapshotError::arrow)
}

fn chunks_batch(records: &[ChunkRecord]) -> Result<RecordBatch, SnapshotError> {
    let json = |b: &Option<Bound>| b.as_ref().and_then(|b| serde_json::to_string(b).ok());
    let mut load = StringBuilder::new();
    let mut table = StringBuilder::new();
    let mut chunk = Int64Builder::new();
    let mut lower = StringBuilder::new();
    let mut upper = StringBuilder::new();
    let mut status = StringBuilder::new();
    let mut rows = Int64Builder::new();
    let mut lsn = Int64Builder::new();
    let mut at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for r in records {
        load.append_value(&r.load_id);
        table.append_value(&r.table);
        chunk.append_value(i64::from(r.chunk.index));
        lower.append_option(json(&r.chunk.lower));
        upper.append_option(json(&r.chunk.upper));
        status.append_value(&r.status);
        rows.append_option(r.rows);
        lsn.append_option(r.snapshot_lsn);
        at.append_value(r.recorded_at);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(load.finish()),
        Arc::new(table.finish()),
        Arc::new(chunk.finish()),
        Arc::new(lower.finish()),
        Arc::new(upper.finish()),
        Arc::new(status.finish()),
        Arc::new(rows.finish()),
        Arc::new(lsn.finish()),
        Arc::new(at.finish()),
    ];
    RecordBatch::try_new(chunks_schema(), columns).map_err(SnapshotError::arrow)
}

/// A column of `batch` by name, cast to `to` (Delta reads may return views or dictionaries).
fn cast_column(batch: &RecordBatch, name: &str, to: &DataType) -> Result<ArrayRef, SnapshotError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| SnapshotError::LogSchema {
            column: name.to_owned(),
        })?;
    deltalake::arrow::compute::cast(array, to).map_err(SnapshotError::arrow)
}

fn strings(batch: &RecordBatch, name: &str) -> Result<StringArray, SnapshotError> {
    let array = cast_column(batch, name, &DataType::Utf8)?;
    array
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| SnapshotError::LogSchema {
            column: name.to_owned(),
        })
}

fn longs(batch: &RecordBatch, name: &str) -> Result<Int64Array, SnapshotError> {
    let array = cast_column(batch, name, &DataType::Int64)?;
    array
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| SnapshotError::LogSchema {
            column: name.to_owned(),
        })
}

/// Timestamps as microseconds since the epoch.
fn micros(batch: &RecordBatch, name: &str) -> Result<Int64Array, SnapshotError> {
    let array = cast_column(batch, name, &ts())?;
    let cast =
        deltalake::arrow::compute::cast(&array, &DataType::Int64).map_err(SnapshotError::arrow)?;
    cast.as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| SnapshotError::LogSchema {
            column: name.to_owned(),
        })
}

fn text_at(a: &StringArray, i: usize) -> Option<String> {
    a.is_valid(i).then(|| a.value(i).to_owned())
}

fn long_at(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}

fn loads_from_batch(batch: &RecordBatch) -> Result<Vec<LoadRecord>, SnapshotError> {
    let s = |n| strings(batch, n);
    let l = |n| longs(batch, n);
    let (load, slot, table, kind, status, error) = (
        s("load_id")?,
        s("slot")?,
        s("source_table")?,
        s("kind")?,
        s("status")?,
        s("error")?,
    );
    let (lsn, source_rows, rows, chunks, skipped, duration) = (
        l("snapshot_lsn")?,
        l("source_rows")?,
        l("rows_written")?,
        l("chunks")?,
        l("chunks_skipped")?,
        l("duration_ms")?,
    );
    let (started, finished, recorded) = (
        micros(batch, "started_at")?,
        micros(batch, "finished_at")?,
        micros(batch, "recorded_at")?,
    );
    Ok((0..batch.num_rows())
        .map(|i| LoadRecord {
            load_id: load.value(i).to_owned(),
            slot: slot.value(i).to_owned(),
            table: table.value(i).to_owned(),
            kind: kind.value(i).to_owned(),
            status: status.value(i).to_owned(),
            snapshot_lsn: long_at(&lsn, i),
            source_rows: long_at(&source_rows, i),
            rows_written: rows.value(i),
            chunks: chunks.value(i),
            chunks_skipped: skipped.value(i),
            started_at: started.value(i),
            finished_at: long_at(&finished, i),
            duration_ms: long_at(&duration, i),
            error: text_at(&error, i),
            recorded_at: recorded.value(i),
        })
        .collect())
}

fn chunks_from_batch(batch: &RecordBatch) -> Result<Vec<ChunkRecord>, SnapshotError> {
    let s = |n| strings(batch, n);
    let l = |n| longs(batch, n);
    let (load, table, lower, upper, status) = (
        s("load_id")?,
        s("source_table")?,
        s("lower")?,
        s("upper")?,
        s("status")?,
    );
    let (chunk, rows, lsn) = (l("chunk")?, l("rows")?, l("snapshot_lsn")?);
    let recorded = micros(batch, "recorded_at")?;
    let bound = |a: &StringArray, i| -> Result<Option<Bound>, SnapshotError> {
        text_at(a, i)
            .map(|t| {
                serde_json::from_str(&t).map_err(|_| SnapshotError::LogSchema {
                    column: "lower/upper".into(),
                })
            })
            .transpose()
    };
    (0..batch.num_rows())
        .map(|i| {
            Ok(ChunkRecord {
                load_id: load.value(i).to_owned(),
                table: table.value(i).to_owned(),
                chunk: Chunk {
                    index: u32::try_from(chunk.value(i)).unwrap_or(u32::MAX),
                    lower: bound(&lower, i)?,
                    upper: bound(&upper, i)?,
                },
                status: status.value(i).to_owned(),
                rows: long_at(&rows, i),
                snapshot_lsn: long_at(&lsn, i),
                recorded_at: recorded.value(i),
            })
        })
        .collect()
}

/// The audit records as a text table.
pub fn render_records(records: &[LoadRecord]) -> String {
    let mut out = String::new();
    if records.is_empty() {
        return out;
    }
    let width = records
        .iter()
        .map(|r| r.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:width$}  {:<11}  {:>12}  {:>12}  {:>7}  {:>7}  {:>10}  error",
        "table", "status", "source rows", "rows written", "chunks", "resumed", "duration"
    );
    for r in records {
        let duration = r.duration_ms.map_or_else(
            || "-".to_owned(),
            |ms| format!("{:.1}s", ms as f64 / 1000.0),
        );
        let _ = writeln!(
            out,
            "{:width$}  {:<11}  {:>12}  {:>12}  {:>7}  {:>7}  {:>10}  {}",
            r.table,
            r.status,
            r.source_rows
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            r.rows_written,
            r.chunks,
            r.chunks_skipped,
            duration,
            r.error.as_deref().unwrap_or("")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: &str, at: i64) -> LoadRecord {
        LoadRecord {
            load_id: "l1".into(),
            slot: "s".into(),
            table: "public.t".into(),
            kind: LoadKind::Initial.as_str().into(),
            status: status.into(),
            snapshot_lsn: Some(42),
            source_rows: None,
            rows_written: 10,
            chunks: 3,
            chunks_skipped: 0,
            started_at: 1,
            finished_at: None,
            duration_ms: None,
            error: Some("boom".into()),
            recorded_at: at,
        }
    }

    #[tokio::test]
    async fn records_round_trip_and_latest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let lake = LakeLocation::new(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let mut log = LoadLog::open(&lake, 1).await.unwrap();
        log.record_loads(&[record("running", 5)]).await.unwrap();
        log.record_loads(&[record("done", 9)]).await.unwrap();
        let loads = log.loads().await.unwrap();
        assert_eq!(loads, vec![record("done", 9)]);
        let chunk = |i, status: &str| ChunkRecord {
            load_id: "l1".into(),
            table: "public.t".into(),
            chunk: Chunk {
                index: i,
                lower: (i > 0).then(|| Bound::Key(vec![format!("{i}")])),
                upper: Some(Bound::Page(u64::from(i) + 1)),
            },
            status: status.into(),
            rows: Some(7),
            snapshot_lsn: None,
            recorded_at: 3,
        };
        log.record_chunks(&[chunk(1, "planned"), chunk(0, "planned")])
            .await
            .unwrap();
        log.record_chunks(&[chunk(1, "done")]).await.unwrap();
        let planned = log.planned_chunks("l1", "public.t").await.unwrap();
        assert_eq!(planned, vec![chunk(0, "x").chunk, chunk(1, "x").chunk]);
    }
}
