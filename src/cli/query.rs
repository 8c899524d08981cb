//! `walaudit query "SQL"`: run read-only SQL over the lake and print or save the result.
//!
//! ```text
//!  walaudit query "SELECT pg_lsn(_lsn), _op, id FROM public.orders ORDER BY _lsn, _seq"
//!  walaudit query "SELECT * FROM current.public.orders" --format csv
//!  walaudit query "SELECT * FROM as_of('public.orders', TIMESTAMP '2024-01-02 03:04:05')"
//!  walaudit query "SELECT * FROM _walaudit.transactions" --format parquet --output tx.parquet
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::query::{DEFAULT_MEMORY_LIMIT, LakeOptions, LakeQuery, OutputFormat, QueryError};

#[derive(Clone, Debug, Args)]
pub struct QueryArgs {
    /// The SQL to run (queries only). Tables: <schema>.<table> (change log),
    /// current.<schema>.<table>, as_of('<schema>.<table>', TIMESTAMP '…'),
    /// _walaudit.transactions, _walaudit.messages; functions pg_lsn(bigint), lsn(text).
    pub sql: String,
    /// The lake: a directory, or a file://, s3://, gs:// or az:// URL [default: ./lake].
    #[arg(long = "lake", env = "WALAUDIT_LAKE")]
    pub lake_url: Option<String>,
    /// How to write the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the result to this file instead of standard output (required for parquet).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Give up when the query has not finished after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Memory the query may use, in MiB; operators that can spill to disk do beyond it.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MEMORY_LIMIT >> 20)]
    pub memory_limit: usize,
}

/// A prepared `query`.
#[derive(Debug)]
pub struct Query {
    args: QueryArgs,
    lake: String,
    options: LakeOptions,
}

impl Query {
    /// `config` gives the lake (`lake.url`, `[lake.s3]`) unless `--lake` names another.
    pub fn new(args: QueryArgs, config: &crate::config::Config) -> anyhow::Result<Query> {
        if args.format == OutputFormat::Parquet && args.output.is_none() {
            return Err(QueryError::ParquetNeedsOutput.into());
        }
        let timeout = match args.timeout {
            None => None,
            Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
            Some(secs) => {
                anyhow::bail!("--timeout must be a positive number of seconds, not {secs}")
            }
        };
        if args.memory_limit == 0 {
            anyhow::bail!("--memory-limit must be at least 1 (MiB)");
        }
        let lake = args
            .lake_url
            .clone()
            .unwrap_or_else(|| config.lake.url.clone());
        // Remote lakes take the writer's storage options; a local path is only read (never
        // created by a query).
        let remote = lake.contains("://") && !lake.starts_with("file://");
        let storage_options = match remote {
            true => crate::lake::LakeLocation::s3_storage_options(&lake, &config.lake.s3)?,
            false => Default::default(),
        };
        let options = LakeOptions {
            memory_limit: args.memory_limit.saturating_mul(1 << 20),
            timeout,
            storage_options,
            ..LakeOptions::default()
        };
        Ok(Query {
            args,
            lake,
            options,
        })
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
        tokio::select! {
            biased;
            // 1. A signal stops the query (dropping it cancels its streams).
            _ = cancel.cancelled() => Ok(ExitCode::from(130)),
            // 2. The query itself.
            result = self.execute() => result.map(|()| ExitCode::SUCCESS),
        }
    }

    async fn execute(self) -> anyhow::Result<()> {
        let session = LakeQuery::open(&self.lake, self.options).await?;
        let out: Box<dyn Write + Send> = match &self.args.output {
            Some(path) => Box::new(BufWriter::new(
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
            )),
            None => Box::new(BufWriter::new(std::io::stdout())),
        };
        session
            .write_result(&self.args.sql, self.args.format, out)
            .await?;
        Ok(())
    }
}
