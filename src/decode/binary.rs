//! Decoders of the binary form of values (`COPY … (FORMAT binary)`, the types' `*send`
//! functions), for the historical load.
//!
//! ```text
//!  column (type OID, lake PgType) ──► binary_kind ──► Some(kind): decode_* ──► typed value
//!                                                 └─► None: the table is copied as text
//! ```
//!
//! Only built-in types whose binary form is simple and fully specified are read in binary; every
//! other column (domains, enums, arrays, `"char"`, numeric without a typmod, time, interval…)
//! keeps the text path, so a table is copied in binary only when all its columns have a kind.
//!
//! # Invariants
//! * Same value, same outcome as the text parsers in [`super::value`]: a value decodes to what
//!   its text form parses to, and is unavailable (`Err`) exactly when the text form is
//!   (`infinity` dates and timestamps map to the ends of the Delta range, NaN numerics and
//!   out-of-range years are `OutOfRange`). Shown against a real server by the snapshot tests.
//! * Arbitrary bytes never panic (property-tested); a wrong length is `Malformed`.

use super::PgType;
use super::pgtype::oid;
use super::value::{
    DATE_MAX_DAYS, DATE_MIN_DAYS, TIMESTAMP_MAX_MICROS, TIMESTAMP_MIN_MICROS, UuidText, ValueError,
    ValueResult,
};

/// Days from 1970-01-01 to 2000-01-01, Postgres' binary epoch.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS as i64 * 86_400_000_000;

/// How a column's binary value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Bool,
    Int2,
    Int4,
    Int8,
    /// `oid`: 4 bytes unsigned, stored as int8.
    Oid,
    Float4,
    Float8,
    Decimal {
        precision: u8,
        scale: i8,
    },
    /// text, varchar, bpchar, name, json: the bytes are the text.
    Text,
    /// jsonb: a version byte (1), then the text.
    Jsonb,
    Uuid,
    Bytea,
    Date,
    Timestamp,
}

/// The binary reader of a column of type `type_oid` written as `ty`, or `None` when the column
/// must be read as text (see the module docs).
pub fn binary_kind(type_oid: u32, ty: &PgType) -> Option<BinaryKind> {
    Some(match (type_oid, ty) {
        (oid::BOOL, PgType::Bool) => BinaryKind::Bool,
        (oid::INT2, PgType::Int2) => BinaryKind::Int2,
        (oid::INT4, PgType::Int4) => BinaryKind::Int4,
        (oid::INT8, PgType::Int8) => BinaryKind::Int8,
        (oid::OID, PgType::Int8) => BinaryKind::Oid,
        (oid::FLOAT4, PgType::Float4) => BinaryKind::Float4,
        (oid::FLOAT8, PgType::Float8) => BinaryKind::Float8,
        (oid::NUMERIC, PgType::Decimal { precision, scale }) => BinaryKind::Decimal {
            precision: *precision,
            scale: *scale,
        },
        (oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON, PgType::Text) => {
            BinaryKind::Text
        }
        (oid::JSONB, PgType::Text) => BinaryKind::Jsonb,
        (oid::UUID, PgType::Uuid) => BinaryKind::Uuid,
        (oid::BYTEA, PgType::Bytea) => BinaryKind::Bytea,
        (oid::DATE, PgType::Date) => BinaryKind::Date,
        (oid::TIMESTAMP, PgType::Timestamp) | (oid::TIMESTAMPTZ, PgType::Timestamptz) => {
            BinaryKind::Timestamp
        }
        _ => return None,
    })
}

fn fixed<const N: usize>(bytes: &[u8]) -> ValueResult<[u8; N]> {
    bytes.try_into().map_err(|_| ValueError::Malformed)
}

pub fn decode_bool(bytes: &[u8]) -> ValueResult<bool> {
    match bytes {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(ValueError::Malformed),
    }
}

pub fn decode_i16(bytes: &[u8]) -> ValueResult<i16> {
    Ok(i16::from_be_bytes(fixed(bytes)?))
}

pub fn decode_i32(bytes: &[u8]) -> ValueResult<i32> {
    Ok(i32::from_be_bytes(fixed(bytes)?))
}

pub fn decode_i64(bytes: &[u8]) -> ValueResult<i64> {
    Ok(i64::from_be_bytes(fixed(bytes)?))
}

pub fn decode_oid(bytes: &[u8]) -> ValueResult<i64> {
    Ok(i64::from(u32::from_be_bytes(fixed(bytes)?)))
}

/// float4; every NaN becomes the canonical NaN (the text form `NaN` parses to it).
pub fn decode_f32(bytes: &[u8]) -> ValueResult<f32> {
    let v = f32::from_be_bytes(fixed(bytes)?);
    Ok(if v.is_nan() { f32::NAN } else { v })
}

/// float8; every NaN becomes the canonical NaN.
pub fn decode_f64(bytes: &[u8]) -> ValueResult<f64> {
    let v = f64::from_be_bytes(fixed(bytes)?);
    Ok(if v.is_nan() { f64::NAN } else { v })
}

/// jsonb's binary form: version 1, then the text `jsonb_out` prints.
pub fn decode_jsonb(bytes: &[u8]) -> ValueResult<&str> {
    match bytes {
        [1, text @ ..] => std::str::from_utf8(text).map_err(|_| ValueError::Malformed),
        _ => Err(ValueError::Malformed),
    }
}

pub fn decode_uuid(bytes: &[u8]) -> ValueResult<UuidText> {
    Ok(UuidText::from_bytes(&fixed(bytes)?))
}

/// date → days since 1970-01-01; `±infinity` → the ends of the Delta range, years outside
/// 0001–9999 `OutOfRange` (as [`super::value::parse_date`]).
pub fn decode_date(bytes: &[u8]) -> ValueResult<i32> {
    match i32::from_be_bytes(fixed(bytes)?) {
        i32::MAX => Ok(DATE_MAX_DAYS),
        i32::MIN => Ok(DATE_MIN_DAYS),
        days => {
            let days = days
                .checked_add(PG_EPOCH_DAYS)
                .ok_or(ValueError::OutOfRange)?;
            if (DATE_MIN_DAYS..=DATE_MAX_DAYS).contains(&days) {
                Ok(days)
            } else {
                Err(ValueError::OutOfRange)
            }
        }
    }
}

/// timestamp / timestamptz (UTC) → microseconds since 1970-01-01; `±infinity` → the ends of
/// the Delta range, anything outside it `OutOfRange` (as [`super::value::parse_timestamp`]).
pub fn decode_timestamp(bytes: &[u8]) -> ValueResult<i64> {
    match i64::from_be_bytes(fixed(bytes)?) {
        i64::MAX => Ok(TIMESTAMP_MAX_MICROS),
        i64::MIN => Ok(TIMESTAMP_MIN_MICROS),
        micros => {
            let micros = micros
                .checked_add(PG_EPOCH_MICROS)
                .ok_or(ValueError::OutOfRange)?;
            if (TIMESTAMP_MIN_MICROS..=TIMESTAMP_MAX_MICROS).contains(&micros) {
                Ok(micros)
            } else {
                Err(ValueError::OutOfRange)
            }
        }
    }
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;

/// numeric's binary form (`ndigits`, `weight`, `sign`, `dscale`, then `ndigits` base-10000
/// digits, the first worth `10000^weight`) as an integer scaled by `10^scale`.
///
/// The same outcome as [`super::value::parse_decimal`] on the value's text: the text shows
/// `dscale` fractional digits, so `dscale > scale` is `OutOfRange` as are more than
/// `precision - scale` integer digits, NaN and ±Infinity.
pub fn decode_numeric(bytes: &[u8], precision: u8, scale: i8) -> ValueResult<i128> {
    let Ok(scale) = u8::try_from(scale) else {
        return Err(ValueError::OutOfRange);
    };
    if precision == 0 || precision > 38 || scale > precision {
        return Err(ValueError::OutOfRange);
    }
    let header: [u8; 8] = bytes
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(ValueError::Malformed)?;
    let ndigits = i16::from_be_bytes([header[0], header[1]]);
    let weight = i32::from(i16::from_be_bytes([header[2], header[3]]));
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let dscale = u16::from_be_bytes([header[6], header[7]]);
    let digits = &bytes[8..];
    let Ok(ndigits) = usize::try_from(ndigits) else {
        return Err(ValueError::Malformed);
    };
    if digits.len() != ndigits * 2 || dscale & 0xc000 != 0 {
        return Err(ValueError::Malformed);
    }
    let negative = match sign {
        NUMERIC_POS => false,
        NUMERIC_NEG => true,
        // NaN, +Infinity, -Infinity.
        0xc000 | 0xd000 | 0xf000 => return Err(ValueError::OutOfRange),
        _ => return Err(ValueError::Malformed),
    };
    if dscale > u16::from(scale) {
        return Err(ValueError::OutOfRange);
    }
    let limit = 10i128.pow(u32::from(precision));
    let mut acc: i128 = 0;
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let digit = i128::from(u16::from_be_bytes([pair[0], pair[1]]));
        if digit >= 10_000 {
            return Err(ValueError::Malformed);
        }
        // This digit is worth 10000^(weight - i) × 10^scale = 10^exp.
        let exp = 4 * (weight - i as i32) + i32::from(scale);
        let term = if exp >= 0 {
            // exp ≥ 39 with a non-zero digit is beyond any precision ≤ 38.
            if exp > 38 {
                if digit == 0 {
                    0
                } else {
                    return Err(ValueError::OutOfRange);
                }
            } else {
                digit
                    .checked_mul(10i128.pow(exp as u32))
                    .ok_or(ValueError::OutOfRange)?
            }
        } else {
            // A fractional part finer than 10^-scale: must be zero (dscale ≤ scale).
            let divisor = 10i128.pow((-exp).min(8) as u32);
            if (-exp) > 8 || digit % divisor != 0 {
                if digit == 0 {
                    0
                } else {
                    return Err(ValueError::OutOfRange);
                }
            } else {
                digit / divisor
            }
        };
        acc = acc.checked_add(term).ok_or(ValueError::OutOfRange)?;
        if acc >= limit {
            return Err(ValueError::OutOfRange);
        }
    }
    Ok(if negative { -acc } else { acc })
}

#[cfg(test)]
mod tests;
