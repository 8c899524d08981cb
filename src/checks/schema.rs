//! The `schema` check: required columns with their types, forbidden columns, changes since
//! the previous run.
//!
//! Types are written as Postgres type names (`integer`, `bigint`, `text`, `timestamptz`,
//! `numeric(12,2)`, `uuid`, `text[]`). A column matches when its Postgres type is that type
//! (Postgres connections report it), or, where only the Arrow type is known (the lake), when
//! its Arrow type is the lake's type for that name: there `uuid` and `text` both read as text.

use std::collections::BTreeMap;

use arrow_schema::{DataType, Schema};
use serde::{Deserialize, Serialize};

use crate::decode::pgtype::{PgType, arrow_type};
use crate::sql::PG_TYPE_KEY;

/// The canonical Postgres name of a type as written (`int` → `int4`), or `None` when unknown.
pub fn type_family(written: &str) -> Option<(String, PgType)> {
    let t = written.trim().to_ascii_lowercase();
    if let Some(elem) = t.strip_suffix("[]") {
        let (name, ty) = type_family(elem)?;
        return Some((format!("_{name}"), PgType::Array(Box::new(ty))));
    }
    let (base, args) = match t.split_once('(') {
        Some((b, rest)) => (
            b.trim().to_owned(),
            Some(rest.trim_end_matches(')').to_owned()),
        ),
        None => (t.clone(), None),
    };
    let named = |n: &str, ty| Some((n.to_owned(), ty));
    match base.as_str() {
        "bool" | "boolean" => named("bool", PgType::Bool),
        "int2" | "smallint" => named("int2", PgType::Int2),
        "int" | "int4" | "integer" => named("int4", PgType::Int4),
        "int8" | "bigint" => named("int8", PgType::Int8),
        "float4" | "real" => named("float4", PgType::Float4),
        "float8" | "double precision" | "float" => named("float8", PgType::Float8),
        "numeric" | "decimal" => {
            let (precision, scale) = match args.as_deref().map(|a| a.split_once(',')) {
                Some(Some((p, s))) => (p.trim().parse().ok()?, s.trim().parse().ok()?),
                Some(None) => (args.as_deref()?.trim().parse().ok()?, 0),
                None => (38, 10),
            };
            named("numeric", PgType::Decimal { precision, scale })
        }
        "text" | "varchar" | "character varying" | "char" | "character" | "bpchar" | "name"
        | "json" | "jsonb" => named(
            match base.as_str() {
                "varchar" | "character varying" => "varchar",
                "char" | "character" | "bpchar" => "bpchar",
                b => b,
            },
            PgType::Text,
        ),
        "uuid" => named("uuid", PgType::Uuid),
        "bytea" => named("bytea", PgType::Bytea),
        "date" => named("date", PgType::Date),
        "timestamp" | "timestamp without time zone" => named("timestamp", PgType::Timestamp),
        "timestamptz" | "timestamp with time zone" => named("timestamptz", PgType::Timestamptz),
        _ => None,
    }
}

/// One column as the previous run saw it, kept in the result's samples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The columns of a result schema: the Postgres type name when the target reports it, else
/// the Arrow type.
pub fn columns(schema: &Schema) -> Vec<Column> {
    schema
        .fields()
        .iter()
        .map(|f| Column {
            name: f.name().clone(),
            type_name: f
                .metadata()
                .get(PG_TYPE_KEY)
                .cloned()
                .unwrap_or_else(|| f.data_type().to_string()),
        })
        .collect()
}

/// Every way `schema` breaks the check, one message each (empty: it passes).
pub fn violations(
    schema: &Schema,
    required: &BTreeMap<String, String>,
    forbidden: &[String],
    previous: Option<&[Column]>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (col, written) in required {
        let Ok(field) = schema.field_with_name(col) else {
            out.push(format!("required column `{col}` is missing"));
            continue;
        };
        let Some((canonical, ty)) = type_family(written) else {
            continue;
        };
        let ok = match field.metadata().get(PG_TYPE_KEY) {
            Some(pg) => pg_name_matches(pg, &canonical),
            None => same_arrow(field.data_type(), &arrow_type(&ty), written.contains('(')),
        };
        if !ok {
            let actual = field
                .metadata()
                .get(PG_TYPE_KEY)
                .cloned()
                .unwrap_or_else(|| field.data_type().to_string());
            out.push(format!("column `{col}` is {actual}, not {written}"));
        }
    }
    for col in forbidden {
        if schema.field_with_name(col).is_ok() {
            out.push(format!("forbidden column `{col}` is present"));
        }
    }
    if let Some(prev) = previous {
        let now = columns(schema);
        for c in prev {
            match now.iter().find(|n| n.name == c.name) {
                None => out.push(format!(
                    "column `{}` was dropped since the last run",
                    c.name
                )),
                Some(n) if n.type_name != c.type_name => out.push(format!(
                    "column `{}` changed type from {} to {} since the last run",
                    c.name, c.type_name, n.type_name
                )),
                _ => {}
            }
        }
        for n in &now {
            if !prev.iter().any(|c| c.name == n.name) {
                out.push(format!("column `{}` was added since the last run", n.name));
            }
        }
    }
    out
}

fn pg_name_matches(reported: &str, canonical: &str) -> bool {
    let r = reported.to_ascii_lowercase();
    r == canonical || (canonical == "bpchar" && r == "char")
}

/// Lake columns: equal Arrow types; a decimal without a written precision matches any decimal;
/// time zones compared by presence (the lake writes UTC).
fn same_arrow(actual: &DataType, expected: &DataType, precise: bool) -> bool {
    match (actual, expected) {
        (DataType::Decimal128(..), DataType::Decimal128(..)) if !precise => true,
        (DataType::Timestamp(a, za), DataType::Timestamp(b, zb)) => {
            a == b && za.is_some() == zb.is_some()
        }
        (DataType::List(a), DataType::List(b)) => same_arrow(a.data_type(), b.data_type(), precise),
        _ => actual == expected,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_schema::{Field, TimeUnit};

    use super::*;

    fn pg_field(name: &str, dt: DataType, pg: &str) -> Field {
        Field::new(name, dt, true)
            .with_metadata(HashMap::from([(PG_TYPE_KEY.to_owned(), pg.to_owned())]))
    }

    #[test]
    fn required_types_match_by_postgres_name_then_arrow_type() {
        let pg = Schema::new(vec![
            pg_field("id", DataType::Int64, "int8"),
            pg_field("token", DataType::Utf8, "uuid"),
        ]);
        let req = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(
            violations(&pg, &req(&[("id", "bigint"), ("token", "uuid")]), &[], None).is_empty()
        );
        assert_eq!(
            violations(
                &pg,
                &req(&[("id", "integer"), ("token", "text"), ("gone", "text")]),
                &[],
                None
            ),
            vec![
                "required column `gone` is missing",
                "column `id` is int8, not integer",
                "column `token` is uuid, not text"
            ]
        );
        let lake = Schema::new(vec![
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("amount", DataType::Decimal128(12, 2), true),
        ]);
        assert!(
            violations(
                &lake,
                &req(&[("at", "timestamptz"), ("amount", "numeric")]),
                &[],
                None
            )
            .is_empty()
        );
        assert_eq!(
            violations(
                &lake,
                &req(&[("at", "timestamp"), ("amount", "numeric(10,2)")]),
                &["at".into()],
                None
            )
            .len(),
            3
        );
    }

    #[test]
    fn changes_since_the_last_run_are_named() {
        let now = Schema::new(vec![
            pg_field("a", DataType::Int32, "int4"),
            pg_field("c", DataType::Utf8, "text"),
        ]);
        let prev = vec![
            Column {
                name: "a".into(),
                type_name: "int8".into(),
            },
            Column {
                name: "b".into(),
                type_name: "text".into(),
            },
        ];
        assert_eq!(
            violations(&now, &BTreeMap::new(), &[], Some(&prev)),
            vec![
                "column `a` changed type from int8 to int4 since the last run",
                "column `b` was dropped since the last run",
                "column `c` was added since the last run"
            ]
        );
    }
}
