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
//! The cluster is removed on every path (see `demo::cluster`). The lake directory is the demo's
//! own: one left by an earlier demo is replaced, anything else there is refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use deltalake::arrow::util::pretty::pretty_format_batches;
use tokio_util::sync::CancellationToken;

use super::run::{Run, RunArgs};
use crate::config::{Config, parse_duration};
use crate::demo::cluster::{DemoCluster, Server};
use crate::demo::workload::{self, OpMix, WorkloadOptions, WorkloadStats};
use crate::metrics::SharedMetrics;
use crate::query::{LakeOptions, LakeQuery};
use crate::source::ConnParams;

/// Marks a lake directory as made by `walaudit demo` (so that a later demo may replace it).
const DEMO_MARKER: &str = ".walaudit-demo";
const DEMO_DB: &str = "shop";
const STREAMING_DEADLINE: Duration = Duration::from_secs(60);
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(60);

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
        let cluster = DemoCluster::start(server).await?;
        println!(
            "  cluster: {} (binaries {}), deleted when the demo ends",
            cluster.base_dir().display(),
            cluster.bin_dir().display()
        );
        let result = self.run_on(&cluster, &cancel).await;
        let stopped = cluster.shutdown().await;
        let code = result?;
        stopped?;
        println!("walaudit demo: cluster stopped and deleted");
        Ok(code)
    }

    async fn run_on(
        &self,
        cluster: &DemoCluster,
        cancel: &CancellationToken,
    ) -> anyhow::Result<ExitCode> {
        let url = cluster.url(DEMO_DB);
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
        };
        let engine = Run::new(run_args, config.clone())?;
        let metrics = engine.metrics();
        // Its own token: after Ctrl-C the engine still catches up with the workload first.
        let engine_stop = CancellationToken::new();
        let mut engine = tokio::spawn(engine.run(engine_stop.clone()));
        if let Err(err) = wait_streaming(&metrics, &mut engine).await {
            engine_stop.cancel();
            return Err(err);
        }
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
            ended = &mut engine => Some(ended),
        };
        workload_stop.cancel();
        let stats = workload.await.context("the workload task failed")?;
        if let Some(ended) = ended_early {
            // The engine stopped on its own: that is an error (it runs until told to stop).
            ended??;
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

/// Make `lake` an empty directory marked as the demo's: replace an earlier demo's lake, refuse
/// to touch anything else.
fn prepare_lake(lake: &Path) -> anyhow::Result<()> {
    if lake.exists() {
        let empty = lake.is_dir() && std::fs::read_dir(lake)?.next().is_none();
        if !empty && !lake.join(DEMO_MARKER).is_file() {
            bail!(
                "{} exists and was not made by walaudit demo: remove it or choose another \
                 directory with --lake",
                lake.display()
            );
        }
        std::fs::remove_dir_all(lake)
            .with_context(|| format!("cannot remove the earlier demo lake {}", lake.display()))?;
    }
    std::fs::create_dir_all(lake)
        .with_context(|| format!("cannot create the demo lake {}", lake.display()))?;
    std::fs::write(
        lake.join(DEMO_MARKER),
        "made by walaudit demo; replaced by the next one\n",
    )
    .with_context(|| format!("cannot write to the demo lake {}", lake.display()))?;
    Ok(())
}

/// Database, shop schema, publication and slot, before any row is written.
async fn setup_source(cluster: &DemoCluster) -> anyhow::Result<()> {
    let admin = ConnParams::parse(&cluster.url("postgres"))?
        .connect_sql()
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DEMO_DB}"))
        .await
        .context("cannot create the demo database")?;
    let shop = ConnParams::parse(&cluster.url(DEMO_DB))?
        .connect_sql()
        .await?;
    workload::create_schema(&shop).await?;
    shop.batch_execute("CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await
        .context("cannot create the demo publication")?;
    shop.batch_execute("SELECT pg_create_logical_replication_slot('walaudit', 'pgoutput')")
        .await
        .context("cannot create the demo slot")?;
    Ok(())
}

async fn wait_streaming(
    metrics: &SharedMetrics,
    engine: &mut tokio::task::JoinHandle<anyhow::Result<ExitCode>>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while metrics.streaming.get() != 1 {
        if engine.is_finished() {
            engine.await.context("the engine task failed")??;
            bail!("the engine stopped before it started streaming");
        }
        if started.elapsed() > STREAMING_DEADLINE {
            bail!("the engine did not start streaming within {STREAMING_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}

/// Wait until the engine has received every workload transaction (and the seed one).
async fn catch_up(metrics: &SharedMetrics, stats: &WorkloadStats) {
    let want = stats.transactions + 1;
    let started = Instant::now();
    while metrics.transactions.get() < want {
        if started.elapsed() > CATCH_UP_DEADLINE {
            tracing::warn!(
                received = metrics.transactions.get(),
                committed = want,
                "the engine did not catch up with the workload; the lake holds what it received"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sample audit queries, each with its result.
const QUERIES: [(&str, &str); 4] = [
    (
        "Who changed what: transactions and row changes per actor",
        "SELECT _actor AS actor, count(*) AS transactions, sum(change_count) AS changes \
         FROM _walaudit.transactions GROUP BY _actor ORDER BY changes DESC, actor",
    ),
    (
        "Changes to orders by actor and operation (c insert, u update, d delete)",
        "SELECT _actor AS actor, _op AS op, count(*) AS changes FROM public.orders \
         GROUP BY _actor, _op ORDER BY actor, op",
    ),
    (
        "The history of the most changed order",
        "SELECT pg_lsn(_lsn) AS lsn, _commit_ts AS committed, _op AS op, _actor AS actor, \
         status, total FROM public.orders WHERE id = (SELECT id FROM public.orders \
         GROUP BY id ORDER BY count(*) DESC, id LIMIT 1) ORDER BY _lsn, _seq",
    ),
    (
        "Current state (current.public.orders): orders by status",
        "SELECT status, count(*) AS orders, sum(total) AS total FROM current.public.orders \
         GROUP BY status ORDER BY status",
    ),
];

async fn print_queries(lake: &Path, source: &ConnParams) -> anyhow::Result<()> {
    let session = LakeQuery::open(&lake.display().to_string(), LakeOptions::default()).await?;
    for (title, sql) in QUERIES {
        let batches = session.collect(sql).await?;
        println!(
            "\n-- {title}\nwalaudit query --lake {} \"{sql}\"",
            lake.display()
        );
        println!("{}", pretty_format_batches(&batches)?);
    }
    let client = source.connect_sql().await?;
    let source_orders: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await?
        .get(0);
    let lake_orders = session
        .collect("SELECT count(*) FROM current.public.orders")
        .await?;
    println!(
        "\n-- Orders in the source: {source_orders}; in the lake's current view:\n{}",
        pretty_format_batches(&lake_orders)?
    );
    Ok(())
}
