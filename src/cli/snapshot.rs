//! `walaudit snapshot`: run only the historical load, print its audit records, exit.
//!
//! Without `--tables` it loads every captured table that has no finished load and resumes
//! interrupted loads; with `--tables` it loads those tables again (a re-snapshot, which can run
//! while `walaudit run` streams). The publication and the slot are made sure of first, so the
//! streamed changes continue exactly where the snapshot's rows end.

use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::snapshot::normalize_tables;
pub use crate::snapshot::options_from_config as load_options;
use crate::snapshot::progress::Display;
pub use crate::snapshot::record::render_records as render;
use crate::snapshot::{LoadOptions, Loader, SourceSetup, Targets, ensure_source};

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
