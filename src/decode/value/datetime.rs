//! Dates and timestamps in the ISO text form (`DateStyle=ISO`, `TimeZone=UTC`).
//!
//! ```text
//!  date         2024-02-29            [ BC] | infinity | -infinity
//!  timestamp    2024-02-29 13:45:01[.ffffff]          [ BC]
//!  timestamptz  2024-02-29 13:45:01[.ffffff]+HH[:MM[:SS]] [ BC]
//! ```
//!
//! Calendar math is the proleptic Gregorian calendar on astronomical years (1 BC is year 0),
//! as Postgres uses. Dates are days since 1970-01-01; timestamps microseconds since
//! 1970-01-01 00:00:00 (UTC for timestamptz).
//!
//! # Invariants
//! * Results lie in the Delta range, years 0001–9999; `infinity` / `-infinity` map to its ends,
//!   anything else outside is [`ValueError::OutOfRange`] (timestamptz after conversion to UTC).

use super::{ValueError, ValueResult};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// 0001-01-01, the smallest Delta date (also what `-infinity` becomes).
pub const DATE_MIN_DAYS: i32 = days_from_civil(1, 1, 1) as i32;
/// 9999-12-31, the largest Delta date (also what `infinity` becomes).
pub const DATE_MAX_DAYS: i32 = days_from_civil(9999, 12, 31) as i32;
/// 0001-01-01 00:00:00 UTC.
pub const TIMESTAMP_MIN_MICROS: i64 = DATE_MIN_DAYS as i64 * MICROS_PER_DAY;
/// 9999-12-31 23:59:59.999999 UTC.
pub const TIMESTAMP_MAX_MICROS: i64 = (DATE_MAX_DAYS as i64 + 1) * MICROS_PER_DAY - 1;

/// Days since 1970-01-01 of a proleptic Gregorian date (astronomical year).
const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = ((month + 9) % 12) as i64;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (astronomical year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Exactly `n` ASCII digits at the start of `text`.
fn digits(text: &[u8], n: usize) -> ValueResult<(u32, &[u8])> {
    let (head, rest) = text.split_at_checked(n).ok_or(ValueError::Malformed)?;
    let mut v = 0u32;
    for &b in head {
        if !b.is_ascii_digit() {
            return Err(ValueError::Malformed);
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Ok((v, rest))
}

fn expect(text: &[u8], byte: u8) -> ValueResult<&[u8]> {
    match text.split_first() {
        Some((&b, rest)) if b == byte => Ok(rest),
        _ => Err(ValueError::Malformed),
    }
}

/// `YYYY-MM-DD` (the year has 4 to 9 digits) and an optional ` BC` at the very end of `text`;
/// returns the astronomical year, month, day and what follows the day.
fn date_part(text: &[u8]) -> ValueResult<(i64, u32, u32, &[u8], bool)> {
    let (text, bc) = match text.strip_suffix(b" BC") {
        Some(body) => (body, true),
        None => (text, false),
    };
    let year_len = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(4..=9).contains(&year_len) {
        return Err(ValueError::Malformed);
    }
    let (year, rest) = digits(text, year_len)?;
    let (month, rest) = digits(expect(rest, b'-')?, 2)?;
    let (day, rest) = digits(expect(rest, b'-')?, 2)?;
    if year == 0 {
        return Err(ValueError::Malformed);
    }
    let year = if bc {
        1 - i64::from(year)
    } else {
        i64::from(year)
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(ValueError::Malformed);
    }
    Ok((year, month, day, rest, bc))
}

/// date text → days since 1970-01-01.
pub fn parse_date(text: &[u8]) -> ValueResult<i32> {
    match text {
        b"infinity" => return Ok(DATE_MAX_DAYS),
        b"-infinity" => return Ok(DATE_MIN_DAYS),
        _ => {}
    }
    let (year, month, day, rest, _) = date_part(text)?;
    if !rest.is_empty() {
        return Err(ValueError::Malformed);
    }
    if !(1..=9999).contains(&year) {
        return Err(ValueError::OutOfRange);
    }
    // In range: fits i32 (DATE_MIN_DAYS..=DATE_MAX_DAYS).
    i32::try_from(days_from_civil(year, month, day)).map_err(|_| ValueError::OutOfRange)
}

/// timestamp (without time zone) text → microseconds since 1970-01-01 00:00:00.
pub fn parse_timestamp(text: &[u8]) -> ValueResult<i64> {
    parse_timestamp_with(text, false)
}

/// timestamptz text → microseconds since 1970-01-01 00:00:00 UTC (the offset is applied).
pub fn parse_timestamptz(text: &[u8]) -> ValueResult<i64> {
    parse_timestamp_with(text, true)
}

fn parse_timestamp_with(text: &[u8], zoned: bool) -> ValueResult<i64> {
    match text {
        b"infinity" => return Ok(TIMESTAMP_MAX_MICROS),
        b"-infinity" => return Ok(TIMESTAMP_MIN_MICROS),
        _ => {}
    }
    let (year, month, day, rest, _) = date_part(text)?;
    let (hour, rest) = digits(expect(rest, b' ')?, 2)?;
    let (minute, rest) = digits(expect(rest, b':')?, 2)?;
    let (second, mut rest) = digits(expect(rest, b':')?, 2)?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(ValueError::Malformed);
    }
    let mut fraction = 0i64;
    if let Some(after_dot) = rest.strip_prefix(b".") {
        let n = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=6).contains(&n) {
            return Err(ValueError::Malformed);
        }
        let (v, after) = digits(after_dot, n)?;
        fraction = i64::from(v) * 10i64.pow(6 - n as u32);
        rest = after;
    }
    let mut offset_seconds = 0i64;
    if zoned {
        let (sign, after_sign) = match rest.split_first() {
            Some((b'+', r)) => (1, r),
            Some((b'-', r)) => (-1, r),
            _ => return Err(ValueError::Malformed),
        };
        let (oh, mut r) = digits(after_sign, 2)?;
        let (mut om, mut os) = (0, 0);
        if let Some(after) = r.strip_prefix(b":") {
            (om, r) = digits(after, 2)?;
            if let Some(after) = r.strip_prefix(b":") {
                (os, r) = digits(after, 2)?;
            }
        }
        if oh > 23 || om > 59 || os > 59 {
            return Err(ValueError::Malformed);
        }
        offset_seconds = sign * i64::from(oh * 3600 + om * 60 + os);
        rest = r;
    }
    if !rest.is_empty() {
        return Err(ValueError::Malformed);
    }
    // An offset of less than a day can bring year 0 or 10000 into range, nothing further out.
    if !(0..=10_000).contains(&year) {
        return Err(ValueError::OutOfRange);
    }
    let seconds = i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    let micros =
        days_from_civil(year, month, day) * MICROS_PER_DAY + seconds * MICROS_PER_SECOND + fraction;
    if !(TIMESTAMP_MIN_MICROS..=TIMESTAMP_MAX_MICROS).contains(&micros) {
        return Err(ValueError::OutOfRange);
    }
    Ok(micros)
}

/// `YYYY-MM-DD` of a day count since 1970-01-01.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(days.into());
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff`, with a trailing `Z` when `utc` (timestamptz).
pub fn format_timestamp_micros(micros: i64, utc: bool) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / MICROS_PER_SECOND;
    let frac = in_day % MICROS_PER_SECOND;
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let z = if utc { "Z" } else { "" };
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:06}{z}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OOR: ValueResult<i64> = Err(ValueError::OutOfRange);
    const BAD: ValueResult<i64> = Err(ValueError::Malformed);

    fn micros(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, us: i64) -> i64 {
        days_from_civil(y, mo, d) * MICROS_PER_DAY + ((h * 60 + mi) * 60 + s) * 1_000_000 + us
    }

    #[test]
    fn date_epoch_and_bounds() {
        assert_eq!(parse_date(b"1970-01-01"), Ok(0));
        assert_eq!(parse_date(b"1969-12-31"), Ok(-1));
        assert_eq!(parse_date(b"2000-03-01"), Ok(11_017));
        assert_eq!(parse_date(b"0001-01-01"), Ok(-719_162));
        assert_eq!(parse_date(b"9999-12-31"), Ok(2_932_896));
        assert_eq!(DATE_MIN_DAYS, -719_162);
        assert_eq!(DATE_MAX_DAYS, 2_932_896);
        assert_eq!(parse_date(b"infinity"), Ok(DATE_MAX_DAYS));
        assert_eq!(parse_date(b"-infinity"), Ok(DATE_MIN_DAYS));
    }

    #[test]
    fn date_leap_years() {
        assert_eq!(parse_date(b"2024-02-29"), Ok(19_782));
        assert_eq!(parse_date(b"2000-02-29"), Ok(11_016));
        assert_eq!(parse_date(b"2023-02-29"), Err(ValueError::Malformed));
        assert_eq!(
            parse_date(b"1900-02-29"),
            Err(ValueError::Malformed),
            "century"
        );
        assert_eq!(parse_date(b"2024-04-31"), Err(ValueError::Malformed));
        assert_eq!(parse_date(b"2024-13-01"), Err(ValueError::Malformed));
        assert_eq!(parse_date(b"2024-00-10"), Err(ValueError::Malformed));
        assert_eq!(parse_date(b"2024-01-00"), Err(ValueError::Malformed));
    }

    #[test]
    fn date_out_of_range_and_malformed() {
        assert_eq!(parse_date(b"0001-01-01 BC"), Err(ValueError::OutOfRange));
        assert_eq!(parse_date(b"4713-01-01 BC"), Err(ValueError::OutOfRange));
        assert_eq!(
            parse_date(b"0005-02-29 BC"),
            Err(ValueError::OutOfRange),
            "leap in BC"
        );
        assert_eq!(
            parse_date(b"0004-02-29 BC"),
            Err(ValueError::Malformed),
            "4 BC not leap"
        );
        assert_eq!(parse_date(b"10000-01-01"), Err(ValueError::OutOfRange));
        assert_eq!(parse_date(b"5874897-12-31"), Err(ValueError::OutOfRange));
        for bad in [
            &b""[..],
            b"0000-01-01",
            b"2024-1-01",
            b"24-01-01",
            b"2024-01-01 ",
            b"2024/01/01",
            b"Infinity",
            b"2024-01-01BC",
            b" BC",
            b"2024-01-01 00:00:00",
            b"1234567890-01-01",
        ] {
            assert_eq!(parse_date(bad), Err(ValueError::Malformed), "{:?}", bad);
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp(b"1970-01-01 00:00:00"), Ok(0));
        assert_eq!(
            parse_timestamp(b"2024-01-02 03:04:05.123456"),
            Ok(micros(2024, 1, 2, 3, 4, 5, 123_456))
        );
        assert_eq!(
            parse_timestamp(b"2024-01-02 03:04:05.5"),
            Ok(micros(2024, 1, 2, 3, 4, 5, 500_000))
        );
        assert_eq!(
            parse_timestamp(b"2024-01-02 03:04:05.012"),
            Ok(micros(2024, 1, 2, 3, 4, 5, 12_000))
        );
        assert_eq!(parse_timestamp(b"1969-12-31 23:59:59.999999"), Ok(-1));
        assert_eq!(
            parse_timestamp(b"0001-01-01 00:00:00"),
            Ok(TIMESTAMP_MIN_MICROS)
        );
        assert_eq!(
            parse_timestamp(b"9999-12-31 23:59:59.999999"),
            Ok(TIMESTAMP_MAX_MICROS)
        );
        assert_eq!(parse_timestamp(b"infinity"), Ok(TIMESTAMP_MAX_MICROS));
        assert_eq!(parse_timestamp(b"-infinity"), Ok(TIMESTAMP_MIN_MICROS));
        assert_eq!(parse_timestamp(b"0001-12-31 23:59:59 BC"), OOR);
        assert_eq!(parse_timestamp(b"10000-01-01 00:00:00"), OOR);
        assert_eq!(parse_timestamp(b"294276-12-31 23:59:59.999999"), OOR);
        for bad in [
            &b"2024-01-02 03:04:05+00"[..],
            b"2024-01-02T03:04:05",
            b"2024-01-02 24:00:00",
            b"2024-01-02 03:60:00",
            b"2024-01-02 03:04:60",
            b"2024-01-02 03:04:05.",
            b"2024-01-02 03:04:05.1234567",
            b"2024-01-02 3:04:05",
            b"2024-01-02",
            b"2024-01-02 ",
        ] {
            assert_eq!(parse_timestamp(bad), BAD, "{:?}", bad);
        }
    }

    #[test]
    fn timestamptz_offsets() {
        let base = micros(2024, 1, 2, 3, 4, 5, 0);
        assert_eq!(parse_timestamptz(b"2024-01-02 03:04:05+00"), Ok(base));
        assert_eq!(
            parse_timestamptz(b"2024-01-02 03:04:05+05:30"),
            Ok(base - 19_800_000_000)
        );
        assert_eq!(
            parse_timestamptz(b"2024-01-02 03:04:05-08"),
            Ok(base + 28_800_000_000)
        );
        assert_eq!(
            parse_timestamptz(b"2024-01-02 03:04:05+05:30:15"),
            Ok(base - 19_815_000_000)
        );
        assert_eq!(
            parse_timestamptz(b"2024-01-02 03:04:05.25-00:30"),
            Ok(base + 1_800_000_000 + 250_000)
        );
        assert_eq!(
            parse_timestamptz(b"2024-01-01 23:00:00-02"),
            Ok(micros(2024, 1, 2, 1, 0, 0, 0))
        );
        assert_eq!(parse_timestamptz(b"infinity"), Ok(TIMESTAMP_MAX_MICROS));
        assert_eq!(parse_timestamptz(b"-infinity"), Ok(TIMESTAMP_MIN_MICROS));
        assert_eq!(
            parse_timestamptz(b"9999-12-31 23:59:59.999999+00"),
            Ok(TIMESTAMP_MAX_MICROS)
        );
        assert_eq!(
            parse_timestamptz(b"0001-01-01 00:00:00+00"),
            Ok(TIMESTAMP_MIN_MICROS)
        );
        // The UTC instant decides the range, not the local date.
        assert_eq!(parse_timestamptz(b"9999-12-31 23:00:00-02"), OOR);
        assert_eq!(parse_timestamptz(b"0001-01-01 01:00:00+02"), OOR);
        assert_eq!(
            parse_timestamptz(b"10000-01-01 00:30:00+01"),
            Ok(micros(9999, 12, 31, 23, 30, 0, 0))
        );
        assert_eq!(
            parse_timestamptz(b"0001-12-31 23:00:00-02 BC"),
            Ok(micros(1, 1, 1, 1, 0, 0, 0))
        );
        assert_eq!(parse_timestamptz(b"2024-01-01 00:00:00+00 BC"), OOR);
        for bad in [
            &b"2024-01-02 03:04:05"[..],
            b"2024-01-02 03:04:05+",
            b"2024-01-02 03:04:05+5",
            b"2024-01-02 03:04:05+05:3",
            b"2024-01-02 03:04:05+05:30:",
            b"2024-01-02 03:04:05Z",
            b"2024-01-02 03:04:05+05:60",
            b"2024-01-02 03:04:05 +00",
            b"2024-01-02 03:04:05+24",
        ] {
            assert_eq!(parse_timestamptz(bad), BAD, "{:?}", bad);
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(DATE_MIN_DAYS), "0001-01-01");
        assert_eq!(format_date(DATE_MAX_DAYS), "9999-12-31");
        assert_eq!(format_date(19_782), "2024-02-29");
        assert_eq!(
            format_timestamp_micros(0, true),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            format_timestamp_micros(-1, false),
            "1969-12-31T23:59:59.999999"
        );
        assert_eq!(
            format_timestamp_micros(TIMESTAMP_MAX_MICROS, true),
            "9999-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            format_timestamp_micros(TIMESTAMP_MIN_MICROS, false),
            "0001-01-01T00:00:00.000000"
        );
    }

    /// Postgres' own output form, with trailing fractional zeros trimmed.
    fn pg_timestamp_text(micros: i64) -> String {
        let iso = format_timestamp_micros(micros, false).replace('T', " ");
        let trimmed = iso.trim_end_matches('0');
        trimmed.strip_suffix('.').unwrap_or(trimmed).to_owned()
    }

    proptest! {
        #[test]
        fn civil_round_trip(days in -800_000i64..3_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }

        #[test]
        fn date_format_parse_round_trip(days in DATE_MIN_DAYS..=DATE_MAX_DAYS) {
            prop_assert_eq!(parse_date(format_date(days).as_bytes()), Ok(days));
        }

        #[test]
        fn timestamp_round_trip(us in TIMESTAMP_MIN_MICROS..=TIMESTAMP_MAX_MICROS) {
            let text = pg_timestamp_text(us);
            prop_assert_eq!(parse_timestamp(text.as_bytes()), Ok(us));
            prop_assert_eq!(parse_timestamptz(format!("{text}+00").as_bytes()), Ok(us));
        }

        #[test]
        fn offsets_shift_the_instant(
            us in 0i64..200_000_000_000_000_000,
            off in -57_599i64..57_600,
        ) {
            // local = utc + offset; parsing local text with the offset must give back utc.
            let text = pg_timestamp_text((us + off * 1_000_000) / 1_000_000 * 1_000_000);
            let sign = if off < 0 { '-' } else { '+' };
            let a = off.abs();
            let zone = format!("{sign}{:02}:{:02}:{:02}", a / 3600, a / 60 % 60, a % 60);
            let expect = (us + off * 1_000_000) / 1_000_000 * 1_000_000 - off * 1_000_000;
            prop_assert_eq!(parse_timestamptz(format!("{text}{zone}").as_bytes()), Ok(expect));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_date(&bytes);
            let _ = parse_timestamp(&bytes);
            let _ = parse_timestamptz(&bytes);
        }

        #[test]
        fn random_shaped_text_never_panics(s in "[0-9]{1,10}-[0-9]{1,3}-[0-9]{1,3}( [0-9:.+-]{0,20})?( BC)?") {
            let _ = parse_date(s.as_bytes());
            let _ = parse_timestamp(s.as_bytes());
            let _ = parse_timestamptz(s.as_bytes());
        }
    }
}
