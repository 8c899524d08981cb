//! Every dashboard query, asked of a real Prometheus that scrapes a real engine, parses and
//! returns data; the alert rules evaluate cleanly, stay silent while the engine is healthy, and
//! `WalauditDown` goes pending when the engine dies.
//!
//! ```text
//!  test db ──► walaudit run --listen 127.0.0.1:P ◄──scrape 1s── prometheus (127.0.0.1:Q,
//!                                                               temp TSDB, alert rules)
//!                                                                   ▲
//!                          /api/v1/query, /api/v1/label, /api/v1/rules, /api/v1/alerts
//! ```
//!
//! Prometheus runs under a small shell that stops it when its stdin closes, so it goes away
//! with the test process however that ends (the [`Prometheus`] guard closes it on drop, panics
//! included).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::alerts::RULES;
use super::{PENDING_METRICS, dashboards, metric_names, panels, repo};
use crate::lake_s3::{Run, local_config, tail_text};
use crate::support::shared;

const PROMETHEUS: &str = "prometheus";
const JOB: &str = "walaudit";
/// Generous: the whole test suite shares two cores while this runs.
const STARTUP_DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);
/// Samples per series before the queries run, so that `rate()` has points in every window.
const MIN_SAMPLES: u64 = 5;

/// Stops Prometheus when its stdin closes (this process ended, or the guard dropped it).
const SUPERVISOR: &str = r#"
"$0" "$@" >"$PROMETHEUS_LOG" 2>&1 &
pid=$!
echo "$pid"
read -r _ || true
kill -TERM "$pid" 2>/dev/null
wait "$pid"
"#;

/// A Prometheus server on loopback with a temporary TSDB; stopped on drop.
struct Prometheus {
    base: String,
    supervisor: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start Prometheus scraping `target` (host:port) every second as job `walaudit`, with the
    /// alert rules evaluated every second.
    fn start(target: &str) -> Result<Prometheus> {
        crate::support::prerequisites::require(PROMETHEUS);
        let version = Command::new(PROMETHEUS).arg("--version").output();
        ensure!(
            version.is_ok_and(|out| out.status.success()),
            "`{PROMETHEUS} --version` failed: install the Prometheus server \
             (apt-get install prometheus)"
        );
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        let rules = repo().join(RULES);
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules:?}\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n\
                 \x20     - targets: [{target:?}]\n",
                rules = rules.display().to_string(),
            ),
        )?;
        let port = free_port()?;
        let log = dir.path().join("prometheus.log");
        let mut supervisor = Command::new("sh")
            .args(["-c", SUPERVISOR, PROMETHEUS])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .env("PROMETHEUS_LOG", &log)
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn sh for prometheus (apt-get install prometheus)")?;
        let stdin = supervisor.stdin.take();
        let mut first = String::new();
        BufReader::new(supervisor.stdout.take().context("stdout")?).read_line(&mut first)?;
        let pid = first.trim().parse().context("prometheus pid")?;
        Ok(Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            supervisor,
            stdin,
            pid,
            log,
            _dir: dir,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(
        &self,
        client: &reqwest::Client,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Value> {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.base), params)?;
        let body = client.get(url.clone()).send().await?.text().await?;
        serde_json::from_str(&body).with_context(|| format!("{url}: {body}"))
    }

    /// Wait until Prometheus answers and has scraped the engine `MIN_SAMPLES` times.
    async fn wait_scraped(&self, client: &reqwest::Client, deadline: Instant) -> Result<()> {
        let query = format!("count_over_time(up{{job=\"{JOB}\"}}[5m]) >= {MIN_SAMPLES}");
        loop {
            if let Ok(answer) = self
                .get(client, "/api/v1/query", &[("query", &query)])
                .await
                && answer["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "prometheus did not scrape the engine {MIN_SAMPLES} times; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Closing stdin makes the supervisor stop Prometheus and wait for it.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.supervisor.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "warning: prometheus (pid {}) did not stop: killing it",
            self.pid
        );
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The engine's /metrics text, if it answers.
async fn engine_metrics(client: &reqwest::Client, port: u16) -> Option<String> {
    let response = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

/// Poll the engine's /metrics until `done` holds for its text; on timeout, fail with the end
/// of the engine's log.
async fn wait_engine(
    client: &reqwest::Client,
    port: u16,
    log: &Path,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<String> {
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        if let Some(text) = engine_metrics(client, port).await
            && done(&text)
        {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            let log = std::fs::read(log).unwrap_or_default();
            bail!(
                "the engine never reported {what}; its log:\n{}",
                tail_text(&log, 40)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Grafana's value of each built-in interval variable for this test. `$__range` is the
/// dashboard's default time range; `$__rate_interval` is Grafana's for the default 15 s scrape
/// interval (4 × 15 s); `$__interval` what a 1 h range gives a ~240-point panel. The windows
/// hold several of the test's 1 s scrapes.
fn builtins(dashboard: &Value) -> Vec<(&'static str, String)> {
    let from = dashboard["time"]["from"].as_str().unwrap_or("now-1h");
    let range = from.strip_prefix("now-").unwrap_or("1h").to_owned();
    vec![
        ("$__rate_interval", "1m".to_owned()),
        ("$__interval", "15s".to_owned()),
        ("$__range", range),
    ]
}

fn substitute(expr: &str, values: &[(String, String)]) -> String {
    let mut out = expr.to_owned();
    // Longest names first, so that `$slot` never eats part of a `$slots`.
    let mut values: Vec<&(String, String)> = values.iter().collect();
    values.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, value) in values {
        out = out.replace(&format!("${{{}}}", &name[1..]), value);
        out = out.replace(name.as_str(), value);
    }
    out
}

/// The pending metrics (see [`PENDING_METRICS`]) the engine does not expose yet: only queries
/// on those may return no data. Once the engine exposes one, its queries must return data.
fn still_pending(exposition: &str) -> Vec<&'static str> {
    PENDING_METRICS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !exposition.contains(&format!("# TYPE {name} ")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() -> Result<()> {
    let db = shared().await.fresh_db("ops_prometheus").await?;
    db.execute("CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL)")
        .await?;
    // Rows from before the engine: its initial load gives the snapshot series their labels.
    db.execute(
        "CREATE TABLE preexisting (id int PRIMARY KEY);
         INSERT INTO preexisting SELECT generate_series(1, 100);",
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let mut run = Run::new(&db, dir.path().join("lake").to_str().unwrap());
    run.config = Some(local_config(dir.path())?);
    let port = free_port()?;
    let engine_log = dir.path().join("walaudit.log");
    let mut engine = run
        .command(false)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::fs::File::create(&engine_log)?)
        .spawn()
        .context("spawn walaudit run")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    wait_engine(&client, port, &engine_log, "streaming", |m| {
        m.lines().any(|l| l == "walaudit_streaming 1")
    })
    .await?;

    let prometheus = Prometheus::start(&format!("127.0.0.1:{port}"))?;

    // Changes of every kind, with an audit context, so that the labelled series exist: 200
    // inserts, 100 updates and 50 deletes, 350 rows in the lake.
    db.execute(
        "BEGIN; SELECT pg_logical_emit_message(true, 'walaudit', '{\"actor\":\"ops-test\"}');
         INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 200) g; COMMIT;",
    )
    .await?;
    db.execute("UPDATE orders SET status = 'paid' WHERE id <= 100")
        .await?;
    db.execute("DELETE FROM orders WHERE id > 150").await?;
    let table = "public.orders";
    let exposition = wait_engine(&client, port, &engine_log, "the rows in the lake", |m| {
        m.lines()
            .any(|l| l == format!("walaudit_lake_rows_written_total{{table=\"{table}\"}} 350"))
    })
    .await?;
    let deadline = Instant::now() + STARTUP_DEADLINE;
    prometheus.wait_scraped(&client, deadline).await?;
    // The labelled series were born after the first scrapes: give them their own samples.
    let labelled = format!(
        "count_over_time(walaudit_changes_total{{table=\"{table}\",op=\"d\"}}[5m]) >= {MIN_SAMPLES}"
    );
    loop {
        let answer = prometheus
            .get(&client, "/api/v1/query", &[("query", &labelled)])
            .await?;
        if answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        ensure!(Instant::now() < deadline, "no samples of {labelled}");
        tokio::time::sleep(POLL).await;
    }

    let pending = still_pending(&exposition);
    let mut failures = Vec::new();
    let mut asked = 0;
    for (name, dashboard) in dashboards() {
        // Variables, resolved in order the way Grafana does: through their label_values query.
        let mut values: Vec<(String, String)> = builtins(&dashboard)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for var in dashboard["templating"]["list"].as_array().unwrap() {
            let var_name = var["name"].as_str().unwrap();
            if var["type"] != "query" {
                continue;
            }
            let query = substitute(var["query"].as_str().unwrap(), &values);
            let (selector, label) = super::label_values(&query).unwrap();
            let answer = prometheus
                .get(
                    &client,
                    &format!("/api/v1/label/{label}/values"),
                    &[("match[]", selector)],
                )
                .await?;
            let found: Vec<String> = answer["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            let expected = match var_name {
                "instance" => format!("127.0.0.1:{port}"),
                "table" => table.to_owned(),
                "slot" => db.name.clone(),
                other => bail!("{name}: no test value for ${other}"),
            };
            let metric = &metric_names(selector)[0];
            if !found.contains(&expected) && !pending.contains(&metric.as_str()) {
                failures.push(format!(
                    "{name}: ${var_name} = {query} lists {found:?}, not {expected:?} ({answer})"
                ));
            }
            values.push((format!("${var_name}"), expected));
        }

        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_default();
                let query = substitute(expr, &values);
                let whence = format!("{name} / {} / {}", panel["title"], target["refId"]);
                if query.contains('$') {
                    failures.push(format!("{whence}: unresolved variable in {query}"));
                    continue;
                }
                asked += 1;
                let answer = prometheus
                    .get(&client, "/api/v1/query", &[("query", &query)])
                    .await?;
                if answer["status"] != "success" {
                    failures.push(format!("{whence}: {query}: {answer}"));
                    continue;
                }
                let empty = answer["data"]["result"]
                    .as_array()
                    .is_none_or(|r| r.is_empty());
                let allowed = metric_names(&query)
                    .iter()
                    .any(|m| pending.contains(&m.as_str()));
                if empty && !allowed {
                    failures.push(format!("{whence}: no data for {query}"));
                }
            }
        }
    }
    assert!(asked >= 40, "only {asked} queries asked");
    assert!(
        failures.is_empty(),
        "{} of {asked} dashboard queries failed (pending metrics: {pending:?}):\n{}\nprometheus log:\n{}",
        failures.len(),
        failures.join("\n"),
        prometheus.log()
    );

    // The alert rules evaluate without error against the real series, and a healthy engine
    // raises none of them.
    let rules = wait_rules_evaluated(&prometheus, &client, deadline).await?;
    for (rule, health) in &rules {
        assert_eq!(health, "ok", "rule {rule}: {rules:?}");
    }
    let alerts = prometheus.get(&client, "/api/v1/alerts", &[]).await?;
    let active = &alerts["data"]["alerts"];
    assert_eq!(
        active.as_array().map(Vec::len),
        Some(0),
        "alerts on a healthy engine: {active}"
    );

    // The engine dies: its scrapes fail and WalauditDown goes pending (it fires after 2m).
    engine.kill().await?;
    let deadline = Instant::now() + STARTUP_DEADLINE;
    loop {
        let alerts = prometheus.get(&client, "/api/v1/alerts", &[]).await?;
        let down = alerts["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| {
                a["labels"]["alertname"] == "WalauditDown"
                    && a["labels"]["instance"] == format!("127.0.0.1:{port}").as_str()
            });
        if let Some(alert) = down {
            assert_eq!(alert["state"], "pending", "{alert}");
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "WalauditDown never went pending: {alerts}"
        );
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Health of every rule once each has been evaluated at least once: rule name → health.
async fn wait_rules_evaluated(
    prometheus: &Prometheus,
    client: &reqwest::Client,
    deadline: Instant,
) -> Result<BTreeMap<String, String>> {
    loop {
        let answer = prometheus.get(client, "/api/v1/rules", &[]).await?;
        let mut rules = BTreeMap::new();
        let mut evaluated = true;
        for group in answer["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let name = rule["name"].as_str().unwrap_or("?").to_owned();
                let last = rule["lastEvaluation"].as_str().unwrap_or("");
                evaluated &= !last.is_empty() && !last.starts_with("0001-");
                rules.insert(name, rule["health"].as_str().unwrap_or("?").to_owned());
            }
        }
        if evaluated && rules.len() == super::alerts::alert_rules().len() {
            return Ok(rules);
        }
        ensure!(
            Instant::now() < deadline,
            "rules not all evaluated: {answer}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[test]
fn substitution_resolves_braced_and_plain_variables() {
    let values = vec![
        ("$table".to_owned(), "public.orders".to_owned()),
        ("$__range".to_owned(), "1h".to_owned()),
        ("$__rate_interval".to_owned(), "1m".to_owned()),
    ];
    assert_eq!(
        substitute(
            "rate(x{table=~\"${table}\"}[$__rate_interval]) + increase(y{table=~\"$table\"}[$__range])",
            &values
        ),
        "rate(x{table=~\"public.orders\"}[1m]) + increase(y{table=~\"public.orders\"}[1h])"
    );
}
