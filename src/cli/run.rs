//! `walaudit run`: the long-running engine, source → capture → Delta lake.
//!
//! It reads the permanent slot (created when missing if `source.create_slot`), writes every
//! committed change into the lake and confirms to Postgres only what the lake durably holds.
//! SIGINT/SIGTERM flush, confirm and exit 0. `--drain` stops once everything committed before
//! start is in the lake.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::capture::AssemblerConfig;
use crate::config::{Config, SnapshotMode};
use crate::lake::{LakeSink, LakeSinkOptions};
use crate::metrics::Metrics;
use crate::pipeline::{self, PipelineOptions, RetryPolicy, SlotMode};
use crate::slot_watch::SlotWatch;
use crate::snapshot::load::stream_started;
use crate::snapshot::progress::Display;
use crate::snapshot::{LoadOptions, LoadSummary, Loader, SourceSetup, ensure_source};
use crate::source::ConnParams;

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Replication slot (permanent; created when missing unless source.create_slot = false).
    #[arg(long)]
    pub slot: Option<String>,
    /// Lake location: a path or a file://, s3://, gs://, az:// URL.
    #[arg(long)]
    pub lake: Option<String>,
    /// Capture everything committed up to now, commit it to the lake, confirm it, and exit.
    #[arg(long)]
    pub drain: bool,
    /// Historical load: initial (load tables without one, resume interrupted loads), never,
    /// or only (load, then exit). Overrides snapshot.mode.
    #[arg(long, value_parser = parse_mode)]
    pub snapshot: Option<SnapshotMode>,
    /// Address of the HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "WALAUDIT_LISTEN", default_value = "127.0.0.1:9187")]
    pub listen: SocketAddr,
}

fn parse_mode(text: &str) -> Result<SnapshotMode, String> {
    match text {
        "initial" => Ok(SnapshotMode::Initial),
        "never" => Ok(SnapshotMode::Never),
        "only" => Ok(SnapshotMode::Only),
        other => Err(format!("`{other}`: use initial, never or only")),
    }
}

impl RunArgs {
    pub fn overrides(&self) -> crate::config::Overrides {
        let mut o = self.source.overrides(self.slot.clone());
        o.lake = self.lake.clone();
        o
    }
}

/// A prepared `run`.
pub struct Run {
    pipeline: PipelineOptions,
    lake: LakeSinkOptions,
    listen: SocketAddr,
    /// `source.retained_wal_warn`.
    retained_wal_warn: u64,
    /// The historical load, unless `snapshot.mode = never`.
    snapshot: Option<(SourceSetup, LoadOptions)>,
    snapshot_mode: SnapshotMode,
    poll: std::time::Duration,
}

impl Run {
    pub fn new(args: RunArgs, mut config: Config) -> anyhow::Result<Run> {
        if let Some(mode) = args.snapshot {
            config.snapshot.mode = mode;
        }
        let source = ConnParams::parse(config.source_url()?)?;
        let slot = config.source.slot.clone();
        let mut lake = LakeSinkOptions::new(&config.lake, &slot)?;
        let pipeline = PipelineOptions {
            source,
            slot: SlotMode::Permanent {
                name: slot,
                create: config.source.create_slot,
            },
            publication: config.source.publication.clone(),
            create_publication: config.source.create_publication,
            publication_tables: config.source.publication_tables.clone(),
            status_interval: config.source.status_interval,
            assembler: AssemblerConfig::new(&config.capture, &config.source.context_prefix),
            drain: args.drain,
            metrics: Arc::new(Metrics::new()),
        };
        lake.metrics = Arc::clone(&pipeline.metrics);
        let snapshot = match config.snapshot.mode {
            SnapshotMode::Never => None,
            SnapshotMode::Initial | SnapshotMode::Only => {
                let (setup, mut load) = super::snapshot::load_options(&config, Display::Logs)?;
                load.metrics = Arc::clone(&pipeline.metrics);
                Some((setup, load))
            }
        };
        Ok(Run {
            pipeline,
            lake,
            listen: args.listen,
            retained_wal_warn: config.source.retained_wal_warn,
            snapshot,
            snapshot_mode: config.snapshot.mode,
            poll: config.snapshot.poll_interval,
        })
    }

    /// The engine's metrics (what `/metrics` serves).
    pub fn metrics(&self) -> crate::metrics::SharedMetrics {
        Arc::clone(&self.pipeline.metrics)
    }

    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
        let drain = self.pipeline.drain;
        let metrics = Arc::clone(&self.pipeline.metrics);
        let http_stop = cancel.child_token();
        let (_, http) =
            crate::api::serve(self.listen, Arc::clone(&metrics), http_stop.clone()).await?;
        // The historical load runs beside the stream, on its own connections and commits.
        let loads_stop = cancel.child_token();
        let slot_ready = CancellationToken::new();
        let loads = match self.snapshot {
            Some((setup, load)) => {
                let started = stream_started(&load).await?;
                if self.snapshot_mode == SnapshotMode::Only || !started {
                    // A fresh engine (or `only`): the slot first, since every change after
                    // its position is streamed, which is what makes the load's rows meet the
                    // stream without a gap; then the initial load is decided and recorded
                    // before the stream commits anything.
                    ensure_source(&setup).await?;
                    let mut loader = Loader::open(load).await?;
                    if self.snapshot_mode == SnapshotMode::Only {
                        let summary = loader.watch(self.poll, true, loads_stop).await?;
                        print!("{}", super::snapshot::render(&summary.records));
                        http_stop.cancel();
                        let _ = http.await;
                        return Ok(if summary.failed() {
                            ExitCode::FAILURE
                        } else {
                            ExitCode::SUCCESS
                        });
                    }
                    loader.plan_pending().await?;
                    Some(tokio::spawn(loader.watch(
                        self.poll,
                        drain,
                        loads_stop.clone(),
                    )))
                } else {
                    // A restart: the stream starts at once; loads (resumed ones, tables added
                    // later) start once it streams, so its slot exists.
                    let (stop, ready, metrics) =
                        (loads_stop.clone(), slot_ready.clone(), Arc::clone(&metrics));
                    let poll = self.poll;
                    Some(tokio::spawn(async move {
                        while metrics.streaming.get() == 0 && !ready.is_cancelled() {
                            if stop.is_cancelled() {
                                return Ok(LoadSummary {
                                    interrupted: true,
                                    ..LoadSummary::default()
                                });
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        ensure_source(&setup).await?;
                        Loader::open(load).await?.watch(poll, drain, stop).await
                    }))
                }
            }
            None => None,
        };
        let sink = LakeSink::open(self.lake).await?;
        // A batch run (--drain) gives up after a few failed reconnects; the engine keeps trying.
        let retry = RetryPolicy {
            max_attempts: drain.then_some(5),
            ..RetryPolicy::default()
        };
        // The slot is sampled once before replication starts (a lost slot stops here), then
        // beside it; when it is lost meanwhile, the engine flushes what it holds and stops.
        let mut watch = SlotWatch::new(
            self.pipeline.source.clone(),
            self.pipeline.slot.name(),
            self.retained_wal_warn,
            Arc::clone(&metrics),
        );
        let engine_stop = cancel.child_token();
        let first = watch.check().await;
        let mut watcher = tokio::spawn(watch.run(engine_stop.clone()));
        let (result, lost) = match first {
            Err(lost) => (Ok(Default::default()), Some(lost)),
            Ok(_) => {
                let engine =
                    pipeline::run_resilient(self.pipeline, sink, engine_stop.clone(), retry);
                tokio::pin!(engine);
                tokio::select! {
                    result = &mut engine => (result, None),
                    watched = &mut watcher => {
                        engine_stop.cancel();
                        (engine.await, watched.ok().and_then(Result::err))
                    }
                }
            }
        };
        engine_stop.cancel();
        watcher.abort();
        slot_ready.cancel();
        // With --drain the load finishes too; otherwise it stops with the stream (and resumes
        // at the next start).
        if result.is_err() || !drain || lost.is_some() {
            loads_stop.cancel();
        }
        let loaded = match loads {
            Some(task) => Some(task.await),
            None => None,
        };
        http_stop.cancel();
        let _ = http.await;
        if let Some(lost) = lost {
            metrics.error("source", false);
            return Err(lost.into());
        }
        let summary = result?;
        match loaded {
            Some(Ok(Ok(loads))) if loads.failed() => {
                anyhow::bail!("the historical load failed: see _walaudit/snapshots and the log")
            }
            Some(Ok(Err(e))) => return Err(e.into()),
            Some(Err(e)) => anyhow::bail!("the historical load stopped unexpectedly: {e}"),
            _ => {}
        }
        tracing::info!(
            drain,
            transactions = summary.capture.txns_committed,
            changes = summary.capture.changes,
            durable_lsn = %summary.durable_lsn,
            "run finished"
        );
        Ok(ExitCode::SUCCESS)
    }
}
