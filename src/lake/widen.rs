//! Lossless widenings of a change table's column type (int2→int4→int8, float4→float8, a wider
//! decimal): the column keeps its name, and the table is rewritten once with the wider type.
//!
//! ```text
//!  Relation message (new type) + Delta schema ──► widenings ──► none: nothing to do
//!                                                  └─► rewrite: SELECT every column, the
//!                                                      widened ones (and their `_before` fields)
//!                                                      cast ──► one overwrite commit
//! ```
//!
//! Delta's own type-widening table feature would avoid the rewrite, but the readers walaudit
//! promises (delta-rs, DuckDB, Spark, Trino) do not all read it, and delta-rs cannot write it.
//! A rewrite keeps the table a plain Delta table every reader understands.
//!
//! # Invariants
//! * Every row of the table is in the overwrite commit, cast exactly (a widening never changes
//!   a value), so nothing is lost; the overwrite removes only the files it read.
//! * The exactly-once markers (`txn` actions) are table state, not files: the rewrite keeps them.
//! * Table properties (`walaudit.*`) are kept.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields};
use deltalake::DeltaTableError;
use deltalake::datafusion::common::Column;
use deltalake::datafusion::logical_expr::{Expr, cast};
use deltalake::delta_datafusion::create_session;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;

use super::evolve::widens;
use super::schema::BEFORE;
use super::{LakeError, LakeTable};
use crate::capture::TableInfo;
use crate::decode::pgtype::arrow_type;

/// A column whose Delta type the source's new type widens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Widening {
    pub column: String,
    pub from: DataType,
    pub to: DataType,
}

/// The columns of `info` whose Delta column (in `delta`) is narrower than their new type and
/// widens to it losslessly.
pub fn widenings(info: &TableInfo, delta: &arrow_schema::Schema) -> Vec<Widening> {
    info.columns
        .iter()
        .filter_map(|column| {
            let existing = delta.field_with_name(&column.name).ok()?;
            let to = arrow_type(&column.pg_type);
            (existing.data_type() != &to && widens(existing.data_type(), &to)).then(|| Widening {
                column: column.name.clone(),
                from: existing.data_type().clone(),
                to,
            })
        })
        .collect()
}

/// Widens the columns of `lake` that `info`'s new types widen (see the module docs); returns
/// what it widened.
pub async fn widen_for(lake: &mut LakeTable, info: &TableInfo) -> Result<Vec<Widening>, LakeError> {
    let delta = lake.arrow_schema()?;
    let widened = widenings(info, &delta);
    if widened.is_empty() {
        return Ok(widened);
    }
    let name = lake.name().to_owned();
    let err = |e: DeltaTableError| LakeError::delta("widen a column of", name.clone(), e);
    let df_err = |e| err(DeltaTableError::from(e));

    let target = |name: &str| widened.iter().find(|w| w.column == name).map(|w| &w.to);
    // delta-rs' own session: its write plan needs delta-rs' query planner.
    let ctx = create_session().into_inner();
    let provider = lake.delta().table_provider().await.map_err(df_err)?;
    let frame = ctx.read_table(provider).map_err(df_err)?;
    let exprs: Vec<Expr> = delta
        .fields()
        .iter()
        .map(|field| {
            let column = Expr::Column(Column::from_name(field.name()));
            let to = match (target(field.name()), field.data_type()) {
                (Some(to), _) => to.clone(),
                (None, DataType::Struct(children)) if field.name() == BEFORE => {
                    DataType::Struct(widened_fields(children, &target))
                }
                _ => return column,
            };
            cast(column, to).alias(field.name())
        })
        .collect();
    let plan = frame.select(exprs).map_err(df_err)?.into_unoptimized_plan();
    let table = lake
        .delta()
        .clone()
        .write(Vec::new())
        .with_input_plan(plan)
        .with_session_state(Arc::new(ctx.state()))
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .await
        .map_err(err)?;
    lake.set_delta(table);
    for w in &widened {
        tracing::info!(
            table = %info.qualified_name(), column = %w.column, from = %w.from, to = %w.to,
            "column type widened: the change table was rewritten with the wider type"
        );
    }
    Ok(widened)
}

fn widened_fields<'a>(children: &Fields, target: &impl Fn(&str) -> Option<&'a DataType>) -> Fields {
    children
        .iter()
        .map(|f| match target(f.name()) {
            Some(to) => Arc::new(Field::new(f.name(), to.clone(), true)),
            None => Arc::clone(f),
        })
        .collect()
}
