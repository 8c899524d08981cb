//! `walaudit check suggest`: profile a dataset and write a job file that holds what the data
//! held then.
//!
//! ```text
//!  Postgres: to_regclass(dataset) ─► pg_attribute (columns, types, NOT NULL) ─► pg_constraint
//!            (primary key, unique, foreign keys)                       catalog only, no scan
//!  lake:     SELECT * FROM dataset LIMIT 0 (the columns; no constraints there)
//!  both:     ONE scan: count(*), and per column count(c), count(DISTINCT c) (exact), min/max
//!            of numbers, dates and timestamps
//!            + one query for the values of low-cardinality text columns (≤ 20 values)
//!  ─► a job: row_count; missing per column (must_be 0 when none is null, else a percent bound
//!     twice the observed share); invalid ranges of numbers (not keys); valid_values of
//!     low-cardinality text; not_in_future for dates and timestamps with none in the future;
//!     duplicate per primary/unique key (the lake: per column observed unique); freshness of
//!     the newest timestamp column; a reference per foreign key
//! ```
//!
//! The output is YAML written here (strings as JSON scalars, which YAML reads alike) and
//! loads with the job loader unchanged. A table above `checks.max_scan_rows` gets
//! `allow_full_scan: true`: the suggested checks read it whole, as the profile did.

use std::collections::BTreeSet;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_schema::DataType;
use chrono::{DateTime, Utc};

use super::model::MAX_TIMEOUT;
use super::run::values::{micros_at, number_at, strings};
use crate::source::quote::{quote_ident, quote_literal};
use crate::sql::{Dialect, Limits, ReadOnlySql, ResultSet, SqlError};

/// Most distinct values of a text column listed as its `valid_values`.
pub const MAX_VALUES: u64 = 20;

/// What to profile.
#[derive(Clone, Debug)]
pub struct Options {
    /// `source`, `lake` or a `[connections.NAME]`.
    pub connection: String,
    /// A table or view, as SQL (`public.orders`, `current.public.orders`).
    pub dataset: String,
    /// `checks.max_scan_rows`: above it the job gets `allow_full_scan: true`.
    pub max_scan_rows: u64,
}

/// Why a dataset could not be profiled.
#[derive(Debug, thiserror::Error)]
pub enum SuggestError {
    #[error(
        "`{dataset}` is no table or view on connection `{connection}`: check the name \
         (schema.table) and that the connection's role may read it"
    )]
    NotFound { dataset: String, connection: String },
    #[error("`{dataset}` has no columns: profile a table or view with columns")]
    NoColumns { dataset: String },
    #[error("profiling `{dataset}` on connection `{connection}` failed: {source}")]
    Query {
        dataset: String,
        connection: String,
        #[source]
        source: Box<SqlError>,
    },
}

/// What a column's values are, for the checks they get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Number,
    Timestamp,
    Date,
    Text,
    Bool,
    Other,
}

/// One column and what the scan found in it.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnProfile {
    pub name: String,
    pub kind: Kind,
    pub nulls: u64,
    /// Exact `count(DISTINCT …)` (numbers and text).
    pub distinct: Option<u64>,
    /// Numbers.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Dates and timestamps: the newest value, µs since the epoch.
    pub newest: Option<i64>,
    /// Low-cardinality text: the values, sorted.
    pub values: Option<Vec<String>>,
}

/// A foreign key of the dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub dataset: String,
    pub ref_columns: Vec<String>,
}

/// A dataset's profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub connection: String,
    /// As the job names it (Postgres: schema-qualified from the catalog).
    pub dataset: String,
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
    /// Primary key first, then unique constraints.
    pub keys: Vec<Vec<String>>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Whether keys came from a catalog (Postgres) rather than from the values (the lake).
    pub catalog: bool,
}

/// Profiles the dataset and returns the job file.
pub async fn suggest(
    target: &dyn ReadOnlySql,
    options: &Options,
    now: DateTime<Utc>,
) -> Result<String, SuggestError> {
    let p = profile(target, options).await?;
    Ok(render(&p, options.max_scan_rows, now))
}

struct Session<'a> {
    target: &'a dyn ReadOnlySql,
    options: &'a Options,
    limits: Limits,
}

impl Session<'_> {
    async fn query(&self, sql: &str) -> Result<ResultSet, SuggestError> {
        self.target
            .query(sql, &self.limits)
            .await
            .map_err(|source| SuggestError::Query {
                dataset: self.options.dataset.clone(),
                connection: self.options.connection.clone(),
                source: Box::new(source),
            })
    }

    fn not_found(&self) -> SuggestError {
        SuggestError::NotFound {
            dataset: self.options.dataset.clone(),
            connection: self.options.connection.clone(),
        }
    }
}

/// A column as the catalog (or the lake's schema) describes it.
struct Column {
    name: String,
    kind: Kind,
}

/// Reads the dataset's columns and constraints, then profiles it in one scan (and one query
/// for the values of low-cardinality text columns).
pub async fn profile(target: &dyn ReadOnlySql, options: &Options) -> Result<Profile, SuggestError> {
    let s = Session {
        target,
        options,
        limits: Limits::with_deadline(MAX_TIMEOUT),
    };
    let postgres = target.dialect() == Dialect::Postgres;
    let (dataset, columns, keys, foreign_keys) = if postgres {
        postgres_catalog(&s).await?
    } else {
        let probe = s
            .query(&format!("SELECT * FROM {} LIMIT 0", options.dataset))
            .await?;
        let columns = probe
            .schema
            .fields()
            .iter()
            .map(|f| Column {
                name: f.name().clone(),
                kind: arrow_kind(f.data_type()),
            })
            .collect();
        (options.dataset.clone(), columns, Vec::new(), Vec::new())
    };
    if columns.is_empty() {
        return Err(SuggestError::NoColumns { dataset });
    }

    // The one scan.
    let mut exprs = vec!["COUNT(*)".to_owned()];
    for c in &columns {
        let q = quote_ident(&c.name);
        exprs.push(format!("COUNT({q})"));
        match c.kind {
            Kind::Number => {
                exprs.push(format!("COUNT(DISTINCT {q})"));
                exprs.push(format!("CAST(MIN({q}) AS DOUBLE PRECISION)"));
                exprs.push(format!("CAST(MAX({q}) AS DOUBLE PRECISION)"));
            }
            Kind::Text => exprs.push(format!("COUNT(DISTINCT {q})")),
            Kind::Timestamp | Kind::Date => exprs.push(format!("MAX({q})")),
            Kind::Bool | Kind::Other => {}
        }
    }
    let select: Vec<String> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{e} AS p{i}"))
        .collect();
    let scan = s
        .query(&format!("SELECT {} FROM {dataset}", select.join(", ")))
        .await?;
    let batch = scan.concat().map_err(|_| s.not_found())?;
    let count = |i: usize| number_at(&batch, i).ok().flatten().unwrap_or(0.0) as u64;
    let rows = count(0);
    let mut at = 1;
    let mut profiles = Vec::new();
    for c in &columns {
        let mut p = ColumnProfile {
            name: c.name.clone(),
            kind: c.kind,
            nulls: rows.saturating_sub(count(at)),
            distinct: None,
            min: None,
            max: None,
            newest: None,
            values: None,
        };
        at += 1;
        match c.kind {
            Kind::Number => {
                p.distinct = Some(count(at));
                p.min = number_at(&batch, at + 1).ok().flatten();
                p.max = number_at(&batch, at + 2).ok().flatten();
                at += 3;
            }
            Kind::Text => {
                p.distinct = Some(count(at));
                at += 1;
            }
            Kind::Timestamp | Kind::Date => {
                p.newest = micros_at(&batch, at).ok().flatten();
                at += 1;
            }
            Kind::Bool | Kind::Other => {}
        }
        profiles.push(p);
    }

    // The values of low-cardinality text columns, in one more query.
    let keyed: BTreeSet<&str> = keys.iter().flatten().map(String::as_str).collect();
    let low: Vec<usize> = (0..profiles.len())
        .filter(|i| categorical(&profiles[*i], rows) && !keyed.contains(profiles[*i].name.as_str()))
        .collect();
    if !low.is_empty() {
        let aggs: Vec<String> = low
            .iter()
            .enumerate()
            .map(|(k, i)| {
                let q = quote_ident(&profiles[*i].name);
                if postgres {
                    format!(
                        "CAST(json_agg(DISTINCT {q} ORDER BY {q}) FILTER (WHERE {q} IS NOT NULL) \
                         AS text) AS v{k}"
                    )
                } else {
                    format!("array_agg(DISTINCT CAST({q} AS VARCHAR)) AS v{k}")
                }
            })
            .collect();
        let result = s
            .query(&format!("SELECT {} FROM {dataset}", aggs.join(", ")))
            .await?;
        let batch = result.concat().map_err(|_| s.not_found())?;
        for (k, i) in low.iter().enumerate() {
            profiles[*i].values = if postgres {
                strings(&result, k)
                    .ok()
                    .and_then(|v| v.into_iter().next().flatten())
                    .and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok())
            } else {
                list_values(batch.column(k).as_ref())
            };
        }
    }
    Ok(Profile {
        connection: options.connection.clone(),
        dataset,
        rows,
        columns: profiles,
        keys,
        foreign_keys,
        catalog: postgres,
    })
}

type Catalog = (String, Vec<Column>, Vec<Vec<String>>, Vec<ForeignKey>);

async fn postgres_catalog(s: &Session<'_>) -> Result<Catalog, SuggestError> {
    let found = s
        .query(&format!(
            "SELECT c.oid::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM \
             pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass({})",
            quote_literal(&s.options.dataset)
        ))
        .await?;
    let (Some(Some(oid)), Some(Some(dataset))) = (
        strings(&found, 0).unwrap_or_default().into_iter().next(),
        strings(&found, 1).unwrap_or_default().into_iter().next(),
    ) else {
        return Err(s.not_found());
    };
    let cols = s
        .query(&format!(
            "SELECT a.attname::text, t.typcategory::text, t.typname::text FROM \
             pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid WHERE \
             a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
        ))
        .await?;
    let text = |r: &ResultSet, i| strings(r, i).unwrap_or_default();
    let columns = text(&cols, 0)
        .into_iter()
        .zip(text(&cols, 1))
        .zip(text(&cols, 2))
        .filter_map(|((name, category), typname)| {
            Some(Column {
                name: name?,
                kind: pg_kind(category.as_deref()?, typname.as_deref()?),
            })
        })
        .collect();
    let names = |attrs: &str, rel: &str| {
        format!(
            "(SELECT json_agg(a.attname ORDER BY k.o) FROM unnest(c.{attrs}) WITH ORDINALITY AS \
             k(n, o) JOIN pg_catalog.pg_attribute a ON a.attrelid = c.{rel} AND a.attnum = \
             k.n)::text"
        )
    };
    let cons = s
        .query(&format!(
            "SELECT c.contype::text, {}, {}, (SELECT quote_ident(rn.nspname) || '.' || \
             quote_ident(r.relname) FROM pg_catalog.pg_class r JOIN pg_catalog.pg_namespace rn \
             ON rn.oid = r.relnamespace WHERE r.oid = c.confrelid) FROM \
             pg_catalog.pg_constraint c WHERE c.conrelid = {oid} AND c.contype IN ('p', 'u', \
             'f') ORDER BY CASE c.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 ELSE 2 END, c.conname",
            names("conkey", "conrelid"),
            names("confkey", "confrelid")
        ))
        .await?;
    let list = |v: &Option<String>| -> Vec<String> {
        v.as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default()
    };
    let (mut keys, mut fks) = (Vec::new(), Vec::new());
    let kinds = text(&cons, 0);
    let (mine, theirs, refs) = (text(&cons, 1), text(&cons, 2), text(&cons, 3));
    for i in 0..kinds.len() {
        let columns = list(&mine[i]);
        match (kinds[i].as_deref(), &refs[i]) {
            (Some("f"), Some(dataset)) => fks.push(ForeignKey {
                columns,
                dataset: dataset.clone(),
                ref_columns: list(&theirs[i]),
            }),
            (Some("p" | "u"), _) if !columns.is_empty() => keys.push(columns),
            _ => {}
        }
    }
    Ok((dataset, columns, keys, fks))
}

fn pg_kind(category: &str, typname: &str) -> Kind {
    match (category, typname) {
        (_, "timestamp" | "timestamptz") => Kind::Timestamp,
        (_, "date") => Kind::Date,
        (_, "money") => Kind::Other,
        ("N", _) => Kind::Number,
        ("S" | "E", _) => Kind::Text,
        ("B", _) => Kind::Bool,
        _ => Kind::Other,
    }
}

fn arrow_kind(t: &DataType) -> Kind {
    match t {
        t if t.is_numeric() => Kind::Number,
        DataType::Timestamp(..) => Kind::Timestamp,
        DataType::Date32 | DataType::Date64 => Kind::Date,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
        DataType::Boolean => Kind::Bool,
        _ => Kind::Other,
    }
}

/// The values of row 0 of a list column, sorted, NULLs left out.
fn list_values(col: &dyn Array) -> Option<Vec<String>> {
    if col.is_empty() || col.is_null(0) {
        return None;
    }
    let items = match col.data_type() {
        DataType::List(_) => col.as_list::<i32>().value(0),
        DataType::LargeList(_) => col.as_list::<i64>().value(0),
        _ => return None,
    };
    let items = arrow_cast::cast(&items, &DataType::Utf8).ok()?;
    let items = items.as_string::<i32>();
    let mut out: Vec<String> = items.iter().flatten().map(str::to_owned).collect();
    out.sort();
    Some(out)
}

/// A text column with few values that repeat: `valid_values` material.
fn categorical(c: &ColumnProfile, rows: u64) -> bool {
    let non_null = rows - c.nulls.min(rows);
    c.kind == Kind::Text
        && c.distinct
            .is_some_and(|d| (1..=MAX_VALUES).contains(&d) && d * 2 <= non_null)
}

mod render;

pub use render::render;

#[cfg(test)]
mod tests;
