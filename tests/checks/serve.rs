//! `walaudit serve` as a library call: a lake that does not exist yet is created, jobs run on
//! their schedules, `/readyz` says `serving`, and everything stops on cancel.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use walaudit::engine::EngineStatus;
use walaudit::query::{LakeOptions, LakeQuery};

use crate::lake::lake_rows;

#[tokio::test(flavor = "multi_thread")]
async fn serve_schedules_jobs_over_a_new_lake_and_stops_on_cancel() {
    let root = tempfile::tempdir().unwrap();
    let lake = root.path().join("lake");
    let checks = root.path().join("checks");
    std::fs::create_dir(&checks).unwrap();
    std::fs::write(
        checks.join("meta.yml"),
        "jobs:\n  - name: jobs_recorded\n    dataset: _walaudit.jobs\n    schedule: \"* * * * * *\"\n    checks:\n      - type: row_count\n",
    )
    .unwrap();
    let mut config = super::config(None, &lake);
    config.checks.dir = Some(checks);
    let cancel = CancellationToken::new();
    let (addr, status, serving) = super::serve(config, cancel.clone()).await;
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap().trim(), "serving");
    // Runs every second land in the lake, and the job passes (its own definition is there).
    let deadline = Instant::now() + Duration::from_secs(30);
    let lake_url = lake.to_str().unwrap().to_owned();
    loop {
        if let Ok(q) = LakeQuery::open(&lake_url, LakeOptions::default()).await
            && let Ok(rows) = lake_rows(
                &q,
                "SELECT count(*) FROM _walaudit.check_runs WHERE status = 'pass' AND \"trigger\" = 'schedule'",
            )
            .await
            && rows[0][0].parse::<i64>().unwrap_or(0) >= 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled runs in the lake");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), serving)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(*status.borrow(), EngineStatus::Stopped);
    assert!(
        reqwest::get(format!("http://{addr}/readyz")).await.is_err(),
        "listener closed"
    );
}
