//! The job scheduler: runs validation jobs at their cron times, within concurrency caps, behind
//! their upstream gates, with a hard deadline per run.
//!
//! ```text
//!  jobs + History ─► Scheduler::start ─► one loop task ──────────────────────────────┐
//!  (run history)        │                 timers: heap of (next due, job)            │
//!  SchedulerHandle ─────┘ upsert/remove/  lanes: per connection, due runs ordered by │
//!  (HTTP API)             trigger_now      (scheduled time, job name), under caps    │
//!                                                 │ dispatch                         │
//!                                                 ▼                                  │
//!                         JoinSet of runs: dyn JobRunner::run, dropped at hard_kill ─┘
//!                                          (recorded `timeout` via JobRunner::record)
//! ```
//!
//! # Invariants
//! * One loop, no task per idle job: it sleeps until the earliest due time (or a command, or
//!   a run ending), never on a polling interval. Each due tick, dispatch and completion costs
//!   O(log n) in the number of jobs.
//! * At most [`SchedulerOptions::max_concurrent`] runs at once, at most a connection's cap on
//!   one connection; due runs wait in (scheduled time, job name) order, and a connection at
//!   its cap holds back only its own runs.
//! * A job never runs twice at once: a tick while it runs waits behind the run (one waiting
//!   run per job); a tick while a run already waits is recorded `skipped`.
//! * Every run ends by [`SchedulerOptions::hard_kill`]: its future is dropped and the run is
//!   recorded `timeout`.
//! * A run missed while the engine was down runs once at start, with the latest missed time
//!   (from [`History::last_scheduled`]; a job without a recorded run just waits for its next
//!   time).
//! * Gates are read when a run would start: a job with an upstream (`depends_on`) whose latest
//!   run is not pass or warn, or that has no run yet, is recorded `blocked` and not run (so a
//!   job downstream of a blocked one is blocked too). Triggered runs queue and gate like
//!   scheduled ones.
//! * Every task belongs to the scheduler: on cancellation it stops dispatching, lets running
//!   runs end until [`SchedulerOptions::grace`], then drops them, and only then returns.
//! * Logs name jobs, connections and times, never SQL text or values.

mod cron;
mod dispatch;
mod handle;
mod lanes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fake;
#[cfg(test)]
mod tests_load;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use cron::{Schedule, ScheduleError};
pub use handle::{HandleError, Scheduler, SchedulerHandle, SchedulerStats, Triggered};

use crate::metrics::SharedMetrics;

/// The hard deadline of every run, whatever the job's own timeout.
pub const HARD_KILL: Duration = Duration::from_secs(15 * 60);
/// Default [`SchedulerOptions::max_concurrent`].
pub const DEFAULT_MAX_CONCURRENT: usize = 4;
/// The connection that is the replicated production database, and its default cap.
pub const SOURCE_CONNECTION: &str = "source";
/// Default cap of [`SOURCE_CONNECTION`].
pub const DEFAULT_SOURCE_CAP: usize = 2;
/// Default [`SchedulerOptions::grace`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// What the scheduler knows of a job.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledJob {
    /// Unique among jobs.
    pub name: String,
    /// `None`: the job runs only when triggered.
    pub schedule: Option<Schedule>,
    /// The connection its queries use (the per-connection cap applies to it).
    pub connection: String,
    /// Jobs whose latest run must be pass or warn for this one to run.
    pub depends_on: Vec<String>,
    /// The job's own timeout, which the runner enforces on its queries; the scheduler's hard
    /// deadline ([`SchedulerOptions::hard_kill`]) applies whatever it says.
    pub timeout: Duration,
}

pub use super::model::{Status as RunStatus, Trigger};

/// Runs jobs and records runs: the check runner and the run history behind the scheduler.
///
/// # Contract
/// * [`JobRunner::run`] executes the job's checks and records the run itself (status, times,
///   results); the scheduler has already decided the job is not blocked. It enforces the
///   job's own timeout on its queries. The scheduler may drop the future at any await point
///   (the hard deadline, shutdown), so the run must leave nothing half-written that a later
///   run would trust.
/// * [`JobRunner::record`] records a run that was not executed (`blocked`, `skipped`), was
///   killed at the hard deadline (`timeout`), or whose `run` panicked (`error`).
/// * Both are called concurrently for different jobs, never concurrently for the same job's
///   runs (records of skipped ticks aside).
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    /// Runs `job` for `scheduled_at` and returns how it ended.
    async fn run(&self, job: &str, scheduled_at: DateTime<Utc>, trigger: Trigger) -> RunStatus;
    /// Records a run of `job` that did not execute or did not end by itself.
    async fn record(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        trigger: Trigger,
        status: RunStatus,
    );
}

/// What the run history says at start.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Per job, the scheduled time of its last recorded scheduled run (for missed runs).
    pub last_scheduled: HashMap<String, DateTime<Utc>>,
    /// Per job, the status of its latest run (for gates).
    pub latest_status: HashMap<String, RunStatus>,
}

/// Caps and deadlines of a [`Scheduler`].
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Most runs at once, in total.
    pub max_concurrent: usize,
    /// Most runs at once per connection name, where given.
    pub per_connection: HashMap<String, usize>,
    /// Most runs at once on a connection not in `per_connection`.
    pub default_connection_cap: usize,
    /// The hard deadline of every run ([`HARD_KILL`]).
    pub hard_kill: Duration,
    /// How long running runs may go on once shutdown is asked for.
    pub grace: Duration,
    /// Where the scheduler's metrics go.
    pub metrics: SharedMetrics,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            per_connection: HashMap::from([(SOURCE_CONNECTION.to_owned(), DEFAULT_SOURCE_CAP)]),
            default_connection_cap: DEFAULT_MAX_CONCURRENT,
            hard_kill: HARD_KILL,
            grace: DEFAULT_GRACE,
            metrics: SharedMetrics::default(),
        }
    }
}

/// Options that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("{what} is 0: no job could ever run; set it to 1 or more")]
    ZeroCap { what: String },
    #[error(
        "the hard deadline of runs is 0: every run would time out; set it above 0 (15 min by default)"
    )]
    ZeroHardKill,
}

impl SchedulerOptions {
    /// The cap of `connection`.
    pub fn cap_of(&self, connection: &str) -> usize {
        self.per_connection
            .get(connection)
            .copied()
            .unwrap_or(self.default_connection_cap)
    }

    /// Refuses caps of 0 and a hard deadline of 0.
    pub fn validate(&self) -> Result<(), OptionsError> {
        let zero = |what: String| Err(OptionsError::ZeroCap { what });
        if self.max_concurrent == 0 {
            return zero("max_concurrent".into());
        }
        if self.default_connection_cap == 0 {
            return zero("the default connection cap".into());
        }
        if let Some((name, _)) = self.per_connection.iter().find(|(_, cap)| **cap == 0) {
            return zero(format!("the cap of connection `{name}`"));
        }
        if self.hard_kill.is_zero() {
            return Err(OptionsError::ZeroHardKill);
        }
        Ok(())
    }
}
