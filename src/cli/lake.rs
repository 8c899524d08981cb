//! `walaudit lake optimize|vacuum|checkpoint`: maintenance of the lake's Delta tables.
//!
//! Safe while `walaudit run` writes: these commits carry no data change, and Delta's optimistic
//! concurrency retries an append that raced one of them.

use std::process::ExitCode;

use clap::Args;

use crate::config::Config;
use crate::lake::{LakeLocation, maintenance};

#[derive(Clone, Debug, Args)]
pub struct LakeArgs {
    #[command(subcommand)]
    pub action: LakeAction,
    /// Only this table (`schema.table`, or `_walaudit/name`); default: every table.
    #[arg(long, global = true)]
    pub table: Option<String>,
    /// Lake location: a path or a file://, s3://, gs://, az:// URL.
    #[arg(long, global = true)]
    pub lake: Option<String>,
}

pub use crate::lake::maintenance::Action as LakeAction;

/// A prepared `lake` command.
pub struct LakeCommand {
    args: LakeArgs,
    lake: LakeLocation,
}

impl LakeCommand {
    pub fn new(args: LakeArgs, config: Config) -> anyhow::Result<LakeCommand> {
        let lake = LakeLocation::new(&config.lake.url, &config.lake.s3)?;
        Ok(LakeCommand { args, lake })
    }

    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let only = self.args.table.as_deref();
        maintenance::run_all(&self.lake, only, self.args.action).await?;
        Ok(ExitCode::SUCCESS)
    }
}
