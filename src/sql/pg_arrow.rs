//! Postgres result columns as Arrow: the lake's type mapping, values from their text form.
//!
//! ```text
//!  RowDescription (type OID, typmod) ──► map_type (LAKE_FORMAT.md "Type mapping") ──► Field
//!  DataRow text cells ──► ColumnBuilder::append_text (decode::value parsers) ──► RecordBatch
//! ```
//!
//! Values travel in the text protocol: every type has a text form, so a type without a
//! mapping of its own (interval, money, inet, ranges, composites, numeric without a typmod)
//! arrives as exactly what `psql` shows, and the parsers are the ones the capture path uses
//! on pgoutput's text values (the connection runs with [`crate::source::params::SESSION_OPTIONS`]).
//!
//! | Postgres | Arrow |
//! |---|---|
//! | int2, int4, int8 (and oid) | Int16, Int32, Int64 |
//! | float4, float8 | Float32, Float64 |
//! | numeric(p,s), 1 ≤ p ≤ 38 | Decimal128(p, s), exact |
//! | numeric without typmod (sum, avg, …) | Utf8, exact text |
//! | text, varchar, bpchar (padded), name, "char", json, jsonb, enums | Utf8 |
//! | bool | Boolean |
//! | date | Date32 |
//! | timestamp / timestamptz | Timestamp(µs) / Timestamp(µs, "UTC") |
//! | uuid | Utf8 (canonical lowercase) |
//! | bytea | Binary |
//! | one-dimensional arrays of the above | List |
//! | domains | their base type's mapping |
//! | anything else | Utf8, its text form |
//!
//! Each field carries the Postgres type name under [`PG_TYPE_KEY`] in its metadata.
//!
//! # Invariants
//! * A value is exact or the query fails ([`super::SqlError::Conversion`]): a year outside
//!   0001–9999, a NaN numeric in a decimal column, a multi-dimensional array never become a
//!   null. The one substitution is the lake's: `±infinity` dates and timestamps are the ends
//!   of the range.
//! * Every field is nullable; names and order are the query's.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, Field, Schema, SchemaRef};
use tokio_postgres::types::{Kind, Type};

use crate::decode::PgType;
use crate::decode::pgtype::{CatalogType, TypeCatalog, arrow_type, is_builtin, map_type};
use crate::lake::column::ColumnBuilder;

/// Field metadata key: the Postgres type name of the column (`int4`, `numeric`, `my_enum`).
pub const PG_TYPE_KEY: &str = "walaudit.pgType";

/// Domain and array nesting followed when describing a type.
const MAX_DEPTH: u8 = 8;

/// One result column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PgColumn {
    pub name: String,
    /// The Postgres type name, for messages and the field metadata.
    pub type_name: String,
    pub ty: PgType,
}

/// The columns of a prepared statement, typed by the lake's mapping.
pub(crate) fn columns(columns: &[tokio_postgres::Column]) -> Vec<PgColumn> {
    let mut catalog = TypeCatalog::new();
    for column in columns {
        describe(column.type_(), &mut catalog, 0);
    }
    columns
        .iter()
        .map(|c| column(c.name(), c.type_(), c.type_modifier(), &catalog))
        .collect()
}

fn column(name: &str, ty: &Type, typmod: i32, catalog: &TypeCatalog) -> PgColumn {
    PgColumn {
        name: name.to_owned(),
        type_name: ty.name().to_owned(),
        ty: map_type(ty.oid(), typmod, catalog),
    }
}

/// Adds `ty` (and the types it is made of) to `catalog` when it is not built in, from what
/// tokio-postgres learnt of it in `pg_type` while preparing the statement.
fn describe(ty: &Type, catalog: &mut TypeCatalog, depth: u8) {
    if is_builtin(ty.oid()) || depth >= MAX_DEPTH || catalog.contains_key(&ty.oid()) {
        return;
    }
    let (typtype, base_type, elem_type) = match ty.kind() {
        Kind::Domain(base) => {
            describe(base, catalog, depth + 1);
            (b'd', base.oid(), 0)
        }
        Kind::Array(elem) => {
            describe(elem, catalog, depth + 1);
            (b'b', 0, elem.oid())
        }
        Kind::Enum(_) => (b'e', 0, 0),
        Kind::Composite(_) => (b'c', 0, 0),
        Kind::Range(_) => (b'r', 0, 0),
        Kind::Pseudo => (b'p', 0, 0),
        _ => (b'b', 0, 0),
    };
    catalog.insert(
        ty.oid(),
        CatalogType {
            oid: ty.oid(),
            typtype,
            base_type,
            elem_type,
            // tokio-postgres does not report a domain's typmod: a domain over numeric(p,s)
            // is numeric without a typmod, i.e. its exact text.
            base_typmod: -1,
        },
    );
}

/// The Arrow schema of `columns`.
pub(crate) fn schema(columns: &[PgColumn]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                Field::new(&c.name, arrow_type(&c.ty), true).with_metadata(HashMap::from([(
                    PG_TYPE_KEY.to_owned(),
                    c.type_name.clone(),
                )]))
            })
            .collect::<Vec<_>>(),
    ))
}

/// Text rows in, record batches out.
pub(crate) struct BatchBuilder {
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    text_bytes: usize,
}

impl BatchBuilder {
    pub(crate) fn new(columns: &[PgColumn], capacity: usize) -> Self {
        BatchBuilder {
            schema: schema(columns),
            builders: columns
                .iter()
                .map(|c| ColumnBuilder::new(&c.ty, capacity))
                .collect(),
            rows: 0,
            text_bytes: 0,
        }
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows appended since the last batch.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Text bytes appended since the last batch (a lower bound of the batch's size).
    pub(crate) fn text_bytes(&self) -> usize {
        self.text_bytes
    }

    /// Appends a row whose cell `i` is `cell(i)` (`None` for null); on a value without an
    /// exact form (or a cell `cell` cannot read) returns the index of its column. The row is
    /// then partly appended: the builder must not be used further.
    pub(crate) fn append_row<'r, F>(&mut self, mut cell: F) -> Result<(), usize>
    where
        F: FnMut(usize) -> Result<Option<&'r str>, ()>,
    {
        for (i, builder) in self.builders.iter_mut().enumerate() {
            match cell(i).map_err(|()| i)? {
                None => builder.append_null(),
                Some(text) => {
                    builder.append_text(text.as_bytes()).map_err(|_| i)?;
                    self.text_bytes += text.len();
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows appended since the last batch, as a batch; the builder starts a new one.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let arrays = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.rows = 0;
        self.text_bytes = 0;
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{
        Date32Type, Decimal128Type, Float64Type, Int16Type, Int32Type, Int64Type,
        TimestampMicrosecondType,
    };
    use arrow_schema::{DataType, TimeUnit};

    use super::*;

    fn numeric_typmod(precision: i32, scale: i32) -> i32 {
        ((precision << 16) | scale) + 4
    }

    fn typed(ty: &Type, typmod: i32) -> DataType {
        let mut catalog = TypeCatalog::new();
        describe(ty, &mut catalog, 0);
        arrow_type(&column("c", ty, typmod, &catalog).ty)
    }

    #[test]
    fn postgres_types_map_to_arrow() {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let cases = [
            (Type::INT2, -1, DataType::Int16),
            (Type::INT4, -1, DataType::Int32),
            (Type::INT8, -1, DataType::Int64),
            (Type::OID, -1, DataType::Int64),
            (Type::FLOAT4, -1, DataType::Float32),
            (Type::FLOAT8, -1, DataType::Float64),
            (
                Type::NUMERIC,
                numeric_typmod(12, 2),
                DataType::Decimal128(12, 2),
            ),
            (Type::NUMERIC, -1, DataType::Utf8),
            (Type::NUMERIC, numeric_typmod(50, 2), DataType::Utf8),
            (Type::TEXT, -1, DataType::Utf8),
            (Type::VARCHAR, 14, DataType::Utf8),
            (Type::BPCHAR, 7, DataType::Utf8),
            (Type::NAME, -1, DataType::Utf8),
            (Type::BOOL, -1, DataType::Boolean),
            (Type::DATE, -1, DataType::Date32),
            (
                Type::TIMESTAMP,
                -1,
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            (Type::TIMESTAMPTZ, -1, utc.clone()),
            (Type::UUID, -1, DataType::Utf8),
            (Type::JSON, -1, DataType::Utf8),
            (Type::JSONB, -1, DataType::Utf8),
            (Type::BYTEA, -1, DataType::Binary),
            (Type::INTERVAL, -1, DataType::Utf8),
            (Type::INET, -1, DataType::Utf8),
            (Type::MONEY, -1, DataType::Utf8),
            (Type::INT4_RANGE, -1, DataType::Utf8),
        ];
        for (ty, typmod, want) in cases {
            assert_eq!(typed(&ty, typmod), want, "{ty}");
        }
        let DataType::List(elem) = typed(&Type::INT4_ARRAY, -1) else {
            panic!("int4[] is a list");
        };
        assert_eq!(elem.data_type(), &DataType::Int32);
    }

    #[test]
    fn user_types_follow_their_kind() {
        let mood = Type::new(
            "mood".into(),
            20_000,
            Kind::Enum(vec!["ok".into()]),
            "public".into(),
        );
        let positive = Type::new(
            "positive".into(),
            20_001,
            Kind::Domain(Type::INT8),
            "public".into(),
        );
        let positives = Type::new(
            "_positive".into(),
            20_002,
            Kind::Array(positive.clone()),
            "public".into(),
        );
        let money_domain = Type::new(
            "price".into(),
            20_003,
            Kind::Domain(Type::NUMERIC),
            "public".into(),
        );
        assert_eq!(typed(&mood, -1), DataType::Utf8);
        assert_eq!(typed(&positive, -1), DataType::Int64);
        let DataType::List(elem) = typed(&positives, -1) else {
            panic!("an array of a domain is a list");
        };
        assert_eq!(elem.data_type(), &DataType::Int64);
        assert_eq!(typed(&money_domain, -1), DataType::Utf8);
    }

    fn col(name: &str, type_name: &str, ty: PgType) -> PgColumn {
        PgColumn {
            name: name.into(),
            type_name: type_name.into(),
            ty,
        }
    }

    #[test]
    fn text_rows_become_exact_arrays() {
        let columns = [
            col("i2", "int2", PgType::Int2),
            col("i8", "int8", PgType::Int8),
            col(
                "amount",
                "numeric",
                PgType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            col("f", "float8", PgType::Float8),
            col("d", "date", PgType::Date),
            col("ts", "timestamptz", PgType::Timestamptz),
            col("b", "bytea", PgType::Bytea),
            col("t", "text", PgType::Text),
        ];
        let mut builder = BatchBuilder::new(&columns, 4);
        let rows: [[Option<&str>; 8]; 2] = [
            [
                Some("-7"),
                Some("9007199254740993"),
                Some("42.10"),
                Some("0.1"),
                Some("2024-02-29"),
                Some("2024-01-02 03:04:05.123456+00"),
                Some("\\x00ff"),
                Some("ünï"),
            ],
            [None; 8],
        ];
        for row in &rows {
            builder.append_row(|i| Ok(row[i])).unwrap();
        }
        assert_eq!(builder.rows(), 2);
        let batch = builder.finish().unwrap();
        assert_eq!(builder.rows(), 0, "a new batch starts");
        assert_eq!(batch.num_rows(), 2);
        let field = batch.schema().field(2).clone();
        assert_eq!(field.data_type(), &DataType::Decimal128(12, 2));
        assert_eq!(field.metadata()[PG_TYPE_KEY], "numeric");
        assert!(field.is_nullable());
        assert_eq!(batch.column(0).as_primitive::<Int16Type>().value(0), -7);
        assert_eq!(
            batch.column(1).as_primitive::<Int64Type>().value(0),
            9_007_199_254_740_993
        );
        assert_eq!(
            batch.column(2).as_primitive::<Decimal128Type>().value(0),
            4210
        );
        assert_eq!(batch.column(3).as_primitive::<Float64Type>().value(0), 0.1);
        assert_eq!(
            batch.column(4).as_primitive::<Date32Type>().value(0),
            19_782
        );
        assert_eq!(
            batch
                .column(5)
                .as_primitive::<TimestampMicrosecondType>()
                .value(0),
            1_704_164_645_123_456
        );
        assert_eq!(batch.column(6).as_binary::<i32>().value(0), &[0, 255]);
        assert_eq!(batch.column(7).as_string::<i32>().value(0), "ünï");
        for c in batch.columns() {
            assert!(c.is_null(1));
        }
    }

    #[test]
    fn values_without_an_exact_form_name_their_column() {
        let columns = [
            col("a", "int4", PgType::Int4),
            col(
                "n",
                "numeric",
                PgType::Decimal {
                    precision: 3,
                    scale: 1,
                },
            ),
        ];
        let mut builder = BatchBuilder::new(&columns, 1);
        assert_eq!(
            builder.append_row(|i| Ok([Some("1"), Some("NaN")][i])),
            Err(1)
        );
        let mut builder = BatchBuilder::new(&columns, 1);
        assert_eq!(builder.append_row(|_| Err(())), Err(0), "unreadable cell");
        let mut builder = BatchBuilder::new(&columns, 1);
        assert_eq!(
            builder.append_row(|i| Ok([Some("1"), Some("99.9")][i])),
            Ok(())
        );
        let array = builder.finish().unwrap();
        assert_eq!(array.column(0).as_primitive::<Int32Type>().value(0), 1);
    }

    #[test]
    fn zero_rows_keep_the_schema() {
        let columns = [col("x", "text", PgType::Text)];
        let mut builder = BatchBuilder::new(&columns, 0);
        let batch = builder.finish().unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.schema().field(0).name(), "x");
    }
}
