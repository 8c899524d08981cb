//! Which change rows a filter selects, as DataFusion plans over one [`LakeView`]:
//! the count, one page of positions, the rows of a page, and every row (export).
//!
//! Filters are expressions on the stored columns (never SQL text built from input), so
//! Delta's file statistics prune what cannot match: `_commit_ts` for time filters and
//! cursors, the key columns for `resource_id`, `_lsn` when a page's rows are fetched.

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::ScalarValue;
use deltalake::datafusion::error::Result as DfResult;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::logical_expr::{Expr, ScalarUDF, cast, col, ident, lit};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};

use super::cursor::Position;
use super::params::EventFilter;
use crate::api::error::ApiError;
use crate::api::lake::{EventTable, LakeView};
use crate::lake::schema::{
    ACTOR, BEFORE, CHANGED, COMMIT_TS, CONTEXT, LSN, OP, SEQ, UNAVAILABLE, XID,
};

/// A table a filter may find events in, with the filter as an expression on its columns.
#[derive(Clone)]
pub struct Selected {
    /// Position of the table in the view (the tie-breaker of the order).
    pub index: u32,
    pub table: Arc<EventTable>,
    pub filter: Expr,
}

/// The metadata columns every event reads.
const META: [&str; 8] = [OP, LSN, SEQ, XID, COMMIT_TS, CHANGED, ACTOR, CONTEXT];

fn micros(us: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(us),
        Some("UTC".into()),
    ))
}

/// The tables `filter` may match in `view` and their predicates. An unknown
/// `event_resource_type` is a 400; a `resource_id` a table's key cannot hold drops the table.
pub fn select(
    view: &LakeView,
    filter: &EventFilter,
    udf: &ScalarUDF,
) -> Result<Vec<Selected>, ApiError> {
    let only = match &filter.table {
        None => None,
        Some(name) => Some(view.position(name).ok_or_else(|| {
            ApiError::parameter(
                "event_resource_type",
                format!(
                    "the lake has no table {name:?}: give schema.table (or table for public) \
                     as GET /tables lists them"
                ),
            )
        })?),
    };
    let mut common: Vec<Expr> = Vec::new();
    if let Some(from) = filter.from {
        common.push(ident(COMMIT_TS).gt_eq(micros(from * 1_000_000)));
    }
    if let Some(to) = filter.to {
        common.push(ident(COMMIT_TS).lt(micros((to + 1) * 1_000_000)));
    }
    if let Some(user) = &filter.user_id {
        common.push(ident(ACTOR).eq(lit(user.clone())));
    }
    if let Some(company) = &filter.company_id {
        common.push(udf.call(vec![ident(CONTEXT)]).eq(lit(company.clone())));
    }
    if let Some(op) = filter.event_type {
        common.push(ident(OP).eq(lit(op)));
    }
    let mut out = Vec::new();
    for (i, table) in view.tables.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let mut predicates = common.clone();
        if let Some(id) = &filter.resource_id {
            match key_predicate(table, id) {
                Some(p) => predicates.push(p),
                None => continue,
            }
        }
        out.push(Selected {
            index: i as u32,
            table: table.clone(),
            filter: predicates
                .into_iter()
                .reduce(Expr::and)
                .unwrap_or(lit(true)),
        });
    }
    Ok(out)
}

/// `key = value` for each key column, typed like the column (so file statistics prune);
/// `None` when the table has no key, the parts do not fit it, or a value cannot be of the
/// column's type.
pub fn key_predicate(table: &EventTable, id: &str) -> Option<Expr> {
    if table.key_columns.is_empty() {
        return None;
    }
    let parts: Vec<&str> = if table.key_columns.len() == 1 {
        vec![id]
    } else {
        id.split(',').collect()
    };
    if parts.len() != table.key_columns.len() {
        return None;
    }
    let schema = table.arrow_schema();
    let mut predicates = Vec::new();
    for (name, part) in table.key_columns.iter().zip(parts) {
        let field = schema.field_with_name(name).ok()?;
        let column = ident(name.clone());
        let predicate = match field.data_type() {
            t if t.is_integer() => column.eq(lit(part.trim().parse::<i64>().ok()?)),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => column.eq(lit(part)),
            _ => cast(column, DataType::Utf8).eq(lit(part)),
        };
        predicates.push(predicate);
    }
    predicates.into_iter().reduce(Expr::and)
}

/// Events strictly after `p` in the order (newest first) for the table at `index`.
fn after(p: &Position, index: u32) -> Expr {
    let seq = if index < p.table {
        ident(SEQ).lt_eq(lit(p.seq))
    } else {
        ident(SEQ).lt(lit(p.seq))
    };
    let same_ts = ident(LSN)
        .lt(lit(p.lsn))
        .or(ident(LSN).eq(lit(p.lsn)).and(seq));
    let ts = micros(p.ts);
    // The first conjunct is what the file statistics prune on.
    ident(COMMIT_TS).lt_eq(ts.clone()).and(
        ident(COMMIT_TS)
            .lt(ts.clone())
            .or(ident(COMMIT_TS).eq(ts).and(same_ts)),
    )
}

fn frame(ctx: &SessionContext, s: &Selected, extra: Option<Expr>) -> DfResult<DataFrame> {
    let filter = match extra {
        Some(e) => s.filter.clone().and(e),
        None => s.filter.clone(),
    };
    ctx.read_table(s.table.provider.clone())?.filter(filter)
}

/// How many events the selection holds.
pub async fn count(ctx: &SessionContext, selected: &[Selected]) -> DfResult<u64> {
    let mut total = 0u64;
    for s in selected {
        total += frame(ctx, s, None)?.count().await? as u64;
    }
    Ok(total)
}

/// The positions of one page: `limit` events after `offset` (or after `cursor`), newest first.
pub async fn page(
    ctx: &SessionContext,
    selected: &[Selected],
    cursor: Option<&Position>,
    offset: usize,
    limit: usize,
) -> DfResult<Vec<Position>> {
    let mut union: Option<DataFrame> = None;
    for s in selected {
        let df = frame(ctx, s, cursor.map(|p| after(p, s.index)))?.select(vec![
            lit(s.index as i64).alias("t"),
            cast(ident(COMMIT_TS), DataType::Int64).alias("ts"),
            ident(LSN),
            ident(SEQ),
        ])?;
        union = Some(match union {
            None => df,
            Some(u) => u.union(df)?,
        });
    }
    let Some(union) = union else {
        return Ok(Vec::new());
    };
    let batches = union
        .sort(vec![
            col("ts").sort(false, false),
            col(LSN).sort(false, false),
            col(SEQ).sort(false, false),
            col("t").sort(false, false),
        ])?
        .limit(offset, Some(limit))?
        .collect()
        .await?;
    let mut out = Vec::with_capacity(limit);
    for b in &batches {
        let cols: Vec<_> = (0..4)
            .map(|i| {
                deltalake::arrow::compute::cast(b.column(i), &DataType::Int64).map(|a| {
                    a.as_any()
                        .downcast_ref::<deltalake::arrow::array::Int64Array>()
                        .expect("cast to Int64")
                        .clone()
                })
            })
            .collect::<Result<_, _>>()?;
        for r in 0..b.num_rows() {
            out.push(Position {
                table: cols[0].value(r) as u32,
                ts: cols[1].value(r),
                lsn: cols[2].value(r),
                seq: cols[3].value(r),
            });
        }
    }
    Ok(out)
}

/// The columns an event reads: the metadata, the key, and with `values` every source column
/// and the before image.
pub fn columns(table: &EventTable, values: bool) -> Vec<Expr> {
    let mut names: Vec<String> = META.iter().map(|s| (*s).to_owned()).collect();
    if values {
        names.extend(table.source_columns.iter().cloned());
        names.push(BEFORE.to_owned());
        names.push(UNAVAILABLE.to_owned());
    } else {
        names.extend(table.key_columns.iter().cloned());
    }
    names.into_iter().map(ident).collect()
}

/// The rows of one table at `positions` (all of that table), in no particular order.
pub async fn fetch(
    ctx: &SessionContext,
    s: &Selected,
    positions: &[Position],
    values: bool,
) -> DfResult<Vec<RecordBatch>> {
    let lo = positions.iter().map(|p| p.ts).min().unwrap_or(0);
    let hi = positions.iter().map(|p| p.ts).max().unwrap_or(0);
    let mut lsns: Vec<i64> = positions.iter().map(|p| p.lsn).collect();
    lsns.sort_unstable();
    lsns.dedup();
    let within = ident(COMMIT_TS)
        .gt_eq(micros(lo))
        .and(ident(COMMIT_TS).lt_eq(micros(hi)))
        .and(ident(LSN).in_list(lsns.into_iter().map(lit).collect(), false));
    frame(ctx, s, Some(within))?
        .select(columns(&s.table, values))?
        .collect()
        .await
}

/// Every row of the selection's table `s`, as a stream (export).
pub async fn stream(
    ctx: &SessionContext,
    s: &Selected,
    values: bool,
) -> DfResult<SendableRecordBatchStream> {
    frame(ctx, s, None)?
        .select(columns(&s.table, values))?
        .execute_stream()
        .await
}
