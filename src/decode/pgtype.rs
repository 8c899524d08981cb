//! Postgres data types and their mapping to Arrow / Delta types (LAKE_FORMAT.md "Type mapping").
//!
//! Built-in types are known by OID. Types created in the database (enums, domains, arrays of
//! them, extension types such as citext) are resolved through a [`TypeCatalog`] loaded from
//! `pg_type` by the source; anything still unknown is kept as its text form.

use std::collections::HashMap;

/// How a column's values are represented in the lake.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Int2,
    Int4,
    /// int8 and oid.
    Int8,
    Float4,
    Float8,
    /// numeric(p,s) with 1 ≤ p ≤ 38 and 0 ≤ s ≤ p.
    Decimal { precision: u8, scale: i8 },
    /// Kept as a UTF-8 string: text types, enums, numeric without typmod, money, time, interval,
    /// json, and every type without a lossless mapping (its Postgres text form).
    Text,
    /// bytea.
    Bytea,
    /// uuid (canonical lowercase string).
    Uuid,
    /// date (days since 1970-01-01).
    Date,
    /// timestamp without time zone (microseconds, no zone).
    Timestamp,
    /// timestamp with time zone (microseconds, UTC).
    Timestamptz,
    /// A one-dimensional array of a mapped element type.
    Array(Box<PgType>),
}

/// One row of `pg_type` as needed to resolve a non-built-in type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogType {
    pub oid: u32,
    /// `typtype`: b base, c composite, d domain, e enum, p pseudo, r range, m multirange.
    pub typtype: u8,
    /// `typbasetype` for domains (0 otherwise).
    pub base_type: u32,
    /// `typelem` for array types with `typcategory = 'A'` (0 otherwise).
    pub elem_type: u32,
    /// `typtypmod` of a domain over e.g. numeric(10,2) (-1 otherwise).
    pub base_typmod: i32,
}

/// Non-built-in types of the source database, by OID.
pub type TypeCatalog = HashMap<u32, CatalogType>;
