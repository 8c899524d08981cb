//! Schema evolution: fitting a source table's current shape onto its existing Delta table.
//!
//! ```text
//!  TableInfo (new shape) + Delta schema ──► lake_shape ──► TableInfo the batch builder uses
//!                                                      └─► diversions (type changes, logged)
//!  RecordBatch ──► conform(batch, Delta schema) ──► batch in the Delta schema's column order,
//!                                                   dropped columns null, new ones appended
//! ```
//!
//! Rules (pgoutput carries no DDL; a Relation message shows the new shape only):
//! * **New column**: written as it is; the Delta schema is merged (the column is appended after
//!   the existing ones, so it comes after the metadata columns; older rows read null).
//! * **Dropped column**: stays in the Delta table and is null from then on.
//! * **Type change the Delta type absorbs** (same type, lossless widening int2→int4→int8,
//!   float4→float8, a wider decimal, or a Delta string column, which takes the Postgres text
//!   form of any value): written to the same column.
//! * **Any other type change**: the column continues as its Postgres text form in a new string
//!   column `<column>__text` ([`TEXT_SUFFIX`]); the old column is null from then on. The change is
//!   logged, counted and recorded in `_walaudit/messages` with prefix `walaudit.schema`.
//!
//! # Invariants
//! * Never a lossy cast: a value lands in a column whose type holds it exactly, or as text.
//! * `conform` keeps every column of the Delta schema, in order, so a schema merge only ever
//!   adds columns.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StructArray, new_null_array};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use deltalake::arrow::compute::cast;

use crate::capture::{ColumnInfo, TableInfo};
use crate::decode::PgType;
use crate::decode::pgtype::arrow_type;

/// Suffix of the text column a column continues in after an incompatible type change.
pub const TEXT_SUFFIX: &str = "__text";

/// A column whose new type the Delta column cannot hold: it is written as text elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diversion {
    pub column: String,
    pub delta_type: String,
    pub new_type: String,
    pub written_as: String,
}

/// The shape the batch builder should use for `info` so its batches fit `delta` (see the module
/// docs), and the columns diverted to text because of a type change.
pub fn lake_shape(info: &Arc<TableInfo>, delta: &Schema) -> (Arc<TableInfo>, Vec<Diversion>) {
    let mut diversions = Vec::new();
    let mut columns = Vec::with_capacity(info.columns.len());
    for column in &info.columns {
        let Ok(existing) = delta.field_with_name(&column.name) else {
            columns.push(column.clone());
            continue;
        };
        match fit(&column.pg_type, existing.data_type()) {
            Some(pg_type) => columns.push(ColumnInfo {
                pg_type,
                ..column.clone()
            }),
            None => {
                let written_as = format!("{}{TEXT_SUFFIX}", column.name);
                // Recorded once: when the text column does not exist yet.
                if delta.field_with_name(&written_as).is_err() {
                    diversions.push(Diversion {
                        column: column.name.clone(),
                        delta_type: existing.data_type().to_string(),
                        new_type: arrow_type(&column.pg_type).to_string(),
                        written_as: written_as.clone(),
                    });
                }
                columns.push(ColumnInfo {
                    name: written_as,
                    pg_type: PgType::Text,
                    ..column.clone()
                });
            }
        }
    }
    if diversions.is_empty() && columns == info.columns {
        return (Arc::clone(info), diversions);
    }
    (
        Arc::new(TableInfo {
            columns,
            ..(**info).clone()
        }),
        diversions,
    )
}

/// The type to build a column of Postgres type `pg` with so it fits Delta type `delta`
/// losslessly, or `None` when it cannot.
fn fit(pg: &PgType, delta: &DataType) -> Option<PgType> {
    let built = arrow_type(pg);
    if same_type(&built, delta) {
        return Some(pg.clone());
    }
    match (pg, delta) {
        // A string column holds any value as its Postgres text form.
        (PgType::Array(_), DataType::Utf8) => Some(PgType::Text),
        (PgType::Array(elem), DataType::List(item)) => {
            fit(elem, item.data_type()).map(|e| PgType::Array(Box::new(e)))
        }
        (_, DataType::Utf8) => Some(PgType::Text),
        _ if widens(&built, delta) => Some(pg.clone()),
        _ => None,
    }
}

/// Casting `from` to `to` never loses or changes a value.
pub(super) fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    match (from, to) {
        (Int16, Int32 | Int64) | (Int32, Int64) | (Float32, Float64) => true,
        (Int16, Decimal128(p, s)) => (*p as i16 - *s as i16) >= 5,
        (Int32, Decimal128(p, s)) => (*p as i16 - *s as i16) >= 10,
        (Int64, Decimal128(p, s)) => (*p as i16 - *s as i16) >= 19,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        _ => false,
    }
}

/// Equal types, ignoring list element field names and nullability.
fn same_type(a: &DataType, b: &DataType) -> bool {
    match (a, b) {
        (DataType::List(x), DataType::List(y))
        | (DataType::LargeList(x), DataType::LargeList(y)) => {
            same_type(x.data_type(), y.data_type())
        }
        (DataType::Struct(x), DataType::Struct(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|(f, g)| f.name() == g.name() && same_type(f.data_type(), g.data_type()))
        }
        (DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8, DataType::Utf8)
        | (DataType::Utf8, DataType::Utf8View | DataType::LargeUtf8) => true,
        (DataType::Binary | DataType::BinaryView | DataType::LargeBinary, DataType::Binary)
        | (DataType::Binary, DataType::BinaryView | DataType::LargeBinary) => true,
        _ => a == b,
    }
}

/// `batch` in the shape of `delta`: its columns in order (cast where the batch holds a narrower
/// type, null where the batch lacks them), then the batch's columns `delta` lacks.
pub fn conform(batch: &RecordBatch, delta: &Schema) -> Result<RecordBatch, ArrowError> {
    let rows = batch.num_rows();
    let source = batch.schema();
    let (fields, columns) =
        conform_columns(source.fields(), batch.columns(), delta.fields(), rows)?;
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, columns)
}

fn conform_columns(
    source_fields: &Fields,
    source: &[ArrayRef],
    target: &Fields,
    rows: usize,
) -> Result<(Vec<FieldRef>, Vec<ArrayRef>), ArrowError> {
    let mut fields = Vec::with_capacity(target.len() + source_fields.len());
    let mut columns = Vec::with_capacity(fields.capacity());
    for field in target {
        match source_fields.find(field.name()) {
            Some((i, have)) => {
                let (f, c) = conform_array(have, &source[i], field)?;
                fields.push(f);
                columns.push(c);
            }
            None => {
                // A column the source no longer has: null, so it must be nullable.
                let f = Arc::new(field.as_ref().clone().with_nullable(true));
                columns.push(new_null_array(f.data_type(), rows));
                fields.push(f);
            }
        }
    }
    for (i, field) in source_fields.iter().enumerate() {
        if target.find(field.name()).is_none() {
            fields.push(Arc::clone(field));
            columns.push(Arc::clone(&source[i]));
        }
    }
    Ok((fields, columns))
}

fn conform_array(
    have: &FieldRef,
    array: &ArrayRef,
    want: &FieldRef,
) -> Result<(FieldRef, ArrayRef), ArrowError> {
    match (have.data_type(), want.data_type()) {
        (DataType::Struct(have_fields), DataType::Struct(want_fields)) => {
            let Some(structs) = array.as_any().downcast_ref::<StructArray>() else {
                return Err(ArrowError::CastError(format!(
                    "{} is not a struct",
                    have.name()
                )));
            };
            let (fields, columns) =
                conform_columns(have_fields, structs.columns(), want_fields, structs.len())?;
            let fields = Fields::from(fields);
            let array = StructArray::try_new(fields.clone(), columns, structs.nulls().cloned())?;
            let field = Field::new(want.name(), DataType::Struct(fields), want.is_nullable());
            Ok((Arc::new(field), Arc::new(array)))
        }
        (a, b) if a == b => Ok((Arc::clone(want), Arc::clone(array))),
        (_, b) => Ok((Arc::clone(want), cast(array, b)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::{Int32Array, Int64Array, StringArray};

    use crate::decode::ReplicaIdentity;

    fn info(columns: &[(&str, PgType)]) -> Arc<TableInfo> {
        Arc::new(TableInfo {
            oid: 1,
            schema: "public".into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: columns
                .iter()
                .map(|(n, t)| ColumnInfo {
                    name: (*n).into(),
                    type_oid: 0,
                    type_modifier: -1,
                    is_key: *n == "id",
                    pg_type: t.clone(),
                })
                .collect(),
        })
    }

    #[test]
    fn shapes_follow_the_delta_table() {
        let delta = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("n", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
        ]);
        let new = info(&[
            ("id", PgType::Int4),
            ("n", PgType::Int8),
            ("s", PgType::Int4),
            ("d", PgType::Date),
            ("extra", PgType::Bool),
        ]);
        let (shape, diversions) = lake_shape(&new, &delta);
        let got: Vec<_> = shape
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.pg_type.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("id", PgType::Int4),
                ("n__text", PgType::Text),
                ("s", PgType::Text),
                ("d", PgType::Date),
                ("extra", PgType::Bool)
            ]
        );
        assert_eq!(diversions.len(), 1);
        assert_eq!(diversions[0].column, "n");
        assert_eq!(diversions[0].written_as, "n__text");
        let same = info(&[("id", PgType::Int8)]);
        assert!(Arc::ptr_eq(&lake_shape(&same, &delta).0, &same));
    }

    #[test]
    fn conform_pads_casts_and_appends() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int32, true),
                Field::new("new", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int32Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec!["a", "b"])),
            ],
        )
        .unwrap();
        let delta = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("gone", DataType::Utf8, false),
        ]);
        let out = conform(&batch, &delta).unwrap();
        let names: Vec<_> = out
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["id", "gone", "new"]);
        assert_eq!(
            out.column(0)
                .as_primitive::<arrow_array::types::Int64Type>(),
            &Int64Array::from(vec![1, 2])
        );
        assert_eq!(out.column(1).null_count(), 2);
        assert!(out.schema().field(1).is_nullable());
    }
}
