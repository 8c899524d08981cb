//! `walaudit demo`: everything at once, with nothing installed but the PostgreSQL server
//! binaries.
//!
//! ```text
//!  private cluster (initdb, wal_level=logical, Unix socket) ─► database shop: schema,
//!  publication, slot ─► sample workload from several actors (background)
//!                    ─► the engine (`run`) into --lake, /metrics on --listen
//!  until --duration or Ctrl-C ─► workload stops, the engine catches up, flushes, confirms
//!  ─► sample audit queries over the lake ─► cluster stopped and deleted
//! ```
//!
//! The cluster is removed on every path (see `crate::cluster`). The lake directory is the demo's
//! own: one left by an earlier demo is replaced, anything else there is refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, parse_duration};

#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Directory of the demo's audit lake (replaced if an earlier demo made it).
    #[arg(long, default_value = "./demo-lake")]
    pub lake: PathBuf,
    /// Stop after this long (e.g. 30s, 2m); without it the demo runs until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Address of the HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "WALAUDIT_LISTEN", default_value = "127.0.0.1:9187")]
    pub listen: SocketAddr,
    /// Transactions per second of the sample workload.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Actors of the sample workload.
    #[arg(long, value_delimiter = ',', default_value = "alice,bob,carol,dave")]
    pub actors: Vec<String>,
    /// Seed of the sample workload.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A prepared `demo`.
pub struct Demo {
    args: DemoArgs,
    config: Config,
}

impl Demo {
    /// `config` supplies the capture and lake tuning; the source and the lake are the demo's.
    pub fn new(args: DemoArgs, config: Config) -> anyhow::Result<Demo> {
        anyhow::ensure!(
            args.rate > 0.0 && args.rate.is_finite(),
            "--rate must be a positive number of transactions per second"
        );
        Ok(Demo { args, config })
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
        let a = self.args;
        let options = crate::demo::run::DemoOptions {
            lake: a.lake,
            duration: a.duration,
            listen: a.listen,
            rate: a.rate,
            actors: a.actors,
            seed: a.seed,
        };
        crate::demo::run::run_demo(&options, &self.config, cancel).await?;
        Ok(ExitCode::SUCCESS)
    }
}
