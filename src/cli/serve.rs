//! `walaudit serve`: validation jobs and the HTTP listener over the lake, without capture.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Lake location: a path or a file://, s3://, gs://, az:// URL.
    #[arg(long)]
    pub lake: Option<String>,
    /// Schedule the validation jobs below this directory (overrides checks.dir).
    #[arg(long)]
    pub checks: Option<PathBuf>,
    /// Address of the HTTP API (overrides api.listen; default 127.0.0.1:9187).
    #[arg(long, env = "WALAUDIT_LISTEN")]
    pub listen: Option<SocketAddr>,
}

pub async fn run(
    args: ServeArgs,
    mut config: Config,
    cancel: CancellationToken,
) -> anyhow::Result<ExitCode> {
    config.checks.dir = args.checks.or(config.checks.dir);
    crate::engine::serve(
        &config,
        config.api.listen_or(args.listen),
        cancel,
        |addr, _| {
            tracing::info!(%addr, "serving: validation jobs and the HTTP listener, no capture");
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
