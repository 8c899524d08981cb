//! `walaudit snapshot`: run only the historical load, print its audit records, exit.
//!
//! Without `--tables` it loads every captured table that has no finished load and resumes
//! interrupted loads; with `--tables` it loads those tables again (a re-snapshot, which can run
//! while `walaudit run` streams). The publication and the slot are made sure of first, so the
//! streamed changes continue exactly where the snapshot's rows end.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::lake::LakeLocation;
use crate::metrics::Metrics;
use crate::snapshot::load::normalize_tables;
use crate::snapshot::progress::Display;
use crate::snapshot::{LoadOptions, LoadRecord, Loader, SourceSetup, Targets, ensure_source};
use crate::source::ConnParams;

#[derive(Clone, Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// The engine's replication slot (created when missing unless source.create_slot = false).
    #[arg(long)]
    pub slot: Option<String>,
    /// Lake location: a path or a file://, s3://, gs://, az:// URL.
    #[arg(long)]
    pub lake: Option<String>,
    /// Load these tables again (`schema.table`, comma-separated or repeated); default: every
    /// captured table without a finished load.
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// Parallel COPY sessions (snapshot.workers).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Target rows per chunk (snapshot.chunk_rows).
    #[arg(long)]
    pub chunk_rows: Option<u64>,
}

/// A prepared `snapshot`.
pub struct SnapshotCommand {
    setup: SourceSetup,
    load: LoadOptions,
    targets: Targets,
}

impl SnapshotCommand {
    pub fn new(args: SnapshotArgs, mut config: Config) -> anyhow::Result<SnapshotCommand> {
        if let Some(workers) = args.workers {
            config.snapshot.workers = workers;
        }
        if let Some(rows) = args.chunk_rows {
            config.snapshot.chunk_rows = rows;
        }
        config.validate()?;
        let (setup, load) = load_options(&config, Display::detect())?;
        let targets = match normalize_tables(&args.tables) {
            t if t.is_empty() => Targets::Unloaded,
            t => Targets::Tables(t),
        };
        Ok(SnapshotCommand {
            setup,
            load,
            targets,
        })
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
        ensure_source(&self.setup).await?;
        let mut loader = Loader::open(self.load).await?;
        let summary = loader.pass(&self.targets, &cancel).await?;
        print!("{}", render(&summary.records));
        if summary.records.is_empty() {
            println!(
                "nothing to load: every captured table has a finished load (use --tables to load one again)"
            );
        }
        Ok(if summary.interrupted {
            ExitCode::from(130)
        } else if summary.failed() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// Source setup and load options from the configuration.
pub fn load_options(
    config: &Config,
    display: Display,
) -> anyhow::Result<(SourceSetup, LoadOptions)> {
    let source = ConnParams::parse(config.source_url()?)?;
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
        lake: LakeLocation::new(&config.lake.url, &config.lake.s3)?,
        workers: config.snapshot.workers,
        chunk_rows: config.snapshot.chunk_rows,
        copy_format: config.snapshot.copy_format,
        commit_attempts: config.lake.commit_attempts,
        metrics: Arc::new(Metrics::new()),
        display,
    };
    Ok((setup, load))
}

/// The audit records as a text table.
pub fn render(records: &[LoadRecord]) -> String {
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
