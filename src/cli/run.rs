//! `walaudit run`: the long-running engine, source → capture → Delta lake.
//!
//! It reads the permanent slot (created when missing if `source.create_slot`), writes every
//! committed change into the lake and confirms to Postgres only what the lake durably holds.
//! SIGINT/SIGTERM flush, confirm and exit 0. `--drain` stops once everything committed before
//! start is in the lake.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SnapshotMode};
use crate::engine::{Engine, EngineHandle, EngineOptions, EngineOutcome};

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Replication slot (permanent; created when missing unless source.create_slot = false).
    #[arg(long)]
    pub slot: Option<String>,
    /// Lake location: a path or a file://, s3://, gs://, az:// URL.
    #[arg(long)]
    pub lake: Option<String>,
    /// Capture everything committed up to now, commit it to the lake, confirm it, and exit.
    #[arg(long)]
    pub drain: bool,
    /// Historical load: initial (load tables without one, resume interrupted loads), never,
    /// or only (load, then exit). Overrides snapshot.mode.
    #[arg(long, value_parser = parse_mode)]
    pub snapshot: Option<SnapshotMode>,
    /// Address of the HTTP API (overrides api.listen; default 127.0.0.1:9187).
    #[arg(long, env = "WALAUDIT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Schedule the validation jobs below this directory (overrides checks.dir).
    #[arg(long)]
    pub checks: Option<std::path::PathBuf>,
}

fn parse_mode(text: &str) -> Result<SnapshotMode, String> {
    match text {
        "initial" => Ok(SnapshotMode::Initial),
        "never" => Ok(SnapshotMode::Never),
        "only" => Ok(SnapshotMode::Only),
        other => Err(format!("`{other}`: use initial, never or only")),
    }
}

impl RunArgs {
    pub fn overrides(&self) -> crate::config::Overrides {
        let mut o = self.source.overrides(self.slot.clone());
        o.lake = self.lake.clone();
        o
    }
}

/// A prepared `run`: the engine's options.
pub struct Run {
    options: EngineOptions,
}

impl Run {
    pub fn new(args: RunArgs, mut config: Config) -> anyhow::Result<Run> {
        if let Some(mode) = args.snapshot {
            config.snapshot.mode = mode;
        }
        config.checks.dir = args.checks.clone().or(config.checks.dir);
        Ok(Run {
            options: EngineOptions::from_config(
                &config,
                args.drain,
                config.api.listen_or(args.listen),
            )?,
        })
    }

    /// The engine's metrics (what `/metrics` serves).
    pub fn metrics(&self) -> crate::metrics::SharedMetrics {
        Arc::clone(&self.options.pipeline.metrics)
    }

    /// Starts the engine; `cancel` stops it.
    pub async fn start(self, cancel: CancellationToken) -> anyhow::Result<EngineHandle> {
        Ok(Engine::start(self.options, cancel).await?)
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
        let engine = self.start(cancel).await?;
        match engine.wait().await? {
            EngineOutcome::Loaded(summary) => {
                print!("{}", super::snapshot::render(&summary.records));
                Ok(if summary.failed() {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
            EngineOutcome::Streamed(_) => Ok(ExitCode::SUCCESS),
        }
    }
}
