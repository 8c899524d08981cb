//! `walaudit demo` as a library call: a private cluster, the shop schema, the sample workload,
//! the engine capturing it, validation jobs over it ([`super::checks`]), and the audit queries
//! and the jobs' results at the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::session::{
    DEMO_DB, catch_up, prepare_lake, print_queries, setup_source, sleep_or_forever, wait_streaming,
};
use super::workload::{self, OpMix, WorkloadOptions};
use crate::cluster::{Cluster, Server};
use crate::config::Config;
use crate::engine::{Engine, EngineOptions, EngineStatus};
use crate::source::ConnParams;

/// What `walaudit demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The demo's own lake directory (one left by an earlier demo is replaced).
    pub lake: PathBuf,
    /// Stop after this long; `None`: until the token is cancelled.
    pub duration: Option<Duration>,
    /// The HTTP listener.
    pub listen: SocketAddr,
    /// Transactions per second of the workload.
    pub rate: f64,
    pub actors: Vec<String>,
    pub seed: u64,
}

/// Runs the whole demo (see the module docs); the cluster is removed on every path.
pub async fn run_demo(
    args: &DemoOptions,
    config: &Config,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // Before anything is created: without a server, stop with the command that installs it.
    let server = Server::find()?;
    prepare_lake(&args.lake)?;
    println!("walaudit demo: starting a private PostgreSQL cluster");
    let cluster = Cluster::start_async(server, crate::demo::cluster_config()).await?;
    println!(
        "  cluster: {} (binaries {}), deleted when the demo ends",
        cluster.base_dir().display(),
        cluster.bin_dir().display()
    );
    let result = run_on(args, config, &cluster, &cancel).await;
    let stopped = cluster.shutdown_async().await;
    result?;
    stopped?;
    println!("walaudit demo: cluster stopped and deleted");
    Ok(())
}

async fn run_on(
    args: &DemoOptions,
    config: &Config,
    cluster: &Cluster,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let url = cluster.unix_url(DEMO_DB);
    setup_source(cluster).await?;

    let mut config = config.clone();
    config.source.url = Some(url.clone());
    config.source.slot = "walaudit".into();
    config.source.publication = "walaudit".into();
    config.lake.url = args.lake.display().to_string();
    // The slot exists before the first row: there is nothing to load.
    config.snapshot.mode = crate::config::SnapshotMode::Never;
    config.checks.dir = None;
    // The demo listens on loopback for a local Prometheus: its metrics need no token.
    config.api.public_metrics = true;
    let options = EngineOptions::from_config(&config, false, args.listen)?;
    let metrics = Arc::clone(&options.pipeline.metrics);
    // Its own token: after Ctrl-C the engine still catches up with the workload first.
    let engine_stop = CancellationToken::new();
    let engine = Engine::start(options, engine_stop.clone()).await?;
    let mut status = engine.status();
    if let Err(err) = wait_streaming(&mut status).await {
        let _ = engine.shutdown_and_wait().await;
        return Err(err.into());
    }
    let engine = tokio::spawn(engine.wait());
    println!(
        "  engine: capturing database {DEMO_DB} into {}; metrics on http://{}/metrics",
        args.lake.display(),
        args.listen
    );

    let params = ConnParams::parse(&url)?;
    let mut client = params.connect_sql().await?;
    let options = WorkloadOptions {
        count: u64::MAX,
        rate: args.rate,
        tx_size: 3,
        mix: OpMix::default(),
        actors: args.actors.clone(),
        seed: args.seed,
        context_prefix: config.source.context_prefix.clone(),
    };
    let workload_stop = CancellationToken::new();
    let stop = workload_stop.clone();
    let workload = tokio::spawn(async move { workload::run(&mut client, &options, &stop).await });
    println!(
        "  workload: orders from {} at {} tx/s; {}",
        args.actors.join(", "),
        args.rate,
        match args.duration {
            Some(d) => format!("stopping after {d:?} (or Ctrl-C)"),
            None => "press Ctrl-C to stop and see the audit queries".to_owned(),
        }
    );

    let checks = match super::checks::start(
        &config,
        &args.lake,
        &params,
        args.rate,
        Arc::clone(&metrics),
    )
    .await
    {
        Ok(c) => c,
        Err(err) => {
            workload_stop.cancel();
            let _ = workload.await;
            engine_stop.cancel();
            let _ = engine.await;
            return Err(err);
        }
    };

    let ended_early = tokio::select! {
        _ = cancel.cancelled() => None,
        _ = sleep_or_forever(args.duration) => None,
        _ = status.wait_for(EngineStatus::is_final) => Some(()),
    };
    workload_stop.cancel();
    let checks_ran = checks.stop().await;
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

    print_queries(&args.lake, &params).await?;
    super::checks::print_results(&args.lake, checks_ran).await?;
    Ok(())
}
