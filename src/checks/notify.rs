//! Sending alert events: one task, fed by a bounded queue, that retries each destination
//! with backoff and keeps open alerts alive in Alertmanager.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::alert::{
    ALERTMANAGER_REFRESH, AlertEvent, AlertsConfig, Destination, EventKind, alertmanager_alert,
    webhook_body,
};
use crate::backoff::Backoff;

/// Events waiting to be sent; past this the oldest are dropped.
pub const QUEUE: usize = 10_000;
/// Attempts per event and destination before it is given up (and logged).
pub const ATTEMPTS: u32 = 8;

/// The sending side of the alert queue.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::Sender<AlertEvent>,
}

impl Notifier {
    /// Queues `event`; never waits (a full queue drops the event, which is still in the lake).
    pub fn send(&self, event: AlertEvent) {
        if let Err(mpsc::error::TrySendError::Full(e)) = self.tx.try_send(event) {
            tracing::warn!(job = %e.job, check = %e.check, "alert queue full: event not sent");
        }
    }
}

/// Starts the sending task; it ends when `cancel` fires (after one last attempt at what is
/// queued) or when every [`Notifier`] is dropped.
pub fn start(
    config: &AlertsConfig,
    cancel: CancellationToken,
) -> (Notifier, impl Future<Output = ()> + Send + 'static) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let destinations = config.destinations.clone();
    (Notifier { tx }, run(rx, destinations, cancel))
}

async fn run(
    mut rx: mpsc::Receiver<AlertEvent>,
    destinations: Vec<Destination>,
    cancel: CancellationToken,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let managers: Vec<&str> = destinations
        .iter()
        .filter_map(|d| match d {
            Destination::Alertmanager { url } => Some(url.as_str()),
            _ => None,
        })
        .collect();
    let mut open: HashMap<String, AlertEvent> = HashMap::new();
    let mut refresh = tokio::time::interval(ALERTMANAGER_REFRESH);
    refresh.tick().await;
    loop {
        let event = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => return },
            _ = refresh.tick(), if !managers.is_empty() && !open.is_empty() => {
                for url in &managers {
                    let alerts: Vec<_> =
                        open.values().map(|e| alertmanager_alert(e, Utc::now())).collect();
                    post(&client, &alerts_url(url), &serde_json::Value::Array(alerts), &cancel).await;
                }
                continue;
            }
            _ = cancel.cancelled() => return,
        };
        tracing::warn!(
            alert_id = %event.alert_id, job = %event.job, check = %event.check,
            severity = event.severity.as_str(), event = event.event.as_str(),
            "{}", event.message
        );
        match event.event {
            EventKind::Resolved => open.remove(&event.alert_id),
            _ => open.insert(event.alert_id.clone(), event.clone()),
        };
        for d in &destinations {
            match d {
                Destination::Log => {}
                Destination::Webhook { url } => {
                    post(&client, url, &webhook_body(&event), &cancel).await;
                }
                Destination::Alertmanager { url } => {
                    let body =
                        serde_json::Value::Array(vec![alertmanager_alert(&event, Utc::now())]);
                    post(&client, &alerts_url(url), &body, &cancel).await;
                }
            }
        }
    }
}

fn alerts_url(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

/// POSTs `body` until a 2xx answer, [`ATTEMPTS`] times at most, with backoff.
async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    cancel: &CancellationToken,
) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let bytes = body.to_string();
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .body(bytes.clone())
            .send()
            .await;
        let why = match sent {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => crate::report::chain(&e),
        };
        tracing::warn!(attempt, "alert destination {} {why}: retrying", redact(url));
        if attempt == ATTEMPTS {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = cancel.cancelled() => return false,
        }
    }
    tracing::error!(
        "alert destination {} gave up after {ATTEMPTS} attempts: check that it is up; the event \
         is in _walaudit/alert_events",
        redact(url)
    );
    false
}

/// `url` without credentials or query (which may hold tokens).
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "(invalid url)".into(),
    }
}
