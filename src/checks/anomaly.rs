//! Anomaly detection: how unusual a check's value is against that check's own history.
//!
//! The value is a z-score, `(x − mean) / stddev` of the earlier values of the watched check
//! measured within the training window before this run. The point judged is never in its own
//! training set: the history is read up to the run's start, and the run's own results are
//! stored only after it ends. With fewer than `min_history` earlier values the check passes
//! with no value and says how much history it has, so a new job does not alert while it
//! learns. A flat history (stddev 0) makes any different value infinitely unusual.

use chrono::{DateTime, Utc};

use super::model::{Check, CheckKind, Direction, Job, Status};
use super::run::{CheckResult, History};

/// The z-score of `x` against `history` (population standard deviation).
pub fn z_score(x: f64, history: &[f64]) -> Option<f64> {
    if history.is_empty() {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<f64>() / n;
    let var = history.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let sd = var.sqrt();
    Some(if sd == 0.0 {
        if x == mean {
            0.0
        } else {
            f64::INFINITY.copysign(x - mean)
        }
    } else {
        (x - mean) / sd
    })
}

/// Whether `z` is an anomaly at `sensitivity` in `direction`.
pub fn is_anomaly(z: f64, sensitivity: f64, direction: Direction) -> bool {
    match direction {
        Direction::Both => z.abs() > sensitivity,
        Direction::Up => z > sensitivity,
        Direction::Down => z < -sensitivity,
    }
}

/// Judges anomaly check `check` of `job`, whose watched check measured `current` in the run
/// that started at `started_at`.
pub async fn judge(
    job: &Job,
    check: &Check,
    current: Option<f64>,
    history: &dyn History,
    started_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> CheckResult {
    let CheckKind::Anomaly {
        of,
        sensitivity,
        min_history,
        training_window,
        direction,
    } = &check.kind
    else {
        unreachable!("judge is called for anomaly checks");
    };
    let secs = training_window.as_secs();
    let window = match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    let threshold = format!(
        "|z| of {of} {}{sensitivity} against the last {window}",
        match direction {
            Direction::Both => "within ±",
            Direction::Up => "at most +",
            Direction::Down => "at least -",
        },
    );
    let result = |status, value, message: Option<String>| CheckResult {
        check: check.name.clone(),
        type_name: "anomaly",
        status,
        value,
        threshold: threshold.clone(),
        samples: None,
        message,
        measured_at: at,
    };
    let Some(x) = current else {
        return result(
            Status::Error,
            None,
            Some(format!(
                "`{of}` has no value in this run, so it cannot be judged"
            )),
        );
    };
    let from = started_at - chrono::Duration::from_std(*training_window).unwrap_or_default();
    let past = match history.values(&job.name, of, from, started_at).await {
        Ok(p) => p,
        Err(e) => {
            return result(
                Status::Error,
                None,
                Some(format!("the run history cannot be read: {e}")),
            );
        }
    };
    if past.len() < *min_history {
        return result(
            Status::Pass,
            None,
            Some(format!(
                "learning: {} of the {min_history} earlier values needed",
                past.len()
            )),
        );
    }
    let z = z_score(x, &past).unwrap_or(0.0);
    let status = if is_anomaly(z, *sensitivity, *direction) {
        Status::Fail
    } else {
        Status::Pass
    };
    // A flat history makes z infinite; store the largest finite value instead of NaN/inf.
    let stored = if z.is_finite() {
        z
    } else {
        f64::MAX.copysign(z)
    };
    result(status, Some(stored), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_scores_and_directions() {
        let h = [10.0, 12.0, 8.0, 10.0];
        let z = z_score(10.0 + 5.0 * 2f64.sqrt(), &h).unwrap();
        assert!((z - 5.0).abs() < 1e-9, "{z}");
        assert!(is_anomaly(z, 3.0, Direction::Both) && is_anomaly(z, 3.0, Direction::Up));
        assert!(!is_anomaly(z, 3.0, Direction::Down));
        assert!(!is_anomaly(-2.9, 3.0, Direction::Both) && is_anomaly(-3.1, 3.0, Direction::Down));
        assert_eq!(z_score(5.0, &[5.0, 5.0]), Some(0.0));
        assert_eq!(z_score(6.0, &[5.0, 5.0]), Some(f64::INFINITY));
        assert_eq!(z_score(1.0, &[]), None);
    }
}
