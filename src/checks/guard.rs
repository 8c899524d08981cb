//! The `EXPLAIN` guard: a job on a Postgres connection is planned, not run, before it is
//! accepted, and refused when a query would read a large table whole or join many tables.
//!
//! ```text
//!  job ─► every query its run would send (the same builders as a run: the merged scan, one
//!         query per other check, the samples queries, the columns probe; a window expands to
//!         the one ending now) ─► on each Postgres connection: EXPLAIN (FORMAT JSON, VERBOSE)
//!     ─► walk the plan: Seq Scan nodes, join nodes (Nested Loop, Hash Join, Merge Join)
//!     ─► a Seq Scan of a relation above checks.max_scan_rows (the larger of pg_class.reltuples
//!        and the plan's estimate), or more joins than checks.max_joins ─► refused, with the
//!        plan line from EXPLAIN's text form
//! ```
//!
//! # What is guarded
//! * Every query of the job, as the contract says: the merged scan too. A job measuring a
//!   whole large table (a `row_count` without a filter over 2M rows) *is* a full scan and is
//!   refused; narrow it with a filter on an indexed column (the job's `filter`, or a filter on
//!   every scan check, which the merged scan then applies as its WHERE), a `window` over an
//!   indexed time column, or accept the scan with `allow_full_scan: true` on the job.
//! * Queries on other connections (`references.connection`, `against_connection`) are
//!   guarded when those are Postgres connections too.
//! * A Seq Scan directly below a `Limit` (through a `Gather`) and without a filter of its own
//!   reads only the limit's rows (the columns probe, `LIMIT 0`); it is not refused.
//! * Lake jobs are not guarded: DataFusion reads files, and there is no such plan to judge.
//! * `allow_full_scan: true` skips the job.
//!
//! Nothing here runs a job's query: `EXPLAIN` without `ANALYZE` only plans it, through the
//! same read-only seam.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::config::ChecksConfig;
use super::model::{Job, Origin};
use super::run::Targets;
use super::run::sql::{self, Vars};
use super::run::values::strings;
use crate::source::quote::quote_literal;
use crate::sql::{Dialect, Limits, ReadOnlySql, ResultSet, SqlError};

/// The longest one `EXPLAIN` may take.
const EXPLAIN_DEADLINE: Duration = Duration::from_secs(30);

/// What to do with a query that cannot be planned (the SQL is wrong, a table is missing, the
/// connection is down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unplanned {
    /// Report it (`check validate`).
    Report,
    /// Leave it to the run, which records the check as `error` (`check run`).
    LeaveToRun,
}

/// One problem the guard found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The job's file (or `api`).
    pub file: String,
    /// The line of the (first) check the query measures, else of the job.
    pub line: u32,
    pub job: String,
    /// The checks the query measures (several for the merged scan).
    pub checks: Vec<String>,
    /// What the plan does and what to do.
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: job `{}`", self.file, self.line, self.job)?;
        match self.checks.as_slice() {
            [] => {}
            [one] => write!(f, ", check `{one}`")?,
            many => write!(
                f,
                ", checks {} (one merged scan)",
                many.iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem the guard found in a set of jobs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct GuardErrors(pub Vec<Refusal>);

impl fmt::Display for GuardErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the EXPLAIN guard found {n} problem{} (no job ran; fix {} and run `walaudit check \
             validate`):",
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" }
        )?;
        for r in &self.0 {
            write!(f, "\n  {r}")?;
        }
        Ok(())
    }
}

/// One query a run of the job would send.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub connection: String,
    /// Indices of the checks it measures.
    pub checks: Vec<usize>,
    pub sql: String,
}

/// Every query a run of `job` at `at` would send (samples included), in run order.
pub fn queries(job: &Job, at: chrono::DateTime<chrono::Utc>) -> Vec<Planned> {
    use super::model::CheckKind;
    let vars = Vars::window(job.window, at);
    let conn = job.connection.clone();
    let mut out = Vec::new();
    let mut push = |connection: &str, checks: Vec<usize>, sql: String| {
        out.push(Planned {
            connection: connection.to_owned(),
            checks,
            sql,
        })
    };
    if let Some((q, _)) = sql::merged_scan(job, &vars) {
        let scan: Vec<usize> = (0..job.checks.len())
            .filter(|i| job.checks[*i].kind.is_scan_metric())
            .collect();
        push(&conn, scan, q);
    }
    for (i, check) in job.checks.iter().enumerate() {
        match &check.kind {
            CheckKind::Compare {
                query,
                against,
                against_connection,
                ..
            } => {
                push(&conn, vec![i], vars.expand(query));
                let other = against_connection.as_deref().unwrap_or(&conn);
                push(other, vec![i], vars.expand(against));
            }
            CheckKind::Reference {
                columns,
                dataset,
                ref_columns,
                connection: Some(other),
            } => {
                push(
                    &conn,
                    vec![i],
                    sql::reference_keys(job, check, &vars, columns),
                );
                push(other, vec![i], sql::referenced_keys(dataset, ref_columns));
            }
            CheckKind::Schema { .. } => push(&conn, vec![i], sql::columns_probe(job)),
            _ => {
                if let Some(q) = sql::measure(job, check, &vars) {
                    push(&conn, vec![i], q);
                }
            }
        }
    }
    for (i, check) in job.checks.iter().enumerate() {
        if check.samples > 0
            && let Some(q) = sql::samples(job, check, &vars, check.samples)
        {
            push(&conn, vec![i], q);
        }
    }
    out
}

/// A sequential scan in a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    pub schema: Option<String>,
    pub relation: String,
    /// The plan's row estimate (after the scan's filter).
    pub plan_rows: f64,
    /// Reads only a `Limit`'s rows: directly below a `Limit` and without a filter.
    pub bounded: bool,
    /// The how-manieth Seq Scan of this relation name in plan order (0-based).
    pub occurrence: usize,
}

/// What the guard reads from a plan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanFacts {
    pub scans: Vec<Scan>,
    /// Nested Loop, Hash Join and Merge Join nodes.
    pub joins: usize,
}

/// The facts of an `EXPLAIN (FORMAT JSON)` document.
pub fn plan_facts(doc: &Value) -> PlanFacts {
    fn walk(node: &Value, under_limit: bool, facts: &mut PlanFacts) {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        match kind {
            "Seq Scan" => {
                let relation = node["Relation Name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let occurrence = facts
                    .scans
                    .iter()
                    .filter(|s| s.relation == relation)
                    .count();
                facts.scans.push(Scan {
                    schema: node["Schema"].as_str().map(str::to_owned),
                    plan_rows: node["Plan Rows"].as_f64().unwrap_or(0.0),
                    bounded: under_limit && node.get("Filter").is_none(),
                    relation,
                    occurrence,
                });
            }
            "Nested Loop" | "Hash Join" | "Merge Join" => facts.joins += 1,
            _ => {}
        }
        let limit = kind == "Limit" || (under_limit && kind.starts_with("Gather"));
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, limit, facts);
        }
    }
    let mut facts = PlanFacts::default();
    for stmt in doc.as_array().into_iter().flatten() {
        walk(&stmt["Plan"], false, &mut facts);
    }
    facts
}

/// Runs the guard over `jobs`: every problem at once, or `Ok` when every query may run.
pub async fn guard_jobs(
    jobs: &[Job],
    targets: &Targets,
    limits: &ChecksConfig,
    unplanned: Unplanned,
) -> Result<(), GuardErrors> {
    let mut all = Vec::new();
    let at = chrono::Utc::now();
    for job in jobs {
        all.extend(guard_job(job, targets, limits, unplanned, at).await);
    }
    if all.is_empty() {
        Ok(())
    } else {
        all.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(GuardErrors(all))
    }
}

/// The problems of one job planned for a run at `at`; none for lake jobs and jobs with
/// `allow_full_scan: true`.
pub async fn guard_job(
    job: &Job,
    targets: &Targets,
    limits: &ChecksConfig,
    unplanned: Unplanned,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<Refusal> {
    let mut out: Vec<Refusal> = Vec::new();
    if job.allow_full_scan {
        return out;
    }
    let file = match &job.origin {
        Origin::File(path) => path.clone(),
        Origin::Api => "api".into(),
    };
    let deadline = Limits::with_deadline(EXPLAIN_DEADLINE.min(job.timeout));
    let mut refused: Vec<usize> = Vec::new();
    let mut down: Vec<String> = Vec::new();
    for q in queries(job, at) {
        let Some(target) = targets
            .get(&q.connection)
            .filter(|t| t.dialect() == Dialect::Postgres)
        else {
            continue;
        };
        // A check already refused is reported once (its samples read the same rows).
        if q.checks.iter().all(|c| refused.contains(c)) || down.contains(&q.connection) {
            continue;
        }
        let refusal = |message: String| Refusal {
            file: file.clone(),
            line: q.checks.first().map_or(job.line, |c| job.checks[*c].line),
            job: job.name.clone(),
            checks: q
                .checks
                .iter()
                .map(|c| job.checks[*c].name.clone())
                .collect(),
            message,
        };
        match judge(target.as_ref(), &q, limits, &deadline).await {
            Ok(None) => {}
            Ok(Some(message)) => {
                refused.extend(&q.checks);
                out.push(refusal(message));
            }
            Err(e) if unplanned == Unplanned::Report => {
                if matches!(e, SqlError::Connection { .. } | SqlError::Timeout { .. }) {
                    down.push(q.connection.clone());
                }
                refused.extend(&q.checks);
                out.push(refusal(format!(
                    "`EXPLAIN` of its query on connection `{}` failed, so it cannot be judged: \
                     {e}",
                    q.connection
                )));
            }
            Err(_) => {}
        }
    }
    out
}

/// `Some(why)` when the plan of `q` is refused.
async fn judge(
    target: &dyn ReadOnlySql,
    q: &Planned,
    limits: &ChecksConfig,
    deadline: &Limits,
) -> Result<Option<String>, SqlError> {
    let explained = target
        .query(
            &format!("EXPLAIN (FORMAT JSON, VERBOSE) {}", q.sql),
            deadline,
        )
        .await?;
    let doc: Value = strings(&explained, 0)
        .ok()
        .and_then(|rows| rows.into_iter().flatten().next())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    let facts = plan_facts(&doc);
    let max = limits.max_scan_rows as f64;
    let mut big: Option<(&Scan, f64)> = facts
        .scans
        .iter()
        .filter(|s| !s.bounded && s.plan_rows > max)
        .map(|s| (s, s.plan_rows))
        .next();
    if big.is_none() {
        let small: Vec<&Scan> = facts.scans.iter().filter(|s| !s.bounded).collect();
        if !small.is_empty() {
            let sizes = reltuples(target, &small, deadline).await?;
            big = small
                .into_iter()
                .zip(sizes)
                .map(|(s, size)| (s, size.max(s.plan_rows)))
                .find(|(_, size)| *size > max);
        }
    }
    if let Some((scan, size)) = big {
        let name = match &scan.schema {
            Some(s) => format!("{s}.{}", scan.relation),
            None => scan.relation.clone(),
        };
        let line = text_line(target, &q.sql, deadline, |l| seq_scan_on(l, &scan.relation))
            .await
            .and_then(|lines| lines.into_iter().nth(scan.occurrence))
            .unwrap_or_else(|| {
                format!(
                    "Seq Scan on {}  (rows={:.0})",
                    scan.relation, scan.plan_rows
                )
            });
        return Ok(Some(format!(
            "the plan on connection `{}` reads all of {name} (about {size:.0} rows, more than \
             checks.max_scan_rows = {}): `{line}`: add a filter on an indexed column (the job's \
             `filter`, or one on each of its row_count/missing/invalid/freshness checks), a \
             `window` with a filter on an indexed time column, or set `allow_full_scan: true` \
             on the job",
            q.connection, limits.max_scan_rows
        )));
    }
    if facts.joins > limits.max_joins {
        let line = text_line(target, &q.sql, deadline, is_join)
            .await
            .and_then(|lines| lines.into_iter().next())
            .unwrap_or_else(|| "Join".into());
        return Ok(Some(format!(
            "the plan on connection `{}` has {} joins, more than checks.max_joins = {}: `{line}` \
             is the first: join fewer tables (split the query into checks), or set \
             `allow_full_scan: true` on the job",
            q.connection, facts.joins, limits.max_joins
        )));
    }
    Ok(None)
}

/// `pg_class.reltuples` of each scan's relation (-1 when unknown).
async fn reltuples(
    target: &dyn ReadOnlySql,
    scans: &[&Scan],
    deadline: &Limits,
) -> Result<Vec<f64>, SqlError> {
    let rows: Vec<String> = scans
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let schema = match &s.schema {
                Some(n) => format!("n.nspname = {}", quote_literal(n)),
                None => "pg_catalog.pg_table_is_visible(c.oid)".into(),
            };
            format!(
                "SELECT {i} AS i, max(c.reltuples)::float8 AS n FROM pg_catalog.pg_class c JOIN \
                 pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = {} AND \
                 {schema}",
                quote_literal(&s.relation)
            )
        })
        .collect();
    let result = target.query(&rows.join(" UNION ALL "), deadline).await?;
    let index = strings(&result, 0).unwrap_or_default();
    let sizes = strings(&result, 1).unwrap_or_default();
    let mut out = vec![-1.0; scans.len()];
    for (i, n) in index.into_iter().zip(sizes) {
        if let (Some(i), Some(n)) = (i.and_then(|i| i.parse::<usize>().ok()), n) {
            out[i] = n.parse().unwrap_or(-1.0);
        }
    }
    Ok(out)
}

/// The lines of `EXPLAIN`'s text form of `sql` that `keep` keeps, trimmed of the tree
/// drawing; `None` when it cannot be had.
async fn text_line(
    target: &dyn ReadOnlySql,
    sql: &str,
    deadline: &Limits,
    keep: impl Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let result: ResultSet = target
        .query(&format!("EXPLAIN {sql}"), deadline)
        .await
        .ok()?;
    let lines = strings(&result, 0).ok()?;
    Some(
        lines
            .into_iter()
            .flatten()
            .map(|l| l.trim().trim_start_matches("->").trim().to_owned())
            .filter(|l| keep(l))
            .collect(),
    )
}

fn seq_scan_on(line: &str, relation: &str) -> bool {
    let quoted = format!("\"{}\"", relation.replace('"', "\"\""));
    [relation, quoted.as_str()].iter().any(|r| {
        let head = format!("Seq Scan on {r}");
        line.split_once(&head).is_some_and(|(before, after)| {
            (before.is_empty() || before == "Parallel ") && after.starts_with(' ')
        })
    })
}

fn is_join(line: &str) -> bool {
    let head = line.split("  (").next().unwrap_or_default();
    head.starts_with("Nested Loop") || (head.ends_with(" Join") && !head.contains(" on "))
}

#[cfg(test)]
mod tests;
