//! The folded state as output batches: the source columns back from Arrow's row format, then
//! `_lsn`, `_commit_ts`, `_actor`, `_unavailable`; a multiset row once per copy.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::SchemaRef;
use deltalake::arrow::row::{OwnedRow, RowConverter};
use deltalake::datafusion::error::Result;
use deltalake::datafusion::execution::memory_pool::MemoryReservation;

use super::Meta;

/// The result of a fold, as batches.
pub struct Images {
    pub(super) entries: Box<dyn Iterator<Item = (OwnedRow, Meta, u64)> + Send>,
    /// A multiset row with copies left to emit.
    pub(super) pending: Option<(OwnedRow, Meta, u64)>,
    pub(super) rows: RowConverter,
    pub(super) names: Vec<String>,
    pub(super) output: SchemaRef,
    pub(super) batch_size: usize,
    /// Held until the last batch is out.
    pub(super) _reservation: MemoryReservation,
}

impl Iterator for Images {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut chunk: Vec<(OwnedRow, Meta)> = Vec::with_capacity(self.batch_size);
        while chunk.len() < self.batch_size {
            let Some((row, meta, count)) = self.pending.take().or_else(|| self.entries.next())
            else {
                break;
            };
            chunk.push((row.clone(), meta.clone()));
            if count > 1 {
                self.pending = Some((row, meta, count - 1));
            }
        }
        if chunk.is_empty() {
            return None;
        }
        Some(self.batch(&chunk))
    }
}

impl Images {
    fn batch(&self, chunk: &[(OwnedRow, Meta)]) -> Result<RecordBatch> {
        let mut columns = self.rows.convert_rows(chunk.iter().map(|(r, _)| r.row()))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            chunk.iter().map(|(_, m)| m.lsn),
        )));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from_iter(chunk.iter().map(|(_, m)| m.commit_ts))
                .with_timezone("UTC"),
        ));
        columns.push(Arc::new(StringArray::from_iter(
            chunk.iter().map(|(_, m)| m.actor.as_deref()),
        )));
        let mut unavailable = ListBuilder::new(StringBuilder::new());
        for (_, meta) in chunk {
            for &c in &meta.unavailable {
                unavailable.values().append_value(&self.names[c]);
            }
            unavailable.append(true);
        }
        columns.push(Arc::new(unavailable.finish()));
        Ok(RecordBatch::try_new(Arc::clone(&self.output), columns)?)
    }
}
