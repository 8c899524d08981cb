//! The SQL a reconciliation pushes down to each side, per dialect: count windows, and for the
//! checksum bisection the per-bucket counts and checksums and the row download.
//!
//! # Normalisation (what makes equal values hash equally on different systems)
//! Every compared value becomes text before hashing, by its kind (from the column's type):
//!
//! | kind | text |
//! |---|---|
//! | number (integers, decimals, floats) | the value as `DECIMAL(38,10)`: `1.5` and `1.50` agree |
//! | timestamp (with or without time zone) | microseconds since 1970-01-01 UTC |
//! | date | days since 1970-01-01 |
//! | boolean | `1` / `0` |
//! | anything else | its text form |
//!
//! then `V` + text, or `N` for NULL (so NULL and the empty string differ), joined with the
//! unit separator (U+001F). A row's hash is the first 60 bits of the MD5 of that text
//! (Postgres: `md5()`; the lake: the `walaudit_hash60` function, the same bits); a bucket's
//! checksum is the exact (`numeric`/`DECIMAL(38,0)`) sum of its rows' hashes.
//!
//! Buckets split the key space by the hash of the normalised key, not by key ranges: any key
//! type (integer, text, UUID, compound) works, and two systems never disagree on the order of
//! text keys (collations differ) because no order is used.

use arrow_schema::{DataType, Field, TimeUnit};

use crate::source::quote::quote_ident;
use crate::sql::{Dialect, PG_TYPE_KEY};

/// Hash bits: the first 60 bits of an MD5.
pub const HASH_BITS: u32 = 60;

/// How a column's values are normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Number,
    Bool,
    /// Timestamps; the unit is how the lake stores them (Postgres: always microseconds).
    Timestamp(TimeUnit),
    Date,
    Text,
}

impl Kind {
    /// The kind of a result column (Postgres columns by their type name, others by Arrow type).
    pub fn of(field: &Field) -> Kind {
        if let Some(pg) = field.metadata().get(PG_TYPE_KEY) {
            return match pg.as_str() {
                "int2" | "int4" | "int8" | "numeric" | "float4" | "float8" | "oid" => Kind::Number,
                "bool" => Kind::Bool,
                "timestamp" | "timestamptz" => Kind::Timestamp(TimeUnit::Microsecond),
                "date" => Kind::Date,
                _ => Kind::Text,
            };
        }
        match field.data_type() {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..) => Kind::Number,
            DataType::Boolean => Kind::Bool,
            DataType::Timestamp(unit, _) => Kind::Timestamp(*unit),
            DataType::Date32 | DataType::Date64 => Kind::Date,
            _ => Kind::Text,
        }
    }
}

/// A column of one side: its name there and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Col {
    pub name: String,
    pub kind: Kind,
}

/// What one side's queries are built from.
#[derive(Clone, Debug)]
pub struct SideSql {
    pub dialect: Dialect,
    pub dataset: String,
    pub key: Vec<Col>,
    /// Compared columns, in the same order on both sides.
    pub values: Vec<Col>,
    /// Rows outside it are not compared (e.g. the time range of mismatching windows).
    pub filter: Option<String>,
}

fn text(d: Dialect) -> &'static str {
    match d {
        Dialect::DataFusion => "VARCHAR",
        _ => "text",
    }
}

/// The normalised text of `col` ('V' + value, or 'N' for NULL).
pub fn normalised(d: Dialect, col: &Col) -> String {
    let c = quote_ident(&col.name);
    let t = text(d);
    let value = match (d, col.kind) {
        (Dialect::DataFusion, Kind::Number) => format!("CAST(CAST({c} AS DECIMAL(38,10)) AS {t})"),
        (_, Kind::Number) => format!("CAST(CAST({c} AS numeric(38,10)) AS {t})"),
        (_, Kind::Bool) => format!("CASE WHEN {c} THEN '1' ELSE '0' END"),
        (Dialect::DataFusion, Kind::Timestamp(unit)) => {
            let raw = format!("CAST({c} AS BIGINT)");
            let micros = match unit {
                TimeUnit::Second => format!("{raw} * 1000000"),
                TimeUnit::Millisecond => format!("{raw} * 1000"),
                TimeUnit::Microsecond => raw,
                TimeUnit::Nanosecond => format!("{raw} / 1000"),
            };
            format!("CAST({micros} AS {t})")
        }
        (_, Kind::Timestamp(_)) => {
            format!("CAST(CAST(extract(epoch FROM {c}) * 1000000 AS bigint) AS {t})")
        }
        (Dialect::DataFusion, Kind::Date) => format!("CAST(CAST({c} AS INT) AS {t})"),
        (_, Kind::Date) => format!("CAST({c} - DATE '1970-01-01' AS {t})"),
        (_, Kind::Text) => format!("CAST({c} AS {t})"),
    };
    format!("CASE WHEN {c} IS NULL THEN 'N' ELSE 'V' || {value} END")
}

/// The 60-bit hash (a non-negative 64-bit integer) of the normalised columns `cols`.
pub fn hash(d: Dialect, cols: &[&Col]) -> String {
    let parts: Vec<String> = cols.iter().map(|c| normalised(d, c)).collect();
    let joined = format!("concat_ws(chr(31), {})", parts.join(", "));
    match d {
        Dialect::DataFusion => format!("walaudit_hash60({joined})"),
        _ => format!("CAST(CAST('x' || substr(md5({joined}), 1, 15) AS bit(60)) AS bigint)"),
    }
}

fn exact_sum(d: Dialect, expr: &str) -> String {
    match d {
        Dialect::DataFusion => format!("CAST(SUM(CAST({expr} AS DECIMAL(38,0))) AS VARCHAR)"),
        _ => format!("CAST(SUM({expr}) AS text)"),
    }
}

impl SideSql {
    fn hashed_rows(&self) -> String {
        let key: Vec<&Col> = self.key.iter().collect();
        let all: Vec<&Col> = self.key.iter().chain(&self.values).collect();
        let filter = self
            .filter
            .as_ref()
            .map(|f| format!(" WHERE {f}"))
            .unwrap_or_default();
        format!(
            "SELECT {} AS walaudit_kh, {} AS walaudit_rh FROM {}{filter}",
            hash(self.dialect, &key),
            hash(self.dialect, &all),
            self.dataset
        )
    }

    /// Per bucket of `bits` key-hash bits: `b` (the bucket), `n` (rows), `s` (checksum, as
    /// text); only inside the `parents` buckets of `parent_bits` bits when given.
    pub fn buckets(&self, bits: u32, parents: Option<(u32, &[i64])>) -> String {
        let within = match parents {
            Some((pbits, list)) if !list.is_empty() => format!(
                " WHERE (walaudit_kh >> {}) IN ({})",
                HASH_BITS - pbits,
                join_numbers(list)
            ),
            _ => String::new(),
        };
        format!(
            "SELECT walaudit_kh >> {} AS b, COUNT(*) AS n, {} AS s FROM ({}) AS walaudit_h{within} \
             GROUP BY walaudit_kh >> {}",
            HASH_BITS - bits,
            exact_sum(self.dialect, "walaudit_rh"),
            self.hashed_rows(),
            HASH_BITS - bits
        )
    }

    /// The rows of the `buckets` of `bits` bits: normalised key columns `k0..`, normalised
    /// values `v0..`, and the key's own text `r0..` (for reports).
    pub fn rows(&self, bits: u32, buckets: &[i64]) -> String {
        let key: Vec<&Col> = self.key.iter().collect();
        let mut cols = Vec::new();
        for (i, k) in self.key.iter().enumerate() {
            cols.push(format!("{} AS k{i}", normalised(self.dialect, k)));
        }
        for (i, v) in self.values.iter().enumerate() {
            cols.push(format!("{} AS v{i}", normalised(self.dialect, v)));
        }
        for (i, k) in self.key.iter().enumerate() {
            cols.push(format!(
                "CAST({} AS {}) AS r{i}",
                quote_ident(&k.name),
                text(self.dialect)
            ));
        }
        let filter = self
            .filter
            .as_ref()
            .map(|f| format!(" AND ({f})"))
            .unwrap_or_default();
        format!(
            "SELECT {} FROM {} WHERE ({} >> {}) IN ({}){filter}",
            cols.join(", "),
            self.dataset,
            hash(self.dialect, &key),
            HASH_BITS - bits,
            join_numbers(buckets)
        )
    }
}

fn join_numbers(list: &[i64]) -> String {
    list.iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Seconds since 1970 of a time column, as SQL.
fn epoch_seconds(d: Dialect, col: &Col) -> String {
    let c = quote_ident(&col.name);
    match (d, col.kind) {
        (Dialect::DataFusion, Kind::Timestamp(unit)) => {
            let per_second = match unit {
                TimeUnit::Second => 1,
                TimeUnit::Millisecond => 1_000,
                TimeUnit::Microsecond => 1_000_000,
                TimeUnit::Nanosecond => 1_000_000_000,
            };
            format!("CAST(CAST({c} AS BIGINT) AS DOUBLE) / {per_second}")
        }
        (Dialect::DataFusion, _) => format!("CAST(CAST({c} AS INT) AS DOUBLE) * 86400"),
        _ => format!("extract(epoch FROM {c})"),
    }
}

/// A time bound on `col` (`>=`/`<` `epoch` seconds), written so that an index on the column
/// can serve it.
pub fn time_bound(d: Dialect, col: &Col, pg_type: Option<&str>, op: &str, epoch: i64) -> String {
    let c = quote_ident(&col.name);
    match d {
        Dialect::DataFusion => format!("{} {op} {epoch}", epoch_seconds(d, col)),
        _ => match pg_type {
            Some("timestamp") => format!("{c} {op} (to_timestamp({epoch}) AT TIME ZONE 'UTC')"),
            Some("date") => {
                format!("{c} {op} CAST(to_timestamp({epoch}) AT TIME ZONE 'UTC' AS date)")
            }
            _ => format!("{c} {op} to_timestamp({epoch})"),
        },
    }
}

/// Rows per window of `width` seconds: `w` (window start, epoch seconds) and `n`, with
/// `bounds` (SQL conditions) applied.
pub fn count_windows(
    d: Dialect,
    dataset: &str,
    col: &Col,
    width: u64,
    bounds: &[String],
) -> String {
    let secs = epoch_seconds(d, col);
    let w = match d {
        Dialect::DataFusion => format!("CAST(floor(({secs}) / {width}) AS BIGINT) * {width}"),
        _ => format!("CAST(floor(({secs}) / {width}) AS bigint) * {width}"),
    };
    let mut conds = vec![format!("{} IS NOT NULL", quote_ident(&col.name))];
    conds.extend(bounds.iter().cloned());
    format!(
        "SELECT {w} AS w, COUNT(*) AS n FROM {dataset} WHERE {} GROUP BY {w}",
        conds.join(" AND ")
    )
}

/// The whole table's rows.
pub fn count_all(dataset: &str) -> String {
    format!("SELECT COUNT(*) AS n FROM {dataset}")
}

/// The columns of `dataset` (no rows).
pub fn probe(dataset: &str) -> String {
    format!("SELECT * FROM {dataset} LIMIT 0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: Kind) -> Col {
        Col {
            name: name.into(),
            kind,
        }
    }

    #[test]
    fn postgres_and_lake_normalise_by_kind() {
        let ts = col("at", Kind::Timestamp(TimeUnit::Microsecond));
        assert_eq!(
            normalised(Dialect::Postgres, &ts),
            "CASE WHEN \"at\" IS NULL THEN 'N' ELSE 'V' || CAST(CAST(extract(epoch FROM \"at\") * \
             1000000 AS bigint) AS text) END"
        );
        assert_eq!(
            normalised(Dialect::DataFusion, &ts),
            "CASE WHEN \"at\" IS NULL THEN 'N' ELSE 'V' || CAST(CAST(\"at\" AS BIGINT) AS VARCHAR) END"
        );
        let n = col("amount", Kind::Number);
        assert!(normalised(Dialect::Postgres, &n).contains("numeric(38,10)"));
        assert!(normalised(Dialect::DataFusion, &n).contains("DECIMAL(38,10)"));
    }

    #[test]
    fn buckets_narrow_to_their_parents() {
        let side = SideSql {
            dialect: Dialect::Postgres,
            dataset: "public.t".into(),
            key: vec![col("id", Kind::Number)],
            values: vec![col("v", Kind::Text)],
            filter: None,
        };
        let top = side.buckets(8, None);
        assert!(top.contains("walaudit_kh >> 52 AS b"), "{top}");
        assert!(!top.contains(" IN ("), "{top}");
        let deeper = side.buckets(16, Some((8, &[3, 200])));
        assert!(
            deeper.contains("(walaudit_kh >> 52) IN (3, 200)"),
            "{deeper}"
        );
        assert!(deeper.contains("GROUP BY walaudit_kh >> 44"), "{deeper}");
    }
}
