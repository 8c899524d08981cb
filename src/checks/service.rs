//! The validation service inside `walaudit run` and `walaudit serve`: the scheduler, the
//! runner behind it, the run-history writer and the alert sender, as tasks of one owner.
//!
//! ```text
//!  Scheduler ──run(job)──► CheckService: checkout handles ─► run_job ─► remember (index)
//!                                         │                               │
//!                                         │            alerts: observe ───┼─► Notifier (task)
//!                                         ▼                               ▼
//!                               handles back to the pool        writer (task): batches of runs,
//!                                                               results and alert events, one
//!                                                               commit per table per batch
//! ```
//!
//! # Invariants
//! * A run's results are in the history index (what the next run of the job reads) before
//!   `run` returns; they reach the lake within [`FLUSH_EVERY`], batched, never one commit per
//!   check. A failed write is retried with backoff; nothing is dropped while the engine runs.
//! * Lake jobs read a handle at most [`LAKE_REFRESH`] old; Postgres jobs get a handle of
//!   their own for the run (the scheduler's per-connection caps bound how many exist).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::alert::{AlertEvent, Alerts, AlertsConfig};
use super::alert_log::AlertLog;
use super::model::{Job, Severity, Status, Trigger};
use super::notify::{self, Notifier};
use super::run::{RunOutcome, Targets, run_job};
use super::schedule::{self, JobRunner, ScheduledJob, Scheduler, SchedulerOptions};
use super::store::RunStore;
use crate::config::Config;
use crate::engine::Tasks;
use crate::metrics::SharedMetrics;
use crate::sql::{LakeTarget, ReadOnlySql};

/// How old a lake handle may be before a run opens a fresh one.
pub const LAKE_REFRESH: Duration = Duration::from_secs(5);
/// The writer commits what it holds at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Runs the writer commits at most at once.
pub const FLUSH_RUNS: usize = 2_000;

/// What the service needs to start.
pub struct CheckOptions {
    pub jobs: Vec<Job>,
    pub config: Config,
    pub metrics: SharedMetrics,
}

/// Open read handles, shared by the runs.
struct Pool {
    config: Config,
    lake: tokio::sync::Mutex<Option<(Instant, Arc<LakeTarget>)>>,
    postgres: Mutex<HashMap<String, Vec<Arc<dyn ReadOnlySql>>>>,
}

impl Pool {
    async fn checkout(
        &self,
        job: &Job,
    ) -> Result<(Targets, Vec<(String, Arc<dyn ReadOnlySql>)>), String> {
        let mut targets: Targets = HashMap::new();
        let mut borrowed = Vec::new();
        for name in job.connections() {
            let handle: Arc<dyn ReadOnlySql> = if name == super::model::LAKE {
                let mut lake = self.lake.lock().await;
                match &*lake {
                    Some((at, t)) if at.elapsed() < LAKE_REFRESH => t.clone(),
                    _ => {
                        let t = Arc::new(
                            super::command::open_lake(&self.config)
                                .await
                                .map_err(|e| crate::report::chain(&e))?,
                        );
                        *lake = Some((Instant::now(), t.clone()));
                        t
                    }
                }
            } else {
                let pooled = self
                    .postgres
                    .lock()
                    .expect("pool lock")
                    .get_mut(name)
                    .and_then(Vec::pop);
                let h = match pooled {
                    Some(h) => h,
                    None => {
                        let opened = super::command::open_targets_named(&[name], &self.config)
                            .await
                            .map_err(|e| crate::report::chain(&e))?;
                        opened.into_values().next().ok_or("no handle")?
                    }
                };
                borrowed.push((name.to_owned(), h.clone()));
                h
            };
            targets.insert(name.to_owned(), handle);
        }
        Ok((targets, borrowed))
    }

    fn checkin(&self, borrowed: Vec<(String, Arc<dyn ReadOnlySql>)>) {
        let mut pg = self.postgres.lock().expect("pool lock");
        for (name, h) in borrowed {
            pg.entry(name).or_default().push(h);
        }
    }
}

enum Record {
    Run(RunOutcome),
    Alerts(Vec<AlertEvent>),
}

/// The runner behind the scheduler.
pub struct CheckService {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    pool: Pool,
    store: Arc<RunStore>,
    alerts: Mutex<Alerts>,
    notifier: Notifier,
    writer: mpsc::Sender<Record>,
    metrics: SharedMetrics,
}

impl CheckService {
    fn count_open(&self, alerts: &Alerts) {
        for s in [Severity::Critical, Severity::High, Severity::Low] {
            let n = alerts.open().filter(|(_, a)| a.severity == s).count();
            self.metrics
                .check_open_alerts
                .with_label_values(&[s.as_str()])
                .set(n as i64);
        }
    }

    async fn finish(&self, outcome: RunOutcome, job: Option<&Job>) -> Status {
        let status = outcome.status;
        self.store.remember(&outcome);
        let severity = job.map_or(Severity::High, |j| j.severity);
        let events =
            self.alerts
                .lock()
                .expect("alerts lock")
                .observe(&outcome, severity, Utc::now());
        for e in &events {
            self.notifier.send(e.clone());
        }
        // A full queue (the lake is down) holds the run back rather than dropping it.
        let _ = self.writer.send(Record::Run(outcome)).await;
        if !events.is_empty() {
            let _ = self.writer.send(Record::Alerts(events)).await;
        }
        status
    }
}

#[async_trait]
impl JobRunner for CheckService {
    async fn run(&self, job: &str, scheduled_at: DateTime<Utc>, trigger: Trigger) -> Status {
        let Some(job) = self.jobs.lock().expect("jobs lock").get(job).cloned() else {
            return Status::Skipped;
        };
        let outcome = match self.pool.checkout(&job).await {
            Ok((targets, borrowed)) => {
                let now = Utc::now;
                let o = run_job(
                    &job,
                    &targets,
                    self.store.history(),
                    scheduled_at,
                    trigger,
                    &now,
                )
                .await;
                self.pool.checkin(borrowed);
                o
            }
            Err(e) => {
                let mut o = super::command::blocked(&job, "-", scheduled_at, trigger);
                o.status = Status::Error;
                o.error = Some(format!("the job's connections cannot be opened: {e}"));
                o
            }
        };
        self.finish(outcome, Some(&job)).await
    }

    async fn record(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        trigger: Trigger,
        status: Status,
    ) {
        let found = self.jobs.lock().expect("jobs lock").get(job).cloned();
        let mut o = match &found {
            Some(j) => super::command::blocked(j, "-", scheduled_at, trigger),
            None => return,
        };
        o.status = status;
        o.error = Some(match status {
            Status::Blocked => "blocked: a dependency's latest run is not pass or warn".into(),
            Status::Timeout => "killed at the 15-minute hard deadline of every run".into(),
            Status::Skipped => "skipped: a run of this job was already waiting".into(),
            other => format!("the run ended as {other}"),
        });
        self.finish(o, found.as_deref()).await;
    }
}

/// The running service: what the API's job routes act through.
#[derive(Clone)]
pub struct ChecksHandle {
    pub scheduler: schedule::SchedulerHandle,
    service: Arc<CheckService>,
}

impl ChecksHandle {
    /// Every job the service runs, by name.
    pub fn jobs(&self) -> Vec<Arc<Job>> {
        let mut jobs: Vec<Arc<Job>> = self
            .service
            .jobs
            .lock()
            .expect("jobs lock")
            .values()
            .cloned()
            .collect();
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        jobs
    }

    pub fn job(&self, name: &str) -> Option<Arc<Job>> {
        self.service
            .jobs
            .lock()
            .expect("jobs lock")
            .get(name)
            .cloned()
    }

    /// Adds or replaces `job` in the runner and the scheduler.
    pub async fn upsert(&self, job: Job) -> Result<(), schedule::HandleError> {
        let scheduled = scheduled(&job);
        self.service
            .jobs
            .lock()
            .expect("jobs lock")
            .insert(job.name.clone(), Arc::new(job));
        self.scheduler.upsert(scheduled).await
    }

    /// Removes the job `name`; whether it existed.
    pub async fn remove(&self, name: &str) -> Result<bool, schedule::HandleError> {
        self.service.jobs.lock().expect("jobs lock").remove(name);
        self.scheduler.remove(name).await
    }

    /// The run history's store.
    pub fn store(&self) -> &Arc<RunStore> {
        &self.service.store
    }

    /// The open alerts: ((job, check), alert), oldest first.
    pub fn open_alerts(&self) -> Vec<((String, String), super::alert::OpenAlert)> {
        let alerts = self.service.alerts.lock().expect("alerts lock");
        let mut open: Vec<_> = alerts.open().map(|(k, a)| (k.clone(), a.clone())).collect();
        open.sort_by_key(|(_, a)| a.opened_at);
        open
    }
}

/// The scheduler's view of `job` (its schedule was validated when the job was loaded).
pub fn scheduled(job: &Job) -> ScheduledJob {
    ScheduledJob {
        name: job.name.clone(),
        schedule: job
            .schedule
            .as_deref()
            .and_then(|s| schedule::Schedule::parse(s, Some(&job.timezone)).ok()),
        connection: job.connection.clone(),
        depends_on: job.depends_on.clone(),
        timeout: job.timeout,
    }
}

/// Opens the history and starts the service's tasks under `tasks`; they stop with `cancel`.
pub async fn start(
    options: CheckOptions,
    tasks: &Tasks,
    cancel: CancellationToken,
) -> Result<ChecksHandle, super::command::CommandError> {
    let CheckOptions {
        jobs,
        config,
        metrics,
    } = options;
    let lake_err = |e: crate::lake::LakeError| super::command::CommandError::Lake {
        lake: config.lake.url.clone(),
        source: Box::new(e),
    };
    let location = crate::lake::storage::LakeLocation::new(&config.lake.url, &config.lake.s3)
        .map_err(lake_err)?;
    // Defining a job runs the EXPLAIN guard on its Postgres queries (all refusals at once).
    let targets = super::command::open_targets(&jobs, &config).await?;
    super::command::guard_jobs(&jobs, &targets, &config).await?;
    drop(targets);
    let store = Arc::new(super::command::open_store(&config).await?);
    store.record_jobs(&jobs, None).await.map_err(lake_err)?;
    let (alert_log, open) = AlertLog::open(&location, config.lake.commit_attempts)
        .await
        .map_err(lake_err)?;
    let alerts_config: AlertsConfig = config.alerts.clone();
    let (notifier, sender) = notify::start(&alerts_config, cancel.clone());
    tasks.spawn("alerts", sender);
    let (writer, rx) = mpsc::channel(FLUSH_RUNS * 4);
    tasks.spawn(
        "check_history",
        write(rx, Arc::clone(&store), alert_log, cancel.clone()),
    );
    let mut history = schedule::History::default();
    for (name, state) in store.job_states() {
        if let Some(at) = state.last_scheduled {
            history.last_scheduled.insert(name.clone(), at);
        }
        if let Some(s) = state.last_status {
            history.latest_status.insert(name, s);
        }
    }
    let mut per_connection = HashMap::from([(
        super::model::SOURCE.to_owned(),
        config.checks.source_max_concurrent,
    )]);
    for (name, c) in &config.connections {
        per_connection.insert(name.clone(), c.max_concurrent);
    }
    let scheduler_options = SchedulerOptions {
        max_concurrent: config.checks.max_concurrent,
        per_connection,
        default_connection_cap: config.checks.max_concurrent,
        metrics: Arc::clone(&metrics),
        ..SchedulerOptions::default()
    };
    let service = Arc::new(CheckService {
        jobs: Mutex::new(
            jobs.iter()
                .map(|j| (j.name.clone(), Arc::new(j.clone())))
                .collect(),
        ),
        pool: Pool {
            config: config.clone(),
            lake: tokio::sync::Mutex::new(None),
            postgres: Mutex::new(HashMap::new()),
        },
        store,
        alerts: Mutex::new(Alerts::new(&alerts_config, open)),
        notifier,
        writer,
        metrics,
    });
    service.count_open(&service.alerts.lock().expect("alerts lock"));
    let scheduler = Scheduler::start(
        jobs.iter().map(scheduled).collect(),
        history,
        service.clone(),
        scheduler_options,
        crate::clock::WallClock::system(),
        cancel.clone(),
    )
    .map_err(|e| super::command::CommandError::Options(e.to_string()))?;
    let handle = scheduler.handle();
    tasks.spawn("checks", async move {
        cancel.cancelled().await;
        scheduler.shutdown();
        scheduler.stopped().await;
    });
    Ok(ChecksHandle {
        scheduler: handle,
        service,
    })
}

/// Writes runs and alert events in batches until `cancel`, then what is left.
async fn write(
    mut rx: mpsc::Receiver<Record>,
    store: Arc<RunStore>,
    alerts: AlertLog,
    cancel: CancellationToken,
) {
    let mut runs = Vec::new();
    let mut events = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut closed = false;
    loop {
        // Commit once a second, or when a batch is full, or at the end: never per run.
        let flush = tokio::select! {
            r = rx.recv() => match r {
                Some(Record::Run(o)) => { runs.push(o); runs.len() >= FLUSH_RUNS }
                Some(Record::Alerts(e)) => { events.extend(e); false }
                None => { closed = true; true }
            },
            _ = tick.tick() => true,
            _ = cancel.cancelled() => true,
        };
        let stop = closed || cancel.is_cancelled();
        if flush && (!runs.is_empty() || !events.is_empty()) {
            let written = async {
                store.write(&runs).await?;
                runs.clear();
                alerts.record(&events).await?;
                events.clear();
                Ok::<(), crate::lake::LakeError>(())
            };
            match written.await {
                Ok(()) => backoff.reset(),
                Err(e) => {
                    tracing::warn!(
                        runs = runs.len(),
                        "cannot write the check history yet (retrying): {}",
                        crate::report::chain(&e)
                    );
                    if !stop {
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        }
        if stop {
            while let Ok(r) = rx.try_recv() {
                match r {
                    Record::Run(o) => runs.push(o),
                    Record::Alerts(e) => events.extend(e),
                }
            }
            if let Err(e) = store.write(&runs).await {
                tracing::error!(
                    "the last check runs were not written: {}",
                    crate::report::chain(&e)
                );
            }
            let _ = alerts.record(&events).await;
            return;
        }
    }
}
