//! Validation jobs: scheduled data-quality checks over the lake, the source and the
//! warehouse, with a run history in the lake.
//!
//! ```text
//!  *.yml job files ─► load (typed, validated, all or nothing) ─► Job
//!  Job ─► run (merged scan + one query per other check, through sql::ReadOnlySql with the
//!         job's timeout) ─► RunOutcome ─► store (_walaudit/jobs, check_runs, check_results)
//!                                           ▲
//!  anomaly, schema changes, incremental ────┘ History (earlier results)
//! ```
//!
//! * [`model`]: what a validated job is.
//! * [`load`]: job files and their errors (file, line, key, fix).
//! * [`threshold`]: `must_be_*` keys and how a value is judged.
//! * [`run`]: one run of one job.
//! * [`guard`]: the `EXPLAIN` guard on Postgres connections (full scans, joins).
//! * [`suggest`]: a job file written from a profile of a dataset.
//! * [`anomaly`]: z-scores over a check's own history.
//! * [`schema`]: the `schema` check's column and type matching.
//! * [`store`]: the run history tables in the lake.
//! * [`alert`], [`alert_log`], [`notify`]: alerts, their table, and sending them.
//! * [`service`]: all of it inside `walaudit run` and `walaudit serve`.
//! * [`schedule`]: cron schedules, caps, gates and deadlines: one loop for every job.

pub mod alert;
pub mod alert_log;
pub mod anomaly;
pub mod command;
pub mod config;
pub mod guard;
pub mod load;
pub mod model;
pub mod notify;
pub mod run;
pub mod schedule;
pub mod schema;
pub mod service;
pub mod store;
pub mod suggest;
pub mod threshold;

pub use load::{Context, LoadError, LoadErrors, load_dir, load_sources};
pub use model::{Check, CheckKind, Job, Origin, Severity, Status, Trigger};
pub use run::{CheckResult, History, RunOutcome, Targets, run_job};

/// Checks a job's `schedule` and `timezone`; the message says what to write instead.
pub(crate) fn schedule_check(expr: &str, timezone: &str) -> Result<(), String> {
    schedule::Schedule::parse(expr, Some(timezone))
        .map(|_| ())
        .map_err(|e| e.to_string())
}
