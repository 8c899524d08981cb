//! The wall clock, in the units the engine records: one place that reads `SystemTime`.
//!
//! [`WallClock`] is the wall clock of timers (the check scheduler): UTC instants that can be
//! turned into tokio deadlines, and that follow tokio's paused clock in tests.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

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

/// Wall-clock time for things that wake up at a wall-clock instant (cron schedules), and the
/// tokio deadline of such an instant.
///
/// # Contract
/// * [`WallClock::system`] reads the system clock at every [`WallClock::now`]; a deadline from
///   [`WallClock::instant_at`] is computed from the current offset, so a caller that wakes at
///   it reads `now()` again and sleeps again when the wall clock was stepped back meanwhile.
/// * [`WallClock::following_tokio`] is `base` plus the time elapsed on tokio's clock since the
///   call: under paused time (`#[tokio::test(start_paused = true)]`) it advances exactly as
///   tokio's timers do, so a test drives wall-clock schedules with `tokio::time::advance`.
/// * `instant_at(t)` for a `t` already past is a past instant (due at once); `now()` never
///   goes backwards for the tokio-following clock.
/// * A step of the system clock while a timer sleeps is seen when it wakes: a step back makes
///   it sleep again, a step forward makes it wake late by the step (slewing, as NTP does,
///   moves tokio's clock too and needs nothing).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    kind: ClockKind,
}

#[derive(Clone, Copy, Debug)]
enum ClockKind {
    System,
    Tokio {
        base: DateTime<Utc>,
        start: tokio::time::Instant,
    },
}

impl WallClock {
    /// The system clock.
    pub fn system() -> Self {
        WallClock {
            kind: ClockKind::System,
        }
    }

    /// A clock that reads `base` now and then advances with tokio's clock (for tests with
    /// paused time, and for replaying a schedule from a chosen instant).
    pub fn following_tokio(base: DateTime<Utc>) -> Self {
        WallClock {
            kind: ClockKind::Tokio {
                base,
                start: tokio::time::Instant::now(),
            },
        }
    }

    /// The current UTC time.
    pub fn now(&self) -> DateTime<Utc> {
        match self.kind {
            ClockKind::System => system_now(),
            ClockKind::Tokio { base, start } => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(start);
                base + chrono::TimeDelta::from_std(elapsed).unwrap_or(chrono::TimeDelta::MAX)
            }
        }
    }

    /// The tokio instant at which [`WallClock::now`] reads `at` (a past instant when `at` has
    /// passed).
    pub fn instant_at(&self, at: DateTime<Utc>) -> tokio::time::Instant {
        let (wall, instant) = match self.kind {
            ClockKind::System => (system_now(), tokio::time::Instant::now()),
            ClockKind::Tokio { base, start } => (base, start),
        };
        let ahead = (at - wall).to_std().unwrap_or_default();
        // A deadline centuries away saturates to a far one instead of overflowing.
        instant
            .checked_add(ahead)
            .unwrap_or_else(|| tokio::time::Instant::now() + FAR_FUTURE)
    }
}

/// About thirty years: "never" for a tokio deadline.
const FAR_FUTURE: std::time::Duration = std::time::Duration::from_secs(30 * 365 * 86_400);

fn system_now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(unix_micros()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_follows_paused_time() {
        let base = DateTime::parse_from_rfc3339("2026-03-29T00:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let clock = WallClock::following_tokio(base);
        assert_eq!(clock.now(), base);
        let at = base + chrono::TimeDelta::seconds(90);
        let deadline = clock.instant_at(at);
        tokio::time::sleep_until(deadline).await;
        assert_eq!(clock.now(), at);
        // A past instant is due now.
        assert!(clock.instant_at(base) <= tokio::time::Instant::now());
    }

    #[test]
    fn the_system_clock_reads_the_system_time() {
        let now = WallClock::system().now().timestamp_micros();
        assert!((now - unix_micros()).abs() < 5_000_000);
    }

    #[test]
    fn units_agree() {
        let (micros, millis, pg) = (unix_micros(), unix_millis(), pg_now_micros());
        assert!((micros / 1000 - millis).abs() <= 1_000, "{micros} {millis}");
        assert_eq!((micros - pg - PG_EPOCH_OFFSET_MICROS).abs() / 1_000_000, 0);
        // After 2024 and before 2100.
        assert!(micros > 1_704_067_200_000_000 && micros < 4_102_444_800_000_000);
    }
}
