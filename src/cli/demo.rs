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

use anyhow::{Context, bail};
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::run::{Run, RunArgs};
use crate::cluster::{Cluster, Server};
use crate::config::{Config, parse_duration};
use crate::demo::session::{
    DEMO_DB, catch_up, prepare_lake, print_queries, setup_source, sleep_or_forever, wait_streaming,
};
use crate::demo::workload::{self, OpMix, WorkloadOptions};
use crate::engine::EngineStatus;
use crate::source::ConnParams;

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
        // Before anything is created: without a server, stop with the command that installs it.
        let server = Server::find()?;
        prepare_lake(&self.args.lake)?;
        println!("walaudit demo: starting a private PostgreSQL cluster");
        let cluster = Cluster::start_async(server, crate::demo::cluster_config()).await?;
        println!(
            "  cluster: {} (binaries {}), deleted when the demo ends",
            cluster.base_dir().display(),
            cluster.bin_dir().display()
        );
        let result = self.run_on(&cluster, &cancel).await;
        let stopped = cluster.shutdown_async().await;
        let code = result?;
        stopped?;
        println!("walaudit demo: cluster stopped and deleted");
        Ok(code)
    }

    async fn run_on(
        &self,
        cluster: &Cluster,
        cancel: &CancellationToken,
    ) -> anyhow::Result<ExitCode> {
        let url = cluster.unix_url(DEMO_DB);
        setup_source(cluster).await?;

        let mut config = self.config.clone();
        config.source.url = Some(url.clone());
        config.source.slot = "walaudit".into();
        config.source.publication = "walaudit".into();
        config.lake.url = self.args.lake.display().to_string();
        let run_args = RunArgs {
            source: Default::default(),
            slot: None,
            lake: None,
            drain: false,
            // The slot exists before the first row: there is nothing to load.
            snapshot: Some(crate::config::SnapshotMode::Never),
            listen: self.args.listen,
            checks: None,
        };
        let engine = Run::new(run_args, config.clone())?;
        let metrics = engine.metrics();
        // Its own token: after Ctrl-C the engine still catches up with the workload first.
        let engine_stop = CancellationToken::new();
        let engine = engine.start(engine_stop.clone()).await?;
        let mut status = engine.status();
        if let Err(err) = wait_streaming(&mut status).await {
            let _ = engine.shutdown_and_wait().await;
            return Err(err.into());
        }
        let engine = tokio::spawn(engine.wait());
        println!(
            "  engine: capturing database {DEMO_DB} into {}; metrics on http://{}/metrics",
            self.args.lake.display(),
            self.args.listen
        );

        let params = ConnParams::parse(&url)?;
        let mut client = params.connect_sql().await?;
        let options = WorkloadOptions {
            count: u64::MAX,
            rate: self.args.rate,
            tx_size: 3,
            mix: OpMix::default(),
            actors: self.args.actors.clone(),
            seed: self.args.seed,
            context_prefix: config.source.context_prefix.clone(),
        };
        let workload_stop = CancellationToken::new();
        let stop = workload_stop.clone();
        let workload =
            tokio::spawn(async move { workload::run(&mut client, &options, &stop).await });
        println!(
            "  workload: orders from {} at {} tx/s; {}",
            self.args.actors.join(", "),
            self.args.rate,
            match self.args.duration {
                Some(d) => format!("stopping after {d:?} (or Ctrl-C)"),
                None => "press Ctrl-C to stop and see the audit queries".to_owned(),
            }
        );

        let ended_early = tokio::select! {
            _ = cancel.cancelled() => None,
            _ = sleep_or_forever(self.args.duration) => None,
            _ = status.wait_for(EngineStatus::is_final) => Some(()),
        };
        workload_stop.cancel();
        let stats = workload.await.context("the workload task failed")?;
        if ended_early.is_some() {
            // The engine stopped on its own: that is an error (it runs until told to stop).
            engine.await.context("the engine task failed")??;
            bail!("the engine stopped before the demo ended");
        }
        let stats = stats?;
        println!(
            "  workload done: {} transactions ({} inserts, {} updates, {} deletes of orders)",
            stats.transactions, stats.inserts, stats.updates, stats.deletes
        );
        catch_up(&metrics, &stats).await;
        engine_stop.cancel();
        engine.await.context("the engine task failed")??;

        print_queries(&self.args.lake, &params).await?;
        Ok(ExitCode::SUCCESS)
    }
}
