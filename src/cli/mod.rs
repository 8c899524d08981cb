//! The command-line interface: the clap command tree, one file per command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Overrides};

pub mod check;
pub mod demo;
pub mod doctor;
pub mod emit_sample;
pub mod lake;
pub mod query;
pub mod reconcile;
pub mod run;
pub mod serve;
pub mod snapshot;
pub mod tail;
pub mod token;

/// Change-data-capture from PostgreSQL into an auditable Delta Lake.
#[derive(Debug, Parser)]
#[command(name = "walaudit", version, about)]
pub struct Cli {
    /// Config file (TOML); see config/walaudit.toml for every key.
    #[arg(long, global = true, env = "WALAUDIT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `info`, `debug`, `walaudit=debug` (logs go to stderr).
    #[arg(long, global = true, env = "WALAUDIT_LOG", default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print each committed change as one JSON object per line (for debugging pipelines).
    Tail(tail::TailArgs),
    /// Check the source and the lake the way the engine will use them, and say what to fix.
    Doctor(doctor::DoctorArgs),
    /// Run the engine: capture every committed change into the Delta lake (until a signal,
    /// or with --drain until everything committed before start is in the lake).
    Run(run::RunArgs),
    /// Run only the historical load (existing rows as `_op = 'r'`), print its audit record,
    /// and exit; `--tables` loads tables again (also while `run` streams).
    Snapshot(snapshot::SnapshotArgs),
    /// Maintain the lake's Delta tables: optimize, vacuum, checkpoint.
    Lake(lake::LakeArgs),
    /// Run read-only SQL over the lake: change logs, current.<schema>.<table>, as_of(...).
    Query(query::QueryArgs),
    /// Schedule the validation jobs and serve HTTP over the lake, without capture.
    Serve(serve::ServeArgs),
    /// Validation jobs: check the job files, run jobs now, list them.
    Check(check::CheckArgs),
    /// Reconciliations: compare a source with its copy (counts per window, differing keys).
    Reconcile(reconcile::ReconcileArgs),
    /// Generate a sample shop workload of attributed transactions on a source database.
    EmitSample(emit_sample::EmitSampleArgs),
    /// API tokens: `token create --name ci --role operator`.
    Token(token::TokenArgs),
    /// Show everything at once on a private PostgreSQL cluster: workload, capture into a lake,
    /// metrics, audit queries (needs only the PostgreSQL server binaries).
    Demo(demo::DemoArgs),
}

/// Flags every command that connects to the source accepts; they override config and env.
#[derive(Clone, Debug, Default, Args)]
pub struct SourceArgs {
    /// Source database URL, e.g. postgres://user:password@host:5432/db?sslmode=require.
    #[arg(long)]
    pub source: Option<String>,
    /// Publication naming the captured tables.
    #[arg(long)]
    pub publication: Option<String>,
}

impl SourceArgs {
    pub fn overrides(&self, slot: Option<String>) -> Overrides {
        Overrides {
            source: self.source.clone(),
            slot,
            publication: self.publication.clone(),
            lake: None,
        }
    }
}

/// A command with its configuration loaded, ready to run on the runtime.
pub enum Prepared {
    Tail(tail::Tail),
    Doctor(doctor::Doctor),
    Run(Box<run::Run>),
    Snapshot(Box<snapshot::SnapshotCommand>),
    Lake(lake::LakeCommand),
    Query(query::Query),
    Check(Box<check::CheckCommand>),
    Serve(serve::ServeArgs, Box<Config>),
    Reconcile(reconcile::ReconcileArgs, Box<Config>),
    EmitSample(emit_sample::EmitSample),
    Demo(demo::Demo),
    Token(token::TokenArgs),
}

/// The config of `path` with the source, slot and lake flags applied.
fn load(
    path: Option<&Path>,
    source: &SourceArgs,
    slot: Option<String>,
    lake: &Option<String>,
) -> anyhow::Result<Config> {
    let mut overrides = source.overrides(slot);
    overrides.lake = lake.clone();
    Ok(Config::load(path, &overrides)?)
}

impl Command {
    /// Load and validate configuration for the command (synchronous, before the runtime).
    pub fn prepare(self, config: Option<&Path>) -> anyhow::Result<Prepared> {
        match self {
            Command::Tail(args) => {
                let cfg = Config::load(config, &args.source.overrides(args.slot.clone()))?;
                Ok(Prepared::Tail(tail::Tail::new(args, cfg)?))
            }
            Command::Doctor(args) => {
                let cfg = load(config, &args.source, args.slot.clone(), &args.lake)?;
                Ok(Prepared::Doctor(doctor::Doctor::new(args, cfg)))
            }
            Command::Run(args) => {
                let cfg = Config::load(config, &args.overrides())?;
                Ok(Prepared::Run(Box::new(run::Run::new(args, cfg)?)))
            }
            Command::Snapshot(args) => {
                let cfg = load(config, &args.source, args.slot.clone(), &args.lake)?;
                Ok(Prepared::Snapshot(Box::new(
                    snapshot::SnapshotCommand::new(args, cfg)?,
                )))
            }
            Command::Lake(args) => {
                let cfg = load(config, &SourceArgs::default(), None, &args.lake)?;
                Ok(Prepared::Lake(lake::LakeCommand::new(args, cfg)?))
            }
            Command::Query(args) => {
                let cfg = load(config, &SourceArgs::default(), None, &args.lake_url)?;
                Ok(Prepared::Query(query::Query::new(args, &cfg)?))
            }
            Command::Serve(args) => {
                let cfg = load(config, &args.source, None, &args.lake)?;
                Ok(Prepared::Serve(args, Box::new(cfg)))
            }
            Command::Check(args) => {
                let cfg = load(config, &args.source, None, &args.lake)?;
                Ok(Prepared::Check(Box::new(check::CheckCommand::new(
                    args, cfg,
                )?)))
            }
            Command::Reconcile(args) => {
                let cfg = load(config, &args.source, None, &args.lake)?;
                Ok(Prepared::Reconcile(args, Box::new(cfg)))
            }
            Command::EmitSample(args) => {
                let cfg = Config::load(config, &args.overrides())?;
                Ok(Prepared::EmitSample(emit_sample::EmitSample::new(
                    args, cfg,
                )?))
            }
            Command::Token(args) => Ok(Prepared::Token(args)),
            Command::Demo(args) => {
                let cfg = Config::load(config, &Overrides::default())?;
                Ok(Prepared::Demo(demo::Demo::new(args, cfg)?))
            }
        }
    }
}

impl Prepared {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let cancel = CancellationToken::new();
        crate::engine::cancel_on_signals(cancel.clone());
        match self {
            Prepared::Tail(tail) => tail.run(cancel).await,
            Prepared::Doctor(doctor) => doctor.run().await,
            Prepared::Run(run) => run.run(cancel).await,
            Prepared::Snapshot(snapshot) => snapshot.run(cancel).await,
            Prepared::Lake(lake) => lake.run().await,
            Prepared::Query(query) => query.run(cancel).await,
            Prepared::Check(check) => check.run().await,
            Prepared::Serve(args, cfg) => serve::run(args, *cfg, cancel).await,
            Prepared::Reconcile(args, cfg) => reconcile::run(args, *cfg).await,
            Prepared::EmitSample(emit) => emit.run(cancel).await,
            Prepared::Demo(demo) => demo.run(cancel).await,
            Prepared::Token(args) => token::run(args),
        }
    }
}

pub use crate::report::init_logging;
