//! The validated job model: what a job file means once it has been checked.
//!
//! Every value here has passed [`super::load`]: names are valid and unique, each check has
//! exactly the arguments its type takes, thresholds are numbers, durations are in range.
//! Nothing downstream re-validates.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::threshold::Threshold;

/// The connection of a job that names none.
pub const LAKE: &str = "lake";
/// The replication source's database (read through ordinary, read-only sessions).
pub const SOURCE: &str = "source";
/// Default job timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest timeout a job may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Every run is killed here, whatever its job says.
pub const HARD_KILL: Duration = Duration::from_secs(15 * 60);
/// Default number of sample rows a failing check keeps.
pub const DEFAULT_SAMPLES: usize = 5;

/// Where a job definition came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Origin {
    /// A YAML file, by path.
    File(String),
    /// The HTTP API.
    Api,
}

impl Origin {
    /// The `origin` column of `_walaudit/jobs`: `file:<path>` or `api`.
    pub fn label(&self) -> String {
        match self {
            Origin::File(path) => format!("file:{path}"),
            Origin::Api => "api".into(),
        }
    }
}

/// How urgent a job's alerts are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// A named set of checks over one dataset of one connection.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    pub name: String,
    pub description: Option<String>,
    /// `lake`, `source` or a `[connections.NAME]` of the config.
    pub connection: String,
    /// A table or view in the connection's SQL, as written (it is SQL, not an identifier).
    pub dataset: String,
    /// ANDed into every query of the job's dataset.
    pub filter: Option<String>,
    /// `{window_start}`/`{window_end}` span this window, ending at the scheduled time.
    pub window: Option<Duration>,
    /// Measure only the changes committed since the previous run (lake change tables).
    pub incremental: bool,
    /// Cron expression; `None`: on demand only.
    pub schedule: Option<String>,
    pub timezone: String,
    pub timeout: Duration,
    pub severity: Severity,
    pub depends_on: Vec<String>,
    /// Let the `EXPLAIN` guard accept full scans of large tables and many joins.
    pub allow_full_scan: bool,
    pub checks: Vec<Check>,
    #[serde(skip)]
    pub origin: Origin,
    /// Line of the job in its file (1 for API jobs).
    #[serde(skip)]
    pub line: u32,
}

/// One check of a job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Unique in its job: given, or derived from type and arguments (`missing(customer_id)`).
    pub name: String,
    pub kind: CheckKind,
    /// ANDed into this check only.
    pub filter: Option<String>,
    /// Outside this the check fails.
    pub fail: Threshold,
    /// Outside this (but inside `fail`) the check warns.
    pub warn: Option<Threshold>,
    /// Sample rows kept when the check does not pass (0: none).
    pub samples: usize,
    /// Line of the check in its file.
    #[serde(skip)]
    pub line: u32,
}

/// `metric: count | percent` of `missing` and `invalid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Count,
    Percent,
}

/// The rules of an `invalid` check: a row is invalid when its non-null value breaks any.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ValidRules {
    /// SQL literals, already quoted.
    pub values: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub regex: Option<String>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub not_in_future: bool,
}

/// `as:` of a `compare` check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareAs {
    /// query / against.
    Ratio,
    /// query − against.
    Difference,
    /// (query − against) / against × 100.
    PercentChange,
}

/// `direction:` of an anomaly check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Both,
    Up,
    Down,
}

/// What a check measures, with the arguments of its type.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CheckKind {
    RowCount,
    Missing {
        column: String,
        /// SQL literals counted as missing besides NULL, already quoted.
        missing_values: Vec<String>,
        metric: Metric,
    },
    Invalid {
        column: String,
        rules: ValidRules,
        metric: Metric,
    },
    Duplicate {
        columns: Vec<String>,
    },
    Freshness {
        column: String,
    },
    Aggregate {
        group_by: Vec<String>,
        expression: String,
        each: Threshold,
    },
    Reference {
        columns: Vec<String>,
        dataset: String,
        ref_columns: Vec<String>,
        /// `None`: the job's connection.
        connection: Option<String>,
    },
    Metric {
        query: String,
    },
    Compare {
        query: String,
        against: String,
        against_connection: Option<String>,
        as_: CompareAs,
    },
    FailedRows {
        query: String,
    },
    Schema {
        /// Column → type name as written.
        required: BTreeMap<String, String>,
        forbidden: Vec<String>,
        fail_on_change: bool,
    },
    Anomaly {
        of: String,
        sensitivity: f64,
        min_history: usize,
        training_window: Duration,
        direction: Direction,
    },
}

impl CheckKind {
    /// The `type` key of the check.
    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::RowCount => "row_count",
            CheckKind::Missing { .. } => "missing",
            CheckKind::Invalid { .. } => "invalid",
            CheckKind::Duplicate { .. } => "duplicate",
            CheckKind::Freshness { .. } => "freshness",
            CheckKind::Aggregate { .. } => "aggregate",
            CheckKind::Reference { .. } => "reference",
            CheckKind::Metric { .. } => "metric",
            CheckKind::Compare { .. } => "compare",
            CheckKind::FailedRows { .. } => "failed_rows",
            CheckKind::Schema { .. } => "schema",
            CheckKind::Anomaly { .. } => "anomaly",
        }
    }

    /// The name a check gets when it has none: `missing(customer_id)`, `duplicate(a, b)`.
    pub fn derived_name(&self) -> String {
        let t = self.type_name();
        match self {
            CheckKind::Missing { column, .. }
            | CheckKind::Invalid { column, .. }
            | CheckKind::Freshness { column } => format!("{t}({column})"),
            CheckKind::Duplicate { columns } | CheckKind::Reference { columns, .. } => {
                format!("{t}({})", columns.join(", "))
            }
            CheckKind::Aggregate {
                group_by,
                expression,
                ..
            } => format!("{t}({expression} by {})", group_by.join(", ")),
            CheckKind::Anomaly { of, .. } => format!("{t}({of})"),
            _ => t.to_owned(),
        }
    }

    /// Whether the value is measured in the job's merged one-scan query.
    pub fn is_scan_metric(&self) -> bool {
        matches!(
            self,
            CheckKind::RowCount
                | CheckKind::Missing { .. }
                | CheckKind::Invalid { .. }
                | CheckKind::Freshness { .. }
        )
    }
}

impl Job {
    /// Every connection a run of the job reads.
    pub fn connections(&self) -> Vec<&str> {
        let mut all = vec![self.connection.as_str()];
        for check in &self.checks {
            let other = match &check.kind {
                CheckKind::Reference { connection, .. } => connection.as_deref(),
                CheckKind::Compare {
                    against_connection, ..
                } => against_connection.as_deref(),
                _ => None,
            };
            if let Some(c) = other
                && !all.contains(&c)
            {
                all.push(c);
            }
        }
        all
    }

    /// Where the job is defined, for messages: `checks/orders.yml:12`.
    pub fn place(&self) -> String {
        match &self.origin {
            Origin::File(path) => format!("{path}:{}", self.line),
            Origin::Api => "api".into(),
        }
    }
}

/// The status of a check, and of a run. The outcomes of executed checks are ordered
/// worst-of: pass < warn < fail < error < timeout, so a run's status is the `max` of its
/// checks'; `blocked` and `skipped` are runs that did not execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    /// The query failed; the message is kept.
    Error,
    Timeout,
    /// Not executed: a dependency's latest run is not pass/warn.
    Blocked,
    /// Not executed: the job is disabled, or a run of it was already waiting.
    Skipped,
}

impl Status {
    /// Every status, in order.
    pub const ALL: [Status; 7] = [
        Status::Pass,
        Status::Warn,
        Status::Fail,
        Status::Error,
        Status::Timeout,
        Status::Blocked,
        Status::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::Timeout => "timeout",
            Status::Blocked => "blocked",
            Status::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The worse of two outcomes.
    pub fn worst(self, other: Status) -> Status {
        self.max(other)
    }

    /// pass or warn: what lets dependent jobs run and resolves alerts.
    pub fn is_green(self) -> bool {
        matches!(self, Status::Pass | Status::Warn)
    }

    /// Whether a job downstream of a job whose latest run ended so may run.
    pub fn lets_downstream_run(self) -> bool {
        self.is_green()
    }

    /// fail, error or timeout: what opens an alert and fails `check run`.
    pub fn is_bad(self) -> bool {
        matches!(self, Status::Fail | Status::Error | Status::Timeout)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Manual,
    Api,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
