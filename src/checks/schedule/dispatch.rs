//! The scheduler's one loop: a heap of next due times, per-connection lanes of due runs, and
//! the runs themselves in a `JoinSet`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::handle::{Command, HandleError, Stats, Triggered};
use super::lanes::Lanes;
use super::{JobRunner, RunStatus, Schedule, ScheduledJob, SchedulerOptions, Trigger};
use crate::clock::WallClock;

struct JobEntry {
    name: Arc<str>,
    connection: Arc<str>,
    schedule: Option<Schedule>,
    depends_on: Vec<Arc<str>>,
    /// Tells current timer entries from those of replaced versions of the job.
    generation: u64,
    next_due: Option<DateTime<Utc>>,
    /// Its one due run not started yet.
    waiting: Option<Waiting>,
}

#[derive(Clone, Copy, Debug)]
struct Waiting {
    at: DateTime<Utc>,
    trigger: Trigger,
    /// In its connection's lane; else behind the job's own running run.
    in_lane: bool,
}

struct RunInfo {
    name: Arc<str>,
    connection: Arc<str>,
    at: DateTime<Utc>,
    trigger: Trigger,
    started: Instant,
}

/// A job's next due time: (due, job, generation).
type Timer = (DateTime<Utc>, Arc<str>, u64);

enum Done {
    Ran(RunStatus, Duration),
    Recorded,
}

pub(super) struct Core {
    runner: Arc<dyn JobRunner>,
    options: SchedulerOptions,
    clock: WallClock,
    jobs: HashMap<Arc<str>, JobEntry>,
    /// (due time, job, generation); entries of removed or replaced jobs are skipped when
    /// popped, and dropped by [`Core::compact_timers`].
    timers: BinaryHeap<Reverse<Timer>>,
    lanes: Lanes,
    /// The run tasks (the others in `tasks` only record).
    runs: HashMap<Id, RunInfo>,
    running_jobs: HashSet<Arc<str>>,
    latest: HashMap<Arc<str>, RunStatus>,
    overdue: usize,
    generation: u64,
    steps: u64,
    tasks: JoinSet<Done>,
    stats: Arc<Stats>,
}

impl Core {
    pub(super) fn new(
        runner: Arc<dyn JobRunner>,
        options: SchedulerOptions,
        clock: WallClock,
        latest_status: HashMap<String, RunStatus>,
        stats: Arc<Stats>,
    ) -> Core {
        Core {
            runner,
            options,
            clock,
            jobs: HashMap::new(),
            timers: BinaryHeap::new(),
            lanes: Lanes::new(),
            runs: HashMap::new(),
            running_jobs: HashSet::new(),
            latest: latest_status
                .into_iter()
                .map(|(k, v)| (Arc::from(k), v))
                .collect(),
            overdue: 0,
            generation: 0,
            steps: 0,
            tasks: JoinSet::new(),
            stats,
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        info!(jobs = self.jobs.len(), "check scheduler started");
        loop {
            self.dispatch();
            self.publish();
            let deadline = self
                .timers
                .peek()
                .map(|Reverse((at, ..))| self.clock.instant_at(*at));
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.done(done);
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() => self.fire_due(),
            }
            self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
        }
        drop(commands);
        self.shutdown().await;
        info!("check scheduler stopped");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Upsert(job, reply) => {
                self.upsert(*job);
                let _ = reply.send(());
            }
            Command::Remove(name, reply) => {
                let _ = reply.send(self.remove(&name));
            }
            Command::Trigger(name, trigger, reply) => {
                let at = self.clock.now();
                let key = self
                    .jobs
                    .get_key_value(name.as_str())
                    .map(|(k, _)| k.clone());
                let result = match key {
                    Some(key) => Ok(self.enqueue(&key, at, trigger)),
                    None => Err(HandleError::UnknownJob { name }),
                };
                let _ = reply.send(result);
            }
        }
    }

    pub(super) fn upsert(&mut self, job: ScheduledJob) {
        self.steps += 1;
        self.generation += 1;
        let generation = self.generation;
        let next_due = job
            .schedule
            .as_ref()
            .and_then(|s| s.next_after(self.clock.now()));
        let connection: Arc<str> = Arc::from(job.connection.as_str());
        let depends_on = job
            .depends_on
            .iter()
            .map(|d| Arc::from(d.as_str()))
            .collect();
        if job.timeout > self.options.hard_kill {
            warn!(
                job = %job.name,
                timeout_s = job.timeout.as_secs(),
                hard_kill_s = self.options.hard_kill.as_secs(),
                "the job's timeout is past the hard deadline: its runs end at the hard deadline"
            );
        }
        let name = match self.jobs.get_mut(job.name.as_str()) {
            Some(entry) => {
                if entry.connection != connection
                    && let Some(w) = entry.waiting
                    && w.in_lane
                {
                    let key = (w.at, entry.name.clone());
                    self.lanes.remove(&entry.connection, &key);
                    self.lanes
                        .push(&connection, self.options.cap_of(&connection), key);
                }
                entry.connection = connection;
                entry.schedule = job.schedule;
                entry.depends_on = depends_on;
                entry.generation = generation;
                entry.next_due = next_due;
                entry.name.clone()
            }
            None => {
                let name: Arc<str> = Arc::from(job.name.as_str());
                self.jobs.insert(
                    name.clone(),
                    JobEntry {
                        name: name.clone(),
                        connection,
                        schedule: job.schedule,
                        depends_on,
                        generation,
                        next_due,
                        waiting: None,
                    },
                );
                name
            }
        };
        if let Some(at) = next_due {
            self.timers.push(Reverse((at, name, generation)));
        }
        self.compact_timers();
    }

    /// Rebuilds the heap once stale entries outnumber live ones (amortised O(1) per upsert).
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.jobs.len() + 1024 {
            return;
        }
        self.timers = self
            .jobs
            .values()
            .filter_map(|e| {
                e.next_due
                    .map(|at| Reverse((at, e.name.clone(), e.generation)))
            })
            .collect();
    }

    fn remove(&mut self, name: &str) -> bool {
        self.steps += 1;
        let Some(entry) = self.jobs.remove(name) else {
            return false;
        };
        if let Some(w) = entry.waiting {
            self.overdue -= 1;
            if w.in_lane {
                self.lanes
                    .remove(&entry.connection, &(w.at, entry.name.clone()));
            }
        }
        true
    }

    /// Queues one run per job whose schedule came due between its last recorded run and now,
    /// at the latest such time.
    pub(super) fn run_missed(&mut self, last_scheduled: &HashMap<String, DateTime<Utc>>) {
        let now = self.clock.now();
        let missed: Vec<(Arc<str>, DateTime<Utc>)> = self
            .jobs
            .values()
            .filter_map(|entry| {
                let schedule = entry.schedule.as_ref()?;
                let last = *last_scheduled.get(&*entry.name)?;
                let first_missed = schedule.next_after(last).filter(|t| *t <= now)?;
                let latest = schedule
                    .last_at_or_before(now)
                    .filter(|t| *t >= first_missed)
                    .unwrap_or(first_missed);
                Some((entry.name.clone(), latest))
            })
            .collect();
        for (name, at) in missed {
            info!(job = %name, scheduled_at = %at, "runs once for the runs missed while the engine was down");
            self.enqueue(&name, at, Trigger::Schedule);
        }
    }

    fn fire_due(&mut self) {
        let now = self.clock.now();
        while let Some(Reverse((at, ..))) = self.timers.peek()
            && *at <= now
        {
            let Some(Reverse((at, name, generation))) = self.timers.pop() else {
                break;
            };
            self.steps += 1;
            let Some(entry) = self.jobs.get_mut(&name) else {
                continue;
            };
            if entry.generation != generation || entry.next_due != Some(at) {
                continue;
            }
            // From now, not from `at`: a loop that was held up skips ticks, never bursts.
            entry.next_due = entry.schedule.as_ref().and_then(|s| s.next_after(now));
            if let Some(next) = entry.next_due {
                self.timers.push(Reverse((next, name.clone(), generation)));
            }
            self.enqueue(&name, at, Trigger::Schedule);
        }
    }

    /// Gives the job `name` a waiting run at `at`, unless it has one already.
    fn enqueue(&mut self, name: &Arc<str>, at: DateTime<Utc>, trigger: Trigger) -> Triggered {
        let running = self.running_jobs.contains(name);
        let Some(entry) = self.jobs.get_mut(name) else {
            return Triggered::AlreadyWaiting;
        };
        if let Some(waiting) = entry.waiting {
            debug!(job = %name, waiting_since = %waiting.at, scheduled_at = %at, "a run of the job already waits");
            if trigger == Trigger::Schedule {
                self.skip(name, at, trigger);
            }
            return Triggered::AlreadyWaiting;
        }
        entry.waiting = Some(Waiting {
            at,
            trigger,
            in_lane: !running,
        });
        self.overdue += 1;
        if running {
            return Triggered::AfterCurrentRun;
        }
        let cap = self.options.cap_of(&entry.connection);
        self.lanes.push(&entry.connection, cap, (at, name.clone()));
        Triggered::Queued
    }

    /// Starts waiting runs in order while there are free slots.
    fn dispatch(&mut self) {
        while self.runs.len() < self.options.max_concurrent {
            let Some((connection, (at, name))) = self.lanes.pop_ready() else {
                break;
            };
            self.steps += 1;
            let Some(entry) = self.jobs.get_mut(&name) else {
                continue;
            };
            let Some(waiting) = entry.waiting.take() else {
                continue;
            };
            self.overdue -= 1;
            let latest = &self.latest;
            let blocker = entry
                .depends_on
                .iter()
                .find(|d| !latest.get(&***d).is_some_and(|s| s.lets_downstream_run()))
                .cloned();
            if let Some(upstream) = blocker {
                info!(job = %name, upstream = %upstream, scheduled_at = %at,
                    "blocked: the upstream job's latest run is not pass or warn");
                self.latest.insert(name.clone(), RunStatus::Blocked);
                self.count(RunStatus::Blocked, None);
                self.record(&name, at, waiting.trigger, RunStatus::Blocked);
                continue;
            }
            self.start_run(name, connection, at, waiting.trigger);
        }
    }

    fn start_run(
        &mut self,
        name: Arc<str>,
        connection: Arc<str>,
        at: DateTime<Utc>,
        trigger: Trigger,
    ) {
        self.lanes
            .started(&connection, self.options.cap_of(&connection));
        self.running_jobs.insert(name.clone());
        let runner = self.runner.clone();
        let hard_kill = self.options.hard_kill;
        let job = name.clone();
        let span = info_span!("check_run", job = %name, connection = %connection, %trigger, scheduled_at = %at);
        let task = self.tasks.spawn(
            async move {
                let started = Instant::now();
                match tokio::time::timeout(hard_kill, runner.run(&job, at, trigger)).await {
                    Ok(status) => Done::Ran(status, started.elapsed()),
                    Err(_) => {
                        warn!(
                            hard_kill_s = hard_kill.as_secs(),
                            "the run reached the hard deadline: dropped"
                        );
                        let elapsed = started.elapsed();
                        runner.record(&job, at, trigger, RunStatus::Timeout).await;
                        Done::Ran(RunStatus::Timeout, elapsed)
                    }
                }
            }
            .instrument(span),
        );
        self.runs.insert(
            task.id(),
            RunInfo {
                name,
                connection,
                at,
                trigger,
                started: Instant::now(),
            },
        );
    }

    /// A task ended: a run (its slot frees, its status becomes the job's latest) or a record.
    fn done(&mut self, result: Result<(Id, Done), JoinError>) {
        let (id, outcome) = match result {
            Ok((id, done)) => (id, Ok(done)),
            Err(e) => (e.id(), Err(e)),
        };
        let Some(info) = self.runs.remove(&id) else {
            if let Err(e) = outcome
                && e.is_panic()
            {
                warn!("recording a run that did not execute panicked");
            }
            return;
        };
        let (status, elapsed) = match outcome {
            Ok(Done::Ran(status, elapsed)) => (status, elapsed),
            Ok(Done::Recorded) => (RunStatus::Error, info.started.elapsed()),
            Err(e) => {
                warn!(job = %info.name, panic = e.is_panic(), "the run ended abnormally: recorded as error");
                if e.is_panic() {
                    self.record(&info.name, info.at, info.trigger, RunStatus::Error);
                }
                (RunStatus::Error, info.started.elapsed())
            }
        };
        self.count(status, Some(elapsed));
        self.lanes.finished(&info.connection);
        self.running_jobs.remove(&info.name);
        self.latest.insert(info.name.clone(), status);
        if let Some(entry) = self.jobs.get_mut(&info.name)
            && let Some(w) = entry.waiting.as_mut()
            && !w.in_lane
        {
            w.in_lane = true;
            let cap = self.options.cap_of(&entry.connection);
            self.lanes
                .push(&entry.connection, cap, (w.at, info.name.clone()));
        }
    }

    /// A tick that met a waiting run of the same job: recorded `skipped`.
    fn skip(&mut self, name: &Arc<str>, at: DateTime<Utc>, trigger: Trigger) {
        self.count(RunStatus::Skipped, None);
        self.record(name, at, trigger, RunStatus::Skipped);
    }

    /// Records a run that does not execute, in a task of the scheduler.
    fn record(&mut self, name: &Arc<str>, at: DateTime<Utc>, trigger: Trigger, status: RunStatus) {
        let runner = self.runner.clone();
        let job = name.clone();
        self.tasks.spawn(async move {
            runner.record(&job, at, trigger, status).await;
            Done::Recorded
        });
    }

    fn count(&self, status: RunStatus, elapsed: Option<Duration>) {
        let metrics = &self.options.metrics;
        metrics
            .check_runs
            .with_label_values(&[status.as_str()])
            .inc();
        if let Some(elapsed) = elapsed {
            metrics.check_run_seconds.observe(elapsed.as_secs_f64());
        }
    }

    fn publish(&self) {
        let s = &self.stats;
        let (queued, running) = (self.lanes.queued(), self.runs.len());
        s.jobs.store(self.jobs.len(), Ordering::Relaxed);
        s.queued.store(queued, Ordering::Relaxed);
        s.running.store(running, Ordering::Relaxed);
        s.overdue.store(self.overdue, Ordering::Relaxed);
        s.steps.store(self.steps, Ordering::Relaxed);
        let metrics = &self.options.metrics;
        metrics.check_queue_depth.set(gauge(queued));
        metrics.check_runs_running.set(gauge(running));
        metrics.check_overdue_jobs.set(gauge(self.overdue));
    }

    /// Stops dispatching; lets runs end until the grace deadline, then drops them.
    async fn shutdown(&mut self) {
        if !self.runs.is_empty() {
            info!(
                running = self.runs.len(),
                grace_s = self.options.grace.as_secs(),
                "stopping: no new runs; running runs may end until the grace deadline"
            );
        }
        let grace = tokio::time::sleep(self.options.grace);
        tokio::pin!(grace);
        while !self.tasks.is_empty() {
            tokio::select! {
                () = &mut grace => break,
                Some(done) = self.tasks.join_next_with_id() => self.done(done),
            }
        }
        if !self.tasks.is_empty() {
            warn!(
                running = self.runs.len(),
                "the grace deadline passed: dropping the runs still going"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
            self.runs.clear();
        }
        self.publish();
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
