//! Checks over the lake (connection `lake`): current state, incremental runs over a change
//! table by `_lsn`, anomaly detection over a history, and the run history tables.

use chrono::{Duration as Days, Utc};
use walaudit::checks::Severity;
use walaudit::checks::Status::{Fail, Pass};
use walaudit::checks::alert::{Alerts, AlertsConfig, EventKind};
use walaudit::checks::command::{open_store, open_targets, run_once};
use walaudit::checks::run::run_job;
use walaudit::checks::store::MemoryHistory;
use walaudit::checks::{Trigger, store::RunStore};
use walaudit::query::{LakeOptions, LakeQuery};

use super::{config, expect, jobs};
use crate::lake::{drain_to_lake, lake_rows};
use crate::support::shared;

const LAKE_JOBS: &str = r#"
jobs:
  - name: items_now
    dataset: current.public.items
    checks:
      - type: row_count
        must_be: 50
      - type: missing
        column: sku
      - type: invalid
        column: qty
        valid_min: 0
        valid_max: 40
      - type: duplicate
        columns: [sku]
      - type: schema
        required: {id: integer, qty: integer, sku: text}
  - name: items_changes
    dataset: public.items
    incremental: true
    checks:
      - type: row_count
      - type: aggregate
        name: updates_per_item
        group_by: [id]
        expression: count(*)
        each:
          must_be_less_than_or_equal: 1
"#;

#[tokio::test(flavor = "multi_thread")]
async fn lake_checks_and_incremental_runs_read_only_new_changes() {
    let db = shared().await.fresh_db("checks_lake").await.unwrap();
    db.execute("CREATE TABLE items (id int PRIMARY KEY, qty int, sku text)")
        .await
        .unwrap();
    let slot = crate::capture::prepare(&db).await.unwrap();
    db.execute(
        "INSERT INTO items SELECT g, g % 50, CASE WHEN g = 7 THEN NULL ELSE 'sku-' || g END \
         FROM generate_series(1, 50) g",
    )
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    drain_to_lake(&db, &slot, lake.path(), 1000, true)
        .await
        .unwrap();
    let cfg = config(None, lake.path());
    let jobs = jobs(LAKE_JOBS, &cfg);
    let store = open_store(&cfg).await.unwrap();
    assert_eq!(store.record_jobs(&jobs, Some("test")).await.unwrap(), 2);
    assert_eq!(
        store.record_jobs(&jobs, Some("test")).await.unwrap(),
        0,
        "unchanged"
    );

    let first = run_with(&jobs, &cfg, &store).await;
    expect(
        &first[0],
        &[
            ("row_count", Pass, Some(50.0)),
            ("missing(sku)", Fail, Some(1.0)),
            ("invalid(qty)", Fail, Some(9.0)),
            ("duplicate(sku)", Pass, Some(0.0)),
            ("schema", Pass, Some(0.0)),
        ],
    );
    expect(
        &first[1],
        &[
            ("row_count", Pass, Some(50.0)),
            ("updates_per_item", Pass, Some(0.0)),
        ],
    );
    let lsn1 = first[1]
        .lsn_high
        .expect("an incremental run records its _lsn");

    // 10 updates and 5 inserts: the next incremental run measures those 15 changes only.
    db.execute(
        "UPDATE items SET qty = qty + 1 WHERE id <= 10; \
         INSERT INTO items SELECT g, 1, 'sku-' || g FROM generate_series(51, 55) g",
    )
    .await
    .unwrap();
    drain_to_lake(&db, &slot, lake.path(), 1000, true)
        .await
        .unwrap();
    let second = run_with(&jobs, &cfg, &store).await;
    expect(&second[1], &[("row_count", Pass, Some(15.0))]);
    let lsn2 = second[1].lsn_high.unwrap();
    assert!(lsn2 > lsn1, "{lsn2} > {lsn1}");
    expect(&second[0], &[("row_count", Fail, Some(55.0))]);
    // Nothing new: zero changes, and the high-water mark stays.
    let third = run_with(&jobs, &cfg, &store).await;
    expect(&third[1], &[("row_count", Fail, Some(0.0))]);
    assert_eq!(third[1].lsn_high, Some(lsn2));

    // The history is in the lake, readable with SQL, one commit per batch of runs.
    let q = LakeQuery::open(lake.path().to_str().unwrap(), LakeOptions::default())
        .await
        .unwrap();
    let runs = lake_rows(
        &q,
        "SELECT job, status, \"trigger\", lsn_high IS NOT NULL, job_version FROM _walaudit.check_runs \
         ORDER BY job, started_at",
    )
    .await
    .unwrap();
    assert_eq!(runs.len(), 6, "{runs:?}");
    assert_eq!(runs[0], ["items_changes", "pass", "manual", "true", "1"]);
    assert_eq!(runs[3], ["items_now", "fail", "manual", "false", "1"]);
    let results = lake_rows(
        &q,
        "SELECT count(*), count(DISTINCT run_id), sum(CASE WHEN samples IS NOT NULL THEN 1 ELSE 0 END) \
         FROM _walaudit.check_results",
    )
    .await
    .unwrap();
    assert_eq!(results[0][0..2], ["21", "6"]);
    let versions = lake_rows(&q, "SELECT count(*) FROM _walaudit.jobs")
        .await
        .unwrap();
    assert_eq!(versions[0][0], "2");
    let table = crate::lake::open(lake.path(), "_walaudit", "check_results")
        .await
        .unwrap();
    assert_eq!(
        table.version(),
        Some(3),
        "three batches, three commits (created at 0)"
    );

    // A restarted store knows the high-water mark and the latest statuses.
    drop(store);
    let reopened = open_store(&cfg).await.unwrap();
    let state = reopened.job_state("items_changes").unwrap();
    assert_eq!((state.last_lsn, state.version), (Some(lsn2), 1));
    assert_eq!(state.last_status, Some(Fail));
}

async fn run_with(
    jobs: &[walaudit::checks::Job],
    cfg: &walaudit::config::Config,
    store: &RunStore,
) -> Vec<walaudit::checks::RunOutcome> {
    // A fresh handle per run: it reads the lake's versions of the moment it opens.
    let targets = open_targets(jobs, cfg).await.unwrap();
    let mut out = run_once(jobs, &targets, Some(store), 2, Trigger::Manual).await;
    store.record(&out).await.unwrap();
    out.sort_by(|a, b| b.job.cmp(&a.job));
    out
}

/// The anomaly check's result of a run.
fn anomaly_of(out: &walaudit::checks::RunOutcome) -> &walaudit::checks::CheckResult {
    out.results
        .iter()
        .find(|r| r.type_name == "anomaly")
        .expect("an anomaly result")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anomaly_is_a_spike_against_two_weeks_of_history_not_noise() {
    let db = shared().await.fresh_db("checks_anomaly").await.unwrap();
    db.execute("CREATE TABLE events (id serial PRIMARY KEY, at timestamptz DEFAULT now())")
        .await
        .unwrap();
    db.execute("INSERT INTO events (at) SELECT now() FROM generate_series(1, 100)")
        .await
        .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let yaml = r#"
jobs:
  - name: events_daily
    connection: source
    dataset: public.events
    checks:
      - type: row_count
        name: rows
      - type: anomaly
        of: rows
        sensitivity: 3
        min_history: 7
"#;
    let jobs = jobs(yaml, &cfg);
    let targets = open_targets(&jobs, &cfg).await.unwrap();
    let history = MemoryHistory::default();
    // Too little history: the check learns and passes without a value.
    let now = Utc::now;
    let out = run_job(
        &jobs[0],
        &targets,
        &history,
        Utc::now(),
        Trigger::Manual,
        &now,
    )
    .await;
    let anomaly = anomaly_of(&out);
    assert_eq!((anomaly.status, anomaly.value), (Pass, None));
    assert!(
        anomaly
            .message
            .as_deref()
            .unwrap()
            .contains("learning: 0 of the 7")
    );
    // 14 days of daily counts around 100 (σ ≈ 2.9), and one 30 days ago that must not count.
    let noise = [
        97.0, 103.0, 99.0, 101.0, 96.0, 104.0, 100.0, 98.0, 102.0, 95.0, 105.0, 100.0, 99.0, 101.0,
    ];
    history.push(
        "events_daily",
        "rows",
        Utc::now() - Days::days(30),
        10_000.0,
    );
    for (i, x) in noise.iter().enumerate() {
        let at = Utc::now() - Days::days(14) + Days::hours(12) + Days::days(i as i64);
        history.push("events_daily", "rows", at, *x);
    }
    let out = run_job(
        &jobs[0],
        &targets,
        &history,
        Utc::now(),
        Trigger::Manual,
        &now,
    )
    .await;
    let anomaly = anomaly_of(&out);
    assert_eq!(anomaly.status, Pass, "100 rows is normal: {anomaly:?}");
    assert!(anomaly.value.unwrap().abs() < 0.5, "{anomaly:?}");
    // The alert state the service keeps: normal noise opens nothing.
    let mut alerts = Alerts::new(&AlertsConfig::default(), Default::default());
    assert_eq!(alerts.observe(&out, Severity::High, Utc::now()), vec![]);
    // A spike of 5σ and more: 115 rows.
    db.execute("INSERT INTO events (at) SELECT now() FROM generate_series(1, 15)")
        .await
        .unwrap();
    let out = run_job(
        &jobs[0],
        &targets,
        &history,
        Utc::now(),
        Trigger::Manual,
        &now,
    )
    .await;
    let anomaly = anomaly_of(&out);
    assert_eq!(anomaly.status, Fail, "{anomaly:?}");
    let z = anomaly.value.unwrap();
    assert!(z > 5.0 && z < 6.0, "z = {z}");
    assert_eq!(out.status, Fail);
    // The spike opens one alert, on the anomaly check (the row count has no threshold).
    let events = alerts.observe(&out, Severity::High, Utc::now());
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        (
            events[0].event,
            events[0].check.as_str(),
            events[0].job.as_str()
        ),
        (EventKind::Opened, anomaly.check.as_str(), "events_daily")
    );
    assert!(
        events[0].message.contains("is fail"),
        "{}",
        events[0].message
    );
    assert_eq!(alerts.open().count(), 1);
}
