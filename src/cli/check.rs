//! `walaudit check validate | run | list | suggest`: validation jobs on demand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use crate::checks::Job;
use crate::checks::command as cmd;
use crate::config::Config;

#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub action: CheckAction,
    /// Directory of job files (every *.yml / *.yaml below it); default: checks.dir.
    #[arg(long, global = true)]
    pub checks: Option<PathBuf>,
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Lake location: a path or a file://, s3://, gs://, az:// URL.
    #[arg(long, global = true)]
    pub lake: Option<String>,
}

#[derive(Clone, Debug, Subcommand)]
pub enum CheckAction {
    /// Load the job files, run the EXPLAIN guard on Postgres jobs; report each problem (exit 1).
    Validate,
    /// Run jobs once now, record the runs in the lake, print the results; exit 1 when a check
    /// is fail, error or timeout.
    Run {
        /// Only this job (repeatable); default: every job.
        #[arg(long = "job")]
        jobs: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// List the jobs: name, connection, dataset, schedule, checks, where defined.
    List,
    /// Profile a dataset (one scan) and print a job file for it.
    Suggest {
        #[arg(long)]
        dataset: String,
        /// `source` (default), `lake` or a [connections.NAME].
        #[arg(long)]
        connection: Option<String>,
        /// Write the job file here instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A prepared `check` command.
pub struct CheckCommand {
    action: CheckAction,
    reconciliations: usize,
    config: Config,
    jobs: Vec<Job>,
}

impl CheckCommand {
    pub fn new(args: CheckArgs, config: Config) -> anyhow::Result<CheckCommand> {
        let (jobs, reconciliations) = match args.action {
            CheckAction::Suggest { .. } => (Vec::new(), 0),
            _ => {
                let dir = cmd::checks_dir(args.checks.as_deref(), &config)?;
                // The same files hold reconciliations: `validate` checks them too.
                let recs = match args.action {
                    CheckAction::Validate => crate::reconcile::command::load(&dir, &config)?.len(),
                    _ => 0,
                };
                (cmd::load_jobs(&dir, &config)?, recs)
            }
        };
        Ok(CheckCommand {
            reconciliations,
            action: args.action,
            config,
            jobs,
        })
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.action {
            CheckAction::Validate => {
                cmd::validate(&self.jobs, &self.config).await?;
                let checks: usize = self.jobs.iter().map(|j| j.checks.len()).sum();
                println!(
                    "{} job(s), {checks} check(s), {} reconciliation(s): valid",
                    self.jobs.len(),
                    self.reconciliations
                );
                Ok(ExitCode::SUCCESS)
            }
            CheckAction::Suggest {
                dataset,
                connection,
                output,
            } => {
                let (c, o) = (connection.as_deref(), output.as_deref());
                print!("{}", cmd::suggest(&dataset, c, o, &self.config).await?);
                Ok(ExitCode::SUCCESS)
            }
            CheckAction::List => {
                print!("{}", cmd::render_list(&self.jobs));
                Ok(ExitCode::SUCCESS)
            }
            CheckAction::Run { jobs, format } => {
                let outcomes = cmd::run_command(&self.jobs, &jobs, &self.config).await?;
                match format {
                    Format::Table => print!("{}", cmd::render_table(&outcomes)),
                    Format::Json => print!("{}", cmd::render_json(&outcomes)),
                }
                Ok(match cmd::all_good(&outcomes) {
                    true => ExitCode::SUCCESS,
                    false => ExitCode::from(1),
                })
            }
        }
    }
}
