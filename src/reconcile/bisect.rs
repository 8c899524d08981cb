//! Checksum bisection: the exact keys that differ between two sides, with every level's
//! counting and hashing pushed down to both systems.
//!
//! ```text
//!  level 1: per bucket of the top 8 key-hash bits, count + checksum ─ both sides at once ─┐
//!  buckets that differ ─┬─ at most DOWNLOAD_ROWS rows a side: download, compare row by row │
//!                       └─ more: level 2 inside them (16 bits), and so on ◄──────────────┘
//! ```
//!
//! # Invariants
//! * Memory is bounded whatever the table size: a level's query covers at most
//!   [`PARENTS_PER_QUERY`] parent buckets (so at most that × 256 result rows), a download at
//!   most about [`DOWNLOAD_BATCH_ROWS`] rows a side.
//! * Counts of missing, extra and changed keys are exact; past `max_keys` the keys themselves
//!   are not kept (`truncated`).
//! * Both sides' queries of a step run concurrently (they are different systems).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::time::Instant;

use super::sql::{HASH_BITS, SideSql};
use crate::checks::run::values::strings;
use crate::sql::{Limits, ReadOnlySql, ResultSet, SqlError};

/// Key-hash bits each level adds (256 buckets per parent).
pub const BITS_PER_LEVEL: u32 = 8;
/// A bucket with at most this many rows on each side is downloaded instead of split.
pub const DOWNLOAD_ROWS: u64 = 4_096;
/// Rows a side one download query may return, about.
pub const DOWNLOAD_BATCH_ROWS: u64 = 65_536;
/// Parent buckets one level query narrows to.
pub const PARENTS_PER_QUERY: usize = 1_024;

/// How a key differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffKind {
    /// In the source, not in the target.
    Missing,
    /// In the target, not in the source.
    Extra,
    /// In both, with different values.
    Changed,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Changed => "changed",
        }
    }
}

/// One differing key.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KeyDiff {
    /// Key column (source name) → its value as text.
    pub key: BTreeMap<String, Option<String>>,
    pub kind: DiffKind,
    /// Compared columns (source names) whose values differ; empty unless `changed`.
    pub columns: Vec<String>,
}

/// What a bisection found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiffResult {
    pub missing: u64,
    pub extra: u64,
    pub changed: u64,
    /// The differing keys, sorted, at most `max_keys`.
    pub keys: Vec<KeyDiff>,
    /// More keys differ than were kept.
    pub truncated: bool,
    /// Queries sent (both sides).
    pub queries: usize,
    /// Rows downloaded (both sides).
    pub rows_downloaded: u64,
    /// Levels of buckets counted.
    pub levels: u32,
}

/// The two sides, ready to be queried.
pub struct Pair<'a> {
    pub source: &'a Arc<dyn ReadOnlySql>,
    pub target: &'a Arc<dyn ReadOnlySql>,
    pub source_sql: &'a SideSql,
    pub target_sql: &'a SideSql,
    /// Names of the key and compared columns, as the source calls them (for reports).
    pub key_names: &'a [String],
    pub value_names: &'a [String],
}

/// A side's query failed.
#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    #[error("the {side} side: {source}")]
    Query {
        side: &'static str,
        #[source]
        source: SqlError,
    },
    #[error("the {side} side returned {what}: {detail}")]
    Shape {
        side: &'static str,
        what: &'static str,
        detail: String,
    },
}

struct Run<'a> {
    pair: &'a Pair<'a>,
    deadline: Instant,
    max_keys: usize,
    out: DiffResult,
}

/// Finds every key that differs, within `deadline`.
pub async fn bisect(
    pair: &Pair<'_>,
    max_keys: usize,
    deadline: Instant,
) -> Result<DiffResult, BisectError> {
    let mut run = Run {
        pair,
        deadline,
        max_keys,
        out: DiffResult::default(),
    };
    let mut bits = BITS_PER_LEVEL;
    let mut parents: Option<Vec<i64>> = None;
    loop {
        run.out.levels += 1;
        let mut split = Vec::new();
        let mut download = Vec::new();
        let chunks: Vec<Option<&[i64]>> = match &parents {
            None => vec![None],
            Some(p) => p.chunks(PARENTS_PER_QUERY).map(Some).collect(),
        };
        for chunk in chunks {
            let within = chunk.map(|c| (bits - BITS_PER_LEVEL, c));
            let (s, t) = run
                .both(
                    pair.source_sql.buckets(bits, within),
                    pair.target_sql.buckets(bits, within),
                )
                .await?;
            let (s, t) = (buckets(&s, "source")?, buckets(&t, "target")?);
            let all: HashSet<i64> = s.keys().chain(t.keys()).copied().collect();
            for b in all {
                let (a, z) = (s.get(&b), t.get(&b));
                if a == z {
                    continue;
                }
                let rows = a.map_or(0, |x| x.0).max(z.map_or(0, |x| x.0));
                if rows <= DOWNLOAD_ROWS || bits + BITS_PER_LEVEL > HASH_BITS {
                    download.push((b, rows));
                } else {
                    split.push(b);
                }
            }
        }
        download.sort_unstable();
        run.download(bits, &download).await?;
        if split.is_empty() {
            break;
        }
        split.sort_unstable();
        parents = Some(split);
        bits += BITS_PER_LEVEL;
    }
    run.out
        .keys
        .sort_by(|a, b| (&a.key, a.kind).cmp(&(&b.key, b.kind)));
    Ok(run.out)
}

impl Run<'_> {
    fn limits(&self) -> Limits {
        Limits::with_deadline(self.deadline.saturating_duration_since(Instant::now()))
    }

    async fn both(
        &mut self,
        source_sql: String,
        target_sql: String,
    ) -> Result<(ResultSet, ResultSet), BisectError> {
        let limits = self.limits();
        self.out.queries += 2;
        let (s, t) = tokio::join!(
            self.pair.source.query(&source_sql, &limits),
            self.pair.target.query(&target_sql, &limits)
        );
        let s = s.map_err(|source| BisectError::Query {
            side: "source",
            source,
        })?;
        let t = t.map_err(|source| BisectError::Query {
            side: "target",
            source,
        })?;
        Ok((s, t))
    }

    /// Downloads the rows of `buckets` (with their larger side's row count) in batches and
    /// compares them.
    async fn download(&mut self, bits: u32, buckets: &[(i64, u64)]) -> Result<(), BisectError> {
        let mut batch: Vec<i64> = Vec::new();
        let mut rows = 0;
        for (i, (b, n)) in buckets.iter().enumerate() {
            batch.push(*b);
            rows += n;
            if rows >= DOWNLOAD_BATCH_ROWS || i + 1 == buckets.len() {
                let (s, t) = self
                    .both(
                        self.pair.source_sql.rows(bits, &batch),
                        self.pair.target_sql.rows(bits, &batch),
                    )
                    .await?;
                self.compare(&s, &t)?;
                batch.clear();
                rows = 0;
            }
        }
        Ok(())
    }

    fn compare(&mut self, s: &ResultSet, t: &ResultSet) -> Result<(), BisectError> {
        let keys = self.pair.key_names.len();
        let values = self.pair.value_names.len();
        let source = rows_of(s, keys, values, "source")?;
        let mut target = rows_of(t, keys, values, "target")?;
        self.out.rows_downloaded += (source.len() + target.len()) as u64;
        for (key, (vals, raw)) in source {
            match target.remove(&key) {
                None => self.found(DiffKind::Missing, raw, Vec::new()),
                Some((other, _)) if other != vals => {
                    let cols = self
                        .pair
                        .value_names
                        .iter()
                        .zip(vals.iter().zip(&other))
                        .filter(|(_, (a, b))| a != b)
                        .map(|(n, _)| n.clone())
                        .collect();
                    self.found(DiffKind::Changed, raw, cols);
                }
                Some(_) => {}
            }
        }
        for (_, (_, raw)) in target {
            self.found(DiffKind::Extra, raw, Vec::new());
        }
        Ok(())
    }

    fn found(&mut self, kind: DiffKind, raw: Vec<Option<String>>, columns: Vec<String>) {
        match kind {
            DiffKind::Missing => self.out.missing += 1,
            DiffKind::Extra => self.out.extra += 1,
            DiffKind::Changed => self.out.changed += 1,
        }
        if self.out.keys.len() >= self.max_keys {
            self.out.truncated = true;
            return;
        }
        let key = self.pair.key_names.iter().cloned().zip(raw).collect();
        self.out.keys.push(KeyDiff { key, kind, columns });
    }
}

/// `bucket → (rows, checksum)` of a level query.
fn buckets(r: &ResultSet, side: &'static str) -> Result<HashMap<i64, (u64, String)>, BisectError> {
    let shape = |detail: String| BisectError::Shape {
        side,
        what: "an unexpected bucket result",
        detail,
    };
    if r.schema.fields().len() != 3 {
        return Err(shape(format!("{} columns", r.schema.fields().len())));
    }
    let b = strings(r, 0).map_err(shape)?;
    let n = strings(r, 1).map_err(shape)?;
    let s = strings(r, 2).map_err(shape)?;
    let mut out = HashMap::with_capacity(b.len());
    for ((b, n), s) in b.into_iter().zip(n).zip(s) {
        let b: i64 = b
            .as_deref()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| shape("a bucket that is not a number".into()))?;
        let n: u64 = n
            .as_deref()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| shape("a count that is not a number".into()))?;
        out.insert(b, (n, s.unwrap_or_default()));
    }
    Ok(out)
}

type Rows = HashMap<Vec<String>, (Vec<String>, Vec<Option<String>>)>;

/// Downloaded rows: normalised key → (normalised values, key text).
fn rows_of(
    r: &ResultSet,
    keys: usize,
    values: usize,
    side: &'static str,
) -> Result<Rows, BisectError> {
    let shape = |detail: String| BisectError::Shape {
        side,
        what: "unexpected rows",
        detail,
    };
    let want = 2 * keys + values;
    if r.schema.fields().len() != want {
        return Err(shape(format!(
            "{} columns, expected {want}",
            r.schema.fields().len()
        )));
    }
    let cols: Vec<Vec<Option<String>>> = (0..want)
        .map(|i| strings(r, i))
        .collect::<Result<_, _>>()
        .map_err(shape)?;
    let n = r.num_rows();
    let mut out = HashMap::with_capacity(n);
    let mut columns: Vec<_> = cols.into_iter().map(Vec::into_iter).collect();
    for _ in 0..n {
        let mut row = columns.iter_mut().map(|c| c.next().flatten());
        let key: Vec<String> = row
            .by_ref()
            .take(keys)
            .map(Option::unwrap_or_default)
            .collect();
        let vals: Vec<String> = row
            .by_ref()
            .take(values)
            .map(Option::unwrap_or_default)
            .collect();
        let raw: Vec<Option<String>> = row.collect();
        out.insert(key, (vals, raw));
    }
    Ok(out)
}
