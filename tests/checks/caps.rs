//! The scheduler's concurrency caps against a real server: 50 jobs on two connections fall due
//! at the same second, and Postgres never sees more sessions of the checks than each cap
//! allows, while the caps are reached (the jobs really run side by side).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use walaudit::checks::config::ConnectionConfig;
use walaudit::query::{LakeOptions, LakeQuery};
use walaudit::testing::shared;

use crate::lake::lake_rows;

const SOURCE_CAP: usize = 3;
const WAREHOUSE_CAP: usize = 2;
const JOBS: usize = 50;

/// The checks' sessions on the database `db` per user: (total, active), sampled at once.
async fn sessions(db: &walaudit::testing::TestDb, user: &str) -> (i64, i64) {
    let row = db
        .client()
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active') FROM pg_stat_activity \
             WHERE datname = $1 AND usename = $2 AND application_name = 'walaudit-checks'",
            &[&db.name, &user],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_due_jobs_never_open_more_sessions_than_the_caps() {
    let cluster = shared().await;
    let db = cluster.fresh_db("checks_caps").await.unwrap();
    let role = walaudit::testing::unique_name("checker");
    cluster
        .create_role(
            &role,
            "checker-pw",
            walaudit::testing::PasswordEncryption::ScramSha256,
            "",
        )
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let checks = root.path().join("checks");
    std::fs::create_dir(&checks).unwrap();
    // Every job sleeps 0.3 s on the server; 30 on `source` (the superuser), 20 on
    // `warehouse` (another role), all due at the next multiple of 10 seconds.
    let mut yaml = String::from("jobs:\n");
    for i in 0..JOBS {
        let connection = if i % 5 < 3 { "source" } else { "warehouse" };
        yaml.push_str(&format!(
            "  - name: sleepy_{i:02}\n    connection: {connection}\n    schedule: \"*/10 * * * * *\"\n    \
             checks:\n      - type: metric\n        query: SELECT count(*) FROM pg_sleep(0.3)\n        must_be: 1\n"
        ));
    }
    std::fs::write(checks.join("sleepy.yml"), yaml).unwrap();
    let lake = root.path().join("lake");
    let mut config = super::config(Some(&db), &lake);
    config.checks.dir = Some(checks);
    config.checks.max_concurrent = 8;
    config.checks.source_max_concurrent = SOURCE_CAP;
    config.connections.insert(
        "warehouse".into(),
        ConnectionConfig {
            kind: "postgres".into(),
            url: cluster.url_for(&db.name, &role, "checker-pw"),
            max_concurrent: WAREHOUSE_CAP,
        },
    );
    let cancel = CancellationToken::new();
    let (_addr, _status, serving) = super::serve(config, cancel.clone()).await;
    // Sample the server's sessions until every job has a passing run in the lake.
    let (mut most_source, mut most_warehouse) = ((0, 0), (0, 0));
    let deadline = Instant::now() + Duration::from_secs(120);
    let lake_url = lake.to_str().unwrap().to_owned();
    let mut last_lake_look = Instant::now();
    let passed = loop {
        let (s, w) = (sessions(&db, "postgres").await, sessions(&db, &role).await);
        most_source = (most_source.0.max(s.0), most_source.1.max(s.1));
        most_warehouse = (most_warehouse.0.max(w.0), most_warehouse.1.max(w.1));
        if last_lake_look.elapsed() > Duration::from_secs(1) {
            last_lake_look = Instant::now();
            if let Ok(q) = LakeQuery::open(&lake_url, LakeOptions::default()).await
                && let Ok(rows) = lake_rows(
                    &q,
                    "SELECT count(DISTINCT job) FROM _walaudit.check_runs WHERE status = 'pass'",
                )
                .await
            {
                let n: usize = rows[0][0].parse().unwrap_or(0);
                if n >= JOBS {
                    break n;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "not every job passed within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), serving)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(passed, JOBS);
    // The history is written in batches (a commit a second at most), never a commit per run.
    let runs: usize = LakeQuery::open(&lake_url, LakeOptions::default())
        .await
        .unwrap()
        .collect("SELECT count(*) FROM _walaudit.check_runs")
        .await
        .map(|b| crate::lake::text_rows(&b)[0][0].parse().unwrap())
        .unwrap();
    let commits = std::fs::read_dir(lake.join("_walaudit/check_runs/_delta_log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert!(
        commits * 3 < runs,
        "{commits} commits for {runs} runs: the writer must batch"
    );
    // Never more sessions than the cap, idle ones included (the pool keeps them)...
    assert!(
        most_source.0 <= SOURCE_CAP as i64,
        "source: {most_source:?} sessions at once, cap {SOURCE_CAP}"
    );
    assert!(
        most_warehouse.0 <= WAREHOUSE_CAP as i64,
        "warehouse: {most_warehouse:?} sessions at once, cap {WAREHOUSE_CAP}"
    );
    // ...and the caps were reached: the jobs ran side by side, not one by one.
    assert_eq!(most_source.1, SOURCE_CAP as i64, "source {most_source:?}");
    assert_eq!(
        most_warehouse.1, WAREHOUSE_CAP as i64,
        "warehouse {most_warehouse:?}"
    );
}
