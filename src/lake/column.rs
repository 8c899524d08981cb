//! One typed Arrow builder per source column: cell text in, Arrow values out.
//!
//! ```text
//!  cell text ──► value::parse_* ──► Int64Builder / StringBuilder / ... ──► ArrayRef
//!                      └── Err ──► append null, return the error (caller lists the column)
//! ```
//!
//! # Invariants
//! * Every append adds exactly one slot, value or null, whatever the input.
//! * No per-cell allocation for scalar types (bytea decodes into a reused scratch buffer).
//! * An array value is validated element by element before any element is appended, so a bad
//!   element makes the whole value null instead of leaving garbage in the child array.
//! * The finished array's type is exactly [`arrow_type`] of the column's [`PgType`].

use std::sync::Arc;

use arrow_array::ArrayRef;
use arrow_array::ListArray;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, FieldRef};

use crate::decode::PgType;
use crate::decode::binary::{self, BinaryKind};
use crate::decode::pgtype::{LIST_ELEMENT, arrow_type};
use crate::decode::value::{self, ValueError, ValueResult};

/// Bytes reserved per text value when a builder is created.
const TEXT_BYTES_PER_ROW: usize = 16;

pub(crate) enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int2(Int16Builder),
    Int4(Int32Builder),
    Int8(Int64Builder),
    Float4(Float32Builder),
    Float8(Float64Builder),
    Decimal {
        builder: Decimal128Builder,
        precision: u8,
        scale: i8,
    },
    Text(StringBuilder),
    Uuid(StringBuilder),
    Bytea {
        builder: BinaryBuilder,
        scratch: Vec<u8>,
    },
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Timestamptz(TimestampMicrosecondBuilder),
    List(Box<ListColumn>),
}

pub(crate) struct ListColumn {
    elem: PgType,
    field: FieldRef,
    offsets: Vec<i32>,
    validity: NullBufferBuilder,
    values: ColumnBuilder,
}

impl ColumnBuilder {
    pub(crate) fn new(ty: &PgType, capacity: usize) -> Self {
        let text = || StringBuilder::with_capacity(capacity, capacity * TEXT_BYTES_PER_ROW);
        match ty {
            PgType::Bool => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            PgType::Int2 => Self::Int2(Int16Builder::with_capacity(capacity)),
            PgType::Int4 => Self::Int4(Int32Builder::with_capacity(capacity)),
            PgType::Int8 => Self::Int8(Int64Builder::with_capacity(capacity)),
            PgType::Float4 => Self::Float4(Float32Builder::with_capacity(capacity)),
            PgType::Float8 => Self::Float8(Float64Builder::with_capacity(capacity)),
            PgType::Decimal { precision, scale } => Self::Decimal {
                builder: Decimal128Builder::with_capacity(capacity)
                    .with_data_type(DataType::Decimal128(*precision, *scale)),
                precision: *precision,
                scale: *scale,
            },
            PgType::Text => Self::Text(text()),
            PgType::Uuid => Self::Uuid(StringBuilder::with_capacity(capacity, capacity * 36)),
            PgType::Bytea => Self::Bytea {
                builder: BinaryBuilder::with_capacity(capacity, capacity * TEXT_BYTES_PER_ROW),
                scratch: Vec::new(),
            },
            PgType::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            PgType::Timestamp => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            PgType::Timestamptz => Self::Timestamptz(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            PgType::Array(elem) => {
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                Self::List(Box::new(ListColumn {
                    elem: (**elem).clone(),
                    field: Arc::new(Field::new(LIST_ELEMENT, arrow_type(elem), true)),
                    offsets,
                    validity: NullBufferBuilder::new(capacity),
                    values: ColumnBuilder::new(elem, capacity),
                }))
            }
        }
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int2(b) => b.append_null(),
            Self::Int4(b) => b.append_null(),
            Self::Int8(b) => b.append_null(),
            Self::Float4(b) => b.append_null(),
            Self::Float8(b) => b.append_null(),
            Self::Decimal { builder, .. } => builder.append_null(),
            Self::Text(b) | Self::Uuid(b) => b.append_null(),
            Self::Bytea { builder, .. } => builder.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Timestamp(b) | Self::Timestamptz(b) => b.append_null(),
            Self::List(list) => {
                let end = *list.offsets.last().unwrap_or(&0);
                list.offsets.push(end);
                list.validity.append_null();
            }
        }
    }

    /// Appends the value whose Postgres text form is `text`. When it cannot be represented
    /// (malformed, out of range, not one-dimensional) a null is appended and the error returned.
    pub(crate) fn append_text(&mut self, text: &[u8]) -> ValueResult<()> {
        let result = self.try_append(text);
        if result.is_err() {
            self.append_null();
        }
        result
    }

    /// Appends the value, or nothing at all on error.
    fn try_append(&mut self, text: &[u8]) -> ValueResult<()> {
        match self {
            Self::Bool(b) => b.append_value(value::parse_bool(text)?),
            Self::Int2(b) => b.append_value(value::parse_i16(text)?),
            Self::Int4(b) => b.append_value(value::parse_i32(text)?),
            Self::Int8(b) => b.append_value(value::parse_i64(text)?),
            Self::Float4(b) => b.append_value(value::parse_f32(text)?),
            Self::Float8(b) => b.append_value(value::parse_f64(text)?),
            Self::Decimal {
                builder,
                precision,
                scale,
            } => builder.append_value(value::parse_decimal(text, *precision, *scale)?),
            Self::Text(b) => b.append_value(value::parse_text(text)?),
            Self::Uuid(b) => b.append_value(value::parse_uuid(text)?.as_str()),
            Self::Bytea { builder, scratch } => {
                value::decode_bytea_into(text, scratch)?;
                builder.append_value(&scratch[..]);
            }
            Self::Date(b) => b.append_value(value::parse_date(text)?),
            Self::Timestamp(b) => b.append_value(value::parse_timestamp(text)?),
            Self::Timestamptz(b) => b.append_value(value::parse_timestamptz(text)?),
            Self::List(list) => list.try_append(text)?,
        }
        Ok(())
    }

    /// Appends the value whose binary form (`COPY … (FORMAT binary)`) is `bytes`, read as
    /// `kind` (which [`binary_kind`](crate::decode::binary::binary_kind) chose for this
    /// column's type). Like [`append_text`](Self::append_text): a null and the error when the
    /// value cannot be represented.
    pub(crate) fn append_binary(&mut self, kind: BinaryKind, bytes: &[u8]) -> ValueResult<()> {
        let result = self.try_append_binary(kind, bytes);
        if result.is_err() {
            self.append_null();
        }
        result
    }

    fn try_append_binary(&mut self, kind: BinaryKind, bytes: &[u8]) -> ValueResult<()> {
        match (self, kind) {
            (Self::Bool(b), BinaryKind::Bool) => b.append_value(binary::decode_bool(bytes)?),
            (Self::Int2(b), BinaryKind::Int2) => b.append_value(binary::decode_i16(bytes)?),
            (Self::Int4(b), BinaryKind::Int4) => b.append_value(binary::decode_i32(bytes)?),
            (Self::Int8(b), BinaryKind::Int8) => b.append_value(binary::decode_i64(bytes)?),
            (Self::Int8(b), BinaryKind::Oid) => b.append_value(binary::decode_oid(bytes)?),
            (Self::Float4(b), BinaryKind::Float4) => b.append_value(binary::decode_f32(bytes)?),
            (Self::Float8(b), BinaryKind::Float8) => b.append_value(binary::decode_f64(bytes)?),
            (
                Self::Decimal {
                    builder,
                    precision,
                    scale,
                },
                BinaryKind::Decimal { .. },
            ) => builder.append_value(binary::decode_numeric(bytes, *precision, *scale)?),
            (Self::Text(b), BinaryKind::Text) => b.append_value(value::parse_text(bytes)?),
            (Self::Text(b), BinaryKind::Jsonb) => b.append_value(binary::decode_jsonb(bytes)?),
            (Self::Uuid(b), BinaryKind::Uuid) => {
                b.append_value(binary::decode_uuid(bytes)?.as_str());
            }
            (Self::Bytea { builder, .. }, BinaryKind::Bytea) => builder.append_value(bytes),
            (Self::Date(b), BinaryKind::Date) => b.append_value(binary::decode_date(bytes)?),
            (Self::Timestamp(b) | Self::Timestamptz(b), BinaryKind::Timestamp) => {
                b.append_value(binary::decode_timestamp(bytes)?);
            }
            // binary_kind never pairs a kind with another lake type.
            _ => return Err(ValueError::Malformed),
        }
        Ok(())
    }

    /// The column's array; the builder is reset for the next batch.
    pub(crate) fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int2(b) => Arc::new(b.finish()),
            Self::Int4(b) => Arc::new(b.finish()),
            Self::Int8(b) => Arc::new(b.finish()),
            Self::Float4(b) => Arc::new(b.finish()),
            Self::Float8(b) => Arc::new(b.finish()),
            Self::Decimal { builder, .. } => Arc::new(builder.finish()),
            Self::Text(b) | Self::Uuid(b) => Arc::new(b.finish()),
            Self::Bytea { builder, .. } => Arc::new(builder.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b) | Self::Timestamptz(b) => Arc::new(b.finish()),
            Self::List(list) => list.finish()?,
        })
    }
}

impl ListColumn {
    fn try_append(&mut self, text: &[u8]) -> ValueResult<()> {
        let elements = value::parse_array(text)?;
        for element in elements.iter().flatten() {
            value::validate(&self.elem, element.as_bytes())?;
        }
        let start = *self.offsets.last().unwrap_or(&0);
        let end = i32::try_from(elements.len())
            .ok()
            .and_then(|n| start.checked_add(n))
            .ok_or(ValueError::OutOfRange)?;
        for element in &elements {
            match element {
                // Checked above: cannot fail, and appends a null if it somehow did.
                Some(e) => {
                    let _ = self.values.append_text(e.as_bytes());
                }
                None => self.values.append_null(),
            }
        }
        self.offsets.push(end);
        self.validity.append_non_null();
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let offsets = OffsetBuffer::new(ScalarBuffer::<i32>::from(offsets));
        let values = self.values.finish()?;
        let list = ListArray::try_new(self.field.clone(), offsets, values, self.validity.finish())?;
        Ok(Arc::new(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type, Int32Type};

    #[test]
    fn scalars_and_errors_append_one_slot_each() {
        let mut c = ColumnBuilder::new(&PgType::Int4, 4);
        assert_eq!(c.append_text(b"7"), Ok(()));
        assert_eq!(c.append_text(b"x"), Err(ValueError::Malformed));
        c.append_null();
        let a = c.finish().unwrap();
        let a = a.as_primitive::<Int32Type>();
        assert_eq!(a.len(), 3);
        assert_eq!(a.value(0), 7);
        assert!(a.is_null(1) && a.is_null(2));
        // Reusable after finish.
        assert_eq!(c.append_text(b"-1"), Ok(()));
        assert_eq!(
            c.finish().unwrap().as_primitive::<Int32Type>().values(),
            &[-1]
        );
    }

    #[test]
    fn lists_validate_before_appending() {
        let ty = PgType::Array(Box::new(PgType::Date));
        let mut c = ColumnBuilder::new(&ty, 4);
        assert_eq!(c.append_text(b"{2024-01-01,NULL}"), Ok(()));
        assert_eq!(
            c.append_text(b"{1970-01-01,0044-03-15 BC}"),
            Err(ValueError::OutOfRange)
        );
        assert_eq!(
            c.append_text(b"{{1970-01-01}}"),
            Err(ValueError::NotOneDimensional)
        );
        c.append_null();
        assert_eq!(c.append_text(b"{}"), Ok(()));
        assert_eq!(c.append_text(b"{1970-01-02}"), Ok(()));
        let a = c.finish().unwrap();
        assert_eq!(a.data_type(), &arrow_type(&ty));
        let list = a.as_list::<i32>();
        assert_eq!(list.len(), 6);
        assert_eq!(
            list.value_offsets(),
            &[0, 2, 2, 2, 2, 2, 3],
            "failed values add no elements"
        );
        assert!(list.is_valid(0) && list.is_null(1) && list.is_null(2) && list.is_null(3));
        assert!(list.is_valid(4) && list.is_valid(5));
        let dates = list.values().as_primitive::<Date32Type>();
        assert_eq!(dates.value(0), 19_723);
        assert!(dates.is_null(1));
        assert_eq!(dates.value(2), 1);
    }

    #[test]
    fn decimal_keeps_precision_and_scale() {
        let mut c = ColumnBuilder::new(
            &PgType::Decimal {
                precision: 5,
                scale: 2,
            },
            2,
        );
        assert_eq!(c.append_text(b"-123.4"), Ok(()));
        assert_eq!(c.append_text(b"1234.5"), Err(ValueError::OutOfRange));
        let a = c.finish().unwrap();
        assert_eq!(a.data_type(), &DataType::Decimal128(5, 2));
        let a = a.as_primitive::<Decimal128Type>();
        assert_eq!(a.value(0), -12_340);
        assert!(a.is_null(1));
    }
}
