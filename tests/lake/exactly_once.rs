//! Restarts: replays after lost confirmations and after a crash with a partly flushed lake
//! leave every change in the lake exactly once.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use walaudit::lake::LakeSink;
use walaudit::pipeline::{self, SlotMode};

use super::workload::{SCHEMA, assert_equal_to_source, workload};
use super::{assert_unique, drain_to_lake, open, rows, session, setup, sink_options};
use crate::capture::options;
use crate::support::shared;

async fn lake_counts(dir: &std::path::Path) -> Vec<i64> {
    let mut out = Vec::new();
    for table in ["accounts", "events", "items"] {
        let delta = open(dir, "public", table).await.unwrap();
        out.push(
            assert_unique(&session(&delta).await.unwrap())
                .await
                .unwrap(),
        );
    }
    let txns = open(dir, "_walaudit", "transactions").await.unwrap();
    let ctx = session(&txns).await.unwrap();
    let dups = rows(&ctx, "SELECT _lsn FROM t GROUP BY _lsn HAVING count(*) > 1")
        .await
        .unwrap();
    assert!(dups.is_empty(), "duplicated transactions: {dups:?}");
    out.push(
        rows(&ctx, "SELECT count(*) FROM t").await.unwrap()[0][0]
            .parse()
            .unwrap(),
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_never_double_changes() {
    let db = shared().await.fresh_db("lake_replay").await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    let slot = setup(&db).await.unwrap();
    let expected = workload(&db, 1).await.unwrap();
    // One big transaction, flushed in parts (flush_rows = 7) so partial markers are written.
    db.execute(
        "INSERT INTO items SELECT 'big-' || g, g, g + 0.25, NULL FROM generate_series(1, 50) g",
    )
    .await
    .unwrap();
    let expected = expected + 50;
    let dir = tempfile::tempdir().unwrap();

    // Run 1 writes everything but never confirms: the server will resend all of it.
    drain_to_lake(&db, &slot, dir.path(), 7, false)
        .await
        .unwrap();
    let first = lake_counts(dir.path()).await;
    assert_eq!(first[..3].iter().sum::<i64>() as usize, expected);

    // Run 2 (confirming) receives everything again and skips it; run 3 receives nothing.
    for _ in 0..2 {
        let summary = drain_to_lake(&db, &slot, dir.path(), 7, true)
            .await
            .unwrap();
        assert_eq!(lake_counts(dir.path()).await, first, "nothing doubled");
        assert!(!summary.durable_lsn.is_zero() || summary.capture.changes == 0);
    }
    assert_equal_to_source(&db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_with_a_partly_flushed_lake_then_rerun_is_exactly_once() {
    let db = shared().await.fresh_db("lake_crash").await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    let slot = setup(&db).await.unwrap();
    let mut expected = 0;
    for round in 1..=3 {
        expected += workload(&db, round).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();

    // A run that never confirms, with tiny flushes, aborted (no flush, no shutdown) once some
    // commits landed: tables hold different prefixes of the stream.
    let mut opts = options(&db, &slot, 64 << 20);
    opts.slot = SlotMode::ReadOnly { name: slot.clone() };
    opts.drain = false;
    let sink = LakeSink::open(sink_options(dir.path(), &slot, 5))
        .await
        .unwrap();
    let run = tokio::spawn(pipeline::run(opts, sink, CancellationToken::new()));
    let log = dir
        .path()
        .join("public")
        .join("accounts")
        .join("_delta_log");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let commits = std::fs::read_dir(&log).map(|d| d.count()).unwrap_or(0);
        if commits >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "no commits landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run.abort();
    let _ = run.await;
    // The sink task outlives the aborted pipeline until its queue is empty (it then stops
    // without flushing): wait until the lake stops changing, as after a crash.
    let files = || walk(dir.path());
    let mut last = files();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = files();
        if now == last {
            break;
        }
        last = now;
    }

    // Re-run: everything exactly once.
    drain_to_lake(&db, &slot, dir.path(), 1000, true)
        .await
        .unwrap();
    let counts = lake_counts(dir.path()).await;
    assert_eq!(counts[..3].iter().sum::<i64>() as usize, expected);
    assert_equal_to_source(&db, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn run_drain_binary_twice() {
    let db = shared().await.fresh_db("lake_binary").await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    let expected = workload(&db, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // The slot and publication are created by `run` itself (defaults), so the workload before
    // the first run is not captured; run once to create them, then write the workload again.
    let run = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
            .env("WALAUDIT_LISTEN", "127.0.0.1:0")
            .args(["run", "--drain", "--source", &db.url, "--slot", &db.name])
            // The stream's replay is under test: rows from before the slot are not loaded.
            .args(["--snapshot", "never"])
            .args([
                "--lake",
                lake.to_str().unwrap(),
                "--publication",
                "walaudit_bin",
            ])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "run failed: {stderr}");
        stderr
    };
    run().await;
    let expected2 = workload(&db, 2).await.unwrap();
    assert_eq!(expected, expected2);
    let stderr = run().await;
    assert!(stderr.contains("run finished"), "{stderr}");
    let first = lake_counts(&lake).await;
    assert_eq!(first[..3].iter().sum::<i64>() as usize, expected2);
    run().await;
    assert_eq!(
        lake_counts(&lake).await,
        first,
        "a second drain adds nothing"
    );

    // Maintenance keeps every row and the exactly-once markers.
    for action in ["optimize", "checkpoint", "vacuum"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
            .env("WALAUDIT_LISTEN", "127.0.0.1:0")
            .args(["lake", action, "--lake", lake.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "lake {action} failed: {stderr}");
        assert!(stderr.contains("public.accounts"), "{stderr}");
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .env("WALAUDIT_LISTEN", "127.0.0.1:0")
        .args([
            "lake",
            "optimize",
            "--table",
            "public.nope",
            "--lake",
            lake.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no Delta table public.nope"));
    assert_eq!(lake_counts(&lake).await, first);
    run().await;
    assert_eq!(
        lake_counts(&lake).await,
        first,
        "markers survive maintenance"
    );
    let accounts = open(&lake, "public", "accounts").await.unwrap();
    assert!(super::marker(&accounts, &db.name).await.unwrap().is_some());
}

/// Number of files under `dir`, recursively.
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}
