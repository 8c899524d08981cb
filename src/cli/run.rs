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
use crate::config::Config;
use crate::lake::{LakeSink, LakeSinkOptions};
use crate::metrics::Metrics;
use crate::pipeline::{self, PipelineOptions, RetryPolicy, SlotMode};
use crate::slot_watch::SlotWatch;
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
    /// Address of the HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "WALAUDIT_LISTEN", default_value = "127.0.0.1:9187")]
    pub listen: SocketAddr,
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
}

impl Run {
    pub fn new(args: RunArgs, config: Config) -> anyhow::Result<Run> {
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
        Ok(Run {
            pipeline,
            lake,
            listen: args.listen,
            retained_wal_warn: config.source.retained_wal_warn,
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
        http_stop.cancel();
        let _ = http.await;
        if let Some(lost) = lost {
            metrics.error("source", false);
            return Err(lost.into());
        }
        let summary = result?;
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
