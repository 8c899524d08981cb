//! The wall clock, in the units the engine records: one place that reads `SystemTime`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::decode::PG_EPOCH_OFFSET_MICROS;

fn since_epoch() -> std::time::Duration {
    // A clock before 1970 is a broken clock: read it as the epoch.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Microseconds since the Unix epoch.
pub fn unix_micros() -> i64 {
    i64::try_from(since_epoch().as_micros()).unwrap_or(i64::MAX)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> i64 {
    i64::try_from(since_epoch().as_millis()).unwrap_or(i64::MAX)
}

/// Nanoseconds since the Unix epoch (for unique names and seeds, not for arithmetic).
pub fn unix_nanos() -> u128 {
    since_epoch().as_nanos()
}

/// Microseconds since 2000-01-01, the Postgres epoch.
pub fn pg_now_micros() -> i64 {
    unix_micros() - PG_EPOCH_OFFSET_MICROS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_agree() {
        let (micros, millis, pg) = (unix_micros(), unix_millis(), pg_now_micros());
        assert!((micros / 1000 - millis).abs() <= 1_000, "{micros} {millis}");
        assert_eq!((micros - pg - PG_EPOCH_OFFSET_MICROS).abs() / 1_000_000, 0);
        // After 2024 and before 2100.
        assert!(micros > 1_704_067_200_000_000 && micros < 4_102_444_800_000_000);
    }
}
