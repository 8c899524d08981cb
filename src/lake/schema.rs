//! Arrow schemas of the lake's tables (the lake format: README, "The lake on storage",
//! "Change tables", "Transactions table", "Messages table").
//!
//! ```text
//!  change table   <source columns...> _op _lsn _seq _xid _commit_ts _before{<source columns>}
//!                 _changed[] _unavailable[] _actor _context
//!  transactions   _lsn _xid _commit_ts origin change_count tables[] _actor _context
//!  messages       _lsn _commit_lsn _xid transactional prefix content content_text
//! ```
//!
//! # Invariants
//! * Source columns keep their Postgres names and order, are nullable, and are typed by
//!   [`arrow_type`]; a source column may never shadow a metadata column (checked ignoring
//!   ASCII case, as Delta readers resolve names case-insensitively).
//! * List fields are named `element` and nullable; timestamps are microseconds, UTC-zoned when
//!   they are instants.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::capture::TableInfo;
use crate::decode::PgType;
use crate::decode::pgtype::{LIST_ELEMENT, arrow_type};

pub const OP: &str = "_op";
pub const LSN: &str = "_lsn";
pub const SEQ: &str = "_seq";
pub const XID: &str = "_xid";
pub const COMMIT_TS: &str = "_commit_ts";
pub const BEFORE: &str = "_before";
pub const CHANGED: &str = "_changed";
pub const UNAVAILABLE: &str = "_unavailable";
pub const ACTOR: &str = "_actor";
pub const CONTEXT: &str = "_context";

/// The metadata columns of a change table, in schema order after the source columns.
pub const METADATA_COLUMNS: [&str; 10] = [
    OP,
    LSN,
    SEQ,
    XID,
    COMMIT_TS,
    BEFORE,
    CHANGED,
    UNAVAILABLE,
    ACTOR,
    CONTEXT,
];

/// A table whose change-table schema cannot be built. Permanent for that table: it needs a change
/// on the source (or in the publication) before it can be captured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error(
        "table {table} has a column named {column:?}, which collides with the walaudit metadata \
         column {reserved:?}: rename the column or exclude the table from the publication"
    )]
    ReservedColumn {
        table: String,
        column: String,
        reserved: &'static str,
    },
    #[error(
        "table {table} has no columns, which a Delta table cannot hold: add a column or exclude \
         the table from the publication"
    )]
    NoColumns { table: String },
    #[error(
        "column {column:?} of table {table} has an invalid decimal type ({precision}, {scale}): \
         this is a walaudit bug in type mapping, please report it"
    )]
    InvalidDecimal {
        table: String,
        column: String,
        precision: u8,
        scale: i8,
    },
}

/// `timestamp` with time zone UTC, microseconds.
pub fn utc_timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// `array<string>` with the `element` field convention.
pub fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new(LIST_ELEMENT, DataType::Utf8, true)))
}

/// The source columns of `table` as nullable Arrow fields, after validating them.
pub fn source_fields(table: &TableInfo) -> Result<Fields, SchemaError> {
    if table.columns.is_empty() {
        return Err(SchemaError::NoColumns {
            table: table.qualified_name(),
        });
    }
    let mut fields = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        if let Some(reserved) = METADATA_COLUMNS
            .iter()
            .find(|m| m.eq_ignore_ascii_case(&column.name))
        {
            return Err(SchemaError::ReservedColumn {
                table: table.qualified_name(),
                column: column.name.clone(),
                reserved,
            });
        }
        check_type(table, &column.name, &column.pg_type)?;
        fields.push(Field::new(&column.name, arrow_type(&column.pg_type), true));
    }
    Ok(fields.into())
}

fn check_type(table: &TableInfo, column: &str, ty: &PgType) -> Result<(), SchemaError> {
    match ty {
        PgType::Decimal { precision, scale }
            if !(1..=38).contains(precision) || *scale < 0 || scale.unsigned_abs() > *precision =>
        {
            Err(SchemaError::InvalidDecimal {
                table: table.qualified_name(),
                column: column.to_owned(),
                precision: *precision,
                scale: *scale,
            })
        }
        PgType::Array(elem) => check_type(table, column, elem),
        _ => Ok(()),
    }
}

/// The Arrow schema of `table`'s change table.
pub fn change_schema(table: &TableInfo) -> Result<SchemaRef, SchemaError> {
    let source = source_fields(table)?;
    let mut fields: Vec<Arc<Field>> = source.iter().cloned().collect();
    fields.extend([
        Arc::new(Field::new(OP, DataType::Utf8, false)),
        Arc::new(Field::new(LSN, DataType::Int64, false)),
        Arc::new(Field::new(SEQ, DataType::Int64, false)),
        Arc::new(Field::new(XID, DataType::Int64, false)),
        Arc::new(Field::new(COMMIT_TS, utc_timestamp(), false)),
        Arc::new(Field::new(BEFORE, DataType::Struct(source), true)),
        Arc::new(Field::new(CHANGED, string_list(), true)),
        Arc::new(Field::new(UNAVAILABLE, string_list(), false)),
        Arc::new(Field::new(ACTOR, DataType::Utf8, true)),
        Arc::new(Field::new(CONTEXT, DataType::Utf8, true)),
    ]);
    Ok(Arc::new(Schema::new(fields)))
}

/// `_walaudit/transactions`: one row per captured source transaction.
pub fn transactions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(LSN, DataType::Int64, false),
        Field::new(XID, DataType::Int64, false),
        Field::new(COMMIT_TS, utc_timestamp(), false),
        Field::new("origin", DataType::Utf8, true),
        Field::new("change_count", DataType::Int64, false),
        Field::new("tables", string_list(), false),
        Field::new(ACTOR, DataType::Utf8, true),
        Field::new(CONTEXT, DataType::Utf8, true),
    ]))
}

/// `_walaudit/messages`: logical decoding messages that are not audit context. `_lsn` is the
/// message's own LSN; `_commit_lsn` and `_xid` are set for transactional messages;
/// `content_text` is the content when it is valid UTF-8.
pub fn messages_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(LSN, DataType::Int64, false),
        Field::new("_commit_lsn", DataType::Int64, true),
        Field::new(XID, DataType::Int64, true),
        Field::new("transactional", DataType::Boolean, false),
        Field::new("prefix", DataType::Utf8, false),
        Field::new("content", DataType::Binary, false),
        Field::new("content_text", DataType::Utf8, true),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::ColumnInfo;
    use crate::decode::ReplicaIdentity;

    fn table(columns: &[(&str, PgType)]) -> TableInfo {
        TableInfo {
            oid: 16400,
            schema: "public".into(),
            name: "orders".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: columns
                .iter()
                .enumerate()
                .map(|(i, (name, ty))| ColumnInfo {
                    name: (*name).into(),
                    type_oid: 25,
                    type_modifier: -1,
                    is_key: i == 0,
                    pg_type: ty.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn change_table_layout() {
        let t = table(&[
            ("id", PgType::Int8),
            (
                "Amount",
                PgType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            ("tags", PgType::Array(Box::new(PgType::Text))),
            ("_note", PgType::Text),
        ]);
        let schema = change_schema(&t).unwrap();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "Amount",
                "tags",
                "_note",
                "_op",
                "_lsn",
                "_seq",
                "_xid",
                "_commit_ts",
                "_before",
                "_changed",
                "_unavailable",
                "_actor",
                "_context"
            ]
        );
        assert!(schema.fields()[..4].iter().all(|f| f.is_nullable()));
        assert_eq!(schema.field(1).data_type(), &DataType::Decimal128(10, 2));
        assert_eq!(
            schema.field_with_name("_op").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(!schema.field_with_name("_lsn").unwrap().is_nullable());
        assert_eq!(
            schema.field_with_name("_commit_ts").unwrap().data_type(),
            &utc_timestamp()
        );
        let DataType::Struct(before) = schema.field_with_name("_before").unwrap().data_type()
        else {
            panic!("_before is a struct");
        };
        assert_eq!(before, &source_fields(&t).unwrap());
        assert!(schema.field_with_name("_before").unwrap().is_nullable());
        let DataType::List(item) = schema.field_with_name("_changed").unwrap().data_type() else {
            panic!("_changed is a list");
        };
        assert_eq!(
            (item.name().as_str(), item.data_type()),
            ("element", &DataType::Utf8)
        );
        assert!(schema.field_with_name("_changed").unwrap().is_nullable());
        assert!(
            !schema
                .field_with_name("_unavailable")
                .unwrap()
                .is_nullable()
        );
        assert!(schema.field_with_name("_actor").unwrap().is_nullable());
        assert!(schema.field_with_name("_context").unwrap().is_nullable());
    }

    #[test]
    fn reserved_names_are_refused() {
        for name in [
            "_op",
            "_lsn",
            "_before",
            "_unavailable",
            "_context",
            "_OP",
            "_Actor",
        ] {
            let err =
                change_schema(&table(&[("id", PgType::Int4), (name, PgType::Text)])).unwrap_err();
            assert!(matches!(&err, SchemaError::ReservedColumn { column, .. } if column == name));
            let msg = err.to_string();
            assert!(msg.contains("public.orders"), "{msg}");
            assert!(msg.contains(name), "{msg}");
            assert!(
                msg.contains("rename the column or exclude the table"),
                "{msg}"
            );
        }
    }

    #[test]
    fn empty_table_and_bad_decimal_are_refused() {
        assert_eq!(
            change_schema(&table(&[])).unwrap_err(),
            SchemaError::NoColumns {
                table: "public.orders".into()
            }
        );
        for (precision, scale) in [(0, 0), (39, 0), (5, 6), (5, -1)] {
            let bad = PgType::Array(Box::new(PgType::Decimal { precision, scale }));
            assert!(matches!(
                change_schema(&table(&[("x", bad)])),
                Err(SchemaError::InvalidDecimal { .. })
            ));
        }
    }

    #[test]
    fn walaudit_tables() {
        let tx = transactions_schema();
        let names: Vec<&str> = tx.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "_lsn",
                "_xid",
                "_commit_ts",
                "origin",
                "change_count",
                "tables",
                "_actor",
                "_context"
            ]
        );
        assert!(tx.field_with_name("origin").unwrap().is_nullable());
        assert_eq!(
            tx.field_with_name("tables").unwrap().data_type(),
            &string_list()
        );
        let msg = messages_schema();
        let names: Vec<&str> = msg.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "_lsn",
                "_commit_lsn",
                "_xid",
                "transactional",
                "prefix",
                "content",
                "content_text"
            ]
        );
        assert_eq!(
            msg.field_with_name("content").unwrap().data_type(),
            &DataType::Binary
        );
        assert!(msg.field_with_name("content_text").unwrap().is_nullable());
        assert!(msg.field_with_name("_commit_lsn").unwrap().is_nullable());
    }
}
