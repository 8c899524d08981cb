//! `walaudit lake optimize|vacuum|checkpoint`: maintenance of the lake's Delta tables.
//!
//! Safe while `walaudit run` writes: these commits carry no data change, and Delta's optimistic
//! concurrency retries an append that raced one of them.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::lake::{LakeLocation, catalog, maintenance};

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

#[derive(Clone, Copy, Debug, Subcommand)]
pub enum LakeAction {
    /// Compact small files into files of about 128 MiB.
    Optimize,
    /// Delete files no longer referenced by any version within the retention period (7 days).
    Vacuum,
    /// Write a checkpoint of the current version and remove expired log entries.
    Checkpoint,
}

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
        let mut tables = catalog::list_tables(&self.lake).await?;
        if let Some(only) = &self.args.table {
            tables.retain(|table| &table.display_name() == only);
            if tables.is_empty() {
                anyhow::bail!(
                    "no Delta table {only} in the lake {}: give `schema.table` or \
                     `_walaudit/name` (list them with: walaudit query \"SHOW TABLES\")",
                    self.lake.display()
                );
            }
        }
        for found in tables {
            let name = found.display_name();
            let Some(table) = found.open(&self.lake).await? else {
                continue;
            };
            match self.args.action {
                LakeAction::Optimize => {
                    let (_, m) = maintenance::optimize(table).await?;
                    tracing::info!(
                        table = %name, files_added = m.num_files_added,
                        files_removed = m.num_files_removed, "optimized"
                    );
                }
                LakeAction::Vacuum => {
                    let (_, deleted) = maintenance::vacuum(table).await?;
                    tracing::info!(table = %name, files_deleted = deleted, "vacuumed");
                }
                LakeAction::Checkpoint => {
                    let cleaned = maintenance::checkpoint(&table).await?;
                    tracing::info!(table = %name, log_files_removed = cleaned, "checkpointed");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
