//! Splitting a table into chunks: primary-key ranges (bounds sampled with `TABLESAMPLE`), or
//! ctid page ranges for tables without a primary key; and the SQL that reads a chunk.
//!
//! A load reads exactly what the publication publishes: a table's own rows (`FROM ONLY`:
//! inheritance children and leaf partitions published one by one are loaded under their own
//! names), or, for a partitioned table published via its root, the rows of all its partitions
//! (`FROM` without `ONLY`); and only the rows matching the publication's row filter. A
//! partitioned table is chunked like any other: by its primary key (which every partition
//! shares), or without one by ctid pages, a bound that applies to each leaf at once (an Append
//! of TID range scans), so `pages` is the largest leaf's.
//!
//! # Invariants
//! * The chunks of a plan cover the whole table and never overlap: the first has no lower
//!   bound, the last no upper bound, and chunk `i`'s upper bound is chunk `i + 1`'s lower bound
//!   (lower inclusive, upper exclusive).
//! * A plan is stored with its load, so a resumed load copies exactly the chunks it lacks.

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::SnapshotError;
use super::catalog::SourceTable;
use crate::source::{quote_ident, quote_literal};

/// Most rows sampled to find key bounds.
const MAX_SAMPLE: u64 = 100_000;
/// Sampled rows per chunk: more gives evener chunks.
const SAMPLES_PER_CHUNK: u64 = 32;

/// One end of a chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// Values of the primary-key columns, as text.
    Key(Vec<String>),
    /// A heap page: the chunk starts (or ends before) tuple `(page, 0)`.
    Page(u64),
}

/// A range of a table, copied (and committed) as one unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub index: u32,
    /// Inclusive; `None`: from the start of the table.
    pub lower: Option<Bound>,
    /// Exclusive; `None`: to the end of the table.
    pub upper: Option<Bound>,
}

/// The chunks of `table` for chunks of about `chunk_rows` rows, and the rows expected.
pub async fn plan(
    client: &Client,
    table: &SourceTable,
    chunk_rows: u64,
) -> Result<(Vec<Chunk>, u64), SnapshotError> {
    let rows = match (table.estimated_rows, &table.row_filter) {
        (Some(rows), None) => rows,
        // The planner's estimate of the rows the filter lets through: chunks are sized in
        // copied rows.
        (Some(rows), Some(_)) => filtered_estimate(client, table).await?.unwrap_or(rows),
        // Never analyzed: count once (planning is not under the load's snapshot, so this only
        // sizes the chunks).
        (None, _) => {
            let row = client
                .query_one(&count_sql(table), &[])
                .await
                .map_err(|e| SnapshotError::sql("counting rows to plan chunks", e))?;
            u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)
        }
    };
    let wanted = rows.div_ceil(chunk_rows.max(1));
    if wanted <= 1 {
        return Ok((vec![whole()], rows));
    }
    let bounds = if table.chunk_key.is_empty() {
        page_bounds(table.pages, wanted)
    } else {
        key_bounds(client, table, rows, wanted).await?
    };
    Ok((chunks_between(bounds), rows))
}

/// The planner's row estimate of `SELECT … WHERE <row filter>` (`EXPLAIN`, nothing is read);
/// `None` if the plan has no estimate.
async fn filtered_estimate(
    client: &Client,
    table: &SourceTable,
) -> Result<Option<u64>, SnapshotError> {
    let sql = format!(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM {} WHERE {}",
        relation(table),
        filter_condition(table)
    );
    // The simple protocol: the plan arrives as text (its type is json).
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| SnapshotError::sql("estimating the rows of a row filter", e))?;
    let plan = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    });
    let plan: serde_json::Value = plan
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    Ok(plan[0]["Plan"]["Plan Rows"]
        .as_f64()
        .map(|rows| rows.max(0.0) as u64))
}

fn whole() -> Chunk {
    Chunk {
        index: 0,
        lower: None,
        upper: None,
    }
}

fn chunks_between(bounds: Vec<Bound>) -> Vec<Chunk> {
    let mut chunks = Vec::with_capacity(bounds.len() + 1);
    let mut lower = None;
    for (i, bound) in bounds.into_iter().enumerate() {
        chunks.push(Chunk {
            index: i as u32,
            lower: lower.take(),
            upper: Some(bound.clone()),
        });
        lower = Some(bound);
    }
    chunks.push(Chunk {
        index: chunks.len() as u32,
        lower,
        upper: None,
    });
    chunks
}

/// `chunks - 1` page bounds splitting `pages` evenly.
fn page_bounds(pages: u64, chunks: u64) -> Vec<Bound> {
    let per = pages.div_ceil(chunks).max(1);
    (1..chunks)
        .map(|i| i * per)
        .take_while(|p| *p < pages)
        .map(Bound::Page)
        .collect()
}

/// Key bounds: even splits of `[min, max]` for a single integer key (one index probe each
/// end), else the quantiles of a row sample of the key.
async fn key_bounds(
    client: &Client,
    table: &SourceTable,
    rows: u64,
    chunks: u64,
) -> Result<Vec<Bound>, SnapshotError> {
    let keys = key_columns(table);
    let integer = matches!(
        table.chunk_key.as_slice(),
        [k] if matches!(table.sql_types[*k].as_str(), "smallint" | "integer" | "bigint")
    );
    if integer {
        // Over all rows, not only the filtered ones: an index probe at each end.
        let sql = format!(
            "SELECT min({k})::int8, max({k})::int8 FROM {}",
            relation(table),
            k = keys[0]
        );
        let row = client
            .query_one(&sql, &[])
            .await
            .map_err(|e| SnapshotError::sql("reading the key range to plan chunks", e))?;
        let (Some(min), Some(max)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
        else {
            return Ok(Vec::new());
        };
        return Ok(integer_bounds(min, max, chunks));
    }
    // `rows` counts the rows the filter lets through, so sampling that share of the table and
    // filtering leaves about `target` rows, spread like the rows the chunks will copy.
    let target = (chunks * SAMPLES_PER_CHUNK).min(MAX_SAMPLE);
    let percent = (100.0 * target as f64 / rows.max(1) as f64).clamp(0.0001, 100.0);
    // Output columns are aliased: `ORDER BY "id"` would otherwise sort the text output.
    let text: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("src.{k}::text AS k{i}"))
        .collect();
    let order: Vec<String> = keys.iter().map(|k| format!("src.{k}")).collect();
    let sql = format!(
        "SELECT {} FROM {} AS src TABLESAMPLE BERNOULLI ({percent}) WHERE {} ORDER BY {}",
        text.join(", "),
        relation(table),
        filter_condition(table),
        order.join(", ")
    );
    let sample = client
        .query(&sql, &[])
        .await
        .map_err(|e| SnapshotError::sql("sampling the primary key to plan chunks", e))?;
    let sample: Vec<Vec<String>> = sample
        .iter()
        .map(|r| (0..keys.len()).map(|i| r.get::<_, String>(i)).collect())
        .collect();
    Ok(quantiles(sample, chunks))
}

/// `chunks - 1` increasing bounds splitting `[min, max]` evenly.
fn integer_bounds(min: i64, max: i64, chunks: u64) -> Vec<Bound> {
    let span = i128::from(max) - i128::from(min) + 1;
    let mut bounds: Vec<Bound> = Vec::new();
    let mut last = None;
    for i in 1..i128::from(chunks) {
        let at = i128::from(min) + span * i / i128::from(chunks);
        if at <= i128::from(min) || last == Some(at) {
            continue;
        }
        last = Some(at);
        bounds.push(Bound::Key(vec![at.to_string()]));
    }
    bounds
}

/// `chunks - 1` bounds at evenly spaced positions of a sorted sample, without repeats.
fn quantiles(sample: Vec<Vec<String>>, chunks: u64) -> Vec<Bound> {
    let n = sample.len() as u64;
    let mut bounds: Vec<Bound> = Vec::new();
    if n == 0 {
        return bounds;
    }
    for i in 1..chunks {
        let at = usize::try_from(i * n / chunks).unwrap_or(usize::MAX);
        let Some(key) = sample.get(at) else { break };
        let bound = Bound::Key(key.clone());
        // A key repeated in the sample would make an empty chunk.
        if bounds.last() == Some(&bound) {
            continue;
        }
        bounds.push(bound);
    }
    bounds
}

/// `schema.table`, quoted.
pub fn qualified(table: &SourceTable) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.info.schema),
        quote_ident(&table.info.name)
    )
}

/// What a load reads `FROM`: `ONLY schema.table`, or `schema.table` for a partitioned table
/// published via its root (its rows are in its partitions, at any depth).
pub fn relation(table: &SourceTable) -> String {
    if table.partitioned {
        qualified(table)
    } else {
        format!("ONLY {}", qualified(table))
    }
}

/// The publication's row filter as a condition (`TRUE` without one). Its columns are
/// unqualified, so it applies to `relation(table)` under any alias.
fn filter_condition(table: &SourceTable) -> String {
    match &table.row_filter {
        Some(filter) => format!("({filter})"),
        None => "TRUE".into(),
    }
}

/// `SELECT count(*)` of the rows a load of `table` copies (the row filter applied).
pub fn count_sql(table: &SourceTable) -> String {
    format!(
        "SELECT count(*) FROM {} WHERE {}",
        relation(table),
        filter_condition(table)
    )
}

fn key_columns(table: &SourceTable) -> Vec<String> {
    table
        .chunk_key
        .iter()
        .map(|&i| quote_ident(&table.info.columns[i].name))
        .collect()
}

/// The SQL condition selecting `chunk`'s rows (`TRUE` for a whole table).
pub fn predicate(table: &SourceTable, chunk: &Chunk) -> String {
    let side = |bound: &Bound, op: &str| match bound {
        Bound::Page(page) => format!("ctid {op} '({page},0)'::tid"),
        Bound::Key(values) => {
            let columns = key_columns(table);
            let literals: Vec<String> = table
                .chunk_key
                .iter()
                .zip(values)
                .map(|(&i, v)| format!("{}::{}", quote_literal(v), table.sql_types[i]))
                .collect();
            if columns.len() == 1 {
                format!("{} {op} {}", columns[0], literals[0])
            } else {
                format!("({}) {op} ({})", columns.join(", "), literals.join(", "))
            }
        }
    };
    let mut parts = Vec::new();
    if let Some(lower) = &chunk.lower {
        parts.push(side(lower, ">="));
    }
    if let Some(upper) = &chunk.upper {
        parts.push(side(upper, "<"));
    }
    if parts.is_empty() {
        "TRUE".into()
    } else {
        parts.join(" AND ")
    }
}

/// `COPY (SELECT <published columns> FROM [ONLY] <table> WHERE <row filter> AND <chunk>) TO
/// STDOUT`, with `(FORMAT binary)` when `binary` (every column has a binary reader).
pub fn copy_sql(table: &SourceTable, chunk: &Chunk, binary: bool) -> String {
    let columns: Vec<String> = table
        .info
        .columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect();
    let condition = match (&table.row_filter, predicate(table, chunk)) {
        (Some(_), chunk) if chunk == "TRUE" => filter_condition(table),
        (Some(_), chunk) => format!("{} AND {chunk}", filter_condition(table)),
        (None, chunk) => chunk,
    };
    format!(
        "COPY (SELECT {} FROM {} WHERE {condition}) TO STDOUT{}",
        columns.join(", "),
        relation(table),
        if binary { " (FORMAT binary)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::capture::{ColumnInfo, TableInfo};
    use crate::decode::{PgType, ReplicaIdentity};

    /// `"S"."t" (id int8 key, "Note" text)`, partitioned or not, with an optional row filter.
    fn table(partitioned: bool, row_filter: Option<&str>) -> SourceTable {
        let column = |name: &str, type_oid, pg_type, is_key| ColumnInfo {
            name: name.into(),
            type_oid,
            type_modifier: -1,
            is_key,
            pg_type,
        };
        SourceTable {
            info: Arc::new(TableInfo {
                oid: 16500,
                schema: "S".into(),
                name: "t".into(),
                replica_identity: ReplicaIdentity::Default,
                columns: vec![
                    column("id", 20, PgType::Int8, true),
                    column("Note", 25, PgType::Text, false),
                ],
            }),
            chunk_key: vec![0],
            sql_types: vec!["bigint".into(), "text".into()],
            partitioned,
            row_filter: row_filter.map(str::to_owned),
            estimated_rows: None,
            pages: 0,
        }
    }

    #[test]
    fn copies_read_own_rows_or_all_partitions_with_the_row_filter() {
        let chunk = Chunk {
            index: 1,
            lower: Some(Bound::Key(vec!["10".into()])),
            upper: Some(Bound::Key(vec!["20".into()])),
        };
        // A plain table (or a leaf published on its own): its own rows only.
        assert_eq!(
            copy_sql(&table(false, None), &chunk, true),
            "COPY (SELECT \"id\", \"Note\" FROM ONLY \"S\".\"t\" WHERE \"id\" >= '10'::bigint \
             AND \"id\" < '20'::bigint) TO STDOUT (FORMAT binary)"
        );
        // A root published via the root: every partition's rows, and the row filter.
        let root = table(true, Some("(\"Note\" <> 'x'::text)"));
        assert_eq!(
            copy_sql(&root, &chunk, false),
            "COPY (SELECT \"id\", \"Note\" FROM \"S\".\"t\" WHERE ((\"Note\" <> 'x'::text)) \
             AND \"id\" >= '10'::bigint AND \"id\" < '20'::bigint) TO STDOUT"
        );
        assert_eq!(
            copy_sql(&table(false, Some("(id > 5)")), &whole(), false),
            "COPY (SELECT \"id\", \"Note\" FROM ONLY \"S\".\"t\" WHERE ((id > 5))) TO STDOUT"
        );
        // A keyless partitioned table: the page bound applies to every leaf.
        let mut keyless = table(true, None);
        keyless.chunk_key.clear();
        let pages = Chunk {
            index: 0,
            lower: None,
            upper: Some(Bound::Page(8)),
        };
        assert_eq!(
            copy_sql(&keyless, &pages, false),
            "COPY (SELECT \"id\", \"Note\" FROM \"S\".\"t\" WHERE ctid < '(8,0)'::tid) TO STDOUT"
        );
    }

    #[test]
    fn the_audit_count_applies_the_row_filter() {
        assert_eq!(
            count_sql(&table(false, None)),
            "SELECT count(*) FROM ONLY \"S\".\"t\" WHERE TRUE"
        );
        assert_eq!(
            count_sql(&table(true, Some("(id > 5)"))),
            "SELECT count(*) FROM \"S\".\"t\" WHERE ((id > 5))"
        );
    }

    #[test]
    fn chunks_cover_without_overlap() {
        let chunks = chunks_between(page_bounds(100, 4));
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].lower, None);
        assert_eq!(chunks[3].upper, None);
        for pair in chunks.windows(2) {
            assert_eq!(pair[0].upper, pair[1].lower);
        }
        assert_eq!(chunks[1].lower, Some(Bound::Page(25)));
        assert_eq!(chunks_between(Vec::new()), vec![whole()]);
    }

    #[test]
    fn quantiles_skip_repeats() {
        let sample: Vec<Vec<String>> = ["1", "1", "1", "1", "5", "9", "9", "12"]
            .iter()
            .map(|v| vec![v.to_string()])
            .collect();
        let bounds = quantiles(sample, 4);
        // 8 rows into 4 chunks: positions 2, 4, 6.
        let key = |v: &str| Bound::Key(vec![v.into()]);
        assert_eq!(bounds, vec![key("1"), key("5"), key("9")]);
        // Fewer samples than chunks: no repeated bound.
        assert_eq!(quantiles(vec![vec!["a".into()]], 3), vec![key("a")]);
        assert!(quantiles(Vec::new(), 3).is_empty());
    }

    #[test]
    fn integer_bounds_increase_and_split_evenly() {
        let key = |v: &str| Bound::Key(vec![v.into()]);
        assert_eq!(
            integer_bounds(1, 100, 4),
            vec![key("26"), key("51"), key("76")]
        );
        // More chunks than keys: no repeated or empty leading bound.
        assert_eq!(integer_bounds(5, 6, 4), vec![key("6")]);
        let wide = integer_bounds(i64::MIN, i64::MAX, 2);
        assert_eq!(wide, vec![key("0")]);
    }

    #[test]
    fn bounds_round_trip_as_json() {
        let b = Bound::Key(vec!["it's".into(), "2".into()]);
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Bound>(&text).unwrap(), b);
        let p = serde_json::to_string(&Bound::Page(7)).unwrap();
        assert_eq!(p, r#"{"page":7}"#);
    }
}
