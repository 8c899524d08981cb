//! A job's `schedule` and `timezone`: a cron expression of 5 or 6 fields evaluated in an IANA
//! time zone, with parse errors that name the field and the fix.
//!
//! Evaluation is croner's, which follows the Open Cron Pattern Specification on DST: a
//! fixed-time job (`30 2 * * *`) whose time does not exist on a spring-forward day runs once,
//! at the first instant after the gap (03:00), and on a fall-back day runs once, at the first
//! of the two 02:30s; a job with a wildcard hour runs in both halves of the repeated hour.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// The fields of a 6-field expression, seconds first, with what each takes.
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    (
        "day-of-month",
        "1-31, L (last day) or nW (weekday nearest day n)",
    ),
    ("month", "1-12 or JAN-DEC"),
    (
        "weekday",
        "0-7 (0 and 7 are Sunday) or SUN-SAT, n#k (k-th weekday n), nL",
    ),
];

/// The shorthands a schedule may be instead of fields.
const NICKNAMES: [&str; 6] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
];

/// Why a `schedule` or `timezone` was refused; each message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "the schedule is empty: write 5 fields (minute hour day month weekday), e.g. `0 3 * * *` \
         for 03:00 daily, or leave `schedule` out for a job that runs on demand only"
    )]
    Empty,
    #[error(
        "a schedule has 5 fields (minute hour day month weekday) or 6 (with seconds first); \
         `{expr}` has {count}"
    )]
    FieldCount { expr: String, count: usize },
    #[error(
        "the {field} field `{value}` of schedule `{expr}` is invalid ({detail}); it takes \
         {allowed}, with `*`, lists `a,b`, ranges `a-b` and steps `*/n` or `a-b/n`"
    )]
    Field {
        expr: String,
        field: &'static str,
        value: String,
        allowed: &'static str,
        detail: String,
    },
    #[error(
        "`{expr}` is not a schedule shorthand: use one of @yearly, @monthly, @weekly, @daily, \
         @hourly, or 5 fields (minute hour day month weekday)"
    )]
    Nickname { expr: String },
    #[error(
        "schedule `{expr}` never matches a date (such as 30 February): fix its day-of-month, \
         month and weekday fields"
    )]
    Never { expr: String },
    #[error("schedule `{expr}` is invalid ({detail}): check it field by field")]
    Invalid { expr: String, detail: String },
    #[error(
        "unknown time zone `{timezone}`: use an IANA name such as `UTC`, `Europe/Berlin` or \
         `America/New_York` (leave `timezone` out for UTC)"
    )]
    TimeZone { timezone: String },
}

/// A parsed cron schedule in a time zone.
///
/// # Contract
/// * 5 fields (`minute hour day-of-month month weekday`) or 6 (a `second` field first), or a
///   shorthand (`@daily`, ...). Times are evaluated as wall-clock times in the time zone
///   (UTC when none is given) and returned as UTC instants, whole seconds.
/// * [`Schedule::next_after`] is strictly after its argument, [`Schedule::last_at_or_before`]
///   at or before it; both step over DST changes as the module docs say, so neither yields a
///   local time twice for a fixed-time schedule nor loses the day of a gap.
/// * A schedule that parsed has a next time (one that never matches is refused by
///   [`Schedule::parse`]); `None` is returned only past the year 5000.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    timezone: Tz,
    cron: Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("expr", &self.expr)
            .field("timezone", &self.timezone.name())
            .finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.timezone == other.timezone
    }
}

impl Schedule {
    /// Parses `expr` in `timezone` (an IANA name; `None` is UTC).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name.trim()).map_err(|_| ScheduleError::TimeZone {
                timezone: name.to_owned(),
            })?,
        };
        let expr = expr.trim();
        let fields: Vec<&str> = expr.split_whitespace().collect();
        match fields.as_slice() {
            [] => return Err(ScheduleError::Empty),
            [nick] if nick.starts_with('@') => {
                if !NICKNAMES.contains(&nick.to_ascii_lowercase().as_str()) {
                    return Err(ScheduleError::Nickname {
                        expr: expr.to_owned(),
                    });
                }
            }
            f if f.len() == 5 || f.len() == 6 => {}
            f => {
                return Err(ScheduleError::FieldCount {
                    expr: expr.to_owned(),
                    count: f.len(),
                });
            }
        }
        let cron = parser().parse(&fields.join(" ")).map_err(|e| {
            // Name the field that is wrong, when one is wrong on its own.
            (fields.len() >= 5)
                .then(|| check_fields(expr, &fields).err())
                .flatten()
                .unwrap_or_else(|| ScheduleError::Invalid {
                    expr: expr.to_owned(),
                    detail: e.to_string(),
                })
        })?;
        let schedule = Schedule {
            expr: fields.join(" "),
            timezone,
            cron,
        };
        // A reference instant, not now: parsing gives the same answer on every day.
        let reference = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        if schedule.next_after(reference).is_none() {
            return Err(ScheduleError::Never {
                expr: expr.to_owned(),
            });
        }
        Ok(schedule)
    }

    /// The expression, fields separated by one space.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone the fields are read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first scheduled instant strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
            .filter(|d| *d > t)
    }

    /// The last scheduled instant at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_previous_occurrence(&local, true)
            .ok()
            .map(|d| d.with_timezone(&Utc))
            .filter(|d| *d <= t)
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Names the first field that is invalid on its own: each is parsed in an expression whose
/// other fields are `*`.
fn check_fields(expr: &str, fields: &[&str]) -> Result<(), ScheduleError> {
    let offset = FIELDS.len() - fields.len();
    for (i, value) in fields.iter().enumerate() {
        let position = i + offset;
        let mut probe = ["*"; 6];
        probe[position] = value;
        if let Err(e) = parser().parse(&probe.join(" ")) {
            let (field, allowed) = FIELDS[position];
            return Err(ScheduleError::Field {
                expr: expr.to_owned(),
                field,
                value: (*value).to_owned(),
                allowed,
                detail: e.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn five_fields_are_minutes_six_fields_start_with_seconds() {
        let five = Schedule::parse("*/15 3 * * *", None).unwrap();
        assert_eq!(
            next(&five, "2026-06-01T03:10:00Z", 3),
            [
                "2026-06-01T03:15:00+00:00",
                "2026-06-01T03:30:00+00:00",
                "2026-06-01T03:45:00+00:00"
            ]
        );
        let six = Schedule::parse("30 */15 3 * * *", None).unwrap();
        assert_eq!(
            next(&six, "2026-06-01T03:10:00Z", 2),
            ["2026-06-01T03:15:30+00:00", "2026-06-01T03:30:30+00:00"]
        );
        // Strictly after; at or before.
        let t = utc("2026-06-01T03:15:00Z");
        assert_eq!(five.next_after(t), Some(utc("2026-06-01T03:30:00Z")));
        assert_eq!(five.last_at_or_before(t), Some(t));
        assert_eq!(
            five.last_at_or_before(t - chrono::TimeDelta::seconds(1)),
            Some(utc("2026-06-01T03:00:00Z"))
        );
        // Sub-second instants.
        let t = utc("2026-06-01T03:15:00.5Z");
        assert_eq!(five.next_after(t), Some(utc("2026-06-01T03:30:00Z")));
        assert_eq!(five.last_at_or_before(t), Some(utc("2026-06-01T03:15:00Z")));
        let daily = Schedule::parse("@daily", None).unwrap();
        assert_eq!(
            next(&daily, "2026-06-01T03:10:00Z", 1),
            ["2026-06-02T00:00:00+00:00"]
        );
        // Weekday 1 is Monday: 2026-06-01 is one.
        let monday = Schedule::parse("0 9 * * MON", None).unwrap();
        assert_eq!(
            next(&monday, "2026-05-30T00:00:00Z", 1),
            ["2026-06-01T09:00:00+00:00"]
        );
    }

    #[test]
    fn a_time_zone_moves_the_wall_clock_time() {
        let s = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        // Summer: UTC+2; winter: UTC+1.
        assert_eq!(
            next(&s, "2026-07-01T00:00:00Z", 1),
            ["2026-07-01T07:00:00+00:00"]
        );
        assert_eq!(
            next(&s, "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T08:00:00+00:00"]
        );
        assert_eq!(s.timezone(), Tz::Europe__Berlin);
    }

    /// 2026-03-29, Europe/Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    #[test]
    fn spring_forward_a_daily_0230_job_runs_once_right_after_the_gap() {
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            next(&s, "2026-03-27T12:00:00Z", 3),
            [
                // 02:30 CET.
                "2026-03-28T01:30:00+00:00",
                // No 02:30 on the 29th: 03:00 CEST, the first instant after the gap, once.
                "2026-03-29T01:00:00+00:00",
                // 02:30 CEST.
                "2026-03-30T00:30:00+00:00",
            ]
        );
        // Looking back from later that day finds the same single run.
        assert_eq!(
            s.last_at_or_before(utc("2026-03-29T12:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // The same in New York (2026-03-08, 02:00 EST to 03:00 EDT at 07:00 UTC).
        let s = Schedule::parse("30 2 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            next(&s, "2026-03-07T12:00:00Z", 2),
            ["2026-03-08T07:00:00+00:00", "2026-03-09T06:30:00+00:00"]
        );
        // An hourly job skips the missing hour and runs at every hour that exists.
        let hourly = Schedule::parse("0 * * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            next(&hourly, "2026-03-28T23:30:00Z", 3),
            [
                "2026-03-29T00:00:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-29T02:00:00+00:00"
            ]
        );
    }

    /// 2026-10-25, Europe/Berlin: 03:00 CEST goes back to 02:00 CET (02:xx happens twice).
    #[test]
    fn fall_back_a_daily_0230_job_runs_once() {
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            next(&s, "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24T00:30:00+00:00",
                // The first 02:30 (CEST, UTC+2) only, not the second (CET, 01:30 UTC).
                "2026-10-25T00:30:00+00:00",
                "2026-10-26T01:30:00+00:00",
            ]
        );
        // From inside the repeated hour, the next run is the next day's, not the second 02:30.
        assert_eq!(
            s.next_after(utc("2026-10-25T01:00:00Z")),
            Some(utc("2026-10-26T01:30:00Z"))
        );
        // Looking back from after the repeated hour finds the one run.
        assert_eq!(
            s.last_at_or_before(utc("2026-10-25T12:00:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        // The same in New York (2026-11-01, 01:xx twice).
        let s = Schedule::parse("30 1 * * *", Some("America/New_York")).unwrap();
        assert_eq!(
            next(&s, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
    }

    #[test]
    fn a_wrong_field_count_says_how_many_fields_a_schedule_has() {
        let e = Schedule::parse("0 * * *", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a schedule has 5 fields (minute hour day month weekday) or 6 (with seconds \
             first); `0 * * *` has 4"
        );
        assert!(matches!(
            Schedule::parse("0 0 0 * * * 2026", None),
            Err(ScheduleError::FieldCount { count: 7, .. })
        ));
        assert_eq!(Schedule::parse("  ", None), Err(ScheduleError::Empty));
    }

    #[test]
    fn a_bad_field_is_named_with_what_it_takes() {
        let e = Schedule::parse("0 25 * * *", None).unwrap_err();
        let ScheduleError::Field { field, value, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((*field, value.as_str()), ("hour", "25"));
        let text = e.to_string();
        assert!(
            text.starts_with("the hour field `25` of schedule `0 25 * * *` is invalid ("),
            "{text}"
        );
        assert!(text.contains("; it takes 0-23, with `*`"), "{text}");
        for (expr, detail) in [
            ("*/0 * * * *", "Step cannot be zero"),
            ("5-1 * * * *", "Range"),
        ] {
            let e = Schedule::parse(expr, None).unwrap_err();
            assert!(
                matches!(
                    e,
                    ScheduleError::Field {
                        field: "minute",
                        ..
                    }
                ),
                "{e:?}"
            );
            assert!(e.to_string().contains(detail), "{e}");
        }
        let e = Schedule::parse("61 0 * * * *", None).unwrap_err();
        assert!(
            matches!(
                e,
                ScheduleError::Field {
                    field: "second",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = Schedule::parse("0 0 * 13 *", None).unwrap_err();
        assert!(
            matches!(e, ScheduleError::Field { field: "month", .. }),
            "{e:?}"
        );
        let e = Schedule::parse("0 0 * * FOO", None).unwrap_err();
        assert!(
            matches!(
                e,
                ScheduleError::Field {
                    field: "weekday",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = Schedule::parse("x 0 * * *", None).unwrap_err();
        assert!(
            matches!(
                e,
                ScheduleError::Field {
                    field: "minute",
                    ..
                }
            ),
            "{e:?}"
        );
        let e = Schedule::parse("0 0 32 * *", None).unwrap_err();
        assert!(
            matches!(
                e,
                ScheduleError::Field {
                    field: "day-of-month",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn shorthands_time_zones_and_impossible_dates_are_checked() {
        let e = Schedule::parse("@sometimes", None).unwrap_err();
        assert!(e.to_string().contains("use one of @yearly"), "{e}");
        let e = Schedule::parse("0 0 * * *", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(
            e,
            ScheduleError::TimeZone {
                timezone: "Mars/Olympus".into()
            }
        );
        assert!(e.to_string().contains("IANA name"));
        let e = Schedule::parse("0 0 30 2 *", None).unwrap_err();
        assert!(matches!(e, ScheduleError::Never { .. }), "{e:?}");
        assert!(e.to_string().contains("never matches"), "{e}");
    }
}
