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

pub mod anomaly;
pub mod command;
pub mod config;
pub mod guard;
pub mod load;
pub mod model;
pub mod run;
pub mod schema;
pub mod store;
pub mod suggest;
pub mod threshold;

pub use load::{Context, LoadError, LoadErrors, load_dir, load_sources};
pub use model::{Check, CheckKind, Job, Origin, Severity, Status, Trigger};
pub use run::{CheckResult, History, RunOutcome, Targets, run_job};

/// Checks a job's `schedule` and `timezone`; the message says what to write instead.
pub(crate) fn schedule_check(expr: &str, timezone: &str) -> Result<(), String> {
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(format!(
            "`timezone: {timezone}` is not an IANA time zone name: use e.g. UTC, Europe/Berlin, \
             America/New_York"
        ));
    }
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "`schedule: \"{expr}\"` has {fields} field(s): a schedule has 5 fields (minute hour \
             day-of-month month day-of-week) or 6 (with seconds first), e.g. \"0 * * * *\" for \
             hourly"
        ));
    }
    Ok(())
}
