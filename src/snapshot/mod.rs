//! The historical pipeline: rows that existed before capture began enter the lake as `_op = 'r'`
//! rows, exactly, in parallel chunks, resumably.
//!
//! ```text
//!  publication tables ─► catalog::describe ─► plan (PK ranges | ctid pages) ─► _walaudit/snapshot_chunks
//!  temporary slot (CREATE_REPLICATION_SLOT … TEMPORARY … EXPORT_SNAPSHOT) ─► consistent point C
//!       └─► N worker sessions: BEGIN REPEATABLE READ; SET TRANSACTION SNAPSHOT ─► slot closed
//!  worker: COPY (SELECT … FROM [ONLY] t WHERE row filter AND chunk) TO STDOUT (FORMAT binary | text)
//!       ─► decode::copy_binary | decode::copy_text ─► ReadBatchBuilder (_lsn = C)
//!       ─► one Delta commit per chunk, carrying txn `walaudit-snapshot:<load>:<chunk>` = rows
//!  coordinator: progress (bars / log lines, metrics) ─► _walaudit/snapshots (audit record)
//! ```
//!
//! # Why this is exact (no gap, no overlap with the stream)
//! The engine's own slot exists before any load starts, so every change committed after that
//! slot's position is streamed into the lake. Each load reads its chunks in the snapshot a
//! *temporary* logical slot exports: that snapshot shows exactly the transactions that committed
//! before the temporary slot's consistent point `C`, and every transaction committing at or
//! after `C` is streamed by the engine's slot. The rows are written with `_lsn = C`, so in the
//! `(_lsn, _seq)` order of the change table each row image sits exactly between the changes it
//! includes and the changes it does not (a transaction committed exactly at `C` is not in the
//! snapshot: at equal `_lsn`, `r` rows come first).
//!
//! # Why it is resumable
//! A chunk's rows and its `txn` app id land in one Delta commit; a resumed load (after a crash,
//! SIGKILL or stop) re-reads its stored plan, skips every chunk whose app id the change table
//! holds, and copies the rest under a new exported snapshot (a new `C`). Each chunk's rows are
//! exact as of their own `C`, so the result is still exact. Concurrent commits of the same
//! chunk fail delta-rs' conflict check on the app id.
//!
//! # Costs
//! While a load runs, its worker transactions hold back the source's xmin horizon (vacuum) the
//! way any long `REPEATABLE READ` transaction does; they end when the load does.

pub mod catalog;
pub mod load;
pub mod plan;
pub mod progress;
pub mod record;
mod worker;

pub use load::{LoadOptions, LoadSummary, Loader, Targets};
pub use record::{LoadKind, LoadRecord};

use crate::lake::{LakeError, SchemaError};
use crate::source::SourceError;

/// A historical load failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{context}")]
    Sql {
        context: &'static str,
        #[source]
        source: Box<tokio_postgres::Error>,
    },
    #[error(
        "table {table} does not exist on the source: check the name (schema.table) and that the \
         role can see it"
    )]
    TableMissing { table: String },
    #[error(
        "table {table} is not in publication {publication}: add it with ALTER PUBLICATION \
         {publication} ADD TABLE {table}, or drop it from --tables"
    )]
    NotPublished { table: String, publication: String },
    #[error("snapshot of {table}, chunk {chunk}")]
    Copy {
        table: String,
        chunk: u32,
        #[source]
        source: crate::decode::copy_text::CopyTextError,
    },
    #[error("snapshot of {table}, chunk {chunk}")]
    CopyBinary {
        table: String,
        chunk: u32,
        #[source]
        source: crate::decode::copy_binary::CopyBinaryError,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot build the Arrow data of a snapshot chunk")]
    Arrow(#[source] arrow_schema::ArrowError),
    #[error(
        "the snapshot log in the lake has an unexpected column `{column}`: was _walaudit/ \
         written by another walaudit version? Move _walaudit/snapshots and \
         _walaudit/snapshot_chunks aside to start the load log afresh"
    )]
    LogSchema { column: String },
    #[error("a snapshot worker stopped unexpectedly: {0}")]
    Worker(String),
}

impl SnapshotError {
    pub fn sql(context: &'static str, source: tokio_postgres::Error) -> Self {
        SnapshotError::Sql {
            context,
            source: Box::new(source),
        }
    }

    pub fn arrow(source: arrow_schema::ArrowError) -> Self {
        SnapshotError::Arrow(source)
    }
}

/// Source setup and load options from the configuration.
pub fn options_from_config(
    config: &crate::config::Config,
    display: progress::Display,
) -> Result<(SourceSetup, LoadOptions), SnapshotError> {
    let source = crate::source::ConnParams::parse(config.source_url()?)?;
    let setup = SourceSetup {
        source: source.clone(),
        publication: config.source.publication.clone(),
        create_publication: config.source.create_publication,
        publication_tables: config.source.publication_tables.clone(),
        slot: config.source.slot.clone(),
        create_slot: config.source.create_slot,
    };
    let load = LoadOptions {
        source,
        publication: config.source.publication.clone(),
        slot: config.source.slot.clone(),
        lake: crate::lake::LakeLocation::new(&config.lake.url, &config.lake.s3)?,
        workers: config.snapshot.workers,
        chunk_rows: config.snapshot.chunk_rows,
        copy_format: config.snapshot.copy_format,
        commit_attempts: config.lake.commit_attempts,
        metrics: std::sync::Arc::new(crate::metrics::Metrics::new()),
        display,
    };
    Ok((setup, load))
}

/// What must exist on the source before a load: the publication and the engine's slot.
#[derive(Clone, Debug)]
pub struct SourceSetup {
    pub source: crate::source::ConnParams,
    pub publication: String,
    pub create_publication: bool,
    pub publication_tables: Vec<String>,
    pub slot: String,
    pub create_slot: bool,
}

/// Checks the server and makes sure publication and slot exist (creating them when allowed),
/// so every change after the slot's position is captured: the precondition of an exact load.
pub async fn ensure_source(setup: &SourceSetup) -> Result<(), SnapshotError> {
    use crate::source::setup as s;
    let sql = setup.source.connect_sql().await?;
    s::prepare_source(
        &sql,
        &setup.publication,
        setup.create_publication,
        &setup.publication_tables,
    )
    .await?;
    let mut repl = crate::source::ReplicationClient::connect(&setup.source).await?;
    s::ensure_slot(&sql, &mut repl, &setup.slot, setup.create_slot).await?;
    repl.close().await;
    Ok(())
}

/// Tables named on the command line, as `schema.table` (`public` when no schema is given).
pub fn normalize_tables(tables: &[String]) -> Vec<String> {
    tables
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.contains('.') {
                t.to_owned()
            } else {
                format!("public.{t}")
            }
        })
        .collect()
}
