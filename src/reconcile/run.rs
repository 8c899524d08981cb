//! One reconciliation run: resolve the columns of both sides, count the windows on both (one
//! grouped query each), judge them, then find the differing keys when asked.
//!
//! ```text
//!  probe both sides (no rows) ─► key / compared / time columns, by kind ─► count windows
//!  (one query per side, at once) ─► match | mismatch | in flight (newer than now − grace)
//!  ─► diff (on_mismatch: inside the mismatching windows; always: every judged window)
//!  ─► RunReport (the transfer audit record's content)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::{Field, SchemaRef};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::bisect::{self, DiffResult, Pair};
use super::model::{DiffMode, Pipeline, Reconciliation};
use super::sql::{self, Col, Kind, SideSql};
use crate::checks::run::values::strings;
use crate::sql::{Dialect, Limits, PG_TYPE_KEY, ReadOnlySql};

pub use crate::checks::run::Targets;

/// A window's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowStatus {
    Match,
    Mismatch,
    /// Newer than now − grace: rows may still be on their way; not judged.
    InFlight,
}

impl WindowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowStatus::Match => "match",
            WindowStatus::Mismatch => "mismatch",
            WindowStatus::InFlight => "in_flight",
        }
    }
}

/// One window's counts (epoch seconds; `None`: the whole table).
#[derive(Clone, Debug, PartialEq)]
pub struct WindowResult {
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub source: u64,
    pub target: u64,
    pub status: WindowStatus,
}

/// A run's overall verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Match,
    Mismatch,
    Error,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Match => "match",
            RunStatus::Mismatch => "mismatch",
            RunStatus::Error => "error",
        }
    }
}

/// What one run found.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub job_id: String,
    pub reconciliation: String,
    pub pipeline: Pipeline,
    pub source_system: String,
    pub target_system: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub windows: Vec<WindowResult>,
    pub diff: Option<DiffResult>,
    pub status: RunStatus,
    pub error: Option<String>,
    pub alert_triggered: bool,
}

/// What to run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Overrides the job's `diff`.
    pub diff: Option<DiffMode>,
    /// Only the window starting at this epoch second.
    pub window: Option<i64>,
}

struct Resolved {
    source: SideSql,
    target: SideSql,
    key_names: Vec<String>,
    value_names: Vec<String>,
    time: Option<(Col, Option<String>, Col, Option<String>)>,
}

fn system(targets: &Targets, connection: &str, dataset: &str) -> String {
    let kind = match targets.get(connection).map(|t| t.dialect()) {
        Some(Dialect::DataFusion) => "lake",
        _ => "postgres",
    };
    format!("{kind}:{connection}/{dataset}")
}

/// Runs `rec` now.
pub async fn run(rec: &Reconciliation, targets: &Targets, options: RunOptions) -> RunReport {
    let started_at = Utc::now();
    let mut report = RunReport {
        job_id: crate::checks::run::new_run_id(started_at).replacen('-', "-rec-", 1),
        reconciliation: rec.name.clone(),
        pipeline: rec.pipeline,
        source_system: system(targets, &rec.source.connection, &rec.source.dataset),
        target_system: system(targets, &rec.target.connection, &rec.target.dataset),
        started_at,
        finished_at: started_at,
        windows: Vec::new(),
        diff: None,
        status: RunStatus::Match,
        error: None,
        alert_triggered: false,
    };
    let deadline = Instant::now() + rec.timeout;
    match run_inner(rec, targets, options, deadline, &mut report).await {
        Ok(()) => {
            let mismatch = report
                .windows
                .iter()
                .any(|w| w.status == WindowStatus::Mismatch)
                || report
                    .diff
                    .as_ref()
                    .is_some_and(|d| d.missing + d.extra + d.changed > 0);
            report.status = if mismatch {
                RunStatus::Mismatch
            } else {
                RunStatus::Match
            };
        }
        Err(e) => {
            report.status = RunStatus::Error;
            report.error = Some(e);
        }
    }
    report.finished_at = Utc::now();
    report
}

async fn run_inner(
    rec: &Reconciliation,
    targets: &Targets,
    options: RunOptions,
    deadline: Instant,
    report: &mut RunReport,
) -> Result<(), String> {
    let handle = |name: &str| {
        targets.get(name).cloned().ok_or_else(|| {
            format!("connection `{name}` is not open: check its [connections.{name}] url")
        })
    };
    let (src, tgt) = (
        handle(&rec.source.connection)?,
        handle(&rec.target.connection)?,
    );
    let limits = || Limits::with_deadline(deadline.saturating_duration_since(Instant::now()));
    let (ps, pt) = both(
        (&src, sql::probe(&rec.source.dataset)),
        (&tgt, sql::probe(&rec.target.dataset)),
        limits(),
    )
    .await;
    let ps = ps.map_err(|e| format!("the source `{}`: {e}", rec.source.dataset))?;
    let pt = pt.map_err(|e| format!("the target `{}`: {e}", rec.target.dataset))?;
    let resolved = resolve(rec, &src, &tgt, &ps.schema, &pt.schema)?;
    let now = Utc::now().timestamp();

    // Count windows.
    let width = rec.window.as_secs().max(1) as i64;
    let lower = match (rec.pipeline, options.window) {
        (_, Some(w)) => Some(w),
        (Pipeline::Incremental, None) => {
            Some((now - rec.lookback.as_secs() as i64).div_euclid(width) * width)
        }
        (Pipeline::Historical, None) => None,
    };
    let upper = options.window.map(|w| w + width);
    let in_flight_after = now - rec.grace.as_secs() as i64;
    if let Some((scol, stype, tcol, ttype)) = &resolved.time {
        let bounds = |d: Dialect, c: &Col, t: &Option<String>| {
            let mut b = Vec::new();
            if let Some(l) = lower {
                b.push(sql::time_bound(d, c, t.as_deref(), ">=", l));
            }
            if let Some(u) = upper {
                b.push(sql::time_bound(d, c, t.as_deref(), "<", u));
            }
            b
        };
        let sq = sql::count_windows(
            src.dialect(),
            &rec.source.dataset,
            scol,
            width as u64,
            &bounds(src.dialect(), scol, stype),
        );
        let tq = sql::count_windows(
            tgt.dialect(),
            &rec.target.dataset,
            tcol,
            width as u64,
            &bounds(tgt.dialect(), tcol, ttype),
        );
        let (s, t) = both((&src, sq), (&tgt, tq), limits()).await;
        let s = window_counts(&s.map_err(|e| format!("counting the source's windows: {e}"))?)?;
        let t = window_counts(&t.map_err(|e| format!("counting the target's windows: {e}"))?)?;
        let mut all: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for (w, n) in s {
            all.entry(w).or_default().0 = n;
        }
        for (w, n) in t {
            all.entry(w).or_default().1 = n;
        }
        for (w, (a, b)) in all {
            let status = if w + width > in_flight_after {
                WindowStatus::InFlight
            } else if a.abs_diff(b) <= rec.tolerance {
                WindowStatus::Match
            } else {
                WindowStatus::Mismatch
            };
            report.windows.push(WindowResult {
                start: Some(w),
                end: Some(w + width),
                source: a,
                target: b,
                status,
            });
        }
    } else {
        let (s, t) = both(
            (&src, sql::count_all(&rec.source.dataset)),
            (&tgt, sql::count_all(&rec.target.dataset)),
            limits(),
        )
        .await;
        let n = |r: Answer, side: &str| {
            let r = r.map_err(|e| format!("counting the {side}: {e}"))?;
            strings(&r, 0)?
                .first()
                .cloned()
                .flatten()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("the {side}'s count is not a number"))
        };
        let (a, b) = (n(s, "source")?, n(t, "target")?);
        report.windows.push(WindowResult {
            start: None,
            end: None,
            source: a,
            target: b,
            status: if a.abs_diff(b) <= rec.tolerance {
                WindowStatus::Match
            } else {
                WindowStatus::Mismatch
            },
        });
    }

    // The differing keys.
    let mode = options.diff.unwrap_or(rec.diff);
    let judged: Vec<&WindowResult> = report
        .windows
        .iter()
        .filter(|w| w.status != WindowStatus::InFlight)
        .collect();
    let chosen: Vec<&WindowResult> = match mode {
        DiffMode::Never => Vec::new(),
        DiffMode::Always => judged.clone(),
        DiffMode::OnMismatch => judged
            .iter()
            .copied()
            .filter(|w| w.status == WindowStatus::Mismatch)
            .collect(),
    };
    if chosen.is_empty() {
        return Ok(());
    }
    let (mut s_sql, mut t_sql) = (resolved.source, resolved.target);
    if let Some((scol, stype, tcol, ttype)) = &resolved.time {
        let ranges = |d: Dialect, c: &Col, t: &Option<String>| {
            let parts: Vec<String> = chosen
                .iter()
                .filter_map(|w| w.start.zip(w.end))
                .map(|(a, b)| {
                    format!(
                        "({} AND {})",
                        sql::time_bound(d, c, t.as_deref(), ">=", a),
                        sql::time_bound(d, c, t.as_deref(), "<", b)
                    )
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join(" OR "))
        };
        s_sql.filter = ranges(src.dialect(), scol, stype);
        t_sql.filter = ranges(tgt.dialect(), tcol, ttype);
    }
    let pair = Pair {
        source: &src,
        target: &tgt,
        source_sql: &s_sql,
        target_sql: &t_sql,
        key_names: &resolved.key_names,
        value_names: &resolved.value_names,
    };
    let diff = bisect::bisect(&pair, rec.max_diff_keys, deadline)
        .await
        .map_err(|e| format!("finding the differing keys: {e}"))?;
    report.diff = Some(diff);
    Ok(())
}

type Answer = Result<crate::sql::ResultSet, crate::sql::SqlError>;

/// `a` and `b` at once (two systems).
async fn both(
    a: (&Arc<dyn ReadOnlySql>, String),
    b: (&Arc<dyn ReadOnlySql>, String),
    limits: Limits,
) -> (Answer, Answer) {
    tokio::join!(a.0.query(&a.1, &limits), b.0.query(&b.1, &limits))
}

fn window_counts(r: &crate::sql::ResultSet) -> Result<Vec<(i64, u64)>, String> {
    let w = strings(r, 0)?;
    let n = strings(r, 1)?;
    w.into_iter()
        .zip(n)
        .map(|(w, n)| {
            let w = w.and_then(|v| v.parse::<i64>().ok());
            let n = n.and_then(|v| v.parse::<u64>().ok());
            w.zip(n)
                .ok_or_else(|| "a window count that is not a number".to_owned())
        })
        .collect()
}

/// The field of `schema` named `name`: exactly, else the only case-insensitive match.
fn find<'a>(schema: &'a SchemaRef, name: &str) -> Option<&'a Field> {
    let fields = schema.fields();
    if let Some(f) = fields.iter().find(|f| f.name() == name) {
        return Some(f);
    }
    let mut like = fields
        .iter()
        .filter(|f| f.name().eq_ignore_ascii_case(name));
    match (like.next(), like.next()) {
        (Some(f), None) => Some(f),
        _ => None,
    }
}

fn resolve(
    rec: &Reconciliation,
    src: &Arc<dyn ReadOnlySql>,
    tgt: &Arc<dyn ReadOnlySql>,
    s: &SchemaRef,
    t: &SchemaRef,
) -> Result<Resolved, String> {
    let pair = |name: &str| -> Result<(Col, Col), String> {
        let a = find(s, name).ok_or_else(|| {
            format!(
                "the source `{}` has no column `{name}`: check `key`, `columns` and \
                 `time_column`",
                rec.source.dataset
            )
        })?;
        let tname = rec.target_column(name);
        let b = find(t, tname).ok_or_else(|| {
            format!(
                "the target `{}` has no column `{tname}`: map it with `column_map: {{{name}: \
                 TARGET_NAME}}`",
                rec.target.dataset
            )
        })?;
        let col = |f: &Field| Col {
            name: f.name().clone(),
            kind: Kind::of(f),
        };
        Ok((col(a), col(b)))
    };
    let mut key = (Vec::new(), Vec::new());
    for k in &rec.key {
        let (a, b) = pair(k)?;
        key.0.push(a);
        key.1.push(b);
    }
    let value_names: Vec<String> = match &rec.columns {
        Some(cols) => cols.clone(),
        None => s
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !rec.key.contains(n) && find(t, rec.target_column(n)).is_some())
            .collect(),
    };
    let mut values = (Vec::new(), Vec::new());
    for v in &value_names {
        let (a, b) = pair(v)?;
        values.0.push(a);
        values.1.push(b);
    }
    let time = match &rec.time_column {
        None => None,
        Some(tc) => {
            let (a, b) = pair(tc)?;
            for c in [&a, &b] {
                if !matches!(c.kind, Kind::Timestamp(_) | Kind::Date) {
                    return Err(format!(
                        "`time_column: {tc}` is not a timestamp or date column: windows need \
                         one"
                    ));
                }
            }
            let pg = |schema: &SchemaRef, c: &Col| {
                find(schema, &c.name).and_then(|f| f.metadata().get(PG_TYPE_KEY).cloned())
            };
            let (sa, sb) = (pg(s, &a), pg(t, &b));
            Some((a, sa, b, sb))
        }
    };
    Ok(Resolved {
        source: SideSql {
            dialect: src.dialect(),
            dataset: rec.source.dataset.clone(),
            key: key.0,
            values: values.0,
            filter: None,
        },
        target: SideSql {
            dialect: tgt.dialect(),
            dataset: rec.target.dataset.clone(),
            key: key.1,
            values: values.1,
            filter: None,
        },
        key_names: rec.key.clone(),
        value_names,
        time,
    })
}
