//! `walaudit demo`: runs everything on a private cluster, exits 0, leaves a lake that
//! `walaudit query` reads (attributed changes, current state equal to the source), and removes
//! its cluster on success and on failure.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::slot_safety::free_port;

async fn walaudit(args: &[&str], within: Duration) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .args(args)
        .env_remove("WALAUDIT_CONFIG")
        .env_remove("WALAUDIT_LAKE")
        .env_remove("WALAUDIT_SOURCE")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(within, run)
        .await
        .unwrap_or_else(|_| panic!("walaudit {args:?} did not finish within {within:?}"))
        .unwrap()
}

/// The cluster directory the demo announced on stdout.
fn cluster_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("cluster: "))
        .unwrap_or_else(|| panic!("no cluster line in:\n{stdout}"));
    PathBuf::from(line.split_whitespace().next().unwrap())
}

/// `walaudit query --format json` rows.
async fn query(lake: &Path, sql: &str) -> Vec<Value> {
    let out = walaudit(
        &[
            "query",
            "--lake",
            lake.to_str().unwrap(),
            "--format",
            "json",
            sql,
        ],
        Duration::from_secs(60),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_captures_an_attributed_workload_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("demo-lake");
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        "demo",
        // Long enough for the validation jobs' story: history, burst, anomaly, resolution.
        "--duration",
        "40s",
        "--lake",
        lake.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    let out = walaudit(&args, Duration::from_secs(240)).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        !cluster_dir(&stdout).exists(),
        "the cluster directory is removed"
    );
    for heading in [
        "Who changed what",
        "The history of the most changed order",
        "Current state",
        "== Validation jobs",
        "Alerts opened and resolved",
    ] {
        assert!(stdout.contains(heading), "{heading}: {stdout}");
    }

    let counts = query(
        &lake,
        "SELECT count(*) AS n, count(_actor) AS attributed FROM public.orders",
    )
    .await;
    let n = counts[0]["n"].as_i64().unwrap();
    assert!(
        n > 100,
        "20 s at 20 tx/s writes hundreds of order changes, got {n}"
    );
    assert_eq!(
        counts[0]["attributed"].as_i64(),
        Some(n),
        "every change has its actor"
    );
    let actors = query(
        &lake,
        "SELECT DISTINCT _actor AS actor FROM _walaudit.transactions ORDER BY actor",
    )
    .await;
    let actors: Vec<&str> = actors
        .iter()
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    // `burst`: the inserts of the burst that trips the anomaly check.
    assert_eq!(
        actors,
        ["alice", "bob", "burst", "carol", "dave", "walaudit-setup"]
    );

    // The lake's current state equals the source's at the end (as the demo printed it).
    let source: i64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("-- Orders in the source: "))
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no source count in:\n{stdout}"));
    let current = query(&lake, "SELECT count(*) AS n FROM current.public.orders").await;
    assert_eq!(current[0]["n"].as_i64(), Some(source));

    // The validation jobs ran on their schedule: the sane ones pass every time, the one that
    // fails on purpose fails with samples and keeps its alert open, and the burst's anomaly
    // opened an alert that resolved once the burst was over.
    let runs = query(
        &lake,
        "SELECT job, status, count(*) AS n FROM _walaudit.check_runs \
         WHERE \"trigger\" = 'schedule' GROUP BY job, status ORDER BY job, status",
    )
    .await;
    let statuses = |job: &str| -> Vec<String> {
        runs.iter()
            .filter(|r| r["job"] == job)
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(statuses("orders_sane"), ["pass"], "{runs:?}");
    assert_eq!(statuses("order_items_have_orders"), ["pass"], "{runs:?}");
    // (Its first run may pass: no order may be delivered yet.)
    let known = statuses("orders_status_known");
    assert!(
        known.contains(&"fail".to_owned()) && known.iter().all(|s| s == "fail" || s == "pass"),
        "{runs:?}"
    );
    let delivered = query(
        &lake,
        "SELECT value, samples FROM _walaudit.check_results WHERE job = 'orders_status_known' \
         ORDER BY measured_at DESC LIMIT 1",
    )
    .await;
    assert!(
        delivered[0]["value"].as_f64().unwrap() > 0.0,
        "{delivered:?}"
    );
    assert!(
        delivered[0]["samples"]
            .as_str()
            .unwrap()
            .contains("delivered"),
        "{delivered:?}"
    );
    let events = query(
        &lake,
        "SELECT job, \"check\", event FROM _walaudit.alert_events ORDER BY at",
    )
    .await;
    let of = |job: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["job"] == job)
            .map(|e| e["event"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(of("orders_status_known"), ["opened"], "{events:?}");
    let anomaly = of("new_orders");
    assert_eq!(
        (
            anomaly.first().map(String::as_str),
            anomaly.last().map(String::as_str)
        ),
        (Some("opened"), Some("resolved")),
        "the burst opens the anomaly's alert and it resolves: {events:?}\n{stdout}"
    );
    assert!(
        events
            .iter()
            .filter(|e| e["job"] == "new_orders")
            .all(|e| e["check"] == "anomaly(orders_last_4s)"),
        "{events:?}"
    );

    // A second demo replaces its own earlier lake.
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        "demo",
        "--duration",
        "1s",
        "--lake",
        lake.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    let out = walaudit(&args, Duration::from_secs(240)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = query(&lake, "SELECT count(*) AS n FROM _walaudit.transactions").await;
    assert!(
        again[0]["n"].as_i64().unwrap() < 100,
        "a fresh lake: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_removes_its_cluster_when_it_fails() {
    // The listener's port is taken: the engine cannot start after the cluster has.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let args = [
        "demo",
        "--duration",
        "5s",
        "--lake",
        lake.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    let out = walaudit(&args, Duration::from_secs(120)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(
        !cluster_dir(&stdout).exists(),
        "the cluster directory is removed: {stdout}"
    );

    // A lake directory the demo did not make is refused before anything starts.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("keep.txt"), "mine").unwrap();
    let args = [
        "demo",
        "--duration",
        "1s",
        "--lake",
        foreign.to_str().unwrap(),
    ];
    let out = walaudit(&args, Duration::from_secs(60)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("was not made by walaudit demo"), "{stderr}");
    assert!(foreign.join("keep.txt").exists());
}
