//! JSON form of a value, for the `tail` command.
//!
//! ```text
//!  bool → true/false          int2/4/8 → number           float4/8 → number | "NaN" | "±Infinity"
//!  decimal → "exact text"     date → "YYYY-MM-DD"         bytea → "\\x0a0b"
//!  timestamp → "2024-01-02T03:04:05.123456"   timestamptz → "2024-01-02T03:04:05.123456Z"
//!  text, uuid → string        arrays → JSON arrays         unavailable → null
//! ```
//!
//! # Invariants
//! * Dates and timestamps show the value the lake holds (`infinity` as 9999-12-31 ...).
//! * A value the lake would mark unavailable is JSON `null` ([`to_json`]) or an error
//!   ([`try_to_json`]); an array with one such element is unavailable as a whole, as in the lake.

use serde_json::Value;

use super::{
    ValueResult, format_date, format_timestamp_micros, parse_array, parse_bool, parse_bytea,
    parse_date, parse_decimal, parse_f32, parse_f64, parse_i16, parse_i32, parse_i64, parse_text,
    parse_timestamp, parse_timestamptz, parse_uuid,
};
use crate::decode::PgType;

/// The JSON form of a non-null value of type `ty`; `null` when the value is unavailable (out of
/// range, malformed, multi-dimensional array): the caller lists such columns as unavailable.
pub fn to_json(ty: &PgType, text: &[u8]) -> Value {
    try_to_json(ty, text).unwrap_or(Value::Null)
}

/// Like [`to_json`], saying why a value is unavailable.
pub fn try_to_json(ty: &PgType, text: &[u8]) -> ValueResult<Value> {
    Ok(match ty {
        PgType::Bool => Value::Bool(parse_bool(text)?),
        PgType::Int2 => parse_i16(text)?.into(),
        PgType::Int4 => parse_i32(text)?.into(),
        PgType::Int8 => parse_i64(text)?.into(),
        PgType::Float4 => {
            parse_f32(text)?;
            // float4 text is its shortest exact form: read as f64 it prints the same digits.
            float(parse_f64(text)?)
        }
        PgType::Float8 => float(parse_f64(text)?),
        PgType::Decimal { precision, scale } => {
            parse_decimal(text, *precision, *scale)?;
            Value::String(parse_text(text)?.to_owned())
        }
        PgType::Text => Value::String(parse_text(text)?.to_owned()),
        PgType::Uuid => Value::String(parse_uuid(text)?.as_str().to_owned()),
        PgType::Bytea => Value::String(hex(&parse_bytea(text)?)),
        PgType::Date => Value::String(format_date(parse_date(text)?)),
        PgType::Timestamp => Value::String(format_timestamp_micros(parse_timestamp(text)?, false)),
        PgType::Timestamptz => {
            Value::String(format_timestamp_micros(parse_timestamptz(text)?, true))
        }
        PgType::Array(elem) => Value::Array(
            parse_array(text)?
                .iter()
                .map(|e| match e {
                    None => Ok(Value::Null),
                    Some(e) => try_to_json(elem, e.as_bytes()),
                })
                .collect::<ValueResult<_>>()?,
        ),
    })
}

fn float(v: f64) -> Value {
    match serde_json::Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => Value::String("NaN".to_owned()),
        None if v > 0.0 => Value::String("Infinity".to_owned()),
        None => Value::String("-Infinity".to_owned()),
    }
}

/// `\x` followed by lowercase hex digits: Postgres' `bytea_output=hex` form.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::value::ValueError;
    use proptest::prelude::*;
    use serde_json::json;

    fn j(ty: &PgType, text: &str) -> Value {
        to_json(ty, text.as_bytes())
    }

    #[test]
    fn scalars() {
        assert_eq!(j(&PgType::Bool, "t"), json!(true));
        assert_eq!(j(&PgType::Bool, "f"), json!(false));
        assert_eq!(j(&PgType::Int2, "-32768"), json!(-32768));
        assert_eq!(j(&PgType::Int4, "42"), json!(42));
        assert_eq!(j(&PgType::Int8, "9223372036854775807"), json!(i64::MAX));
        assert_eq!(j(&PgType::Float8, "1.5"), json!(1.5));
        assert_eq!(j(&PgType::Float4, "0.1"), json!(0.1));
        assert_eq!(j(&PgType::Float8, "NaN"), json!("NaN"));
        assert_eq!(j(&PgType::Float4, "Infinity"), json!("Infinity"));
        assert_eq!(j(&PgType::Float8, "-Infinity"), json!("-Infinity"));
        let dec = PgType::Decimal {
            precision: 10,
            scale: 2,
        };
        assert_eq!(j(&dec, "-12345678.90"), json!("-12345678.90"));
        assert_eq!(j(&PgType::Text, "héllo"), json!("héllo"));
        assert_eq!(
            j(&PgType::Uuid, "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        assert_eq!(j(&PgType::Bytea, "\\x0a0B"), json!("\\x0a0b"));
        assert_eq!(
            j(&PgType::Bytea, "a\\\\b\\001"),
            json!("\\x615c6201"),
            "escape format"
        );
        assert_eq!(j(&PgType::Date, "2024-02-29"), json!("2024-02-29"));
        assert_eq!(j(&PgType::Date, "infinity"), json!("9999-12-31"));
        assert_eq!(
            j(&PgType::Timestamp, "2024-01-02 03:04:05.123456"),
            json!("2024-01-02T03:04:05.123456")
        );
        assert_eq!(
            j(&PgType::Timestamptz, "2024-01-02 08:34:05.5+05:30"),
            json!("2024-01-02T03:04:05.500000Z")
        );
    }

    #[test]
    fn unavailable_values_are_null() {
        let dec = PgType::Decimal {
            precision: 4,
            scale: 2,
        };
        assert_eq!(j(&dec, "NaN"), Value::Null);
        assert_eq!(j(&dec, "123.45"), Value::Null);
        assert_eq!(j(&PgType::Date, "0044-03-15 BC"), Value::Null);
        assert_eq!(
            j(&PgType::Timestamptz, "10000-01-01 00:00:00+00"),
            Value::Null
        );
        assert_eq!(j(&PgType::Int2, "40000"), Value::Null);
        assert_eq!(j(&PgType::Float4, "1e39"), Value::Null);
        assert_eq!(j(&PgType::Bool, "yes"), Value::Null);
        assert_eq!(to_json(&PgType::Text, b"\xff"), Value::Null);
        let arr = PgType::Array(Box::new(PgType::Int4));
        assert_eq!(j(&arr, "{{1},{2}}"), Value::Null);
        assert_eq!(
            try_to_json(&arr, b"{{1},{2}}"),
            Err(ValueError::NotOneDimensional)
        );
        assert_eq!(
            j(&arr, "{1,x}"),
            Value::Null,
            "one bad element makes the array unavailable"
        );
        assert_eq!(try_to_json(&dec, b"NaN"), Err(ValueError::OutOfRange));
    }

    #[test]
    fn arrays() {
        let ints = PgType::Array(Box::new(PgType::Int4));
        assert_eq!(j(&ints, "{1,NULL,-3}"), json!([1, null, -3]));
        assert_eq!(j(&ints, "{}"), json!([]));
        let texts = PgType::Array(Box::new(PgType::Text));
        assert_eq!(
            j(&texts, r#"{"a,b","NULL",NULL}"#),
            json!(["a,b", "NULL", null])
        );
        let dates = PgType::Array(Box::new(PgType::Date));
        assert_eq!(
            j(&dates, "{2024-01-01,-infinity}"),
            json!(["2024-01-01", "0001-01-01"])
        );
    }

    proptest! {
        #[test]
        fn ints_are_numbers(v in any::<i64>()) {
            prop_assert_eq!(j(&PgType::Int8, &v.to_string()), json!(v));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            for ty in [
                PgType::Bool, PgType::Int2, PgType::Int4, PgType::Int8, PgType::Float4,
                PgType::Float8, PgType::Decimal { precision: 38, scale: 10 }, PgType::Text,
                PgType::Bytea, PgType::Uuid, PgType::Date, PgType::Timestamp,
                PgType::Timestamptz, PgType::Array(Box::new(PgType::Timestamptz)),
            ] {
                let _ = to_json(&ty, &bytes);
            }
        }
    }
}
