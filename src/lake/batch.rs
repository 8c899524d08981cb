//! Builds the Arrow record batch of one change table from captured changes.
//!
//! ```text
//!  Change.row    ──► ColumnBuilder per source column ─┐
//!  Change.before ──► ColumnBuilder per source column ─┼─► RecordBatch (change_schema)
//!  TxnMeta, op, seq, changed, unavailable ──► metadata builders ─┘
//! ```
//!
//! This is the hot path of capture: cells are parsed straight from their text into typed Arrow
//! builders, with no intermediate value per cell and no allocation per row.
//!
//! # Invariants
//! * One appended change is one row; `finish` returns every row appended since the last
//!   `finish`, in order, and leaves the builder empty and reusable.
//! * `_unavailable` of a row = the change's own unavailable columns ∪ the columns whose value
//!   could not be represented, in column order; those values are null.
//! * A value of the before image that cannot be represented is null in `_before` and counted in
//!   [`ChangeBatchBuilder::unavailable_values`] (the lake format has no place to list it).

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_buffer::NullBufferBuilder;
use arrow_schema::{ArrowError, DataType, Field, Fields, SchemaRef};

use super::column::ColumnBuilder;
use super::schema::{SchemaError, change_schema, source_fields};
use crate::capture::{Change, Op, TableInfo, TxnMeta};
use crate::decode::Cell;
use crate::decode::pgtype::LIST_ELEMENT;

/// Rough per-row cost of the fixed-width metadata columns, for [`ChangeBatchBuilder::approx_bytes`].
const METADATA_BYTES_PER_ROW: usize = 48;
/// Rough per-value cost of a source column besides its text bytes.
const BYTES_PER_VALUE: usize = 8;

/// Accumulates the changes of one table into Arrow builders.
pub struct ChangeBatchBuilder {
    table: Arc<TableInfo>,
    schema: SchemaRef,
    before_fields: Fields,
    columns: Vec<ColumnBuilder>,
    before: Vec<ColumnBuilder>,
    before_validity: NullBufferBuilder,
    op: StringBuilder,
    lsn: Int64Builder,
    seq: Int64Builder,
    xid: Int64Builder,
    commit_ts: TimestampMicrosecondBuilder,
    changed: ListBuilder<StringBuilder>,
    unavailable: ListBuilder<StringBuilder>,
    actor: StringBuilder,
    context: StringBuilder,
    /// Scratch: which columns of the row being appended are unavailable.
    row_unavailable: Vec<bool>,
    rows: usize,
    bytes: usize,
    unavailable_values: u64,
}

fn string_list_builder(capacity: usize) -> ListBuilder<StringBuilder> {
    ListBuilder::with_capacity(StringBuilder::new(), capacity).with_field(Arc::new(Field::new(
        LIST_ELEMENT,
        DataType::Utf8,
        true,
    )))
}

impl ChangeBatchBuilder {
    /// A builder for `table`'s change table, with room for `capacity` rows before growing.
    /// Fails when the table cannot have a change table (see [`change_schema`]).
    pub fn new(table: Arc<TableInfo>, capacity: usize) -> Result<Self, SchemaError> {
        let schema = change_schema(&table)?;
        let before_fields = source_fields(&table)?;
        let builders = || {
            table
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(&c.pg_type, capacity))
                .collect()
        };
        Ok(Self {
            schema,
            before_fields,
            columns: builders(),
            before: builders(),
            before_validity: NullBufferBuilder::new(capacity),
            op: StringBuilder::with_capacity(capacity, capacity),
            lsn: Int64Builder::with_capacity(capacity),
            seq: Int64Builder::with_capacity(capacity),
            xid: Int64Builder::with_capacity(capacity),
            commit_ts: TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            changed: string_list_builder(capacity),
            unavailable: string_list_builder(capacity),
            actor: StringBuilder::new(),
            context: StringBuilder::new(),
            row_unavailable: vec![false; table.columns.len()],
            rows: 0,
            bytes: 0,
            unavailable_values: 0,
            table,
        })
    }

    /// The table this builder writes.
    pub fn table(&self) -> &Arc<TableInfo> {
        &self.table
    }

    /// The schema of the batches [`finish`](Self::finish) returns.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// A rough size of the rows appended since the last [`finish`](Self::finish), in bytes
    /// (value text lengths plus fixed per-value costs), for the flush policy.
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// Values written as null because their lake type cannot hold them (out of range,
    /// malformed, multi-dimensional array, NaN numeric), in rows and before images, since the
    /// builder was created (not reset by [`finish`](Self::finish)).
    pub fn unavailable_values(&self) -> u64 {
        self.unavailable_values
    }

    /// Appends one change of a committed transaction as one row. `change.table` is expected to
    /// be this builder's table (cells are matched to columns by position).
    pub fn append(&mut self, txn: &TxnMeta, change: &Change) {
        self.row_unavailable.fill(false);
        for &i in &change.unavailable {
            if let Some(flag) = self.row_unavailable.get_mut(usize::from(i)) {
                *flag = true;
            }
        }
        let mut bytes = METADATA_BYTES_PER_ROW + self.columns.len() * BYTES_PER_VALUE;

        if change.op == Op::Truncate {
            self.columns.iter_mut().for_each(ColumnBuilder::append_null);
        } else {
            for (i, column) in self.columns.iter_mut().enumerate() {
                match change.row.get(i) {
                    Some(Cell::Text(text) | Cell::Binary(text)) => {
                        bytes += text.len();
                        if column.append_text(text).is_err() {
                            self.row_unavailable[i] = true;
                            self.unavailable_values += 1;
                        }
                    }
                    Some(Cell::Null) => column.append_null(),
                    // Not sent: the contract says capture resolved these; never guess.
                    Some(Cell::UnchangedToast) | None => {
                        column.append_null();
                        self.row_unavailable[i] = true;
                    }
                }
            }
        }

        match &change.before {
            None => {
                self.before.iter_mut().for_each(ColumnBuilder::append_null);
                self.before_validity.append_null();
            }
            Some(before) => {
                for (i, column) in self.before.iter_mut().enumerate() {
                    match before.row.get(i) {
                        Some(Cell::Text(text) | Cell::Binary(text)) => {
                            bytes += text.len();
                            if column.append_text(text).is_err() {
                                self.unavailable_values += 1;
                            }
                        }
                        Some(Cell::Null | Cell::UnchangedToast) | None => column.append_null(),
                    }
                }
                self.before_validity.append_non_null();
            }
        }

        let names = &self.table.columns;
        match &change.changed {
            None => self.changed.append_null(),
            Some(indices) => {
                for &i in indices {
                    if let Some(column) = names.get(usize::from(i)) {
                        self.changed.values().append_value(&column.name);
                    }
                }
                self.changed.append(true);
            }
        }
        for (column, _) in names.iter().zip(&self.row_unavailable).filter(|(_, u)| **u) {
            self.unavailable.values().append_value(&column.name);
        }
        self.unavailable.append(true);

        self.op.append_value(change.op.code());
        self.lsn.append_value(txn.commit_lsn.0 as i64);
        self.seq
            .append_value(i64::try_from(change.seq).unwrap_or(i64::MAX));
        self.xid.append_value(i64::from(txn.xid));
        self.commit_ts.append_value(txn.commit_ts_micros);
        let context = txn.context.as_ref();
        let actor = context.and_then(|c| c.actor.as_deref());
        let raw = context.map(|c| c.raw.as_str());
        bytes += actor.map_or(0, str::len) + raw.map_or(0, str::len);
        self.actor.append_option(actor);
        self.context.append_option(raw);

        self.rows += 1;
        self.bytes += bytes;
    }

    /// The rows appended since the last call, as a batch of [`schema`](Self::schema); the
    /// builder is empty afterwards and can be reused.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        self.bytes = 0;
        self.try_finish()
            .expect("change batch columns are built to match change_schema")
    }

    fn try_finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for column in &mut self.columns {
            arrays.push(column.finish()?);
        }
        arrays.push(Arc::new(self.op.finish()));
        arrays.push(Arc::new(self.lsn.finish()));
        arrays.push(Arc::new(self.seq.finish()));
        arrays.push(Arc::new(self.xid.finish()));
        arrays.push(Arc::new(self.commit_ts.finish()));
        let before = self
            .before
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<_, _>>()?;
        let before_validity = self.before_validity.finish();
        arrays.push(Arc::new(StructArray::try_new(
            self.before_fields.clone(),
            before,
            before_validity,
        )?));
        arrays.push(Arc::new(self.changed.finish()));
        arrays.push(Arc::new(self.unavailable.finish()));
        arrays.push(Arc::new(self.actor.finish()));
        arrays.push(Arc::new(self.context.finish()));
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

#[cfg(test)]
mod tests;
