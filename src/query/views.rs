//! The change log of a change table as the input of `current.<schema>.<table>` and
//! `as_of('<schema>.<table>', TIMESTAMP '…')` (folded by [`super::images`]).
//!
//! ```text
//!  change log ─► changes (≤ cutoff) ─► ORDER BY _lsn, snapshot reads first, _seq ─► fold
//! ```
//!
//! The sorted change log is planned once per table when the session opens: `current` without
//! a cutoff, `as_of` with a `$1` placeholder on `_commit_ts` that the table function fills with
//! its timestamp (a table function is called synchronously while planning, so it cannot plan
//! SQL itself).
//!
//! # Invariants
//! * The order of changes is `(_lsn, _seq)`, never `_lsn` alone; at equal `_lsn` a snapshot
//!   read (`r`, whose `_lsn` is its snapshot's consistent point) precedes a change (a
//!   transaction committed exactly at that point is not in the snapshot).
//! * A key is the table's key columns (`walaudit.keyColumns`); a table without a key, or with
//!   REPLICA IDENTITY FULL, is a multiset of whole rows.
//! * Output columns: the source columns, then `_lsn`, `_commit_ts`, `_actor` of the change
//!   that produced the image and `_unavailable`, the columns whose value no image holds.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, TimeUnit};
use deltalake::datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan};

use super::QueryError;
use super::images::{ImageSpec, ImageTable};
use crate::lake::CatalogTable;

/// Name of the table function.
pub const AS_OF: &str = "as_of";

/// `name` as a SQL identifier: always quoted, so case and odd characters are kept.
pub use crate::source::quote_ident;

/// The SQL of the change log of `table` in fold order (see [`super::images`]), read from
/// `catalog`; with `cutoff`, only changes committed at or before the `$1` placeholder.
pub fn changes_sql(catalog: &str, table: &CatalogTable, cutoff: bool) -> String {
    let source = format!(
        "{}.{}.{}",
        quote_ident(catalog),
        quote_ident(&table.schema),
        quote_ident(&table.name)
    );
    let mut columns: Vec<String> = table
        .source_columns
        .iter()
        .map(|c| quote_ident(c))
        .collect();
    columns.extend(
        [
            "_op",
            "_lsn",
            "_seq",
            "_commit_ts",
            "_actor",
            "_before",
            "_unavailable",
        ]
        .iter()
        .map(|c| quote_ident(c)),
    );
    let window = if cutoff {
        " WHERE \"_commit_ts\" <= $1"
    } else {
        ""
    };
    // At equal _lsn a snapshot read precedes a change: a transaction committed exactly at a
    // load's consistent point is not in its snapshot.
    format!(
        "SELECT {} FROM {source}{window} \
         ORDER BY \"_lsn\", CASE WHEN \"_op\" = 'r' THEN 0 ELSE 1 END, \"_seq\"",
        columns.join(", ")
    )
}

/// What the fold needs to know about `table`; `load_starts` are the first consistent points of
/// its finished historical loads.
pub fn image_spec(table: &CatalogTable, load_starts: Vec<i64>) -> ImageSpec {
    ImageSpec {
        source_columns: table.source_columns.clone(),
        key_columns: table.key_columns.clone(),
        multiset: table.multiset,
        load_starts,
    }
}

/// `as_of('<schema>.<table>', <timestamp>)`: each key's image as of the timestamp.
#[derive(Debug)]
pub struct AsOf {
    /// The sorted change log with the `$1` cutoff placeholder and the fold's spec, by
    /// `schema.table`.
    plans: HashMap<String, (LogicalPlan, ImageSpec)>,
    lake: String,
}

impl AsOf {
    pub fn new(plans: HashMap<String, (LogicalPlan, ImageSpec)>, lake: String) -> Self {
        AsOf { plans, lake }
    }

    fn entry(&self, table: &str) -> Result<&(LogicalPlan, ImageSpec)> {
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
        let (plan, spec) = self.entry(table)?;
        let plan = plan
            .clone()
            .with_param_values(vec![ScalarValue::TimestampMicrosecond(
                Some(cutoff),
                Some("UTC".into()),
            )])?;
        Ok(Arc::new(ImageTable::new(plan, spec.clone())?))
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
