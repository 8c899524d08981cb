//! Alerts: one per (job, check) while it fails, reminded, resolved when it passes again.
//!
//! ```text
//!  RunOutcome ─► Alerts::observe ─► events (opened | reminded | resolved) ─► _walaudit/alert_events
//!                                        └─► Dispatcher (its own task): log, webhook, alertmanager
//! ```
//!
//! # Invariants
//! * A check that turns `fail`, `error` or `timeout` opens exactly one alert; while it stays
//!   open only a reminder every `repeat_interval` is sent; the first run where the check is
//!   `pass` or `warn` resolves it. `blocked` and `skipped` runs change nothing.
//! * Sending never blocks the scheduler: events go through a bounded queue to one task that
//!   retries each destination with backoff; a destination that stays down loses nothing
//!   until the queue is full, and then the oldest events are dropped (and counted).
//! * Alertmanager drops an alert it has not heard of within its `resolve_timeout`, so open
//!   alerts are posted again every [`ALERTMANAGER_REFRESH`] with `endsAt` a little ahead.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Severity, Status};
use super::run::RunOutcome;

/// How often open alerts are posted to Alertmanager again.
pub const ALERTMANAGER_REFRESH: Duration = Duration::from_secs(60);
/// The `alertname` label of every walaudit alert.
pub const ALERT_NAME: &str = "WalauditCheckFailed";
/// The check name of a run that ended without check results (killed at the hard deadline).
pub const RUN_CHECK: &str = "(run)";

/// `[alerts]` of the config.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often a reminder is sent while an alert stays open.
    #[serde(deserialize_with = "duration")]
    pub repeat_interval: Duration,
    /// Where alerts go besides the log.
    pub destinations: Vec<Destination>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            repeat_interval: Duration::from_secs(4 * 3600),
            destinations: Vec::new(),
        }
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    crate::config::parse_duration(&text).map_err(serde::de::Error::custom)
}

/// `[[alerts.destinations]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Destination {
    /// Always on; listing it changes nothing.
    Log,
    /// A JSON POST of every event to `url`.
    Webhook { url: String },
    /// Prometheus Alertmanager at `url` (e.g. `http://alertmanager:9093`).
    Alertmanager { url: String },
}

impl Destination {
    pub fn label(&self) -> &'static str {
        match self {
            Destination::Log => "log",
            Destination::Webhook { .. } => "webhook",
            Destination::Alertmanager { .. } => "alertmanager",
        }
    }
}

/// What happened to an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Opened,
    Reminded,
    Resolved,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Reminded => "reminded",
            EventKind::Resolved => "resolved",
        }
    }
}

/// One change of an alert's state (a row of `_walaudit/alert_events`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    pub alert_id: String,
    pub job: String,
    pub check: String,
    pub severity: Severity,
    pub event: EventKind,
    pub at: DateTime<Utc>,
    pub message: String,
    /// Destination labels the event is sent to.
    pub destinations: Vec<String>,
    /// When the alert opened (for Alertmanager's `startsAt`).
    pub opened_at: DateTime<Utc>,
}

/// An open alert.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAlert {
    pub alert_id: String,
    pub severity: Severity,
    pub opened_at: DateTime<Utc>,
    pub last_sent: DateTime<Utc>,
    pub message: String,
}

/// The alert state of every (job, check).
#[derive(Debug)]
pub struct Alerts {
    repeat: chrono::Duration,
    destinations: Vec<String>,
    open: HashMap<(String, String), OpenAlert>,
}

impl Alerts {
    /// No open alerts; `open` restores the ones the history holds.
    pub fn new(config: &AlertsConfig, open: HashMap<(String, String), OpenAlert>) -> Alerts {
        let mut destinations = vec!["log".to_owned()];
        for d in &config.destinations {
            if !matches!(d, Destination::Log) {
                destinations.push(d.label().to_owned());
            }
        }
        Alerts {
            repeat: chrono::Duration::from_std(config.repeat_interval)
                .unwrap_or(chrono::Duration::hours(4)),
            destinations,
            open,
        }
    }

    /// The open alerts.
    pub fn open(&self) -> impl Iterator<Item = (&(String, String), &OpenAlert)> {
        self.open.iter()
    }

    /// The events `run` causes for a job of `severity`, at `now`.
    pub fn observe(
        &mut self,
        run: &RunOutcome,
        severity: Severity,
        now: DateTime<Utc>,
    ) -> Vec<AlertEvent> {
        let mut checks: Vec<(String, Status, String)> = run
            .results
            .iter()
            .map(|r| {
                let what = match (&r.message, r.value) {
                    (Some(m), _) => m.clone(),
                    (None, Some(v)) => format!(
                        "measured {}, expected {}",
                        crate::checks::threshold::number(v),
                        r.threshold
                    ),
                    (None, None) => format!("no value, expected {}", r.threshold),
                };
                (r.check.clone(), r.status, what)
            })
            .collect();
        if run.results.is_empty() && matches!(run.status, Status::Timeout | Status::Error) {
            checks.push((
                RUN_CHECK.to_owned(),
                run.status,
                run.error.clone().unwrap_or_default(),
            ));
        }
        if run.results.is_empty() && run.status.is_green() {
            // A run that passed without results resolves a run-level alert.
            checks.push((RUN_CHECK.to_owned(), run.status, String::new()));
        }
        let mut events = Vec::new();
        for (check, status, what) in checks {
            let key = (run.job.clone(), check.clone());
            let event = |kind, alert: &OpenAlert, message: String| AlertEvent {
                alert_id: alert.alert_id.clone(),
                job: run.job.clone(),
                check: check.clone(),
                severity: alert.severity,
                event: kind,
                at: now,
                message,
                destinations: self.destinations.clone(),
                opened_at: alert.opened_at,
            };
            match (status.is_bad(), self.open.get_mut(&key)) {
                (true, None) => {
                    let alert = OpenAlert {
                        alert_id: super::run::new_run_id(now).replacen('-', "-alert-", 1),
                        severity,
                        opened_at: now,
                        last_sent: now,
                        message: format!("{}: {check} is {status}: {what}", run.job),
                    };
                    events.push(event(EventKind::Opened, &alert, alert.message.clone()));
                    self.open.insert(key, alert);
                }
                (true, Some(alert)) if now - alert.last_sent >= self.repeat => {
                    alert.last_sent = now;
                    alert.message = format!("{}: {check} is still {status}: {what}", run.job);
                    let a = alert.clone();
                    events.push(event(EventKind::Reminded, &a, a.message.clone()));
                }
                (false, Some(_)) if status.is_green() => {
                    let alert = self.open.remove(&key).expect("present");
                    let message = format!("{}: {check} is {status} again", run.job);
                    events.push(event(EventKind::Resolved, &alert, message));
                }
                _ => {}
            }
        }
        events
    }
}

/// The Alertmanager v2 alert for `event` (`POST /api/v2/alerts` takes a list of these).
pub fn alertmanager_alert(event: &AlertEvent, now: DateTime<Utc>) -> serde_json::Value {
    let ends = match event.event {
        EventKind::Resolved => now,
        // Open: valid for a few refreshes; walaudit posts it again before it lapses.
        _ => now + chrono::Duration::from_std(ALERTMANAGER_REFRESH * 5).unwrap_or_default(),
    };
    serde_json::json!({
        "labels": {
            "alertname": ALERT_NAME,
            "job": event.job,
            "check": event.check,
            "severity": event.severity.as_str(),
        },
        "annotations": {
            "summary": event.message,
            "alert_id": event.alert_id,
        },
        "startsAt": event.opened_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}

/// The webhook body for `event`.
pub fn webhook_body(event: &AlertEvent) -> serde_json::Value {
    serde_json::json!({
        "alert_id": event.alert_id,
        "job": event.job,
        "check": event.check,
        "severity": event.severity.as_str(),
        "event": event.event.as_str(),
        "at": event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "message": event.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::run::CheckResult;

    fn run(status: Status, at: DateTime<Utc>) -> RunOutcome {
        RunOutcome {
            run_id: "r".into(),
            job: "orders".into(),
            scheduled_at: at,
            started_at: at,
            finished_at: at,
            status,
            error: None,
            trigger: crate::checks::Trigger::Schedule,
            results: vec![CheckResult {
                check: "row_count".into(),
                type_name: "row_count",
                status,
                value: Some(0.0),
                threshold: "must_be_greater_than 0".into(),
                samples: None,
                message: None,
                measured_at: at,
            }],
            lsn_high: None,
            statements: 1,
        }
    }

    #[test]
    fn one_alert_while_failing_reminders_then_resolved() {
        let config = AlertsConfig {
            repeat_interval: Duration::from_secs(3600),
            destinations: vec![Destination::Webhook {
                url: "http://x".into(),
            }],
        };
        let mut alerts = Alerts::new(&config, HashMap::new());
        let t0 = Utc::now();
        let m = |min: i64| t0 + chrono::Duration::minutes(min);
        let kinds = |e: Vec<AlertEvent>| e.into_iter().map(|e| e.event).collect::<Vec<_>>();
        assert_eq!(
            kinds(alerts.observe(&run(Status::Pass, m(0)), Severity::High, m(0))),
            []
        );
        let opened = alerts.observe(&run(Status::Fail, m(1)), Severity::High, m(1));
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].event, EventKind::Opened);
        assert_eq!(opened[0].destinations, ["log", "webhook"]);
        assert!(
            opened[0].message.contains("row_count is fail: measured 0"),
            "{}",
            opened[0].message
        );
        for min in [2, 30, 60] {
            assert_eq!(
                kinds(alerts.observe(&run(Status::Fail, m(min)), Severity::High, m(min))),
                []
            );
        }
        assert_eq!(
            kinds(alerts.observe(&run(Status::Error, m(61)), Severity::High, m(61))),
            [EventKind::Reminded]
        );
        assert_eq!(
            kinds(alerts.observe(&run(Status::Blocked, m(62)), Severity::High, m(62))),
            []
        );
        let resolved = alerts.observe(&run(Status::Warn, m(63)), Severity::High, m(63));
        assert_eq!(resolved[0].event, EventKind::Resolved);
        assert_eq!(resolved[0].alert_id, opened[0].alert_id);
        assert_eq!(alerts.open().count(), 0);
        let am = alertmanager_alert(&resolved[0], m(63));
        assert_eq!(am["labels"]["check"], "row_count");
        assert_eq!(am["endsAt"], am["endsAt"].as_str().unwrap());
    }
}
