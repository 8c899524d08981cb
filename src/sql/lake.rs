//! The seam over the lake: [`LakeQuery`]'s read-only path, with a deadline per query and the
//! session's memory pool per handle.
//!
//! ```text
//!  query(sql, limits) ─► refuse non-queries ─► LakeQuery::stream (SQLOptions: no DDL, DML,
//!                                              statements) ─► batches ─► Collector (limits)
//!  deadline ─► the stream is dropped ─► DataFusion's tasks for the query are aborted
//! ```
//!
//! # Invariants
//! * SQL reaches the DataFusion session only through [`LakeQuery`]'s read-only planning path;
//!   there is no other way to it.
//! * The deadline is the smaller of [`Limits::deadline`] and the session's own timeout.
//! * Queries run concurrently on one handle and share its memory pool
//!   ([`crate::query::LakeOptions::memory_limit`]); a query that needs more than the pool
//!   fails with [`SqlError::ResourcesExhausted`] (operators that can spill do first).
//! * Columns have the Arrow types of the other targets: DataFusion's view types (`Utf8View`,
//!   `BinaryView`, also inside lists and structs) come back as `Utf8` and `Binary`; values,
//!   names, nullability and metadata are DataFusion's.
//! * The handle reads the table versions of the moment its [`LakeQuery`] was opened: open a
//!   new one to see newer commits.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use tokio::time::{Instant, timeout_at};

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef};

use super::{Collector, Dialect, Limits, ReadOnlySql, ResultSet, SqlError, statement};
use crate::query::{LakeOptions, LakeQuery, QueryError};

/// A read-only handle on the lake.
#[derive(Debug, Clone)]
pub struct LakeTarget {
    query: Arc<LakeQuery>,
    target: String,
}

impl LakeTarget {
    /// Opens the lake at `lake` (see [`LakeQuery::open`]).
    pub async fn open(lake: &str, options: LakeOptions) -> Result<LakeTarget, QueryError> {
        Ok(LakeTarget::new(Arc::new(
            LakeQuery::open(lake, options).await?,
        )))
    }

    /// A handle on an open session.
    pub fn new(query: Arc<LakeQuery>) -> LakeTarget {
        let target = format!("lake {}", query.lake());
        LakeTarget { query, target }
    }

    /// The session the handle reads through.
    pub fn lake_query(&self) -> &Arc<LakeQuery> {
        &self.query
    }
}

#[async_trait]
impl ReadOnlySql for LakeTarget {
    fn target(&self) -> &str {
        &self.target
    }

    fn dialect(&self) -> Dialect {
        Dialect::DataFusion
    }

    async fn query(&self, sql: &str, limits: &Limits) -> Result<ResultSet, SqlError> {
        statement::refuse_non_query(&self.target, sql)?;
        let started = Instant::now();
        let deadline = match self.query.timeout() {
            Some(timeout) => limits.deadline.min(timeout),
            None => limits.deadline,
        };
        let lake_err = |e| SqlError::from_lake(e, &self.target);
        let run = async {
            let mut stream = self.query.stream(sql).await.map_err(lake_err)?;
            let schema = plain_schema(&stream.schema());
            let mut collector = Collector::new(&self.target, limits);
            while let Some(batch) = stream
                .try_next()
                .await
                .map_err(|e| lake_err(QueryError::from_datafusion(e, self.query.lake())))?
            {
                collector
                    .push(to_plain(batch, &schema).map_err(|e| cast_error(&self.target, e))?)?;
            }
            Ok(collector.finish(schema))
        };
        let result = timeout_at(started + deadline, run)
            .await
            .unwrap_or_else(|_| {
                Err(SqlError::Timeout {
                    target: self.target.clone(),
                    deadline,
                })
            });
        if let Ok(result) = &result {
            tracing::debug!(target = %self.target, rows = result.num_rows(),
                elapsed_ms = started.elapsed().as_millis() as u64, "read-only query done");
        }
        result
    }
}

/// `schema` with the view types replaced (see the module docs).
fn plain_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema.fields().iter().map(|f| plain_field(f)).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn plain_field(field: &Field) -> Field {
    field.clone().with_data_type(plain_type(field.data_type()))
}

fn plain_type(ty: &DataType) -> DataType {
    match ty {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(Arc::new(plain_field(f))),
        DataType::LargeList(f) => DataType::LargeList(Arc::new(plain_field(f))),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(Arc::new(plain_field(f)), *n),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| plain_field(f)).collect::<Fields>())
        }
        other => other.clone(),
    }
}

/// `batch` as a batch of `schema` (its plain form), casting the columns whose type differs.
fn to_plain(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                deltalake::arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

fn cast_error(target: &str, err: ArrowError) -> SqlError {
    SqlError::Sql {
        target: target.to_owned(),
        sqlstate: None,
        message: format!("the result could not be converted to plain Arrow types: {err}"),
        hint: "cast the column to VARCHAR in the query".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::{Array, ArrayRef, Int64Array, ListArray, StringViewArray};

    use super::*;

    #[test]
    fn view_types_become_plain_types() {
        let views: ArrayRef = Arc::new(StringViewArray::from(vec![Some("a"), None]));
        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1)]),
            None,
        ]));
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let batch = RecordBatch::try_from_iter([("s", views), ("l", list), ("id", ids)]).unwrap();
        let schema = plain_schema(&batch.schema());
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(
            schema.field(1).data_type(),
            batch.schema().field(1).data_type()
        );
        let plain = to_plain(batch, &schema).unwrap();
        assert_eq!(plain.schema(), schema);
        let s = plain.column(0).as_string::<i32>();
        assert_eq!((s.value(0), s.is_null(1)), ("a", true));
        let nested = DataType::List(Arc::new(Field::new("element", DataType::Utf8View, true)));
        assert_eq!(
            plain_type(&nested),
            DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)))
        );
    }
}
