//! The engine as a library object: one entry point that starts every task of `walaudit run`
//! and a handle that owns them.
//!
//! ```text
//!  Engine::start(options, cancel) ──► EngineHandle
//!     tasks (named spans, one TaskTracker):
//!       http        /metrics, /healthz, /readyz (readiness = the status below)
//!       engine      slot check ─► pipeline (source → capture → lake sink), retries
//!       slot_watch  retained WAL, invalidation (stops the engine)
//!       snapshot    historical loads beside the stream
//!       status      pipeline streaming ─► EngineStatus::Streaming
//!     status: watch<EngineStatus>  starting → loading → streaming → draining → stopped | failed
//!  handle.shutdown() ─► cancel ─► stages drain in order ─► grace period ─► abort what is left
//! ```
//!
//! # Invariants
//! * Every task the engine starts is spawned through [`Tasks`] and ended by
//!   [`EngineHandle::wait`]: none outlives the handle's wait.
//! * Shutdown starts at one `CancellationToken`; only the source watches it, later stages drain
//!   when their input closes. Past [`EngineOptions::grace`] after shutdown began, what still runs
//!   is aborted: a hung object store cannot hang shutdown, and nothing the lake did not commit
//!   is confirmed.
//! * The status is final (`stopped` or `failed`) exactly when `wait` returns.

mod serve;
mod signals;
mod status;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use serve::serve;
pub use signals::cancel_on_signals;
pub use status::EngineStatus;
pub use tasks::Tasks;

use crate::api::{self, ApiState, ListenError};
use crate::capture::AssemblerConfig;
use crate::config::{Config, ConfigError, SnapshotMode};
use crate::lake::storage::LakeLocation;
use crate::lake::{LakeError, LakeSink, LakeSinkOptions};
use crate::metrics::{Metrics, SharedMetrics};
use crate::pipeline::{self, PipelineError, PipelineOptions, RetryPolicy, RunSummary, SlotMode};
use crate::slot_watch::SlotWatch;
use crate::snapshot::load::stream_started;
use crate::snapshot::options_from_config;
use crate::snapshot::progress::Display;
use crate::snapshot::{
    LoadOptions, LoadSummary, Loader, SnapshotError, SourceSetup, ensure_source,
};
use crate::source::{ConnParams, SourceError};

/// How long shutdown waits for the tasks before aborting them (the pipeline's own flush
/// deadline, [`pipeline::SHUTDOWN_GRACE`], plus time to stop the rest).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(75);

/// Everything an engine needs.
pub struct EngineOptions {
    pub pipeline: PipelineOptions,
    pub lake: LakeSinkOptions,
    /// The HTTP listener (`127.0.0.1:0` picks a free port; see [`EngineHandle::listen_addr`]).
    pub listen: SocketAddr,
    /// `source.retained_wal_warn`.
    pub retained_wal_warn: u64,
    /// The historical load, unless `snapshot.mode = never`.
    pub snapshot: Option<(SourceSetup, LoadOptions)>,
    pub snapshot_mode: SnapshotMode,
    /// How often tables added to the publication are looked for.
    pub poll: Duration,
    /// How long shutdown waits for the tasks before aborting them.
    pub grace: Duration,
    /// Validation jobs to schedule beside capture (`checks.dir` / `--checks`).
    pub checks: Option<crate::checks::service::CheckOptions>,
    /// `[api]`: access, TLS and limits of the HTTP listener.
    pub api: crate::api::config::ApiConfig,
    /// The lake the API's event routes read (none: they answer 503).
    pub api_lake: Option<LakeLocation>,
}

impl EngineOptions {
    /// The options of `walaudit run` from the configuration (`snapshot.mode` as configured);
    /// a fresh metrics registry shared by every stage.
    pub fn from_config(
        config: &Config,
        drain: bool,
        listen: SocketAddr,
    ) -> Result<EngineOptions, EngineError> {
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
            drain,
            metrics: Arc::new(Metrics::new()),
            streaming: None,
        };
        lake.metrics = Arc::clone(&pipeline.metrics);
        let snapshot = match config.snapshot.mode {
            SnapshotMode::Never => None,
            SnapshotMode::Initial | SnapshotMode::Only => {
                let (setup, mut load) = options_from_config(config, Display::Logs)?;
                load.metrics = Arc::clone(&pipeline.metrics);
                Some((setup, load))
            }
        };
        let checks = match &config.checks.dir {
            None => None,
            Some(dir) => Some(crate::checks::service::CheckOptions {
                jobs: crate::checks::command::load_jobs(dir, config)?,
                config: config.clone(),
                metrics: Arc::clone(&pipeline.metrics),
            }),
        };
        Ok(EngineOptions {
            pipeline,
            lake,
            listen,
            retained_wal_warn: config.source.retained_wal_warn,
            snapshot,
            snapshot_mode: config.snapshot.mode,
            poll: config.snapshot.poll_interval,
            grace: DEFAULT_GRACE,
            checks,
            api: config.api.clone(),
            api_lake: Some(LakeLocation::new(&config.lake.url, &config.lake.s3)?),
        })
    }
}

/// The engine stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Checks(#[from] crate::checks::command::CommandError),
    #[error("the historical load failed: see _walaudit/snapshots and the log")]
    LoadFailed,
    #[error("the {task} task stopped unexpectedly; this is a bug, please report it")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// How the engine ended.
#[derive(Debug)]
pub enum EngineOutcome {
    /// The stream stopped (shutdown, or `--drain` reached its target).
    Streamed(RunSummary),
    /// `snapshot.mode = "only"`: the load ran and nothing streamed.
    Loaded(LoadSummary),
}

/// A running engine.
pub struct EngineHandle {
    cancel: CancellationToken,
    tasks: Tasks,
    status: watch::Receiver<EngineStatus>,
    main: JoinHandle<Result<EngineOutcome, EngineError>>,
    listen: SocketAddr,
    metrics: SharedMetrics,
    grace: Duration,
}

/// The entry point.
pub struct Engine;

impl Engine {
    /// Starts the engine's tasks; `cancel` (or [`EngineHandle::shutdown`]) stops them. Fails
    /// at once when the HTTP listener cannot bind.
    pub async fn start(
        mut options: EngineOptions,
        cancel: CancellationToken,
    ) -> Result<EngineHandle, EngineError> {
        let (listen, listener, tls) = api::bind(options.listen, &options.api).await?;
        let metrics = Arc::clone(&options.pipeline.metrics);
        let (status_tx, status) = watch::channel(EngineStatus::Starting);
        let status_tx = Arc::new(status_tx);
        let tasks = Tasks::default();
        let state = api_state(&metrics, &status, &options.api, options.api_lake.take())?;
        let manage = Arc::clone(&state.manage);
        let http_stop = spawn_http(&tasks, listener, tls, state);
        if let Some(checks) = options.checks.take() {
            let jobs = checks.jobs.len();
            let config = checks.config.clone();
            let started = crate::checks::service::start(checks, &tasks, cancel.clone()).await?;
            let _ = manage.set(Arc::new(api::manage::Manage::start(config, started).await));
            tracing::info!(jobs, "validation jobs scheduled");
        }
        let grace = options.grace;
        let run = Orchestrator {
            options,
            tasks: tasks.clone(),
            status: Arc::clone(&status_tx),
            cancel: cancel.clone(),
        };
        let main = tasks.spawn("engine", async move {
            let result = run.run().await;
            status_tx.send_replace(match &result {
                Ok(_) => EngineStatus::Stopped,
                Err(e) => EngineStatus::Failed(Arc::from(e.to_string())),
            });
            http_stop.cancel();
            result
        });
        Ok(EngineHandle {
            cancel,
            tasks,
            status,
            main,
            listen,
            metrics,
            grace,
        })
    }
}

/// The API's state: the metrics, the status, `[api]` and the lake it reads.
pub(crate) fn api_state(
    metrics: &SharedMetrics,
    status: &watch::Receiver<EngineStatus>,
    config: &crate::api::config::ApiConfig,
    lake: Option<LakeLocation>,
) -> Result<ApiState, EngineError> {
    let mut state = ApiState::new(Arc::clone(metrics), status.clone(), config);
    if let Some(location) = lake {
        let lake = api::lake::ApiLake::new(
            location,
            config.query_memory,
            config.refresh_interval,
            &config.company_field,
        )
        .map_err(|e| ListenError::Query(e.to_string()))?;
        state.lake = Some(Arc::new(lake));
    }
    Ok(state)
}

/// Starts the HTTP listener as the task `http`; it stops when the returned token is cancelled.
pub(crate) fn spawn_http(
    tasks: &Tasks,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: ApiState,
) -> CancellationToken {
    let stop = CancellationToken::new();
    tasks.spawn("http", api::serve(listener, tls, state, stop.clone()));
    stop
}

impl EngineHandle {
    /// The engine's status; `changed()` / `wait_for` to follow it.
    pub fn status(&self) -> watch::Receiver<EngineStatus> {
        self.status.clone()
    }

    /// Where the HTTP listener is bound.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    pub fn metrics(&self) -> SharedMetrics {
        Arc::clone(&self.metrics)
    }

    /// Starts the shutdown: flush, confirm, stop. [`wait`](Self::wait) for it to end.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Waits for the engine to end (by itself, or after [`shutdown`](Self::shutdown)); after
    /// shutdown began, waits at most the grace period, then aborts what still runs.
    pub async fn wait(self) -> Result<EngineOutcome, EngineError> {
        let EngineHandle {
            cancel,
            tasks,
            mut main,
            grace,
            ..
        } = self;
        let joined = tokio::select! {
            joined = &mut main => Some(joined),
            () = cancel.cancelled() => None,
        };
        let joined = match joined {
            Some(joined) => joined,
            None => match tokio::time::timeout(grace, &mut main).await {
                Ok(joined) => joined,
                Err(_) => {
                    main.abort();
                    tracing::error!(
                        grace_s = grace.as_secs(),
                        "the engine did not stop within the grace period: aborted"
                    );
                    main.await
                }
            },
        };
        // The main task is done: whatever it started stops now.
        cancel.cancel();
        tasks.close(grace).await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Err(PipelineError::ShutdownTimeout(grace).into()),
            Err(source) => Err(EngineError::Task {
                task: "engine",
                source,
            }),
        }
    }

    /// [`shutdown`](Self::shutdown), then [`wait`](Self::wait).
    pub async fn shutdown_and_wait(self) -> Result<EngineOutcome, EngineError> {
        self.shutdown();
        self.wait().await
    }
}

/// The body of the `engine` task.
struct Orchestrator {
    options: EngineOptions,
    tasks: Tasks,
    status: Arc<watch::Sender<EngineStatus>>,
    cancel: CancellationToken,
}

impl Orchestrator {
    async fn run(self) -> Result<EngineOutcome, EngineError> {
        let Orchestrator {
            mut options,
            tasks,
            status,
            cancel,
        } = self;
        let drain = options.pipeline.drain;
        let metrics = Arc::clone(&options.pipeline.metrics);

        // The pipeline tells when it streams; the status follows (until the end).
        let (streaming_tx, mut streaming) = watch::channel(false);
        options.pipeline.streaming = Some(Arc::new(streaming_tx));
        {
            let (status, cancel) = (Arc::clone(&status), cancel.clone());
            tasks.spawn("status", async move {
                while streaming.changed().await.is_ok() {
                    let now = *streaming.borrow_and_update();
                    status.send_if_modified(|s| {
                        if s.is_final() {
                            return false;
                        }
                        let next = match (now, cancel.is_cancelled()) {
                            (true, false) => EngineStatus::Streaming,
                            // Between attempts: reconnecting.
                            (false, false) => EngineStatus::Starting,
                            (_, true) => EngineStatus::Draining,
                        };
                        let changed = *s != next;
                        *s = next;
                        changed
                    });
                }
            });
        }
        {
            let (status, cancel) = (Arc::clone(&status), cancel.clone());
            tasks.spawn("shutdown", async move {
                cancel.cancelled().await;
                status.send_if_modified(|s| {
                    let draining = !s.is_final() && *s != EngineStatus::Draining;
                    if draining {
                        *s = EngineStatus::Draining;
                    }
                    draining
                });
            });
        }

        // The historical load runs beside the stream, on its own connections and commits.
        let loads_stop = cancel.child_token();
        // Fired once the pipeline has ended: its slot exists by then even if the stream was
        // too short for the status to show `streaming`.
        let stream_ended = CancellationToken::new();
        let loads = match options.snapshot.take() {
            None => None,
            Some((setup, load)) => {
                let started = stream_started(&load).await?;
                if options.snapshot_mode == SnapshotMode::Only || !started {
                    // A fresh engine (or `only`): the slot first, since every change after
                    // its position is streamed, which is what makes the load's rows meet the
                    // stream without a gap; then the initial load is decided and recorded
                    // before the stream commits anything.
                    status.send_replace(EngineStatus::Loading);
                    ensure_source(&setup).await?;
                    let mut loader = Loader::open(load).await?;
                    if options.snapshot_mode == SnapshotMode::Only {
                        let summary = loader.watch(options.poll, true, loads_stop).await?;
                        return Ok(EngineOutcome::Loaded(summary));
                    }
                    loader.plan_pending().await?;
                    Some(tasks.spawn(
                        "snapshot",
                        loader.watch(options.poll, drain, loads_stop.clone()),
                    ))
                } else {
                    // A restart: the stream starts at once; loads (resumed ones, tables added
                    // later) start once it streams, so its slot exists.
                    let mut ready = status.subscribe();
                    let (stop, poll, ended) =
                        (loads_stop.clone(), options.poll, stream_ended.clone());
                    Some(tasks.spawn("snapshot", async move {
                        let streams = ready.wait_for(|s| {
                            !matches!(s, EngineStatus::Starting | EngineStatus::Loading)
                        });
                        tokio::select! {
                            _ = streams => {}
                            () = ended.cancelled() => {}
                            () = stop.cancelled() => {
                                return Ok(LoadSummary {
                                    interrupted: true,
                                    ..LoadSummary::default()
                                });
                            }
                        }
                        ensure_source(&setup).await?;
                        Loader::open(load).await?.watch(poll, drain, stop).await
                    }))
                }
            }
        };

        let sink = LakeSink::open(options.lake).await?;
        // A batch run (--drain) gives up after a few failed reconnects; the engine keeps trying.
        let retry = RetryPolicy {
            max_attempts: drain.then_some(5),
            ..RetryPolicy::default()
        };
        // The slot is sampled once before replication starts (a lost slot stops here), then
        // beside it; when it is lost meanwhile, the engine flushes what it holds and stops.
        let mut watch = SlotWatch::new(
            options.pipeline.source.clone(),
            options.pipeline.slot.name(),
            options.retained_wal_warn,
            Arc::clone(&metrics),
        );
        let engine_stop = cancel.child_token();
        let first = watch.check().await;
        let mut watcher = tasks.spawn("slot_watch", watch.run(engine_stop.clone()));
        let (result, lost) = match first {
            Err(lost) => (Ok(RunSummary::default()), Some(lost)),
            Ok(_) => {
                let engine =
                    pipeline::run_resilient(options.pipeline, sink, engine_stop.clone(), retry);
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
        stream_ended.cancel();
        watcher.abort();
        // With --drain the load finishes too; otherwise it stops with the stream (and resumes
        // at the next start).
        if result.is_err() || !drain || lost.is_some() {
            loads_stop.cancel();
        }
        let loaded = match loads {
            Some(task) => Some(task.await),
            None => None,
        };
        if let Some(lost) = lost {
            metrics.error("source", lost.recovery());
            return Err(lost.into());
        }
        let summary = result?;
        match loaded {
            Some(Ok(Ok(loads))) if loads.failed() => return Err(EngineError::LoadFailed),
            Some(Ok(Err(e))) => return Err(e.into()),
            Some(Err(source)) => {
                return Err(EngineError::Task {
                    task: "snapshot",
                    source,
                });
            }
            _ => {}
        }
        tracing::info!(
            drain,
            transactions = summary.capture.txns_committed,
            changes = summary.capture.changes,
            durable_lsn = %summary.durable_lsn,
            "run finished"
        );
        Ok(EngineOutcome::Streamed(summary))
    }
}
