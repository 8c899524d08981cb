//! A fake runner for the scheduler's tests: it logs every call and counts the runs at once,
//! and helpers to start a scheduler on it under paused time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::clock::WallClock;

pub(super) fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub(super) fn job(name: &str, schedule: Option<&str>, connection: &str) -> ScheduledJob {
    ScheduledJob {
        name: name.to_owned(),
        schedule: schedule.map(|s| Schedule::parse(s, None).unwrap()),
        connection: connection.to_owned(),
        depends_on: Vec::new(),
        timeout: Duration::from_secs(60),
    }
}

pub(super) fn options(max_concurrent: usize, source_cap: usize) -> SchedulerOptions {
    SchedulerOptions {
        max_concurrent,
        per_connection: HashMap::from([(SOURCE_CONNECTION.to_owned(), source_cap)]),
        default_connection_cap: max_concurrent,
        ..SchedulerOptions::default()
    }
}

/// How the fake runs a job: for how long (`None`: never ends) and with what status.
#[derive(Clone, Copy, Debug)]
pub(super) struct Plan {
    pub takes: Option<Duration>,
    pub status: RunStatus,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum What {
    Started,
    Ended(RunStatus),
    Recorded(RunStatus),
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Entry {
    pub job: String,
    pub at: DateTime<Utc>,
    pub trigger: Trigger,
    pub what: What,
    /// The wall-clock time it happened.
    pub now: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Load {
    total: usize,
    max_total: usize,
    per_connection: HashMap<String, usize>,
    max_per_connection: HashMap<String, usize>,
    per_job: HashMap<String, usize>,
    max_per_job: usize,
}

/// A runner that logs every call and counts runs at once (a run dropped mid-way stops
/// counting when its future is dropped).
pub(super) struct Fake {
    clock: WallClock,
    connection_of: Mutex<HashMap<String, String>>,
    plans: Mutex<HashMap<String, Plan>>,
    default_plan: Plan,
    log: Mutex<Vec<Entry>>,
    load: Mutex<Load>,
    pub calls: AtomicUsize,
}

struct Running<'a> {
    fake: &'a Fake,
    job: String,
    connection: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut load = self.fake.load.lock().unwrap();
        load.total -= 1;
        *load.per_connection.get_mut(&self.connection).unwrap() -= 1;
        *load.per_job.get_mut(&self.job).unwrap() -= 1;
    }
}

impl Fake {
    pub fn new(clock: WallClock, jobs: &[ScheduledJob], default_plan: Plan) -> Arc<Fake> {
        Arc::new(Fake {
            clock,
            connection_of: Mutex::new(
                jobs.iter()
                    .map(|j| (j.name.clone(), j.connection.clone()))
                    .collect(),
            ),
            plans: Mutex::new(HashMap::new()),
            default_plan,
            log: Mutex::new(Vec::new()),
            load: Mutex::new(Load::default()),
            calls: AtomicUsize::new(0),
        })
    }

    pub fn plan(&self, job: &str, plan: Plan) {
        self.plans.lock().unwrap().insert(job.to_owned(), plan);
    }

    pub fn connection(&self, job: &str, connection: &str) {
        self.connection_of
            .lock()
            .unwrap()
            .insert(job.to_owned(), connection.to_owned());
    }

    fn push(&self, job: &str, at: DateTime<Utc>, trigger: Trigger, what: What) {
        self.log.lock().unwrap().push(Entry {
            job: job.to_owned(),
            at,
            trigger,
            what,
            now: self.clock.now(),
        });
    }

    pub fn log(&self) -> Vec<Entry> {
        self.log.lock().unwrap().clone()
    }

    /// (job, scheduled at, started at) of every run started, in order.
    pub fn started(&self) -> Vec<(String, DateTime<Utc>, DateTime<Utc>)> {
        self.log()
            .into_iter()
            .filter(|e| e.what == What::Started)
            .map(|e| (e.job, e.at, e.now))
            .collect()
    }

    pub fn of(&self, job: &str) -> Vec<Entry> {
        self.log().into_iter().filter(|e| e.job == job).collect()
    }

    pub fn count(&self, what: &What) -> usize {
        self.log().iter().filter(|e| e.what == *what).count()
    }

    pub fn max_total(&self) -> usize {
        self.load.lock().unwrap().max_total
    }

    pub fn max_on(&self, connection: &str) -> usize {
        let load = self.load.lock().unwrap();
        load.max_per_connection
            .get(connection)
            .copied()
            .unwrap_or(0)
    }

    pub fn running_now(&self) -> usize {
        self.load.lock().unwrap().total
    }

    pub fn max_per_job(&self) -> usize {
        self.load.lock().unwrap().max_per_job
    }

    fn enter(&self, job: &str) -> Running<'_> {
        let connection = self.connection_of.lock().unwrap()[job].clone();
        let mut load = self.load.lock().unwrap();
        load.total += 1;
        load.max_total = load.max_total.max(load.total);
        let now = load.per_connection.entry(connection.clone()).or_default();
        *now += 1;
        let now = *now;
        let max = load
            .max_per_connection
            .entry(connection.clone())
            .or_default();
        *max = (*max).max(now);
        let per_job = load.per_job.entry(job.to_owned()).or_default();
        *per_job += 1;
        let per_job = *per_job;
        load.max_per_job = load.max_per_job.max(per_job);
        Running {
            fake: self,
            job: job.to_owned(),
            connection,
        }
    }
}

#[async_trait]
impl JobRunner for Fake {
    async fn run(&self, job: &str, scheduled_at: DateTime<Utc>, trigger: Trigger) -> RunStatus {
        self.calls.fetch_add(1, Ordering::Relaxed);
        assert!(
            !job.starts_with("panics"),
            "the fake runner panics for {job}"
        );
        let plan = self
            .plans
            .lock()
            .unwrap()
            .get(job)
            .copied()
            .unwrap_or(self.default_plan);
        let _running = self.enter(job);
        self.push(job, scheduled_at, trigger, What::Started);
        match plan.takes {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
        self.push(job, scheduled_at, trigger, What::Ended(plan.status));
        plan.status
    }

    async fn record(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        trigger: Trigger,
        status: RunStatus,
    ) {
        self.push(job, scheduled_at, trigger, What::Recorded(status));
    }
}

pub(super) struct Rig {
    pub fake: Arc<Fake>,
    pub scheduler: Scheduler,
    pub handle: SchedulerHandle,
    pub cancel: CancellationToken,
    pub clock: WallClock,
    pub metrics: crate::metrics::SharedMetrics,
}

pub(super) fn start(
    jobs: Vec<ScheduledJob>,
    history: History,
    options: SchedulerOptions,
    base: &str,
    plan: Plan,
) -> Rig {
    let clock = WallClock::following_tokio(t(base));
    let fake = Fake::new(clock, &jobs, plan);
    let cancel = CancellationToken::new();
    let metrics = options.metrics.clone();
    let scheduler =
        Scheduler::start(jobs, history, fake.clone(), options, clock, cancel.clone()).unwrap();
    let handle = scheduler.handle();
    Rig {
        fake,
        scheduler,
        handle,
        cancel,
        clock,
        metrics,
    }
}

/// Lets paused time run until `at` on the rig's clock.
pub(super) async fn until(rig: &Rig, at: &str) {
    tokio::time::sleep_until(rig.clock.instant_at(t(at))).await;
    settle().await;
}

/// Lets the loop and the runs do what is due at this instant.
pub(super) async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

pub(super) const PASS_1S: Plan = Plan {
    takes: Some(Duration::from_secs(1)),
    status: RunStatus::Pass,
};
