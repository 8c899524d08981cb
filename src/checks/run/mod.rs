//! One run of one job: measure every check, judge it against its thresholds, keep samples.
//!
//! ```text
//!  job ─► vars (window, incremental _lsn) ─► merged scan (row_count, missing, invalid,
//!         freshness: ONE query) ─► one query per other check (duplicate, aggregate,
//!         reference, metric, compare, failed_rows, schema) ─► thresholds ─► samples for
//!         checks that did not pass (duplicates: from their own query) ─► anomaly checks over
//!         the history ─► RunOutcome
//! ```
//!
//! # Invariants
//! * Every query goes through [`ReadOnlySql`] with what is left of the job's timeout as its
//!   deadline; once it is spent, the remaining checks are `timeout` without a query.
//! * A check that cannot be measured is `error` (with the target's message), never `pass`.
//! * Anomaly checks judge this run's value against earlier runs only.

pub(crate) mod sql;
pub(crate) mod values;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::anomaly;
use super::model::{Check, CheckKind, CompareAs, Job, Metric, Status, Trigger};
use crate::sql::{Limits, ReadOnlySql, SqlError};

pub use sql::Vars;

/// Open handles by connection name (`lake`, `source`, `[connections.*]`).
pub type Targets = HashMap<String, Arc<dyn ReadOnlySql>>;

/// What a run needs from earlier runs.
#[async_trait]
pub trait History: Send + Sync {
    /// Values of `(job, check)` measured at or after `from` and before `to`, oldest first.
    async fn values(
        &self,
        job: &str,
        check: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<f64>, String>;
    /// The samples of the latest result of `(job, check)`.
    async fn last_samples(
        &self,
        job: &str,
        check: &str,
    ) -> Result<Option<serde_json::Value>, String>;
    /// The `_lsn` high-water of the job's latest incremental run.
    async fn last_lsn(&self, job: &str) -> Result<Option<i64>, String>;
}

/// One check's result (a row of `_walaudit/check_results`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CheckResult {
    pub check: String,
    #[serde(rename = "type")]
    pub type_name: &'static str,
    pub status: Status,
    pub value: Option<f64>,
    /// The thresholds the value was judged by, as text.
    pub threshold: String,
    pub samples: Option<serde_json::Value>,
    /// Why the check is `error`/`timeout`, or a note (e.g. too little history).
    pub message: Option<String>,
    pub measured_at: DateTime<Utc>,
}

/// One run (a row of `_walaudit/check_runs` and its results).
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    pub run_id: String,
    pub job: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: Status,
    pub error: Option<String>,
    pub trigger: Trigger,
    pub results: Vec<CheckResult>,
    /// Incremental runs: the `_lsn` measured up to.
    pub lsn_high: Option<i64>,
    /// Statements sent to the targets.
    pub statements: usize,
}

/// A fresh run id: time-ordered and unique.
pub fn new_run_id(at: DateTime<Utc>) -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}-{:08x}-{seq:04x}",
        at.format("%Y%m%dT%H%M%S%.6fZ"),
        (crate::clock::unix_nanos() as u32) ^ std::process::id()
    )
}

struct Runner<'a> {
    job: &'a Job,
    targets: &'a Targets,
    deadline: Instant,
    vars: Vars,
    statements: usize,
}

enum Failure {
    Timeout(String),
    Error(String),
}

impl From<SqlError> for Failure {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Timeout { .. } => Failure::Timeout(e.to_string()),
            other => Failure::Error(other.to_string()),
        }
    }
}

impl Runner<'_> {
    fn target(&self, name: &str) -> Result<&Arc<dyn ReadOnlySql>, Failure> {
        self.targets.get(name).ok_or_else(|| {
            Failure::Error(format!(
                "connection `{name}` is not open: check its [connections.{name}] url in the config"
            ))
        })
    }

    async fn query(
        &mut self,
        connection: &str,
        sql: &str,
    ) -> Result<crate::sql::ResultSet, Failure> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::Timeout(format!(
                "the job's timeout of {}s was spent before this check ran",
                self.job.timeout.as_secs()
            )));
        }
        let target = self.target(connection)?.clone();
        self.statements += 1;
        Ok(target.query(sql, &Limits::with_deadline(left)).await?)
    }
}

/// Runs `job` now (at `started_at`), as scheduled for `scheduled_at`.
pub async fn run_job(
    job: &Job,
    targets: &Targets,
    history: &dyn History,
    scheduled_at: DateTime<Utc>,
    trigger: Trigger,
    now: &(dyn Fn() -> DateTime<Utc> + Send + Sync),
) -> RunOutcome {
    let started_at = now();
    let mut vars = Vars::window(job.window, scheduled_at);
    let mut error = None;
    if job.incremental {
        match history.last_lsn(&job.name).await {
            Ok(prev) => vars.after_lsn = Some(prev.unwrap_or(-1)),
            Err(e) => error = Some(format!("the run history cannot be read: {e}")),
        }
    }
    let mut r = Runner {
        job,
        targets,
        deadline: Instant::now() + job.timeout,
        vars,
        statements: 0,
    };
    let mut measured: Vec<Option<Result<Option<f64>, Failure>>> =
        job.checks.iter().map(|_| None).collect();
    let mut lsn_high = r.vars.after_lsn.filter(|l| *l >= 0);
    let mut extra: HashMap<usize, serde_json::Value> = HashMap::new();
    // Samples measured with the value (duplicates), kept if the check does not pass.
    let mut ready: HashMap<usize, serde_json::Value> = HashMap::new();
    // Notes on how a value was measured.
    let mut notes: HashMap<usize, String> = HashMap::new();

    if let Some(e) = &error {
        for m in measured.iter_mut() {
            *m = Some(Err(Failure::Error(e.clone())));
        }
    } else {
        scan(&mut r, &mut measured, &mut lsn_high, now).await;
        for (i, check) in job.checks.iter().enumerate() {
            if measured[i].is_some() || matches!(check.kind, CheckKind::Anomaly { .. }) {
                continue;
            }
            let m = match &check.kind {
                CheckKind::Duplicate { columns } => match unique_index(&mut r, columns).await {
                    Some(index) => {
                        notes.insert(
                            i,
                            format!(
                                "no duplicate can exist: the valid unique index {index} covers \
                                 ({})",
                                columns.join(", ")
                            ),
                        );
                        Ok(Some(0.0))
                    }
                    None => duplicates(&mut r, check, &mut ready, i).await,
                },
                _ => measure_one(&mut r, check, history, &mut extra, i).await,
            };
            measured[i] = Some(m);
        }
    }

    let mut results = Vec::with_capacity(job.checks.len());
    for (i, check) in job.checks.iter().enumerate() {
        if matches!(check.kind, CheckKind::Anomaly { .. }) {
            results.push(None);
            continue;
        }
        let m = measured[i].take().unwrap_or(Ok(None));
        let mut res = judge(check, m, now());
        if let Some(note) = notes.remove(&i) {
            res.message = Some(note);
        }
        results.push(Some(res));
    }
    // Samples for checks that did not pass.
    for (i, check) in job.checks.iter().enumerate() {
        let Some(res) = results[i].as_mut() else {
            continue;
        };
        if let Some(s) = extra.remove(&i) {
            res.samples = Some(s);
        }
        if check.samples == 0 || !matches!(res.status, Status::Fail | Status::Warn) {
            continue;
        }
        if let Some(s) = ready.remove(&i) {
            res.samples = Some(s);
            continue;
        }
        if let Some(q) = sql::samples(job, check, &r.vars, check.samples)
            && let Ok(rows) = r.query(&job.connection, &q).await
        {
            res.samples = Some(values::rows_json(&rows));
        }
    }
    // Anomaly checks, over the values just measured and the history.
    for (i, check) in job.checks.iter().enumerate() {
        if let CheckKind::Anomaly { of, .. } = &check.kind {
            let current = job
                .checks
                .iter()
                .position(|c| &c.name == of)
                .and_then(|j| results[j].as_ref())
                .and_then(|res| res.value);
            results[i] =
                Some(anomaly::judge(job, check, current, history, started_at, now()).await);
        }
    }
    let results: Vec<CheckResult> = results.into_iter().flatten().collect();
    let status = results
        .iter()
        .map(|r| r.status)
        .max()
        .unwrap_or(Status::Pass);
    RunOutcome {
        run_id: new_run_id(started_at),
        job: job.name.clone(),
        scheduled_at,
        started_at,
        finished_at: now(),
        status,
        error,
        trigger,
        results,
        lsn_high,
        statements: r.statements,
    }
}

/// The merged scan: every row-level metric of the job in one query.
async fn scan(
    r: &mut Runner<'_>,
    measured: &mut [Option<Result<Option<f64>, Failure>>],
    lsn_high: &mut Option<i64>,
    now: &(dyn Fn() -> DateTime<Utc> + Send + Sync),
) {
    let Some((q, measures)) = sql::merged_scan(r.job, &r.vars) else {
        return;
    };
    let checks: HashSet<usize> = measures
        .iter()
        .filter_map(|(m, _)| match m {
            sql::Measure::Count { check } | sql::Measure::Max { check } => Some(*check),
            _ => None,
        })
        .collect();
    let batch = match r.query(&r.job.connection.clone(), &q).await {
        Ok(rows) => rows.concat().map_err(|e| Failure::Error(e.to_string())),
        Err(e) => Err(e),
    };
    let batch = match batch {
        Ok(b) => b,
        Err(e) => {
            for i in checks {
                measured[i] = Some(Err(match &e {
                    Failure::Timeout(m) => Failure::Timeout(m.clone()),
                    Failure::Error(m) => Failure::Error(m.clone()),
                }));
            }
            return;
        }
    };
    let mut counts: HashMap<usize, Option<f64>> = HashMap::new();
    let mut denominators: HashMap<usize, Option<f64>> = HashMap::new();
    for &(ref m, col) in &measures {
        match m {
            sql::Measure::Count { check } => {
                counts.insert(*check, values::number_at(&batch, col).unwrap_or(None));
            }
            sql::Measure::Denominator { check } => {
                denominators.insert(*check, values::number_at(&batch, col).unwrap_or(None));
            }
            sql::Measure::Max { check } => {
                measured[*check] = Some(match values::micros_at(&batch, col) {
                    Ok(Some(max)) => {
                        let age = now().timestamp_micros() - max;
                        Ok(Some(age as f64 / 1e6))
                    }
                    // No rows: nothing is fresh.
                    Ok(None) => Ok(None),
                    Err(e) => Err(Failure::Error(e)),
                });
            }
            sql::Measure::MaxLsn => {
                if let Ok(Some(l)) = values::number_at(&batch, col) {
                    *lsn_high = Some(lsn_high.unwrap_or(-1).max(l as i64));
                }
            }
        }
    }
    for (check, count) in counts {
        let value = match (&r.job.checks[check].kind, denominators.get(&check)) {
            (
                CheckKind::Missing {
                    metric: Metric::Percent,
                    ..
                }
                | CheckKind::Invalid {
                    metric: Metric::Percent,
                    ..
                },
                Some(d),
            ) => match (count, d) {
                // No rows: nothing is missing.
                (_, Some(d)) if *d == 0.0 => Some(0.0),
                (Some(c), Some(d)) => Some(c / d * 100.0),
                _ => None,
            },
            _ => count.or(Some(0.0)),
        };
        measured[check] = Some(Ok(value));
    }
}

/// On Postgres, a valid, non-partial unique index on plain columns, all among `columns`, of the
/// job's dataset (a table): then no two rows share a tuple of `columns` and the check needs no
/// scan. `None` when there is none, the dataset is not a table, or the catalog cannot be read.
async fn unique_index(r: &mut Runner<'_>, columns: &[String]) -> Option<String> {
    let target = r.targets.get(&r.job.connection)?;
    if target.dialect() != crate::sql::Dialect::Postgres {
        return None;
    }
    let q = sql::unique_index_query(&r.job.dataset, columns);
    let rows = r.query(&r.job.connection.clone(), &q).await.ok()?;
    values::strings(&rows, 0).ok()?.into_iter().flatten().next()
}

/// A duplicate check: its value and its worst groups from one query.
async fn duplicates(
    r: &mut Runner<'_>,
    check: &Check,
    ready: &mut HashMap<usize, serde_json::Value>,
    index: usize,
) -> Result<Option<f64>, Failure> {
    let q = sql::measure(r.job, check, &r.vars).expect("a duplicate check has a query");
    let rows = r.query(&r.job.connection.clone(), &q).await?;
    let Some(first) = rows.batches.first() else {
        return Ok(Some(0.0));
    };
    let total = values::number_at(first, first.num_columns() - 1).map_err(Failure::Error)?;
    let mut samples = values::rows_json(&rows);
    if let Some(groups) = samples.as_array_mut() {
        for g in groups
            .iter_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            g.remove(sql::DUPLICATES_TOTAL);
        }
    }
    ready.insert(index, samples);
    Ok(total.or(Some(0.0)))
}

async fn measure_one(
    r: &mut Runner<'_>,
    check: &Check,
    history: &dyn History,
    extra: &mut HashMap<usize, serde_json::Value>,
    index: usize,
) -> Result<Option<f64>, Failure> {
    let job = r.job;
    let conn = job.connection.clone();
    match &check.kind {
        CheckKind::Compare {
            query,
            against,
            against_connection,
            as_,
        } => {
            let a = values::single_number(&r.query(&conn, &r.vars.expand(query)).await?)
                .map_err(|e| Failure::Error(format!("`query`: {e}")))?;
            let other = against_connection.clone().unwrap_or(conn);
            let b = values::single_number(&r.query(&other, &r.vars.expand(against)).await?)
                .map_err(|e| Failure::Error(format!("`against`: {e}")))?;
            extra.insert(index, serde_json::json!({"query": a, "against": b}));
            Ok(match (a, b) {
                (Some(a), Some(b)) => match as_ {
                    CompareAs::Difference => Some(a - b),
                    CompareAs::Ratio if b != 0.0 => Some(a / b),
                    CompareAs::PercentChange if b != 0.0 => Some((a - b) / b * 100.0),
                    _ => None,
                },
                _ => None,
            })
        }
        CheckKind::Reference {
            columns,
            dataset,
            ref_columns,
            connection: Some(other),
        } => {
            let mine = r
                .query(&conn, &sql::reference_keys(job, check, &r.vars, columns))
                .await?;
            let theirs = r
                .query(other, &sql::referenced_keys(dataset, ref_columns))
                .await?;
            let known: HashSet<Vec<String>> = values::text_rows(&theirs, false)
                .map_err(Failure::Error)?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let mut missing = 0u64;
            let mut sample = Vec::new();
            for (key, n) in values::text_rows(&mine, true).map_err(Failure::Error)? {
                if !known.contains(&key) {
                    missing += n;
                    if sample.len() < check.samples {
                        sample.push(serde_json::json!({"key": key, "rows": n}));
                    }
                }
            }
            if missing > 0 {
                extra.insert(index, serde_json::Value::Array(sample));
            }
            Ok(Some(missing as f64))
        }
        CheckKind::Schema {
            required,
            forbidden,
            fail_on_change,
        } => {
            let probe = r.query(&conn, &sql::columns_probe(job)).await?;
            let previous = if *fail_on_change {
                history
                    .last_samples(&job.name, &check.name)
                    .await
                    .map_err(Failure::Error)?
                    .and_then(|v| v.get("columns").cloned())
                    .and_then(|v| serde_json::from_value::<Vec<super::schema::Column>>(v).ok())
            } else {
                None
            };
            let problems =
                super::schema::violations(&probe.schema, required, forbidden, previous.as_deref());
            extra.insert(
                index,
                serde_json::json!({
                    "columns": super::schema::columns(&probe.schema),
                    "violations": problems,
                }),
            );
            Ok(Some(problems.len() as f64))
        }
        _ => match sql::measure(job, check, &r.vars) {
            Some(q) => {
                let rows = r.query(&conn, &q).await?;
                values::single_number(&rows).map_err(Failure::Error)
            }
            None => Ok(None),
        },
    }
}

fn judge(check: &Check, m: Result<Option<f64>, Failure>, at: DateTime<Utc>) -> CheckResult {
    let threshold = match &check.warn {
        Some(w) => format!("{}; warn: {w}", check.fail),
        None => check.fail.to_string(),
    };
    let (status, value, message) = match m {
        Err(Failure::Timeout(m)) => (Status::Timeout, None, Some(m)),
        Err(Failure::Error(m)) => (Status::Error, None, Some(m)),
        Ok(v) => {
            let status = if !check.fail.holds(v) {
                Status::Fail
            } else if check.warn.as_ref().is_some_and(|w| !w.holds(v)) {
                Status::Warn
            } else {
                Status::Pass
            };
            let note = v
                .is_none()
                .then(|| "no value was measured (no rows?)".to_owned());
            (status, v, note)
        }
    };
    CheckResult {
        check: check.name.clone(),
        type_name: check.kind.type_name(),
        status,
        value,
        threshold,
        samples: None,
        message,
        measured_at: at,
    }
}
