//! Decoders of the binary form of values (`decode::binary`, COPY binary fields). Input:
//! `[kind] [p] [s] [bytes]`, the reader chosen by `walaudit_fuzz::binary_kind`.
//!
//! Checks that binary and text agree (the module's invariant): every value that decodes,
//! written in its Postgres text form, parses with the text parser of its type to the same
//! value; values that have a fixed size decode only from exactly that many bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walaudit::decode::binary::{self as b, BinaryKind};
use walaudit::decode::value::{
    format_date, parse_date, parse_decimal, parse_f32, parse_f64, parse_i16, parse_i32, parse_i64,
    parse_timestamp, parse_uuid,
};
use walaudit_fuzz::{binary_kind, decimal_text, float_text, same_float, timestamp_text};

fuzz_target!(|data: &[u8]| {
    walaudit_fuzz::input(data);
    let Some((&[selector, p, s], bytes)) = data.split_first_chunk::<3>() else {
        return;
    };
    let kind = binary_kind(selector, p, s);
    let decoded = decode_and_compare(kind, bytes);
    if let Some(size) = fixed_size(kind) {
        assert!(
            !decoded || bytes.len() == size,
            "{kind:?} from {} bytes",
            bytes.len()
        );
    }
});

/// The byte size of the kinds that have one.
fn fixed_size(kind: BinaryKind) -> Option<usize> {
    Some(match kind {
        BinaryKind::Int2 => 2,
        BinaryKind::Int4 | BinaryKind::Oid | BinaryKind::Float4 | BinaryKind::Date => 4,
        BinaryKind::Int8 | BinaryKind::Float8 | BinaryKind::Timestamp => 8,
        BinaryKind::Uuid => 16,
        _ => return None,
    })
}

/// Decodes `bytes` as `kind`, checks the value against the text parser; whether it decoded.
fn decode_and_compare(kind: BinaryKind, bytes: &[u8]) -> bool {
    match kind {
        BinaryKind::Bool => {
            let v = b::decode_bool(bytes);
            assert_eq!(v.is_ok(), matches!(bytes, [0] | [1]));
            v.is_ok()
        }
        BinaryKind::Int2 => b::decode_i16(bytes)
            .inspect(|v| assert_eq!(parse_i16(v.to_string().as_bytes()), Ok(*v)))
            .is_ok(),
        BinaryKind::Int4 => b::decode_i32(bytes)
            .inspect(|v| assert_eq!(parse_i32(v.to_string().as_bytes()), Ok(*v)))
            .is_ok(),
        BinaryKind::Int8 => b::decode_i64(bytes)
            .inspect(|v| assert_eq!(parse_i64(v.to_string().as_bytes()), Ok(*v)))
            .is_ok(),
        BinaryKind::Oid => b::decode_oid(bytes)
            .inspect(|v| {
                assert!(u32::try_from(*v).is_ok());
                assert_eq!(parse_i64(v.to_string().as_bytes()), Ok(*v));
            })
            .is_ok(),
        BinaryKind::Float4 => b::decode_f32(bytes)
            .inspect(|v| {
                let text = parse_f32(float_text((*v).into()).as_bytes()).expect("float4 text");
                assert!(same_float((*v).into(), text.into()), "{v} read as {text}");
            })
            .is_ok(),
        BinaryKind::Float8 => b::decode_f64(bytes)
            .inspect(|v| {
                let text = parse_f64(float_text(*v).as_bytes()).expect("float8 text");
                assert!(same_float(*v, text), "{v} read as {text}");
            })
            .is_ok(),
        BinaryKind::Decimal { precision, scale } => b::decode_numeric(bytes, precision, scale)
            .inspect(|v| {
                let text = decimal_text(*v, scale as u8);
                assert_eq!(
                    parse_decimal(text.as_bytes(), precision, scale),
                    Ok(*v),
                    "{text}"
                );
            })
            .is_ok(),
        BinaryKind::Text => std::str::from_utf8(bytes).is_ok(),
        BinaryKind::Jsonb => {
            let v = b::decode_jsonb(bytes);
            if let Ok(text) = v {
                assert_eq!(bytes.first(), Some(&1));
                assert_eq!(text.as_bytes(), &bytes[1..]);
            }
            v.is_ok()
        }
        BinaryKind::Uuid => b::decode_uuid(bytes)
            .inspect(|v| {
                assert_eq!(parse_uuid(v.as_str().as_bytes()), Ok(*v));
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(v.as_str().replace('-', ""), hex);
            })
            .is_ok(),
        BinaryKind::Bytea => true,
        BinaryKind::Date => b::decode_date(bytes)
            .inspect(|v| assert_eq!(parse_date(format_date(*v).as_bytes()), Ok(*v)))
            .is_ok(),
        BinaryKind::Timestamp => b::decode_timestamp(bytes)
            .inspect(|v| {
                assert_eq!(
                    parse_timestamp(timestamp_text(*v, false).as_bytes()),
                    Ok(*v)
                );
            })
            .is_ok(),
    }
}
