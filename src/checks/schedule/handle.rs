//! The scheduler's owner and its handles: how the engine starts and stops it, and how the
//! HTTP API changes its jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use super::dispatch::Core;
use super::{History, JobRunner, OptionsError, ScheduledJob, SchedulerOptions, Trigger};
use crate::clock::WallClock;

/// Commands in flight from handles to the loop.
const COMMAND_QUEUE: usize = 256;

/// What [`SchedulerHandle::trigger_now`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Triggered {
    /// The run waits for a slot (or has one: it starts at once).
    Queued,
    /// The job is running: the run starts when that run ends.
    AfterCurrentRun,
    /// A run of the job already waits; no second one was added.
    AlreadyWaiting,
}

/// Why a handle's request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    #[error("no job named `{name}` in the scheduler: add it first (upsert), or check the name")]
    UnknownJob { name: String },
    #[error(
        "the scheduler has stopped (the engine is shutting down): retry once the engine runs again"
    )]
    Stopped,
}

/// Counters of the scheduler, read without asking its loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Jobs known.
    pub jobs: usize,
    /// Due runs waiting for a slot.
    pub queued: usize,
    /// Runs running.
    pub running: usize,
    /// Jobs with a due run not started yet (waiting for a slot or behind their own run).
    pub overdue: usize,
    /// Times the loop woke up (a due time, a command, a run ending).
    pub wakeups: u64,
    /// Timer entries and waiting runs the loop handled: O(1) per due run and per command,
    /// never O(jobs) per wake-up (for tests and benchmarks).
    pub steps: u64,
}

#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) jobs: AtomicUsize,
    pub(super) queued: AtomicUsize,
    pub(super) running: AtomicUsize,
    pub(super) overdue: AtomicUsize,
    pub(super) wakeups: AtomicU64,
    pub(super) steps: AtomicU64,
}

pub(super) enum Command {
    Upsert(Box<ScheduledJob>, oneshot::Sender<()>),
    Remove(String, oneshot::Sender<bool>),
    Trigger(
        String,
        Trigger,
        oneshot::Sender<Result<Triggered, HandleError>>,
    ),
}

/// Changes the jobs of a running [`Scheduler`] (the HTTP API holds one); cheap to clone.
#[derive(Clone, Debug)]
pub struct SchedulerHandle {
    commands: mpsc::Sender<Command>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Upsert(job, _) => write!(f, "Upsert({})", job.name),
            Command::Remove(name, _) => write!(f, "Remove({name})"),
            Command::Trigger(name, trigger, _) => write!(f, "Trigger({name}, {trigger})"),
        }
    }
}

impl SchedulerHandle {
    async fn ask<T>(
        &self,
        command: Command,
        reply: oneshot::Receiver<T>,
    ) -> Result<T, HandleError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| HandleError::Stopped)?;
        reply.await.map_err(|_| HandleError::Stopped)
    }

    /// Adds `job`, or replaces the job of that name: its next run is its schedule's first time
    /// after now. A run of it that waits keeps its place (on the new connection); a running
    /// run goes on.
    pub async fn upsert(&self, job: ScheduledJob) -> Result<(), HandleError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Command::Upsert(Box::new(job), tx), rx).await
    }

    /// Removes the job `name` (whether it existed); a waiting run of it is dropped, a running
    /// one goes on to its end.
    pub async fn remove(&self, name: &str) -> Result<bool, HandleError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Command::Remove(name.to_owned(), tx), rx).await
    }

    /// Runs the job `name` now (`trigger`: [`Trigger::Manual`] or [`Trigger::Api`]), within
    /// the caps and behind its gates like a scheduled run, with `scheduled_at` = now.
    pub async fn trigger_now(
        &self,
        name: &str,
        trigger: Trigger,
    ) -> Result<Triggered, HandleError> {
        let (tx, rx) = oneshot::channel();
        self.ask(Command::Trigger(name.to_owned(), trigger, tx), rx)
            .await?
    }

    /// Due runs waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.stats.queued.load(Ordering::Relaxed)
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> SchedulerStats {
        let s = &self.stats;
        SchedulerStats {
            jobs: s.jobs.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            running: s.running.load(Ordering::Relaxed),
            overdue: s.overdue.load(Ordering::Relaxed),
            wakeups: s.wakeups.load(Ordering::Relaxed),
            steps: s.steps.load(Ordering::Relaxed),
        }
    }
}

/// Runs validation jobs on their schedules (see the module docs for the invariants).
///
/// # Contract
/// * [`Scheduler::start`] takes the jobs, what the run history says ([`History`]), the runner,
///   the caps, a [`WallClock`] and a cancellation token, and returns at once; the loop runs
///   on the current tokio runtime.
/// * Cancelling the token (or [`Scheduler::shutdown`], or dropping the `Scheduler`) stops
///   dispatching; runs may go on for [`SchedulerOptions::grace`], then are dropped.
///   [`Scheduler::stopped`] returns when no task of the scheduler is left.
/// * Requests through a [`SchedulerHandle`] after that fail with [`HandleError::Stopped`].
/// * A `Scheduler` dropped without [`Scheduler::stopped`] still stops: its loop winds down in
///   the background within the grace period; await `stopped` to know it is over.
#[derive(Debug)]
pub struct Scheduler {
    handle: SchedulerHandle,
    task: Option<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Scheduler {
    /// Starts the scheduler with `jobs`; a job whose schedule came due since
    /// `history.last_scheduled` while the engine was down runs once now.
    pub fn start(
        jobs: Vec<ScheduledJob>,
        history: History,
        runner: Arc<dyn JobRunner>,
        options: SchedulerOptions,
        clock: WallClock,
        cancel: CancellationToken,
    ) -> Result<Scheduler, OptionsError> {
        options.validate()?;
        let stop = cancel.child_token();
        let stats = Arc::new(Stats::default());
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let mut core = Core::new(runner, options, clock, history.latest_status, stats.clone());
        for job in jobs {
            core.upsert(job);
        }
        core.run_missed(&history.last_scheduled);
        let task = tokio::spawn(
            core.run(rx, stop.clone())
                .instrument(info_span!("check_scheduler")),
        );
        Ok(Scheduler {
            handle: SchedulerHandle { commands, stats },
            task: Some(task),
            stop,
        })
    }

    /// A handle to change jobs while the scheduler runs.
    pub fn handle(&self) -> SchedulerHandle {
        self.handle.clone()
    }

    /// Asks the scheduler to stop, as cancelling its token does.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits until the scheduler has stopped: cancelled, and every run ended or dropped.
    pub async fn stopped(mut self) {
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            warn!(error = %e, "the check scheduler's loop ended abnormally");
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
