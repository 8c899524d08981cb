//! `walaudit doctor`: run the checks of [`crate::doctor`] and print them (text or JSON); the
//! exit code is non-zero when any check fails.

use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::config::Config;
use crate::doctor::{Status, checks, render_text};

#[derive(Clone, Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Replication slot to check (default: source.slot).
    #[arg(long)]
    pub slot: Option<String>,
    /// Lake to check (default: lake.url): a path or a file://, s3://, gs://, az:// URL.
    #[arg(long)]
    pub lake: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// A prepared `doctor`.
pub struct Doctor {
    args: DoctorArgs,
    config: Config,
}

impl Doctor {
    pub fn new(args: DoctorArgs, config: Config) -> Self {
        Doctor { args, config }
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let results = checks(&self.config, self.args.slot.as_deref()).await;
        match self.args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&results)?),
            Format::Text => print!("{}", render_text(&results)),
        }
        let failed = results.iter().any(|r| r.status == Status::Fail);
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}
