//! Postgres data types and their mapping to Arrow / Delta types (README, "The lake on storage",
//! "Type mapping").
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
    Decimal {
        precision: u8,
        scale: i8,
    },
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

/// `FirstNormalObjectId`: OIDs below it are assigned by `initdb` (built-in types).
pub const FIRST_NORMAL_OBJECT_ID: u32 = 16384;

/// Domain and array nesting followed before a type is given up as text (a malformed catalog
/// could contain a cycle).
const MAX_TYPE_DEPTH: u8 = 8;

/// OIDs of the built-in types that have a mapping of their own (`pg_type.dat`).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const MONEY: u32 = 790;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    pub const INET: u32 = 869;
    pub const BOX: u32 = 603;
    pub const BOX_ARRAY: u32 = 1020;
}

/// Built-in array types and their element types. Every element type here uses `,` as its array
/// delimiter; `_box` (delimiter `;`) is deliberately absent and so kept as text.
const BUILTIN_ARRAYS: &[(u32, u32)] = &[
    (1000, 16),   // _bool
    (1001, 17),   // _bytea
    (1002, 18),   // _char
    (1003, 19),   // _name
    (1005, 21),   // _int2
    (1006, 22),   // _int2vector
    (1007, 23),   // _int4
    (1008, 24),   // _regproc
    (1009, 25),   // _text
    (1010, 27),   // _tid
    (1011, 28),   // _xid
    (1012, 29),   // _cid
    (1013, 30),   // _oidvector
    (1014, 1042), // _bpchar
    (1015, 1043), // _varchar
    (1016, 20),   // _int8
    (1017, 600),  // _point
    (1018, 601),  // _lseg
    (1019, 602),  // _path
    (1021, 700),  // _float4
    (1022, 701),  // _float8
    (1027, 604),  // _polygon
    (1028, 26),   // _oid
    (1040, 829),  // _macaddr
    (1041, 869),  // _inet
    (1115, 1114), // _timestamp
    (1182, 1082), // _date
    (1183, 1083), // _time
    (1185, 1184), // _timestamptz
    (1187, 1186), // _interval
    (1231, 1700), // _numeric
    (1270, 1266), // _timetz
    (1561, 1560), // _bit
    (1563, 1562), // _varbit
    (143, 142),   // _xml
    (199, 114),   // _json
    (271, 5069),  // _xid8
    (629, 628),   // _line
    (651, 650),   // _cidr
    (719, 718),   // _circle
    (775, 774),   // _macaddr8
    (791, 790),   // _money
    (2201, 1790), // _refcursor
    (2210, 2205), // _regclass
    (2211, 2206), // _regtype
    (2951, 2950), // _uuid
    (3221, 3220), // _pg_lsn
    (3643, 3614), // _tsvector
    (3645, 3615), // _tsquery
    (3807, 3802), // _jsonb
    (3905, 3904), // _int4range
    (3907, 3906), // _numrange
    (3909, 3908), // _tsrange
    (3911, 3910), // _tstzrange
    (3913, 3912), // _daterange
    (3927, 3926), // _int8range
    (4073, 4072), // _jsonpath
];

/// True for OIDs assigned by `initdb` (below `FirstNormalObjectId`), i.e. built-in types.
pub fn is_builtin(type_oid: u32) -> bool {
    type_oid < FIRST_NORMAL_OBJECT_ID
}

/// The lake representation of a column of type `type_oid` with modifier `typmod`
/// (`atttypmod`, -1 when none), following the lake format (README, "Type mapping").
///
/// Never fails: a type without a lossless mapping, an unknown OID or a malformed catalog entry
/// (cycle, nesting too deep) is kept as its Postgres text form ([`PgType::Text`]).
pub fn map_type(type_oid: u32, typmod: i32, catalog: &TypeCatalog) -> PgType {
    map_type_at(type_oid, typmod, catalog, 0)
}

fn map_type_at(type_oid: u32, typmod: i32, catalog: &TypeCatalog, depth: u8) -> PgType {
    if depth >= MAX_TYPE_DEPTH {
        return PgType::Text;
    }
    if let Some(ty) = map_builtin_scalar(type_oid, typmod) {
        return ty;
    }
    if let Some(&(_, elem)) = BUILTIN_ARRAYS.iter().find(|(array, _)| *array == type_oid) {
        return array_of(map_type_at(elem, typmod, catalog, depth + 1));
    }
    let Some(entry) = catalog.get(&type_oid) else {
        return PgType::Text;
    };
    if entry.elem_type != 0 {
        return array_of(map_type_at(entry.elem_type, typmod, catalog, depth + 1));
    }
    match entry.typtype {
        b'd' => {
            let typmod = if typmod == -1 {
                entry.base_typmod
            } else {
                typmod
            };
            map_type_at(entry.base_type, typmod, catalog, depth + 1)
        }
        _ => PgType::Text,
    }
}

/// Postgres has no arrays of arrays: an element that maps to an array means a malformed catalog.
fn array_of(elem: PgType) -> PgType {
    match elem {
        PgType::Array(_) => PgType::Text,
        elem => PgType::Array(Box::new(elem)),
    }
}

fn map_builtin_scalar(type_oid: u32, typmod: i32) -> Option<PgType> {
    Some(match type_oid {
        oid::BOOL => PgType::Bool,
        oid::INT2 => PgType::Int2,
        oid::INT4 => PgType::Int4,
        oid::INT8 | oid::OID => PgType::Int8,
        oid::FLOAT4 => PgType::Float4,
        oid::FLOAT8 => PgType::Float8,
        oid::NUMERIC => numeric(typmod),
        oid::BYTEA => PgType::Bytea,
        oid::UUID => PgType::Uuid,
        oid::DATE => PgType::Date,
        oid::TIMESTAMP => PgType::Timestamp,
        oid::TIMESTAMPTZ => PgType::Timestamptz,
        oid::TEXT
        | oid::VARCHAR
        | oid::BPCHAR
        | oid::NAME
        | oid::CHAR
        | oid::MONEY
        | oid::JSON
        | oid::JSONB
        | oid::TIME
        | oid::TIMETZ
        | oid::INTERVAL => PgType::Text,
        _ => return None,
    })
}

/// numeric's typmod is `((precision << 16) | (scale & 0x7ff)) + 4`, the scale an 11-bit signed
/// number (Postgres 15 allows negative scales and scales above the precision).
fn numeric(typmod: i32) -> PgType {
    if typmod < 4 {
        return PgType::Text;
    }
    let packed = typmod - 4;
    let precision = (packed >> 16) & 0xffff;
    let scale = ((packed & 0x7ff) ^ 1024) - 1024;
    match (u8::try_from(precision), i8::try_from(scale)) {
        (Ok(precision @ 1..=38), Ok(scale))
            if scale >= 0 && i32::from(scale) <= i32::from(precision) =>
        {
            PgType::Decimal { precision, scale }
        }
        _ => PgType::Text,
    }
}

/// The Arrow type of a column of lake type `ty`. List elements are a nullable field named
/// `element` (the Delta / Parquet convention).
pub fn arrow_type(ty: &PgType) -> arrow_schema::DataType {
    use arrow_schema::{DataType, Field, TimeUnit};
    match ty {
        PgType::Bool => DataType::Boolean,
        PgType::Int2 => DataType::Int16,
        PgType::Int4 => DataType::Int32,
        PgType::Int8 => DataType::Int64,
        PgType::Float4 => DataType::Float32,
        PgType::Float8 => DataType::Float64,
        PgType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
        PgType::Text | PgType::Uuid => DataType::Utf8,
        PgType::Bytea => DataType::Binary,
        PgType::Date => DataType::Date32,
        PgType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        PgType::Timestamptz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        PgType::Array(elem) => DataType::List(std::sync::Arc::new(Field::new(
            LIST_ELEMENT,
            arrow_type(elem),
            true,
        ))),
    }
}

/// Name of the element field of every list column.
pub const LIST_ELEMENT: &str = "element";

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, TimeUnit};

    fn numeric_typmod(precision: i32, scale: i32) -> i32 {
        ((precision << 16) | (scale & 0x7ff)) + 4
    }

    fn dec(precision: u8, scale: i8) -> PgType {
        PgType::Decimal { precision, scale }
    }

    fn arr(elem: PgType) -> PgType {
        PgType::Array(Box::new(elem))
    }

    fn catalog(entries: &[CatalogType]) -> TypeCatalog {
        entries.iter().map(|e| (e.oid, e.clone())).collect()
    }

    fn entry(
        oid: u32,
        typtype: u8,
        base_type: u32,
        elem_type: u32,
        base_typmod: i32,
    ) -> CatalogType {
        CatalogType {
            oid,
            typtype,
            base_type,
            elem_type,
            base_typmod,
        }
    }

    #[test]
    fn builtin_scalars() {
        let c = TypeCatalog::new();
        let cases = [
            (16, PgType::Bool),
            (21, PgType::Int2),
            (23, PgType::Int4),
            (20, PgType::Int8),
            (26, PgType::Int8),
            (700, PgType::Float4),
            (701, PgType::Float8),
            (17, PgType::Bytea),
            (2950, PgType::Uuid),
            (1082, PgType::Date),
            (1114, PgType::Timestamp),
            (1184, PgType::Timestamptz),
        ];
        for (oid, ty) in cases {
            assert_eq!(map_type(oid, -1, &c), ty, "oid {oid}");
        }
    }

    #[test]
    fn text_kept_types() {
        let c = TypeCatalog::new();
        // text varchar bpchar name "char" money json jsonb time timetz interval inet cidr
        // macaddr bit varbit int4range point box xml tsvector pg_lsn _box unknown-builtin
        for oid in [
            25, 1043, 1042, 19, 18, 790, 114, 3802, 1083, 1266, 1186, 869, 650, 829, 1560, 1562,
            3904, 600, 603, 142, 3614, 3220, 1020, 9999,
        ] {
            assert_eq!(map_type(oid, -1, &c), PgType::Text, "oid {oid}");
        }
        assert_eq!(
            map_type(1043, 36, &c),
            PgType::Text,
            "varchar(32) keeps text"
        );
    }

    #[test]
    fn numeric_typmods() {
        let c = TypeCatalog::new();
        assert_eq!(map_type(1700, numeric_typmod(10, 2), &c), dec(10, 2));
        assert_eq!(map_type(1700, numeric_typmod(38, 0), &c), dec(38, 0));
        assert_eq!(map_type(1700, numeric_typmod(38, 38), &c), dec(38, 38));
        assert_eq!(map_type(1700, numeric_typmod(1, 0), &c), dec(1, 0));
        assert_eq!(map_type(1700, -1, &c), PgType::Text, "no typmod");
        assert_eq!(
            map_type(1700, numeric_typmod(39, 2), &c),
            PgType::Text,
            "p > 38"
        );
        assert_eq!(map_type(1700, numeric_typmod(1000, 0), &c), PgType::Text);
        assert_eq!(
            map_type(1700, numeric_typmod(10, -2), &c),
            PgType::Text,
            "negative scale"
        );
        assert_eq!(
            map_type(1700, numeric_typmod(3, 5), &c),
            PgType::Text,
            "scale > precision"
        );
        assert_eq!(map_type(1700, 3, &c), PgType::Text);
        assert_eq!(map_type(1700, i32::MIN, &c), PgType::Text);
        assert_eq!(map_type(1700, i32::MAX, &c), PgType::Text);
    }

    #[test]
    fn builtin_arrays() {
        let c = TypeCatalog::new();
        let cases = [
            (1000, arr(PgType::Bool)),
            (1005, arr(PgType::Int2)),
            (1007, arr(PgType::Int4)),
            (1016, arr(PgType::Int8)),
            (1028, arr(PgType::Int8)),
            (1009, arr(PgType::Text)),
            (1015, arr(PgType::Text)),
            (1014, arr(PgType::Text)),
            (1003, arr(PgType::Text)),
            (1021, arr(PgType::Float4)),
            (1022, arr(PgType::Float8)),
            (1231, arr(PgType::Text)),
            (1182, arr(PgType::Date)),
            (1115, arr(PgType::Timestamp)),
            (1185, arr(PgType::Timestamptz)),
            (2951, arr(PgType::Uuid)),
            (1001, arr(PgType::Bytea)),
            (3807, arr(PgType::Text)),
            (199, arr(PgType::Text)),
            (1183, arr(PgType::Text)),
            (1187, arr(PgType::Text)),
            (791, arr(PgType::Text)),
            (1041, arr(PgType::Text)),
        ];
        for (oid, ty) in cases {
            assert_eq!(map_type(oid, -1, &c), ty, "oid {oid}");
        }
        assert_eq!(
            map_type(1231, numeric_typmod(12, 3), &c),
            arr(dec(12, 3)),
            "typmod to elements"
        );
        assert_eq!(
            map_type(oid::BOX_ARRAY, -1, &c),
            PgType::Text,
            "_box uses ';'"
        );
    }

    #[test]
    fn catalog_types() {
        let c = catalog(&[
            entry(20000, b'e', 0, 0, -1),                       // enum
            entry(20001, b'b', 0, 0, -1),                       // citext
            entry(20002, b'b', 0, 20000, -1),                   // _enum
            entry(20003, b'd', 1700, 0, numeric_typmod(10, 2)), // domain numeric(10,2)
            entry(20004, b'd', 20003, 0, -1),                   // domain over domain
            entry(20005, b'b', 0, 20003, -1),                   // array of the domain
            entry(20006, b'c', 0, 0, -1),                       // composite
            entry(20007, b'r', 0, 0, -1),                       // range
            entry(20008, b'd', 1007, 0, -1),                    // domain over int4[]
            entry(20009, b'd', 1231, 0, numeric_typmod(5, 1)),  // domain over numeric(5,1)[]
            entry(20010, b'd', 2950, 0, -1),                    // domain over uuid
            entry(20011, b'd', 1700, 0, -1),                    // domain over bare numeric
        ]);
        assert_eq!(map_type(20000, -1, &c), PgType::Text);
        assert_eq!(map_type(20001, -1, &c), PgType::Text);
        assert_eq!(map_type(20002, -1, &c), arr(PgType::Text));
        assert_eq!(map_type(20003, -1, &c), dec(10, 2));
        assert_eq!(map_type(20004, -1, &c), dec(10, 2));
        assert_eq!(map_type(20005, -1, &c), arr(dec(10, 2)));
        assert_eq!(map_type(20006, -1, &c), PgType::Text);
        assert_eq!(map_type(20007, -1, &c), PgType::Text);
        assert_eq!(map_type(20008, -1, &c), arr(PgType::Int4));
        assert_eq!(map_type(20009, -1, &c), arr(dec(5, 1)));
        assert_eq!(map_type(20010, -1, &c), PgType::Uuid);
        assert_eq!(map_type(20011, -1, &c), PgType::Text);
        assert_eq!(
            map_type(20011, numeric_typmod(4, 0), &c),
            dec(4, 0),
            "column typmod wins"
        );
        assert_eq!(map_type(99999, -1, &c), PgType::Text, "unknown OID");
    }

    #[test]
    fn malformed_catalog_cycles_become_text() {
        let c = catalog(&[
            entry(30000, b'd', 30001, 0, -1),
            entry(30001, b'd', 30000, 0, -1),
            entry(30002, b'b', 0, 30002, -1), // array of itself
            entry(30003, b'b', 0, 1007, -1),  // array of an array
            entry(30004, b'd', 30004, 0, -1), // domain over itself
        ]);
        for oid in [30000, 30001, 30002, 30003, 30004] {
            assert_eq!(map_type(oid, -1, &c), PgType::Text, "oid {oid}");
        }
    }

    #[test]
    fn builtin_boundary() {
        assert!(is_builtin(16));
        assert!(is_builtin(16383));
        assert!(!is_builtin(16384));
        assert!(!is_builtin(u32::MAX));
    }

    #[test]
    fn arrow_types() {
        assert_eq!(arrow_type(&PgType::Bool), DataType::Boolean);
        assert_eq!(arrow_type(&PgType::Int2), DataType::Int16);
        assert_eq!(arrow_type(&PgType::Int4), DataType::Int32);
        assert_eq!(arrow_type(&PgType::Int8), DataType::Int64);
        assert_eq!(arrow_type(&PgType::Float4), DataType::Float32);
        assert_eq!(arrow_type(&PgType::Float8), DataType::Float64);
        assert_eq!(arrow_type(&dec(10, 2)), DataType::Decimal128(10, 2));
        assert_eq!(arrow_type(&PgType::Text), DataType::Utf8);
        assert_eq!(arrow_type(&PgType::Uuid), DataType::Utf8);
        assert_eq!(arrow_type(&PgType::Bytea), DataType::Binary);
        assert_eq!(arrow_type(&PgType::Date), DataType::Date32);
        assert_eq!(
            arrow_type(&PgType::Timestamp),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(
            arrow_type(&PgType::Timestamptz),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let DataType::List(field) = arrow_type(&arr(PgType::Int4)) else {
            panic!("array maps to a list");
        };
        assert_eq!(field.name(), "element");
        assert!(field.is_nullable());
        assert_eq!(field.data_type(), &DataType::Int32);
    }
}
