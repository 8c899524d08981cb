//! `walaudit reconcile run | diff | report`: reconciliations on demand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::check::Format;
use crate::checks::command::checks_dir;
use crate::config::Config;
use crate::reconcile::{RunOptions, command as cmd};

#[derive(Clone, Debug, Args)]
pub struct ReconcileArgs {
    #[command(subcommand)]
    pub action: ReconcileAction,
    /// Directory of job files (`reconciliations:` in any *.yml below it); default: checks.dir.
    #[arg(long, global = true)]
    pub checks: Option<PathBuf>,
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Lake location: a path or a file://, s3://, gs://, az:// URL.
    #[arg(long, global = true)]
    pub lake: Option<String>,
}

#[derive(Clone, Debug, Subcommand)]
pub enum ReconcileAction {
    /// Count the windows on both sides, find the differing keys when the job says so, record
    /// the transfer audit records; exit 1 unless every judged window matches.
    Run {
        /// Only this reconciliation (repeatable); default: all.
        #[arg(long = "name")]
        names: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Find the differing keys now, whatever the counts say.
    Diff {
        #[arg(long)]
        name: String,
        /// Only the window starting at this time (RFC 3339, e.g. 2026-12-01T10:00:00Z).
        #[arg(long)]
        window: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub async fn run(args: ReconcileArgs, config: Config) -> anyhow::Result<ExitCode> {
    let all = cmd::load(&checks_dir(args.checks.as_deref(), &config)?, &config)?;
    let (names, options, format) = match args.action {
        ReconcileAction::Run { names, format } => (names, RunOptions::default(), format),
        ReconcileAction::Diff {
            name,
            window,
            format,
        } => (
            vec![name],
            cmd::diff_options(window.map(|w| w.timestamp())),
            format,
        ),
    };
    let recs = cmd::select(all, &names)?;
    let targets = cmd::open(&recs, &config).await?;
    let store = cmd::open_store(&config).await?;
    let reports = cmd::run_all(&recs, &targets, Some(&store), options).await?;
    match format {
        Format::Table => print!("{}", cmd::render_table(&reports)),
        Format::Json => print!("{}", cmd::render_json(&reports)),
    }
    Ok(match cmd::all_match(&reports) {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    })
}
