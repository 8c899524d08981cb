//! Parsers of the Postgres text form of values (`decode::value`). Input:
//! `[type] [p] [s] [text]`, the type chosen by `walaudit_fuzz::pg_type`.
//!
//! Checks:
//! * `validate`, `try_to_json` and `to_json` agree on whether (and why) a value is unavailable;
//! * every value that parses, written back in its canonical text form, parses to the same
//!   value (integers also as the wider integer types, arrays element by element).

#![no_main]

use libfuzzer_sys::fuzz_target;
use walaudit::decode::PgType;
use walaudit::decode::value::{
    self, format_date, parse_array, parse_bool, parse_bytea, parse_date, parse_decimal, parse_f32,
    parse_f64, parse_i16, parse_i32, parse_i64, parse_text, parse_timestamp, parse_timestamptz,
    parse_uuid, to_json, try_to_json,
};
use walaudit_fuzz::{bytea_text, decimal_text, float_text, pg_type, same_float, timestamp_text};

fuzz_target!(|data: &[u8]| {
    walaudit_fuzz::input(data);
    let Some((&[selector, p, s], text)) = data.split_first_chunk::<3>() else {
        return;
    };
    let ty = pg_type(selector, p, s);
    let valid = value::validate(&ty, text);
    let json = try_to_json(&ty, text);
    assert_eq!(json.as_ref().map(drop).map_err(|e| *e), valid, "{ty:?}");
    assert_eq!(to_json(&ty, text).is_null(), json.is_err(), "{ty:?}");
    round_trip(&ty, text);
});

/// A value that parses as `ty` parses to the same value from its canonical text.
fn round_trip(ty: &PgType, text: &[u8]) {
    match ty {
        PgType::Bool => {
            if let Ok(v) = parse_bool(text) {
                assert_eq!(parse_bool(if v { b"t" } else { b"f" }), Ok(v));
            }
        }
        PgType::Int2 | PgType::Int4 | PgType::Int8 => {
            if let Ok(v) = parse_i16(text) {
                assert_eq!(parse_i16(v.to_string().as_bytes()), Ok(v));
                assert_eq!(parse_i32(text), Ok(v.into()), "int2 text is int4 text");
            }
            if let Ok(v) = parse_i32(text) {
                assert_eq!(parse_i32(v.to_string().as_bytes()), Ok(v));
                assert_eq!(parse_i64(text), Ok(v.into()), "int4 text is int8 text");
            }
            if let Ok(v) = parse_i64(text) {
                assert_eq!(parse_i64(v.to_string().as_bytes()), Ok(v));
            }
        }
        PgType::Float4 => {
            if let Ok(v) = parse_f32(text) {
                let again = parse_f32(float_text(v.into()).as_bytes()).expect("float4 text");
                assert!(same_float(v.into(), again.into()), "{v} became {again}");
                let wide = parse_f64(text).expect("float4 text is float8 text");
                assert!(same_float(v.into(), (wide as f32).into()));
            }
        }
        PgType::Float8 => {
            if let Ok(v) = parse_f64(text) {
                let again = parse_f64(float_text(v).as_bytes()).expect("float8 text");
                assert!(same_float(v, again), "{v} became {again}");
            }
        }
        PgType::Decimal { precision, scale } => {
            if let Ok(v) = parse_decimal(text, *precision, *scale) {
                let canonical = decimal_text(v, *scale as u8);
                assert_eq!(
                    parse_decimal(canonical.as_bytes(), *precision, *scale),
                    Ok(v),
                    "{canonical}"
                );
            }
        }
        PgType::Text => {
            if let Ok(v) = parse_text(text) {
                assert_eq!(v.as_bytes(), text);
            }
        }
        PgType::Bytea => {
            if let Ok(v) = parse_bytea(text) {
                assert_eq!(parse_bytea(bytea_text(&v).as_bytes()), Ok(v));
            }
        }
        PgType::Uuid => {
            if let Ok(v) = parse_uuid(text) {
                assert!(
                    v.as_str()
                        .eq_ignore_ascii_case(parse_text(text).expect("ASCII"))
                );
                assert_eq!(parse_uuid(v.as_str().as_bytes()), Ok(v));
            }
        }
        PgType::Date => {
            if let Ok(v) = parse_date(text) {
                assert_eq!(parse_date(format_date(v).as_bytes()), Ok(v));
            }
        }
        PgType::Timestamp => {
            if let Ok(v) = parse_timestamp(text) {
                assert_eq!(parse_timestamp(timestamp_text(v, false).as_bytes()), Ok(v));
            }
        }
        PgType::Timestamptz => {
            if let Ok(v) = parse_timestamptz(text) {
                assert_eq!(parse_timestamptz(timestamp_text(v, true).as_bytes()), Ok(v));
            }
        }
        PgType::Array(elem) => {
            let Ok(elements) = parse_array(text) else {
                return;
            };
            let mut literal = String::from("{");
            for (i, e) in elements.iter().enumerate() {
                if i > 0 {
                    literal.push(',');
                }
                match e {
                    None => literal.push_str("NULL"),
                    Some(e) => {
                        literal.push('"');
                        for c in e.chars() {
                            if matches!(c, '"' | '\\') {
                                literal.push('\\');
                            }
                            literal.push(c);
                        }
                        literal.push('"');
                    }
                }
            }
            literal.push('}');
            assert_eq!(
                parse_array(literal.as_bytes()).as_ref(),
                Ok(&elements),
                "{literal}"
            );
            for e in elements.iter().flatten() {
                round_trip(elem, e.as_bytes());
            }
        }
    }
}
