//! Builds the Arrow batches of a table's historical-load rows (`_op = 'r'`).
//!
//! ```text
//!  COPY field (text or binary) ──► ColumnBuilder per source column ─┐
//!  load constants (lsn, commit ts, first seq) at finish ──► metadata arrays ─┴─► RecordBatch
//! ```
//!
//! A historical row differs from a change only in its source columns: `_op`, `_lsn`, `_xid`,
//! `_commit_ts` are the load's constants, `_seq` counts up, `_before`, `_changed`, `_actor`,
//! `_context` are null. So the row loop touches only the source columns and the metadata
//! arrays are made in bulk when the batch is finished; the result is exactly what
//! [`ChangeBatchBuilder`](super::ChangeBatchBuilder) makes of the same rows (unit-tested).
//!
//! # Invariants
//! * The caller gives every row exactly one field per source column, in column order, then
//!   calls [`ReadBatchBuilder::end_row`].
//! * A value that cannot be represented is null and its column is in the row's `_unavailable`.

use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder as _, StringBuilder};
use arrow_array::{
    ArrayRef, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray, new_null_array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Fields, SchemaRef};

use super::column::ColumnBuilder;
use super::schema::{SchemaError, UNAVAILABLE, change_schema, source_fields};
use crate::capture::{Op, TableInfo};
use crate::decode::binary::BinaryKind;

/// Accumulates historical rows of one table.
pub struct ReadBatchBuilder {
    table: Arc<TableInfo>,
    schema: SchemaRef,
    before_fields: Fields,
    columns: Vec<ColumnBuilder>,
    lsn: i64,
    commit_ts_micros: i64,
    /// `_seq` of the next row.
    next_seq: i64,
    /// `_seq` of the first row of the batch being built.
    batch_seq: i64,
    /// Columns of the current row that were unavailable.
    row_unavailable: Vec<u16>,
    unavailable_offsets: Vec<i32>,
    unavailable_names: StringBuilder,
    rows: usize,
    unavailable_values: u64,
}

impl ReadBatchBuilder {
    /// A builder of `table`'s rows read at `lsn` (the snapshot's consistent point) and
    /// `commit_ts_micros`, the first numbered `first_seq`.
    pub fn new(
        table: Arc<TableInfo>,
        capacity: usize,
        lsn: i64,
        commit_ts_micros: i64,
        first_seq: i64,
    ) -> Result<Self, SchemaError> {
        let schema = change_schema(&table)?;
        let before_fields = source_fields(&table)?;
        let columns = table
            .columns
            .iter()
            .map(|c| ColumnBuilder::new(&c.pg_type, capacity))
            .collect();
        Ok(Self {
            table,
            schema,
            before_fields,
            columns,
            lsn,
            commit_ts_micros,
            next_seq: first_seq,
            batch_seq: first_seq,
            row_unavailable: Vec::new(),
            unavailable_offsets: vec![0],
            unavailable_names: StringBuilder::new(),
            rows: 0,
            unavailable_values: 0,
        })
    }

    /// The table this builder writes (its lake shape).
    pub fn table(&self) -> &Arc<TableInfo> {
        &self.table
    }

    /// Rows since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Values written as null because their lake type cannot hold them, since creation.
    pub fn unavailable_values(&self) -> u64 {
        self.unavailable_values
    }

    /// Appends column `column`'s value of the current row from its text form (`None`: SQL
    /// null).
    pub fn text(&mut self, column: usize, text: Option<&[u8]>) {
        let builder = &mut self.columns[column];
        match text {
            None => builder.append_null(),
            Some(text) => {
                if builder.append_text(text).is_err() {
                    self.unavailable(column);
                }
            }
        }
    }

    /// Appends column `column`'s value of the current row from its binary form.
    pub fn binary(&mut self, column: usize, kind: BinaryKind, bytes: Option<&[u8]>) {
        let builder = &mut self.columns[column];
        match bytes {
            None => builder.append_null(),
            Some(bytes) => {
                if builder.append_binary(kind, bytes).is_err() {
                    self.unavailable(column);
                }
            }
        }
    }

    fn unavailable(&mut self, column: usize) {
        self.unavailable_values += 1;
        // Column counts fit u16 (Postgres allows 1600 columns).
        self.row_unavailable.push(column as u16);
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        for &i in &self.row_unavailable {
            self.unavailable_names
                .append_value(&self.table.columns[usize::from(i)].name);
        }
        self.row_unavailable.clear();
        let end = self.unavailable_names.len() as i32;
        self.unavailable_offsets.push(end);
        self.rows += 1;
        self.next_seq += 1;
    }

    /// The rows since the last call as a batch of the table's change schema; the builder is
    /// empty afterwards and continues the `_seq` numbering.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let n = self.rows;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for column in &mut self.columns {
            arrays.push(column.finish()?);
        }
        arrays.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(Op::Read.code(), n),
        )));
        arrays.push(Arc::new(Int64Array::from(vec![self.lsn; n])));
        arrays.push(Arc::new(Int64Array::from_iter_values(
            self.batch_seq..self.next_seq,
        )));
        arrays.push(Arc::new(Int64Array::from(vec![0; n])));
        arrays.push(Arc::new(
            TimestampMicrosecondArray::from(vec![self.commit_ts_micros; n]).with_timezone("UTC"),
        ));
        let before_children = self
            .before_fields
            .iter()
            .map(|f| new_null_array(f.data_type(), n))
            .collect();
        arrays.push(Arc::new(StructArray::try_new(
            self.before_fields.clone(),
            before_children,
            Some(NullBuffer::new_null(n)),
        )?));
        let list_type = self
            .schema
            .field_with_name(UNAVAILABLE)
            .map(|f| f.data_type().clone())?;
        arrays.push(new_null_array(&list_type, n));
        let DataType::List(element) = list_type else {
            return Err(ArrowError::SchemaError("_unavailable is not a list".into()));
        };
        let offsets = std::mem::replace(&mut self.unavailable_offsets, vec![0]);
        arrays.push(Arc::new(ListArray::try_new(
            element,
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Arc::new(self.unavailable_names.finish()),
            None,
        )?));
        arrays.push(new_null_array(&DataType::Utf8, n));
        arrays.push(new_null_array(&DataType::Utf8, n));
        self.rows = 0;
        self.batch_seq = self.next_seq;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{Change, ColumnInfo, TxnMeta};
    use crate::decode::binary::binary_kind;
    use crate::decode::{Cell, PgType, ReplicaIdentity};
    use crate::lake::ChangeBatchBuilder;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Int64Type};
    use bytes::Bytes;

    fn table() -> Arc<TableInfo> {
        let column = |name: &str, type_oid: u32, pg_type: PgType, is_key: bool| ColumnInfo {
            name: name.into(),
            type_oid,
            type_modifier: -1,
            is_key,
            pg_type,
        };
        Arc::new(TableInfo {
            oid: 16500,
            schema: "public".into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                column("id", 20, PgType::Int8, true),
                column("born", 1082, PgType::Date, false),
                column("note", 25, PgType::Text, false),
            ],
        })
    }

    /// The same rows through both builders give equal batches, including an unrepresentable
    /// value, a null, and `_seq` continuing across batches.
    #[test]
    fn equals_the_change_builder() {
        let table = table();
        let rows: [[Option<&str>; 3]; 3] = [
            [Some("1"), Some("2024-02-29"), Some("a")],
            [Some("2"), Some("0044-03-15 BC"), None],
            [Some("3"), None, Some("")],
        ];
        let txn = TxnMeta {
            xid: 0,
            commit_lsn: crate::Lsn(0x1234),
            end_lsn: crate::Lsn(0x1234),
            commit_ts_micros: 99,
            origin: None,
            context: None,
            change_count: 0,
            streamed: false,
        };
        let mut reference = ChangeBatchBuilder::new(Arc::clone(&table), 4).unwrap();
        let mut ours = ReadBatchBuilder::new(Arc::clone(&table), 4, 0x1234, 99, 7).unwrap();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let change = Change {
                table: Arc::clone(&table),
                op: Op::Read,
                seq: 7 + i as u64,
                row: row
                    .iter()
                    .map(|c| c.map_or(Cell::Null, |t| Cell::Text(Bytes::from(t.to_owned()))))
                    .collect(),
                before: None,
                changed: None,
                unavailable: Vec::new(),
                truncate_options: 0,
            };
            reference.append(&txn, &change);
            for (c, cell) in row.iter().enumerate() {
                ours.text(c, cell.map(str::as_bytes));
            }
            ours.end_row();
            if i == 1 {
                expected.push(reference.finish());
                got.push(ours.finish().unwrap());
            }
        }
        expected.push(reference.finish());
        got.push(ours.finish().unwrap());
        assert_eq!(got, expected);
        assert_eq!(ours.unavailable_values(), 1);
    }

    #[test]
    fn binary_fields() {
        let table = table();
        let kinds: Vec<BinaryKind> = table
            .columns
            .iter()
            .map(|c| binary_kind(c.type_oid, &c.pg_type).unwrap())
            .collect();
        let mut ours = ReadBatchBuilder::new(Arc::clone(&table), 4, 1, 2, 0).unwrap();
        ours.binary(0, kinds[0], Some(&5i64.to_be_bytes()));
        ours.binary(1, kinds[1], Some(&[0, 0]));
        ours.binary(2, kinds[2], None);
        ours.end_row();
        let batch = ours.finish().unwrap();
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 5);
        assert!(batch.column(1).as_primitive::<Date32Type>().is_null(0));
        assert!(batch.column(2).is_null(0));
        let unavailable = batch
            .column_by_name(UNAVAILABLE)
            .unwrap()
            .as_list::<i32>()
            .value(0);
        assert_eq!(unavailable.as_string::<i32>().value(0), "born");
    }
}
