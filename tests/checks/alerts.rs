//! Scheduled jobs inside the service, alerting a real Prometheus Alertmanager and a webhook
//! that fails three times: one alert while the check keeps failing, resolved once it passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use walaudit::checks::alert::Destination;
use walaudit::checks::service::{CheckOptions, start};
use walaudit::engine::Tasks;

use super::{config, jobs};
use crate::support::shared;

struct Alertmanager {
    base: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    async fn start() -> Alertmanager {
        crate::support::prerequisites::require("prometheus-alertmanager");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: none\nreceivers:\n  - name: none\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus-alertmanager (tests/setup.sh installs it)");
        let am = Alertmanager {
            base: format!("http://127.0.0.1:{port}"),
            _child: child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while am.alerts(true).await.is_none() {
            assert!(Instant::now() < deadline, "alertmanager did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        am
    }

    /// The alerts Alertmanager holds (`active` only, or all).
    async fn alerts(&self, active: bool) -> Option<Vec<Value>> {
        let url = format!(
            "{}/api/v2/alerts?active={active}&silenced=false&inhibited=false",
            self.base
        );
        let body = reqwest::get(url).await.ok()?.text().await.ok()?;
        serde_json::from_str::<Vec<Value>>(&body).ok()
    }
}

/// A webhook that answers 500 to its first three requests and keeps the bodies it accepts.
async fn flaky_webhook() -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<Value>>>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, k) = (attempts.clone(), accepted.clone());
    let app = Router::new().route(
        "/hook",
        post(move |body: String| {
            let (a, k) = (a.clone(), k.clone());
            async move {
                if a.fetch_add(1, Ordering::SeqCst) < 3 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                k.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, attempts, accepted)
}

async fn until<F: AsyncFnMut() -> bool>(what: &str, within: Duration, mut f: F) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_alert_while_failing_resolved_when_it_passes() {
    let db = shared().await.fresh_db("checks_alerts").await.unwrap();
    db.execute("CREATE TABLE loads (id int)").await.unwrap();
    let am = Alertmanager::start().await;
    let (hook, attempts, accepted) = flaky_webhook().await;
    let lake = tempfile::tempdir().unwrap();
    let mut cfg = config(Some(&db), lake.path());
    cfg.alerts.destinations = vec![
        Destination::Webhook { url: hook },
        Destination::Alertmanager {
            url: am.base.clone(),
        },
    ];
    let yaml = r#"
jobs:
  - name: nightly_load
    connection: source
    dataset: public.loads
    schedule: "* * * * * *"
    severity: critical
    checks:
      - type: row_count
        name: loaded
"#;
    let tasks = Tasks::default();
    let cancel = CancellationToken::new();
    let options = CheckOptions {
        jobs: jobs(yaml, &cfg),
        config: cfg.clone(),
        metrics: Default::default(),
    };
    start(options, &tasks, cancel.clone()).await.unwrap();

    // The check fails every second: Alertmanager holds one active alert with our labels.
    until(
        "the alert in alertmanager",
        Duration::from_secs(30),
        async || am.alerts(true).await.is_some_and(|a| a.len() == 1),
    )
    .await;
    let alert = am.alerts(true).await.unwrap().remove(0);
    assert_eq!(alert["labels"]["alertname"], "WalauditCheckFailed");
    assert_eq!(alert["labels"]["job"], "nightly_load");
    assert_eq!(alert["labels"]["check"], "loaded");
    assert_eq!(alert["labels"]["severity"], "critical");
    // The webhook failed three times and then got the alert, once, while runs keep failing.
    until(
        "the webhook delivery",
        Duration::from_secs(30),
        async || !accepted.lock().unwrap().is_empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    {
        let got = accepted.lock().unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0]["event"], "opened");
        assert_eq!(got[0]["check"], "loaded");
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }
    assert_eq!(am.alerts(true).await.unwrap().len(), 1, "still one alert");

    // It passes: resolved in Alertmanager and at the webhook.
    db.execute("INSERT INTO loads VALUES (1)").await.unwrap();
    until("the alert resolved", Duration::from_secs(30), async || {
        am.alerts(true).await.is_some_and(|a| a.is_empty())
    })
    .await;
    until(
        "the resolved webhook",
        Duration::from_secs(30),
        async || accepted.lock().unwrap().len() == 2,
    )
    .await;
    assert_eq!(accepted.lock().unwrap()[1]["event"], "resolved");

    cancel.cancel();
    assert!(
        tasks.close(Duration::from_secs(30)).await.is_empty(),
        "every task ended"
    );
    // The history holds the runs and both alert events.
    let q = walaudit::query::LakeQuery::open(lake.path().to_str().unwrap(), Default::default())
        .await
        .unwrap();
    let events = crate::lake::lake_rows(
        &q,
        "SELECT event, severity, \"check\" FROM _walaudit.alert_events ORDER BY at",
    )
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            ["opened", "critical", "loaded"],
            ["resolved", "critical", "loaded"]
        ]
    );
    let runs = crate::lake::lake_rows(
        &q,
        "SELECT count(*), count(DISTINCT status) FROM _walaudit.check_runs WHERE \"trigger\" = 'schedule'",
    )
    .await
    .unwrap();
    assert!(runs[0][0].parse::<i64>().unwrap() >= 3, "{runs:?}");
    assert_eq!(runs[0][1], "2", "fail and pass runs");
}
