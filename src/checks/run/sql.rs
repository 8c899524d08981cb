//! The SQL a run sends: one merged scan for the job's per-row metrics, one query for each
//! check that needs its own shape (duplicates, groups, references, your queries), and sample
//! queries for checks that did not pass.
//!
//! Everything here is text the user wrote (datasets, filters, expressions, queries) joined
//! with quoted identifiers and literals; it reaches the target only through the read-only
//! seam. The SQL is the subset Postgres and DataFusion read alike.

use crate::checks::model::{Check, CheckKind, Job, Metric, ValidRules};
use crate::source::quote::{quote_ident, quote_literal};

/// The window placeholders' values for one run, ISO 8601 UTC.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    /// Incremental runs: changes after this `_lsn` only.
    pub after_lsn: Option<i64>,
}

impl Vars {
    /// The window placeholders of a run scheduled for `at`: `{window_end}` is `at`,
    /// `{window_start}` is `window` before it; none without a window.
    pub fn window(window: Option<std::time::Duration>, at: chrono::DateTime<chrono::Utc>) -> Vars {
        let mut vars = Vars::default();
        if let Some(w) = window {
            let start = at - chrono::Duration::from_std(w).unwrap_or_default();
            vars.window_start = Some(start.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            vars.window_end = Some(at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        vars
    }

    /// `text` with `{window_start}` and `{window_end}` replaced.
    pub fn expand(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Some(s) = &self.window_start {
            out = out.replace("{window_start}", s);
        }
        if let Some(e) = &self.window_end {
            out = out.replace("{window_end}", e);
        }
        out
    }
}

/// The job's rows: `dataset WHERE job filter [AND _lsn > after]`, as a FROM-able subquery.
pub fn rows(job: &Job, vars: &Vars) -> String {
    let mut conds = Vec::new();
    if let Some(f) = &job.filter {
        conds.push(format!("({})", vars.expand(f)));
    }
    if let Some(lsn) = vars.after_lsn {
        conds.push(format!("\"_lsn\" > {lsn}"));
    }
    if conds.is_empty() {
        format!("(SELECT * FROM {}) AS walaudit_rows", job.dataset)
    } else {
        format!(
            "(SELECT * FROM {} WHERE {}) AS walaudit_rows",
            job.dataset,
            conds.join(" AND ")
        )
    }
}

/// `check filter` as a condition (`TRUE` when none).
fn check_filter(check: &Check, vars: &Vars) -> String {
    match &check.filter {
        Some(f) => format!("({})", vars.expand(f)),
        None => "TRUE".into(),
    }
}

/// The row condition a `missing` or `invalid` check counts; `None` for other types.
pub fn row_condition(kind: &CheckKind) -> Option<String> {
    match kind {
        CheckKind::Missing {
            column,
            missing_values,
            ..
        } => {
            let c = quote_ident(column);
            Some(if missing_values.is_empty() {
                format!("{c} IS NULL")
            } else {
                format!("({c} IS NULL OR {c} IN ({}))", missing_values.join(", "))
            })
        }
        CheckKind::Invalid { column, rules, .. } => {
            let c = quote_ident(column);
            Some(format!("({c} IS NOT NULL AND NOT ({}))", valid(&c, rules)))
        }
        _ => None,
    }
}

fn valid(c: &str, r: &ValidRules) -> String {
    let text = format!("CAST({c} AS VARCHAR)");
    let mut all = Vec::new();
    if !r.values.is_empty() {
        all.push(format!("{c} IN ({})", r.values.join(", ")));
    }
    if let Some(min) = r.min {
        all.push(format!(
            "{c} >= {}",
            crate::checks::threshold::sql_number(min)
        ));
    }
    if let Some(max) = r.max {
        all.push(format!(
            "{c} <= {}",
            crate::checks::threshold::sql_number(max)
        ));
    }
    if let Some(re) = &r.regex {
        all.push(format!("{text} ~ {}", quote_literal(re)));
    }
    if let Some(n) = r.min_length {
        all.push(format!("character_length({text}) >= {n}"));
    }
    if let Some(n) = r.max_length {
        all.push(format!("character_length({text}) <= {n}"));
    }
    if r.not_in_future {
        all.push(format!("{c} <= now()"));
    }
    // NULL from a rule (e.g. a comparison the type cannot make) is not a pass.
    format!("COALESCE({}, FALSE)", all.join(" AND "))
}

/// One column of the merged scan.
#[derive(Clone, Debug, PartialEq)]
pub enum Measure {
    /// Rows of the check's filter meeting its condition (all rows for `row_count`).
    Count { check: usize },
    /// Rows of the check's filter, the denominator of a percent metric.
    Denominator { check: usize },
    /// `max(column)` over the check's filter (freshness).
    Max { check: usize },
    /// `max(_lsn)` of an incremental run.
    MaxLsn,
}

/// The merged scan: one `SELECT` of every per-row metric of the job (row counts, missing,
/// invalid, freshness), and what each output column is (a column several checks measure alike,
/// e.g. the row count of a percent and a `row_count`, is computed once and read by each).
pub fn merged_scan(job: &Job, vars: &Vars) -> Option<(String, Vec<(Measure, usize)>)> {
    let mut exprs: Vec<String> = Vec::new();
    let mut measures = Vec::new();
    let mut column = |expr: String| match exprs.iter().position(|e| *e == expr) {
        Some(i) => i,
        None => {
            exprs.push(expr);
            exprs.len() - 1
        }
    };
    // `COUNT(*) FILTER (WHERE c)`: Postgres and DataFusion skip the rows without evaluating an
    // expression per row, unlike `COUNT(CASE WHEN c THEN 1 END)`.
    let count = |conds: &[&str]| {
        let conds: Vec<&str> = conds.iter().copied().filter(|c| *c != "TRUE").collect();
        if conds.is_empty() {
            "COUNT(*)".to_owned()
        } else {
            format!("COUNT(*) FILTER (WHERE {})", conds.join(" AND "))
        }
    };
    for (i, check) in job.checks.iter().enumerate() {
        if !check.kind.is_scan_metric() {
            continue;
        }
        let f = check_filter(check, vars);
        match &check.kind {
            CheckKind::RowCount => {
                measures.push((Measure::Count { check: i }, column(count(&[&f]))));
            }
            CheckKind::Missing { metric, .. } | CheckKind::Invalid { metric, .. } => {
                let cond = row_condition(&check.kind).unwrap_or_default();
                measures.push((Measure::Count { check: i }, column(count(&[&f, &cond]))));
                if *metric == Metric::Percent {
                    measures.push((Measure::Denominator { check: i }, column(count(&[&f]))));
                }
            }
            CheckKind::Freshness { column: c } => {
                let c = quote_ident(c);
                let expr = if f == "TRUE" {
                    format!("MAX({c})")
                } else {
                    format!("MAX(CASE WHEN {f} THEN {c} END)")
                };
                measures.push((Measure::Max { check: i }, column(expr)));
            }
            _ => {}
        }
    }
    if measures.is_empty() {
        return None;
    }
    if vars.after_lsn.is_some() {
        measures.push((Measure::MaxLsn, column("MAX(\"_lsn\")".into())));
    }
    let cols: Vec<String> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{e} AS m{i}"))
        .collect();
    // When every check has its own filter, a row none of them admits counts nowhere: leave
    // it out, so that filters on indexed columns can narrow the scan (not for incremental
    // runs, whose `_lsn` high-water is over every row).
    let mut filters: Vec<String> = Vec::new();
    let mut all_filtered = vars.after_lsn.is_none();
    for check in job.checks.iter().filter(|c| c.kind.is_scan_metric()) {
        match check.filter {
            Some(_) => {
                let f = check_filter(check, vars);
                if !filters.contains(&f) {
                    filters.push(f);
                }
            }
            None => all_filtered = false,
        }
    }
    let narrow = match all_filtered {
        true => format!(" WHERE {}", filters.join(" OR ")),
        false => String::new(),
    };
    Some((
        format!(
            "SELECT {} FROM {}{narrow}",
            cols.join(", "),
            rows(job, vars)
        ),
        measures,
    ))
}

fn strip(query: &str) -> &str {
    query.trim().trim_end_matches(';').trim_end()
}

fn not_null(cols: &[String]) -> String {
    cols.iter()
        .map(|c| format!("{} IS NOT NULL", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn idents(cols: &[String]) -> String {
    cols.iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The column of a duplicate check's query holding its value (the other columns are samples).
pub const DUPLICATES_TOTAL: &str = "walaudit_total";

/// The query measuring a check that is not part of the merged scan (one row, column `v`;
/// duplicates: their worst groups as samples, see [`DUPLICATES_TOTAL`]),
/// or `None` for checks measured otherwise (scan metrics, schema, anomaly, compare, and
/// references across connections).
pub fn measure(job: &Job, check: &Check, vars: &Vars) -> Option<String> {
    let rows = rows(job, vars);
    let f = check_filter(check, vars);
    Some(match &check.kind {
        // The measure and the samples in one query: the worst groups, each row carrying the
        // total over every group (no row: no duplicates).
        CheckKind::Duplicate { columns } => format!(
            "SELECT {cols}, n AS duplicates, SUM(n) OVER () AS {DUPLICATES_TOTAL} FROM (SELECT \
             {cols}, COUNT(*) AS n FROM {rows} WHERE {f} AND {} GROUP BY {cols} HAVING COUNT(*) \
             > 1) AS walaudit_dups ORDER BY n DESC LIMIT {}",
            not_null(columns),
            check.samples.max(1),
            cols = idents(columns)
        ),
        CheckKind::Aggregate {
            group_by,
            expression,
            each,
        } => format!(
            "SELECT COUNT(*) AS v FROM (SELECT ({expression}) AS walaudit_value FROM {rows} WHERE \
             {f} GROUP BY {}) AS walaudit_groups WHERE NOT {}",
            group_by.join(", "),
            each.sql("walaudit_value")
        ),
        CheckKind::Reference {
            columns,
            dataset,
            ref_columns,
            connection: None,
        } => format!(
            "SELECT COUNT(*) AS v FROM {rows} WHERE {f} AND {} AND NOT EXISTS (SELECT 1 FROM \
             {dataset} AS walaudit_ref WHERE {})",
            not_null(columns),
            pairs(columns, ref_columns)
        ),
        CheckKind::FailedRows { query } => format!(
            "SELECT COUNT(*) AS v FROM ({}) AS walaudit_failed",
            strip(&vars.expand(query))
        ),
        CheckKind::Metric { query } => vars.expand(strip(query)),
        _ => return None,
    })
}

/// The name of a valid, non-partial unique index of the table `dataset` on plain columns that
/// are all among `columns` (no row: none; not a table: none).
pub fn unique_index_query(dataset: &str, columns: &[String]) -> String {
    let names: Vec<String> = columns.iter().map(|c| quote_literal(c)).collect();
    format!(
        "SELECT c.relname::text AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = to_regclass({}) AND i.indisunique AND i.indisvalid \
         AND i.indpred IS NULL AND i.indexprs IS NULL AND NOT EXISTS (SELECT 1 FROM \
         unnest(i.indkey::int2[]) AS k(attnum) WHERE k.attnum NOT IN (SELECT a.attnum FROM \
         pg_attribute a WHERE a.attrelid = i.indrelid AND a.attname = ANY (ARRAY[{}]::text[]))) \
         ORDER BY c.relname LIMIT 1",
        quote_literal(dataset),
        names.join(", ")
    )
}

fn pairs(columns: &[String], ref_columns: &[String]) -> String {
    columns
        .iter()
        .zip(ref_columns)
        .map(|(c, r)| {
            format!(
                "walaudit_ref.{} = walaudit_rows.{}",
                quote_ident(r),
                quote_ident(c)
            )
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The keys of a reference check's own side with their row counts (across connections).
pub fn reference_keys(job: &Job, check: &Check, vars: &Vars, columns: &[String]) -> String {
    let keys: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST({} AS VARCHAR) AS k{i}", quote_ident(c)))
        .collect();
    let group: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
    format!(
        "SELECT {}, COUNT(*) AS n FROM {} WHERE {} AND {} GROUP BY {}",
        keys.join(", "),
        rows(job, vars),
        check_filter(check, vars),
        not_null(columns),
        group.join(", ")
    )
}

/// The distinct keys of the referenced dataset.
pub fn referenced_keys(dataset: &str, columns: &[String]) -> String {
    let keys: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("CAST({} AS VARCHAR) AS k{i}", quote_ident(c)))
        .collect();
    format!(
        "SELECT DISTINCT {} FROM {dataset} WHERE {}",
        keys.join(", "),
        not_null(columns)
    )
}

/// Up to `n` rows showing why `check` did not pass, or `None` when its type keeps none.
pub fn samples(job: &Job, check: &Check, vars: &Vars, n: usize) -> Option<String> {
    let rows = rows(job, vars);
    let f = check_filter(check, vars);
    Some(match &check.kind {
        CheckKind::Missing { .. } | CheckKind::Invalid { .. } => format!(
            "SELECT * FROM {rows} WHERE {f} AND {} LIMIT {n}",
            row_condition(&check.kind)?
        ),
        CheckKind::Aggregate {
            group_by,
            expression,
            each,
        } => {
            let groups: Vec<String> = group_by
                .iter()
                .enumerate()
                .map(|(i, g)| format!("{g} AS g{i}"))
                .collect();
            format!(
                "SELECT * FROM (SELECT {}, ({expression}) AS walaudit_value FROM {rows} WHERE {f} \
                 GROUP BY {}) AS walaudit_groups WHERE NOT {} LIMIT {n}",
                groups.join(", "),
                group_by.join(", "),
                each.sql("walaudit_value")
            )
        }
        CheckKind::Reference {
            columns,
            dataset,
            ref_columns,
            connection: None,
        } => format!(
            "SELECT * FROM {rows} WHERE {f} AND {} AND NOT EXISTS (SELECT 1 FROM {dataset} AS \
             walaudit_ref WHERE {}) LIMIT {n}",
            not_null(columns),
            pairs(columns, ref_columns)
        ),
        CheckKind::FailedRows { query } => format!(
            "SELECT * FROM ({}) AS walaudit_failed LIMIT {n}",
            strip(&vars.expand(query))
        ),
        _ => return None,
    })
}

/// The dataset's columns, without rows.
pub fn columns_probe(job: &Job) -> String {
    format!("SELECT * FROM {} LIMIT 0", job.dataset)
}
