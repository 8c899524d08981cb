use proptest::prelude::*;

use super::*;
use crate::decode::value::{parse_date, parse_decimal, parse_timestamp, parse_uuid};

/// numeric text (`-?\d+(\.\d+)?`) → Postgres' binary form, as `numeric_send` writes it: base-10000
/// digit groups aligned on the decimal point, leading and trailing zero groups dropped, `dscale`
/// = the fractional digits of the text.
fn numeric_send(text: &str) -> Vec<u8> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int_groups = int.len().div_ceil(4);
    let padded_int = format!("{int:0>width$}", width = int_groups * 4);
    let frac_groups = frac.len().div_ceil(4);
    let padded_frac = format!("{frac:0<width$}", width = frac_groups * 4);
    let all = format!("{padded_int}{padded_frac}");
    let mut groups: Vec<u16> = all
        .as_bytes()
        .chunks(4)
        .map(|g| std::str::from_utf8(g).unwrap().parse().unwrap())
        .collect();
    let mut weight = int_groups as i32 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    let sign: u16 = if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(frac.len() as u16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
    out
}

fn special(sign: u16) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

#[test]
fn numeric_examples() {
    let cases = [
        ("0", 5, 0),
        ("0.00", 5, 2),
        ("123.40", 12, 2),
        ("-123.40", 12, 2),
        ("9999999999.99", 12, 2),
        ("10000000000.00", 12, 2),
        ("0.05", 3, 2),
        ("1.5", 3, 2),
        ("12345678.12345678", 20, 8),
        ("12345678.123456789", 20, 8),
        ("99999999999999999999999999999999999999", 38, 0),
        ("1", 1, 1),
    ];
    for (text, precision, scale) in cases {
        assert_eq!(
            decode_numeric(&numeric_send(text), precision, scale),
            parse_decimal(text.as_bytes(), precision, scale),
            "{text} as numeric({precision},{scale})"
        );
    }
    assert_eq!(decode_numeric(&numeric_send("123.40"), 12, 2), Ok(12_340));
    for sign in [0xc000, 0xd000, 0xf000] {
        assert_eq!(
            decode_numeric(&special(sign), 12, 2),
            Err(ValueError::OutOfRange)
        );
    }
    assert_eq!(
        decode_numeric(&special(0x1234), 12, 2),
        Err(ValueError::Malformed)
    );
    assert_eq!(decode_numeric(&[0, 1], 12, 2), Err(ValueError::Malformed));
}

#[test]
fn dates_and_timestamps_match_the_text_parsers() {
    let date = |days: i32| decode_date(&days.to_be_bytes());
    assert_eq!(date(0), parse_date(b"2000-01-01"));
    assert_eq!(date(-10_957), parse_date(b"1970-01-01"));
    assert_eq!(date(9_190), parse_date(b"2025-02-28"));
    assert_eq!(date(i32::MAX), parse_date(b"infinity"));
    assert_eq!(date(i32::MIN), parse_date(b"-infinity"));
    // 0001-01-01 and the day before it (0001-12-31 BC).
    assert_eq!(date(-730_119), parse_date(b"0001-01-01"));
    assert_eq!(date(-730_120), Err(ValueError::OutOfRange));
    assert_eq!(date(-730_120), parse_date(b"0001-12-31 BC"));
    let ts = |micros: i64| decode_timestamp(&micros.to_be_bytes());
    assert_eq!(ts(0), parse_timestamp(b"2000-01-01 00:00:00"));
    assert_eq!(
        ts(1_500_001),
        parse_timestamp(b"2000-01-01 00:00:01.500001")
    );
    assert_eq!(ts(-1), parse_timestamp(b"1999-12-31 23:59:59.999999"));
    assert_eq!(ts(i64::MAX), parse_timestamp(b"infinity"));
    assert_eq!(ts(i64::MIN), parse_timestamp(b"-infinity"));
    assert_eq!(
        ts(252_455_616_000_000_000),
        parse_timestamp(b"10000-01-01 00:00:00")
    );
    assert_eq!(
        ts(252_455_615_999_999_999),
        parse_timestamp(b"9999-12-31 23:59:59.999999")
    );
    assert_eq!(decode_date(&[0, 0, 0]), Err(ValueError::Malformed));
}

#[test]
fn scalars() {
    assert_eq!(decode_bool(&[1]), Ok(true));
    assert_eq!(decode_bool(&[0]), Ok(false));
    assert_eq!(decode_bool(&[2]), Err(ValueError::Malformed));
    assert_eq!(decode_i16(&(-2i16).to_be_bytes()), Ok(-2));
    assert_eq!(decode_i32(&i32::MIN.to_be_bytes()), Ok(i32::MIN));
    assert_eq!(decode_i64(&i64::MAX.to_be_bytes()), Ok(i64::MAX));
    assert_eq!(decode_oid(&u32::MAX.to_be_bytes()), Ok(4_294_967_295));
    assert!(
        decode_f64(&0x7ff8_0000_0000_0001u64.to_be_bytes())
            .unwrap()
            .is_nan()
    );
    assert_eq!(
        decode_f32(&(-0.0f32).to_be_bytes()).map(f32::to_bits),
        Ok((-0.0f32).to_bits())
    );
    assert_eq!(decode_jsonb(b"\x01{\"a\": 1}"), Ok("{\"a\": 1}"));
    assert_eq!(decode_jsonb(b"\x02{}"), Err(ValueError::Malformed));
    let uuid = [
        0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a,
        0x11,
    ];
    assert_eq!(
        decode_uuid(&uuid).map(|u| u.as_str().to_owned()),
        parse_uuid(b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").map(|u| u.as_str().to_owned())
    );
}

#[test]
fn kinds_follow_the_lake_type() {
    use crate::decode::pgtype::oid;
    assert_eq!(
        binary_kind(oid::INT8, &PgType::Int8),
        Some(BinaryKind::Int8)
    );
    assert_eq!(binary_kind(oid::OID, &PgType::Int8), Some(BinaryKind::Oid));
    // A column widened by schema evolution, or diverted to text, is read as text.
    assert_eq!(binary_kind(oid::INT4, &PgType::Int8), None);
    assert_eq!(binary_kind(oid::NUMERIC, &PgType::Text), None);
    assert_eq!(binary_kind(oid::CHAR, &PgType::Text), None);
    assert_eq!(binary_kind(oid::INTERVAL, &PgType::Text), None);
    assert_eq!(
        binary_kind(oid::JSONB, &PgType::Text),
        Some(BinaryKind::Jsonb)
    );
}

proptest! {
    #[test]
    fn numeric_agrees_with_the_text_parser(
        value in any::<i128>(), precision in 1u8..=38, scale_seed in any::<u8>(),
        frac_extra in 0usize..3,
    ) {
        let scale = scale_seed % (precision + 1);
        // A value with `precision + 1` digits at most (one more than fits), `scale` + up to
        // two more fractional digits.
        let magnitude = value.unsigned_abs() % 10u128.pow(u32::from(precision.min(37)) + 1);
        let digits = format!("{magnitude:0>width$}", width = usize::from(scale) + frac_extra + 1);
        let split = digits.len() - usize::from(scale) - frac_extra;
        let mut text = String::new();
        if value < 0 {
            text.push('-');
        }
        text.push_str(&digits[..split]);
        if split < digits.len() {
            text.push('.');
            text.push_str(&digits[split..]);
        }
        let scale = scale as i8;
        prop_assert_eq!(
            decode_numeric(&numeric_send(&text), precision, scale),
            parse_decimal(text.as_bytes(), precision, scale),
            "{} as numeric({},{})", text, precision, scale
        );
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_numeric(&bytes, 38, 10);
        let _ = decode_numeric(&bytes, 5, 0);
        let _ = decode_date(&bytes);
        let _ = decode_timestamp(&bytes);
        let _ = decode_uuid(&bytes);
        let _ = decode_jsonb(&bytes);
        let _ = decode_bool(&bytes);
    }
}
