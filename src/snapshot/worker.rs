//! Snapshot export and the COPY workers.
//!
//! A temporary logical slot exports a snapshot; every worker imports it at the start of its own
//! `REPEATABLE READ` transaction, then the exporting connection closes (which drops the
//! temporary slot: imported snapshots stay valid in the importing transactions). Workers pull
//! jobs from a shared queue until it is empty.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::SnapshotError;
use super::catalog::SourceTable;
use super::plan::{Chunk, copy_sql, count_sql};
use crate::Lsn;
use crate::config::CopyFormat;
use crate::decode::Cell;
use crate::decode::binary::{BinaryKind, binary_kind};
use crate::decode::copy_binary::{BinaryRows, CopyBinaryError};
use crate::decode::copy_text::{CopyTextError, RowSplitter, parse_row};
use crate::lake::catalog::chunk_app_id;
use crate::lake::evolve::{conform, lake_shape};
use crate::lake::read_batch::ReadBatchBuilder;
use crate::lake::sink::change_table_spec;
use crate::lake::storage::LakeLocation;
use crate::lake::table::LakeTable;
use crate::lake::widen::widen_for;
use crate::metrics::SharedMetrics;
use crate::source::{ConnParams, ReplicationClient, SnapshotAction};

/// Rows between progress reports of a worker.
const PROGRESS_EVERY: u64 = 8192;
/// Rows per Arrow batch of a chunk.
const BATCH_ROWS: usize = 65_536;
/// `_seq` of snapshot rows: chunk index × this + ordinal in the chunk.
pub const SEQ_PER_CHUNK: u64 = 1 << 32;

/// A snapshot every worker reads in.
pub struct Exported {
    pub consistent_point: Lsn,
    /// When the snapshot was taken: `_commit_ts` of its rows.
    pub taken_at_micros: i64,
    pub workers: Vec<Client>,
}

/// Exports a snapshot through a temporary slot and opens `workers` sessions reading in it.
pub async fn export(
    source: &ConnParams,
    slot: &str,
    workers: usize,
) -> Result<Exported, SnapshotError> {
    let mut repl = ReplicationClient::connect(source).await?;
    let name = temporary_slot_name(slot);
    let created = repl
        .create_slot(&name, true, SnapshotAction::Export)
        .await?;
    let taken_at_micros = super::record::now_micros();
    let snapshot = created.snapshot_name.clone().ok_or_else(|| {
        SnapshotError::Worker("the server exported no snapshot for the temporary slot".into())
    })?;
    let mut clients = Vec::with_capacity(workers);
    for _ in 0..workers {
        let client = source.connect_sql().await?;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 SET TRANSACTION SNAPSHOT {}",
                crate::source::quote_literal(&snapshot)
            ))
            .await
            .map_err(|e| SnapshotError::sql("importing the exported snapshot", e))?;
        clients.push(client);
    }
    // Every worker holds the snapshot now: the temporary slot can go.
    repl.close().await;
    tracing::info!(
        consistent_point = %created.consistent_point, workers,
        "snapshot exported to the copy workers"
    );
    Ok(Exported {
        consistent_point: created.consistent_point,
        taken_at_micros,
        workers: clients,
    })
}

fn temporary_slot_name(slot: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let suffix = format!("_snap_{}_{n}", std::process::id());
    let keep = 63usize.saturating_sub(suffix.len());
    format!("{}{suffix}", &slot[..slot.len().min(keep)])
}

/// What a worker does next.
#[derive(Clone, Debug)]
pub enum Job {
    Chunk {
        table: usize,
        chunk: Chunk,
    },
    /// `count(*)` of the rows the load copies (row filter applied) in the snapshot, for the
    /// audit record.
    Count {
        table: usize,
    },
}

/// What workers report to the coordinator.
#[derive(Debug)]
pub enum Event {
    Rows {
        table: usize,
        rows: u64,
    },
    ChunkDone {
        table: usize,
        chunk: Chunk,
        rows: u64,
    },
    Counted {
        table: usize,
        rows: u64,
    },
}

/// Shared, read-only context of the workers.
pub struct Context {
    pub tables: Vec<SourceTable>,
    pub load_ids: Vec<String>,
    pub lake: LakeLocation,
    pub app_id: String,
    pub commit_attempts: u32,
    pub copy_format: CopyFormat,
    pub metrics: SharedMetrics,
    pub consistent_point: Lsn,
    pub taken_at_micros: i64,
}

/// Runs jobs from `queue` until it is empty.
pub async fn run(
    client: Client,
    queue: Arc<Mutex<VecDeque<Job>>>,
    ctx: Arc<Context>,
    events: mpsc::Sender<Event>,
) -> Result<(), SnapshotError> {
    let mut tables: HashMap<usize, LakeTable> = HashMap::new();
    loop {
        let job = queue.lock().expect("job queue lock").pop_front();
        let Some(job) = job else { break };
        match job {
            Job::Count { table } => {
                let row = client
                    .query_one(&count_sql(&ctx.tables[table]), &[])
                    .await
                    .map_err(|e| SnapshotError::sql("counting the source rows", e))?;
                let rows = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
                let _ = events.send(Event::Counted { table, rows }).await;
            }
            Job::Chunk { table, chunk } => {
                if let std::collections::hash_map::Entry::Vacant(e) = tables.entry(table) {
                    let spec = change_table_spec(
                        &ctx.lake,
                        &ctx.tables[table].info,
                        &ctx.app_id,
                        ctx.commit_attempts,
                    )?;
                    e.insert(LakeTable::open(spec).await?);
                }
                let lake = tables.get_mut(&table).expect("opened above");
                let rows = copy_chunk(&client, &ctx, table, &chunk, lake, &events).await?;
                let _ = events.send(Event::ChunkDone { table, chunk, rows }).await;
            }
        }
    }
    // Read-only: ending the transaction releases the snapshot.
    let _ = client.batch_execute("COMMIT").await;
    Ok(())
}

/// Parquet settings of snapshot chunks: no dictionary for the source columns (a table's rows
/// are mostly distinct values), the key columns' bloom filters.
fn snapshot_writer(lake: &LakeTable) -> deltalake::parquet::file::properties::WriterProperties {
    crate::lake::pruning::writer_properties(lake.bloom_columns(), false)
}

/// Copies one chunk into one Delta commit; returns its rows.
///
/// The chunk is read in COPY's binary format when every column has a binary reader (no text
/// formatting on the server, no text parsing here), in the text format otherwise.
async fn copy_chunk(
    client: &Client,
    ctx: &Context,
    table: usize,
    chunk: &Chunk,
    lake: &mut LakeTable,
    events: &mpsc::Sender<Event>,
) -> Result<u64, SnapshotError> {
    let source = &ctx.tables[table];
    let name = source.name();
    lake.reload().await?;
    widen_for(lake, &source.info).await?;
    let schema = lake.arrow_schema()?;
    let (shape, _) = lake_shape(&source.info, &schema);
    let kinds: Option<Vec<BinaryKind>> = match ctx.copy_format {
        CopyFormat::Auto => shape
            .columns
            .iter()
            .map(|c| binary_kind(c.type_oid, &c.pg_type))
            .collect(),
        CopyFormat::Text => None,
    };
    let mut builder = ReadBatchBuilder::new(
        shape,
        BATCH_ROWS,
        ctx.consistent_point.0 as i64,
        ctx.taken_at_micros,
        i64::try_from(u64::from(chunk.index) * SEQ_PER_CHUNK).unwrap_or(i64::MAX),
    )?;
    let columns = source.info.columns.len();
    let stream = client
        .copy_out(&copy_sql(source, chunk, kinds.is_some()))
        .await
        .map_err(|e| SnapshotError::sql("starting COPY of a snapshot chunk", e))?;
    let mut stream = std::pin::pin!(stream);
    let mut reader = match &kinds {
        Some(kinds) => Reader::Binary(BinaryRows::new(columns), kinds),
        None => Reader::Text(RowSplitter::default(), Vec::with_capacity(columns)),
    };
    let mut batches = Vec::new();
    let mut rows = 0u64;
    let mut unreported = 0u64;
    while let Some(data) = stream.next().await {
        let data = data.map_err(|e| SnapshotError::sql("reading COPY data of a chunk", e))?;
        let before = builder.len();
        reader
            .push(data, columns, &mut builder)
            .map_err(|e| e.at(&name, chunk.index))?;
        let added = (builder.len() - before) as u64;
        rows += added;
        unreported += added;
        if builder.len() >= BATCH_ROWS {
            batches.push(builder.finish().map_err(SnapshotError::arrow)?);
        }
        if unreported >= PROGRESS_EVERY {
            report_rows(ctx, events, table, &name, std::mem::take(&mut unreported)).await;
        }
    }
    reader.finish().map_err(|e| e.at(&name, chunk.index))?;
    if !builder.is_empty() {
        batches.push(builder.finish().map_err(SnapshotError::arrow)?);
    }
    report_rows(ctx, events, table, &name, unreported).await;
    if rows == 0 {
        // Nothing to commit (Delta has no empty appends): an empty chunk is simply copied
        // again if its load resumes.
        return Ok(0);
    }
    let batches = batches
        .iter()
        .map(|b| conform(b, &schema))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SnapshotError::arrow)?;
    let app_id = chunk_app_id(&ctx.load_ids[table], chunk.index);
    let version = i64::try_from(rows).unwrap_or(i64::MAX);
    let started = std::time::Instant::now();
    lake.append_tagged_with(
        batches,
        Some((&app_id, version)),
        Some(snapshot_writer(lake)),
    )
    .await?;
    let metrics = &ctx.metrics;
    metrics
        .lake_commit_seconds
        .observe(started.elapsed().as_secs_f64());
    metrics.lake_rows.with_label_values(&[&name]).inc_by(rows);
    metrics
        .changes
        .with_label_values(&[&name, "r"])
        .inc_by(rows);
    let format = if kinds.is_some() { "binary" } else { "text" };
    tracing::debug!(table = %name, chunk = chunk.index, rows, format = %format, "snapshot chunk committed");
    Ok(rows)
}

/// Counts `rows` copied rows of `table` in the metrics and tells the coordinator.
async fn report_rows(
    ctx: &Context,
    events: &mpsc::Sender<Event>,
    table: usize,
    name: &str,
    rows: u64,
) {
    ctx.metrics
        .snapshot_rows
        .with_label_values(&[name])
        .inc_by(rows);
    let _ = events.send(Event::Rows { table, rows }).await;
}

/// Reads a chunk's COPY data in the format it was requested in.
enum Reader<'k> {
    Binary(BinaryRows, &'k [BinaryKind]),
    /// The line splitter and a scratch row of cells.
    Text(RowSplitter, Vec<Cell>),
}

/// A malformed COPY stream, in either format.
enum ReadError {
    Binary(CopyBinaryError),
    Text(CopyTextError),
}

impl From<CopyBinaryError> for ReadError {
    fn from(e: CopyBinaryError) -> Self {
        Self::Binary(e)
    }
}

impl From<CopyTextError> for ReadError {
    fn from(e: CopyTextError) -> Self {
        Self::Text(e)
    }
}

impl ReadError {
    fn at(self, table: &str, chunk: u32) -> SnapshotError {
        let table = table.to_owned();
        match self {
            Self::Binary(source) => SnapshotError::CopyBinary {
                table,
                chunk,
                source,
            },
            Self::Text(source) => SnapshotError::Copy {
                table,
                chunk,
                source,
            },
        }
    }
}

impl Reader<'_> {
    /// Appends every row completed by one CopyData payload to `builder`.
    fn push(
        &mut self,
        data: bytes::Bytes,
        columns: usize,
        builder: &mut ReadBatchBuilder,
    ) -> Result<(), ReadError> {
        match self {
            Self::Binary(rows, kinds) => rows.push::<ReadError>(&data, |fields| {
                for ((i, field), kind) in fields.enumerate().zip(kinds.iter()) {
                    builder.binary(i, *kind, field);
                }
                builder.end_row();
                Ok(())
            }),
            Self::Text(lines, cells) => lines.push::<ReadError>(data, |line| {
                parse_row(&line, columns, cells)?;
                for (i, cell) in cells.iter().enumerate() {
                    match cell {
                        Cell::Text(t) | Cell::Binary(t) => builder.text(i, Some(t)),
                        Cell::Null | Cell::UnchangedToast => builder.text(i, None),
                    }
                }
                builder.end_row();
                Ok(())
            }),
        }
    }

    fn finish(&self) -> Result<(), ReadError> {
        match self {
            Self::Binary(rows, _) => Ok(rows.finish()?),
            Self::Text(lines, _) => Ok(lines.finish()?),
        }
    }
}
