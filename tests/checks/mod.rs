//! Validation jobs against a real Postgres and a real lake: every check type with a value that
//! passes and one that fails (asserting the measured value), warn thresholds, filters and
//! windows, the one-query merge, timeouts that cancel the backend, gates, the run history; the
//! EXPLAIN guard and `check suggest`; the concurrency caps under 50 due jobs.

mod alerts;
mod caps;
mod guard;
mod lake;
mod postgres;
mod serve;
mod suggest;

use std::collections::HashMap;
use std::path::Path;

use walaudit::checks::command::{load_jobs, open_targets, run_once};
use walaudit::checks::{Job, RunOutcome, Status, Trigger};
use walaudit::config::Config;

use crate::support::TestDb;

/// A config reading `db` as the source and the lake in `lake`.
pub fn config(db: Option<&TestDb>, lake: &Path) -> Config {
    let mut c = Config::default();
    c.source.url = db.map(|d| d.url.clone());
    c.lake.url = lake.to_str().unwrap().to_owned();
    c.api.public_metrics = true;
    c
}

/// Loads the job file text `yaml` as the only file of a temporary checks directory.
pub fn jobs(yaml: &str, config: &Config) -> Vec<Job> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jobs.yml"), yaml).unwrap();
    load_jobs(dir.path(), config).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `jobs` once without a stored history.
pub async fn run(jobs: &[Job], config: &Config) -> Vec<RunOutcome> {
    let targets = open_targets(jobs, config).await.unwrap();
    run_once(jobs, &targets, None, 4, Trigger::Manual).await
}

/// `check name → (status, value)` of one run.
pub fn by_check(outcome: &RunOutcome) -> HashMap<String, (Status, Option<f64>)> {
    outcome
        .results
        .iter()
        .map(|r| (r.check.clone(), (r.status, r.value)))
        .collect()
}

/// Asserts `(status, value)` of every named check, with the run's messages on failure.
pub fn expect(outcome: &RunOutcome, want: &[(&str, Status, Option<f64>)]) {
    let got = by_check(outcome);
    for (check, status, value) in want {
        let Some((s, v)) = got.get(*check) else {
            panic!("no result for {check}: {:#?}", outcome.results);
        };
        let msg = outcome
            .results
            .iter()
            .find(|r| r.check == *check)
            .and_then(|r| r.message.clone());
        assert_eq!(
            (s, v.map(|v| (v * 1000.0).round() / 1000.0)),
            (status, *value),
            "{check}: {msg:?}"
        );
    }
}

/// `walaudit serve` of `config` on a free loopback port, as a task, once it is serving: its
/// address, its status and the task (which ends after `cancel`).
pub async fn serve(
    config: Config,
    cancel: tokio_util::sync::CancellationToken,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Receiver<walaudit::engine::EngineStatus>,
    tokio::task::JoinHandle<Result<(), walaudit::engine::EngineError>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let serving = tokio::spawn(async move {
        walaudit::engine::serve(
            &config,
            "127.0.0.1:0".parse().unwrap(),
            cancel,
            |addr, status| {
                let _ = tx.send((addr, status));
            },
        )
        .await
    });
    let (addr, mut status) = rx.await.unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        status.wait_for(|s| *s == walaudit::engine::EngineStatus::Serving),
    )
    .await
    .expect("serving within 60 s")
    .unwrap();
    (addr, status, serving)
}
