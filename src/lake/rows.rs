//! Columns of the engine's own tables: the timestamp type they use, array builders from
//! iterators, and typed reads that accept whatever string or timestamp encoding a scan returns.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, TimeUnit};

/// The timestamp type of every engine table: microseconds, UTC.
pub fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A text column.
pub fn texts<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    let mut b = StringBuilder::new();
    values.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

/// A long column.
pub fn longs(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    let mut b = Int64Builder::new();
    values.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

/// A [`utc_micros`] column from microseconds since the epoch.
pub fn times(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    values.for_each(|v| b.append_option(v));
    Arc::new(b.finish())
}

/// Column `name` cast to `to` (a scan may return view or large string types).
pub fn column_as(batch: &RecordBatch, name: &str, to: &DataType) -> Option<ArrayRef> {
    arrow_cast::cast(batch.column_by_name(name)?, to).ok()
}

/// Column `name` as text.
pub fn read_texts(batch: &RecordBatch, name: &str) -> Option<StringArray> {
    column_as(batch, name, &DataType::Utf8)?
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
}

/// Column `name` as longs.
pub fn read_longs(batch: &RecordBatch, name: &str) -> Option<Int64Array> {
    column_as(batch, name, &DataType::Int64)?
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
}

/// Timestamp column `name` as microseconds since the epoch.
pub fn read_micros(batch: &RecordBatch, name: &str) -> Option<Int64Array> {
    let ts = column_as(
        batch,
        name,
        &DataType::Timestamp(TimeUnit::Microsecond, None),
    )?;
    arrow_cast::cast(&ts, &DataType::Int64)
        .ok()?
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
}
