//! Parsers from the Postgres text form of a value to typed values.
//!
//! The replication session runs with `DateStyle=ISO`, `TimeZone=UTC`, `bytea_output=hex`,
//! `extra_float_digits=3` and `IntervalStyle=postgres`, so every value arrives in one canonical
//! text form. The parsers here read exactly those forms, straight from the `Bytes` of a tuple
//! cell, without allocating (except where the result owns bytes: bytea, escaped array elements).
//!
//! ```text
//!  cell text ──► parse_*  ──► Ok(typed value)            written as is
//!                         └─► Err(OutOfRange)            null + listed in `_unavailable`
//!                         └─► Err(Malformed)             null + listed in `_unavailable`
//!                         └─► Err(NotOneDimensional)     null + listed in `_unavailable`
//! ```
//!
//! # Invariants
//! * Arbitrary bytes never panic a parser (property-tested).
//! * Never a wrong value: nothing is rounded, clamped or guessed. The only substitution is the
//!   one the lake format defines (README, "Type mapping"): `infinity` / `-infinity` dates
//!   and timestamps become the
//!   largest / smallest value the Delta type holds.

mod array;
mod datetime;
mod json;

use crate::decode::PgType;

pub use array::parse_array;
pub use datetime::{
    DATE_MAX_DAYS, DATE_MIN_DAYS, TIMESTAMP_MAX_MICROS, TIMESTAMP_MIN_MICROS, format_date,
    format_timestamp_micros, parse_date, parse_timestamp, parse_timestamptz,
};
pub use json::{to_json, try_to_json};

/// Why a value's text could not become a value of its lake type. Every variant means the same
/// thing to the writer: write null and list the column in `_unavailable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The text is not the Postgres output form of the type.
    #[error("value is not in the Postgres text form of its type")]
    Malformed,
    /// A well-formed value the lake type cannot hold: a year outside 0001–9999, a NaN or
    /// infinite numeric, more digits than the decimal's precision or scale.
    #[error("value is outside the range of its lake type")]
    OutOfRange,
    /// A multi-dimensional array or one with explicit bounds (`[0:1]={..}`).
    #[error("array is multi-dimensional or has explicit bounds")]
    NotOneDimensional,
}

pub type ValueResult<T> = Result<T, ValueError>;

/// `t` / `f` (also `true` / `false`).
pub fn parse_bool(text: &[u8]) -> ValueResult<bool> {
    match text {
        b"t" | b"true" => Ok(true),
        b"f" | b"false" => Ok(false),
        _ => Err(ValueError::Malformed),
    }
}

/// Decimal integer with an optional sign, within `min..=max`.
fn parse_int(text: &[u8], min: i64, max: i64) -> ValueResult<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(ValueError::Malformed);
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut acc: i64 = 0;
    for &b in digits {
        let d = digit(b)?;
        acc = acc
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d)))
            .ok_or(ValueError::Malformed)?;
    }
    let value = if negative {
        acc
    } else {
        acc.checked_neg().ok_or(ValueError::Malformed)?
    };
    if value < min || value > max {
        return Err(ValueError::Malformed);
    }
    Ok(value)
}

fn digit(b: u8) -> ValueResult<u8> {
    if b.is_ascii_digit() {
        Ok(b - b'0')
    } else {
        Err(ValueError::Malformed)
    }
}

pub fn parse_i16(text: &[u8]) -> ValueResult<i16> {
    let v = parse_int(text, i16::MIN.into(), i16::MAX.into())?;
    i16::try_from(v).map_err(|_| ValueError::Malformed)
}

pub fn parse_i32(text: &[u8]) -> ValueResult<i32> {
    let v = parse_int(text, i32::MIN.into(), i32::MAX.into())?;
    i32::try_from(v).map_err(|_| ValueError::Malformed)
}

pub fn parse_i64(text: &[u8]) -> ValueResult<i64> {
    parse_int(text, i64::MIN, i64::MAX)
}

/// `NaN`, `Infinity`, `-Infinity`, or a finite number; returns `None` for the specials.
fn float_special(text: &[u8]) -> Option<f64> {
    match text {
        b"NaN" => Some(f64::NAN),
        b"Infinity" => Some(f64::INFINITY),
        b"-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn parse_finite<T: std::str::FromStr + Copy>(
    text: &[u8],
    is_finite: fn(T) -> bool,
) -> ValueResult<T> {
    // Rust also accepts "inf"/"nan" spellings; Postgres prints only the specials handled above,
    // so anything else must parse to a finite number (an overflowing literal would become inf).
    let s = std::str::from_utf8(text).map_err(|_| ValueError::Malformed)?;
    let v: T = s.parse().map_err(|_| ValueError::Malformed)?;
    if is_finite(v) {
        Ok(v)
    } else {
        Err(ValueError::Malformed)
    }
}

/// float8 text (`extra_float_digits=3`: shortest exact form), including `NaN` and ±`Infinity`.
pub fn parse_f64(text: &[u8]) -> ValueResult<f64> {
    match float_special(text) {
        Some(v) => Ok(v),
        None => parse_finite(text, f64::is_finite),
    }
}

/// float4 text, including `NaN` and ±`Infinity`.
pub fn parse_f32(text: &[u8]) -> ValueResult<f32> {
    match float_special(text) {
        Some(v) => Ok(v as f32),
        None => parse_finite(text, f32::is_finite),
    }
}

/// numeric text as an integer scaled by `10^scale` (`"123.4"`, scale 2 → `12340`).
///
/// Never rounds: more fractional digits than `scale`, or more integer digits than
/// `precision - scale`, is [`ValueError::OutOfRange`], as are `NaN` and ±`Infinity`.
pub fn parse_decimal(text: &[u8], precision: u8, scale: i8) -> ValueResult<i128> {
    let Ok(scale) = u8::try_from(scale) else {
        return Err(ValueError::OutOfRange);
    };
    if precision == 0 || precision > 38 || scale > precision {
        return Err(ValueError::OutOfRange);
    }
    if matches!(text, b"NaN" | b"Infinity" | b"-Infinity") {
        return Err(ValueError::OutOfRange);
    }
    let (negative, body) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    let (int_part, frac_part) = match body.iter().position(|&b| b == b'.') {
        Some(dot) => (&body[..dot], &body[dot + 1..]),
        None => (body, &[][..]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(ValueError::Malformed);
    }
    if !int_part.iter().chain(frac_part).all(u8::is_ascii_digit) {
        return Err(ValueError::Malformed);
    }
    let int_part = match int_part.iter().position(|&b| b != b'0') {
        Some(first) => &int_part[first..],
        None => &[][..],
    };
    if frac_part.len() > usize::from(scale)
        || int_part.len() + usize::from(scale) > precision.into()
    {
        return Err(ValueError::OutOfRange);
    }
    // At most 38 significant digits: < 10^38 < i128::MAX.
    let mut acc: i128 = 0;
    for &b in int_part.iter().chain(frac_part) {
        acc = acc * 10 + i128::from(b - b'0');
    }
    for _ in frac_part.len()..usize::from(scale) {
        acc *= 10;
    }
    Ok(if negative { -acc } else { acc })
}

/// Decodes bytea text (`\x` hex, or the legacy escape format) into `out` (cleared first).
pub fn decode_bytea_into(text: &[u8], out: &mut Vec<u8>) -> ValueResult<()> {
    out.clear();
    if let Some(hex) = text.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return Err(ValueError::Malformed);
        }
        out.reserve(hex.len() / 2);
        for pair in hex.chunks_exact(2) {
            out.push((hex_nibble(pair[0])? << 4) | hex_nibble(pair[1])?);
        }
        return Ok(());
    }
    out.reserve(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\\' => {
                if text.get(i + 1) == Some(&b'\\') {
                    out.push(b'\\');
                    i += 2;
                } else if let Some(&[a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7']) =
                    text.get(i + 1..i + 4)
                {
                    out.push(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'));
                    i += 4;
                } else {
                    return Err(ValueError::Malformed);
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(())
}

/// Decodes bytea text into a new vector.
pub fn parse_bytea(text: &[u8]) -> ValueResult<Vec<u8>> {
    let mut out = Vec::new();
    decode_bytea_into(text, &mut out)?;
    Ok(out)
}

fn hex_nibble(b: u8) -> ValueResult<u8> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(ValueError::Malformed),
    }
}

/// A uuid in canonical lowercase form (`8-4-4-4-12` hex digits), stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UuidText([u8; 36]);

impl UuidText {
    /// The canonical form of a uuid's 16 bytes (its binary form).
    pub fn from_bytes(bytes: &[u8; 16]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut at = 0;
        for (i, b) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                at += 1;
            }
            out[at] = HEX[usize::from(b >> 4)];
            out[at + 1] = HEX[usize::from(b & 0x0f)];
            at += 2;
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and '-' are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// uuid text → canonical lowercase form.
pub fn parse_uuid(text: &[u8]) -> ValueResult<UuidText> {
    let text: &[u8; 36] = text.try_into().map_err(|_| ValueError::Malformed)?;
    let mut out = [0u8; 36];
    for (i, (&b, o)) in text.iter().zip(out.iter_mut()).enumerate() {
        *o = match i {
            8 | 13 | 18 | 23 if b == b'-' => b'-',
            8 | 13 | 18 | 23 => return Err(ValueError::Malformed),
            _ if b.is_ascii_hexdigit() => b.to_ascii_lowercase(),
            _ => return Err(ValueError::Malformed),
        };
    }
    Ok(UuidText(out))
}

/// Text kept as a string: must be UTF-8 (the session's `client_encoding`).
pub fn parse_text(text: &[u8]) -> ValueResult<&str> {
    std::str::from_utf8(text).map_err(|_| ValueError::Malformed)
}

/// Checks that `text` is a valid value of `ty` without keeping the result.
pub fn validate(ty: &PgType, text: &[u8]) -> ValueResult<()> {
    match ty {
        PgType::Bool => parse_bool(text).map(drop),
        PgType::Int2 => parse_i16(text).map(drop),
        PgType::Int4 => parse_i32(text).map(drop),
        PgType::Int8 => parse_i64(text).map(drop),
        PgType::Float4 => parse_f32(text).map(drop),
        PgType::Float8 => parse_f64(text).map(drop),
        PgType::Decimal { precision, scale } => parse_decimal(text, *precision, *scale).map(drop),
        PgType::Text => parse_text(text).map(drop),
        PgType::Bytea => parse_bytea(text).map(drop),
        PgType::Uuid => parse_uuid(text).map(drop),
        PgType::Date => parse_date(text).map(drop),
        PgType::Timestamp => parse_timestamp(text).map(drop),
        PgType::Timestamptz => parse_timestamptz(text).map(drop),
        PgType::Array(elem) => parse_array(text)?
            .iter()
            .flatten()
            .try_for_each(|e| validate(elem, e.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BAD: ValueError = ValueError::Malformed;
    const OOR: ValueError = ValueError::OutOfRange;

    #[test]
    fn bools() {
        assert_eq!(parse_bool(b"t"), Ok(true));
        assert_eq!(parse_bool(b"f"), Ok(false));
        assert_eq!(parse_bool(b"true"), Ok(true));
        assert_eq!(parse_bool(b"T"), Err(BAD));
        assert_eq!(parse_bool(b""), Err(BAD));
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i16(b"-32768"), Ok(i16::MIN));
        assert_eq!(parse_i16(b"32767"), Ok(i16::MAX));
        assert_eq!(parse_i16(b"32768"), Err(BAD));
        assert_eq!(parse_i32(b"-2147483648"), Ok(i32::MIN));
        assert_eq!(parse_i32(b"2147483648"), Err(BAD));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), Err(BAD));
        assert_eq!(parse_i64(b"-9223372036854775809"), Err(BAD));
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"+7"), Ok(7));
        assert_eq!(parse_i64(b"007"), Ok(7));
        for bad in [
            &b""[..],
            b"-",
            b"+",
            b"1.0",
            b" 1",
            b"1 ",
            b"1e3",
            b"--1",
            b"0x10",
        ] {
            assert_eq!(parse_i64(bad), Err(BAD), "{bad:?}");
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"1.5"), Ok(1.5));
        assert_eq!(parse_f64(b"-0"), Ok(-0.0));
        assert_eq!(parse_f64(b"1e-05"), Ok(1e-5));
        assert_eq!(parse_f64(b"1.7976931348623157e+308"), Ok(f64::MAX));
        assert_eq!(parse_f64(b"5e-324"), Ok(5e-324));
        assert_eq!(parse_f64(b"Infinity"), Ok(f64::INFINITY));
        assert_eq!(parse_f64(b"-Infinity"), Ok(f64::NEG_INFINITY));
        assert!(parse_f64(b"NaN").is_ok_and(f64::is_nan));
        assert_eq!(parse_f32(b"0.1"), Ok(0.1f32));
        assert_eq!(parse_f32(b"3.4028235e+38"), Ok(f32::MAX));
        assert_eq!(parse_f32(b"-Infinity"), Ok(f32::NEG_INFINITY));
        assert!(parse_f32(b"NaN").is_ok_and(f32::is_nan));
        assert_eq!(parse_f32(b"1e39"), Err(BAD), "would overflow to infinity");
        assert_eq!(parse_f64(b"1e309"), Err(BAD));
        for bad in [&b""[..], b"abc", b"1.5 ", b"\xff", b"1,5"] {
            assert_eq!(parse_f64(bad), Err(BAD), "{bad:?}");
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"123.4", 10, 2), Ok(12_340));
        assert_eq!(parse_decimal(b"123.45", 10, 2), Ok(12_345));
        assert_eq!(parse_decimal(b"-123.45", 10, 2), Ok(-12_345));
        assert_eq!(parse_decimal(b"0", 10, 2), Ok(0));
        assert_eq!(parse_decimal(b"-0.00", 10, 2), Ok(0));
        assert_eq!(parse_decimal(b"0.01", 3, 2), Ok(1));
        assert_eq!(parse_decimal(b"7", 10, 0), Ok(7));
        assert_eq!(
            parse_decimal(b"0007.5", 2, 1),
            Ok(75),
            "leading zeros do not count"
        );
        assert_eq!(parse_decimal(b".5", 2, 1), Ok(5));
        assert_eq!(parse_decimal(b"99999999.99", 10, 2), Ok(9_999_999_999));
        let max38 = "9".repeat(38);
        assert_eq!(
            parse_decimal(max38.as_bytes(), 38, 0),
            Ok(10i128.pow(38) - 1)
        );
        let frac38 = format!("-0.{}", "9".repeat(38));
        assert_eq!(
            parse_decimal(frac38.as_bytes(), 38, 38),
            Ok(1 - 10i128.pow(38))
        );
        // Never rounds, never truncates.
        assert_eq!(parse_decimal(b"1.234", 10, 2), Err(OOR));
        assert_eq!(parse_decimal(b"1.230", 10, 2), Err(OOR));
        assert_eq!(parse_decimal(b"100000000.00", 10, 2), Err(OOR));
        assert_eq!(parse_decimal(b"1", 2, 2), Err(OOR));
        assert_eq!(
            parse_decimal(format!("1{max38}").as_bytes(), 38, 0),
            Err(OOR)
        );
        for special in [&b"NaN"[..], b"Infinity", b"-Infinity"] {
            assert_eq!(parse_decimal(special, 10, 2), Err(OOR));
        }
        assert_eq!(parse_decimal(b"1", 39, 0), Err(OOR), "invalid type");
        assert_eq!(parse_decimal(b"1", 5, -1), Err(OOR), "invalid type");
        for bad in [
            &b""[..],
            b"-",
            b".",
            b"1.2.3",
            b"1e5",
            b" 1",
            b"1,5",
            b"--1",
            b"nan",
        ] {
            assert_eq!(parse_decimal(bad, 10, 2), Err(BAD), "{bad:?}");
        }
    }

    #[test]
    fn byteas() {
        assert_eq!(parse_bytea(b"\\x"), Ok(vec![]));
        assert_eq!(parse_bytea(b"\\x0a0b"), Ok(vec![0x0a, 0x0b]));
        assert_eq!(
            parse_bytea(b"\\xDEADbeef"),
            Ok(vec![0xde, 0xad, 0xbe, 0xef])
        );
        assert_eq!(parse_bytea(b"\\x0"), Err(BAD));
        assert_eq!(parse_bytea(b"\\x0g"), Err(BAD));
        // Legacy escape format.
        assert_eq!(parse_bytea(b"abc"), Ok(b"abc".to_vec()));
        assert_eq!(parse_bytea(b""), Ok(vec![]));
        assert_eq!(parse_bytea(b"a\\\\b"), Ok(b"a\\b".to_vec()));
        assert_eq!(parse_bytea(b"\\000\\377\\012"), Ok(vec![0, 255, 10]));
        assert_eq!(parse_bytea(b"\\400"), Err(BAD));
        assert_eq!(parse_bytea(b"\\08"), Err(BAD));
        assert_eq!(parse_bytea(b"\\"), Err(BAD));
        assert_eq!(parse_bytea(b"\\n"), Err(BAD));
        let mut buf = vec![1, 2, 3];
        decode_bytea_into(b"\\xff", &mut buf).unwrap();
        assert_eq!(buf, [0xff], "buffer is cleared first");
    }

    #[test]
    fn uuids() {
        let u = parse_uuid(b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap();
        assert_eq!(u.as_str(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        for bad in [
            &b"a0eebc999c0b4ef8bb6d6bb9bd380a11"[..],
            b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            b"a0eebc99-9c0b-4ef8-bb6d+6bb9bd380a11",
            b"g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            b"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1}",
        ] {
            assert_eq!(parse_uuid(bad), Err(BAD), "{bad:?}");
        }
    }

    #[test]
    fn validate_by_type() {
        let ints = PgType::Array(Box::new(PgType::Int2));
        assert_eq!(validate(&ints, b"{1,NULL,3}"), Ok(()));
        assert_eq!(validate(&ints, b"{1,99999}"), Err(BAD));
        assert_eq!(
            validate(&ints, b"{{1}}"),
            Err(ValueError::NotOneDimensional)
        );
        assert_eq!(validate(&PgType::Text, b"\xc3\x28"), Err(BAD));
        assert_eq!(validate(&PgType::Date, b"0001-01-01 BC"), Err(OOR));
    }

    proptest! {
        #[test]
        fn int_round_trips(a in any::<i16>(), b in any::<i32>(), c in any::<i64>()) {
            prop_assert_eq!(parse_i16(a.to_string().as_bytes()), Ok(a));
            prop_assert_eq!(parse_i32(b.to_string().as_bytes()), Ok(b));
            prop_assert_eq!(parse_i64(c.to_string().as_bytes()), Ok(c));
        }

        #[test]
        fn float_round_trips(a in any::<f32>(), b in any::<f64>()) {
            // Rust's Display is the shortest exact form, like Postgres' float output.
            prop_assume!(a.is_finite() && b.is_finite());
            prop_assert_eq!(parse_f32(a.to_string().as_bytes()), Ok(a));
            prop_assert_eq!(parse_f64(format!("{b:e}").as_bytes()), Ok(b));
        }

        #[test]
        fn decimal_round_trip(v in -(10i128.pow(18) - 1)..10i128.pow(18), scale in 0u8..=18) {
            let p = 10i128.pow(u32::from(scale));
            let (int, frac) = (v.abs() / p, v.abs() % p);
            let sign = if v < 0 { "-" } else { "" };
            let text = if scale == 0 {
                format!("{sign}{int}")
            } else {
                format!("{sign}{int}.{frac:0width$}", width = usize::from(scale))
            };
            prop_assert_eq!(parse_decimal(text.as_bytes(), 38, scale as i8), Ok(v));
        }

        #[test]
        fn bytea_hex_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text: String = std::iter::once("\\x".to_owned())
                .chain(bytes.iter().map(|b| format!("{b:02x}")))
                .collect();
            prop_assert_eq!(parse_bytea(text.as_bytes()), Ok(bytes));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let _ = parse_bool(&bytes);
            let _ = parse_i16(&bytes);
            let _ = parse_i32(&bytes);
            let _ = parse_i64(&bytes);
            let _ = parse_f32(&bytes);
            let _ = parse_f64(&bytes);
            let _ = parse_decimal(&bytes, 38, 4);
            let _ = parse_decimal(&bytes, 5, 5);
            let _ = parse_bytea(&bytes);
            let _ = parse_uuid(&bytes);
            let _ = parse_text(&bytes);
            let _ = parse_array(&bytes);
            let _ = parse_date(&bytes);
            let _ = parse_timestamp(&bytes);
            let _ = parse_timestamptz(&bytes);
        }

        #[test]
        fn numeric_like_text_never_panics(s in "[-+]?[0-9]{0,45}(\\.[0-9]{0,45})?") {
            let _ = parse_decimal(s.as_bytes(), 38, 10);
            let _ = parse_i64(s.as_bytes());
            let _ = parse_f64(s.as_bytes());
        }
    }
}
