//! Row images reconstructed from a change table: `current.<schema>.<table>` and
//! `as_of('<schema>.<table>', TIMESTAMP '…')`.
//!
//! ```text
//!  change log ─► changes (≤ cutoff) ─► drop rows before the last truncate
//!             ─► images: each row as of its change, plus a delete of the old key for an update
//!                that changed the key ─► latest per key by (_lsn, _seq) ─► drop deleted keys
//! ```
//!
//! Both are the same SQL plan, planned once per table when the session opens: `current` without
//! a cutoff, `as_of` with a `$1` placeholder on `_commit_ts` that the table function fills with
//! its timestamp (a table function is called synchronously while planning, so it cannot plan
//! SQL itself).
//!
//! # Invariants
//! * The order of changes is `(_lsn, _seq)`, never `_lsn` alone; at equal `_lsn` a snapshot
//!   read (`r`, whose `_lsn` is its snapshot's consistent point) precedes a change (a
//!   transaction committed exactly at that point is not in the snapshot).
//! * A key is the table's key columns (`walaudit.keyColumns`), or every source column when the
//!   table has none; a keyless table's duplicate rows collapse into one image.
//! * Output columns: the source columns, then `_lsn`, `_commit_ts`, `_actor` of the change
//!   that produced the image.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::datafusion::catalog::view::ViewTable;
use deltalake::datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan};

use super::QueryError;
use super::lake::LakeTable;

/// Name of the table function.
pub const AS_OF: &str = "as_of";
/// Internal rank column of the image plan (never in its output).
const RANK: &str = "__walaudit_rank";

/// `name` as a SQL identifier: always quoted, so case and odd characters are kept.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` as a SQL string literal.
fn quote_literal(name: &str) -> String {
    format!("'{}'", name.replace('\'', "''"))
}

/// The SQL of the image plan of `table`, read from `catalog`; with `cutoff`, only changes
/// committed at or before the `$1` placeholder count.
pub fn image_sql(catalog: &str, table: &LakeTable, cutoff: bool) -> String {
    let source = format!(
        "{}.{}.{}",
        quote_ident(catalog),
        quote_ident(&table.schema),
        quote_ident(&table.name)
    );
    let columns: Vec<String> = table
        .source_columns
        .iter()
        .map(|c| quote_ident(c))
        .collect();
    let columns = columns.join(", ");
    let before_columns: Vec<String> = table
        .source_columns
        .iter()
        .map(|c| format!("\"_before\"[{}] AS {}", quote_literal(c), quote_ident(c)))
        .collect();
    let key_changed: Vec<String> = table
        .key_columns
        .iter()
        .map(|k| {
            format!(
                "(\"_before\"[{}] IS DISTINCT FROM {})",
                quote_literal(k),
                quote_ident(k)
            )
        })
        .collect();
    let keys: Vec<String> = table.key_columns.iter().map(|k| quote_ident(k)).collect();
    let window = if cutoff {
        " WHERE \"_commit_ts\" <= $1"
    } else {
        ""
    };

    let mut sql = String::new();
    let _ = write!(
        sql,
        "WITH changes AS (SELECT * FROM {source}{window}), \
         last_truncate AS (SELECT coalesce(max(\"_lsn\"), -1) AS t_lsn \
             FROM changes WHERE \"_op\" = 't'), \
         last_truncate_seq AS (SELECT coalesce(max(c.\"_seq\"), -1) AS t_seq \
             FROM changes c CROSS JOIN last_truncate l \
             WHERE c.\"_op\" = 't' AND c.\"_lsn\" = l.t_lsn), \
         live AS (SELECT c.* FROM changes c CROSS JOIN last_truncate l \
             CROSS JOIN last_truncate_seq s \
             WHERE c.\"_op\" <> 't' AND (c.\"_lsn\" > l.t_lsn \
                 OR (c.\"_lsn\" = l.t_lsn AND c.\"_seq\" > s.t_seq))), \
         images AS (\
             SELECT {columns}, \"_op\", \"_lsn\", \"_seq\", \"_commit_ts\", \"_actor\" FROM live \
             UNION ALL \
             SELECT {before}, 'd' AS \"_op\", \"_lsn\", \"_seq\", \"_commit_ts\", \"_actor\" \
             FROM live WHERE \"_op\" = 'u' AND \"_before\" IS NOT NULL AND ({key_changed})), \
         ranked AS (SELECT *, row_number() OVER (PARTITION BY {keys} \
             ORDER BY \"_lsn\" DESC, (\"_op\" <> 'r') DESC, \"_seq\" DESC) AS {RANK} \
             FROM images) \
         SELECT {columns}, \"_lsn\", \"_commit_ts\", \"_actor\" FROM ranked \
         WHERE {RANK} = 1 AND \"_op\" <> 'd'",
        before = before_columns.join(", "),
        key_changed = key_changed.join(" OR "),
        keys = keys.join(", "),
    );
    sql
}

/// `as_of('<schema>.<table>', <timestamp>)`: each key's image as of the timestamp.
#[derive(Debug)]
pub struct AsOf {
    /// The image plan with the `$1` cutoff placeholder, by `schema.table`.
    plans: HashMap<String, LogicalPlan>,
    lake: String,
}

impl AsOf {
    pub fn new(plans: HashMap<String, LogicalPlan>, lake: String) -> Self {
        AsOf { plans, lake }
    }

    fn plan(&self, table: &str) -> Result<&LogicalPlan> {
        if let Some(plan) = self.plans.get(table) {
            return Ok(plan);
        }
        // Unquoted SQL names are lowercase: accept `Public.Orders` for `public.orders`.
        let lower = table.to_lowercase();
        let mut matches = self
            .plans
            .iter()
            .filter(|(name, _)| name.to_lowercase() == lower);
        match (matches.next(), matches.next()) {
            (Some((_, plan)), None) => Ok(plan),
            _ => Err(DataFusionError::External(Box::new(
                QueryError::TableNotFound {
                    table: table.to_owned(),
                    lake: self.lake.clone(),
                },
            ))),
        }
    }
}

impl TableFunctionImpl for AsOf {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let usage = || {
            DataFusionError::Plan(format!(
                "{AS_OF} takes a table name and a moment: \
                 {AS_OF}('public.orders', TIMESTAMP '2024-01-02 03:04:05')"
            ))
        };
        let [table, moment] = args.exprs() else {
            return Err(usage());
        };
        let Expr::Literal(
            ScalarValue::Utf8(Some(table))
            | ScalarValue::LargeUtf8(Some(table))
            | ScalarValue::Utf8View(Some(table)),
            _,
        ) = table
        else {
            return Err(usage());
        };
        let Expr::Literal(moment, _) = moment else {
            return Err(usage());
        };
        let cutoff = cutoff_micros(moment)?;
        let plan = self.plan(table)?.clone().with_param_values(vec![
            ScalarValue::TimestampMicrosecond(Some(cutoff), Some("UTC".into())),
        ])?;
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// A timestamp literal (or a string that casts to one) as microseconds since the epoch, UTC.
/// A timestamp without a zone is read as UTC.
pub fn cutoff_micros(moment: &ScalarValue) -> Result<i64> {
    let target = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    match moment.cast_to(&target) {
        Ok(ScalarValue::TimestampMicrosecond(Some(v), _)) => Ok(v),
        _ => Err(DataFusionError::Plan(format!(
            "{AS_OF} needs a moment such as TIMESTAMP '2024-01-02 03:04:05' or \
             '2024-01-02T03:04:05Z', not {moment}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(quote_ident("My \"odd\" name"), "\"My \"\"odd\"\" name\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn cutoffs() {
        let naive = ScalarValue::TimestampNanosecond(Some(1_704_164_645_123_456_789), None);
        assert_eq!(cutoff_micros(&naive).unwrap(), 1_704_164_645_123_456);
        let text = ScalarValue::Utf8(Some("2024-01-02T03:04:05Z".into()));
        assert_eq!(cutoff_micros(&text).unwrap(), 1_704_164_645_000_000);
        let zoned = ScalarValue::Utf8(Some("2024-01-02T05:04:05+02:00".into()));
        assert_eq!(cutoff_micros(&zoned).unwrap(), 1_704_164_645_000_000);
        let err = cutoff_micros(&ScalarValue::Utf8(Some("yesterday-ish".into()))).unwrap_err();
        assert!(err.to_string().contains("as_of needs a moment"), "{err}");
    }
}
