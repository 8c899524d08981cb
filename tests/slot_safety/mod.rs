//! Slot safety while `walaudit run` streams: the retained-WAL gauges and warning, and an
//! invalidated slot (wal_status = lost) stopping the engine with the recovery steps, never
//! retried and never a silent gap.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use walaudit::Lsn;
use walaudit::metrics::Metrics;
use walaudit::slot_watch::SlotWatch;
use walaudit::source::{ConnParams, SourceError};

use crate::support::{
    ClusterOptions, PgCluster, TestDb, metric, shared, wait_metric, wait_streaming,
};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `walaudit run` on `db`'s slot (named like the database) into `lake`, with an optional config
/// (its /metrics open without a token, which the metric helpers read).
fn spawn_run(db: &TestDb, lake: &std::path::Path, port: u16, config: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walaudit"));
    let path = lake.with_extension("toml");
    let config = format!("{}\n[api]\npublic_metrics = true\n", config.unwrap_or(""));
    std::fs::write(&path, config).unwrap();
    cmd.arg("--config").arg(path);
    cmd.args(["run", "--source", &db.url, "--slot", &db.name])
        .arg("--lake")
        .arg(lake)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("WALAUDIT_CONFIG")
        .env_remove("WALAUDIT_SOURCE")
        .env_remove("WALAUDIT_LAKE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Wait (bounded) for the child to exit; its exit code and stderr.
async fn finish(mut child: Child, within: Duration) -> (Option<i32>, String) {
    let status = tokio::time::timeout(within, child.wait()).await;
    let mut stderr = String::new();
    if status.is_err() {
        let _ = child.kill().await;
    }
    let _ = child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await;
    match status {
        Ok(status) => (status.unwrap().code(), stderr),
        Err(_) => panic!("walaudit run did not exit within {within:?}; stderr:\n{stderr}"),
    }
}

async fn wal_status(db: &TestDb) -> String {
    db.scalar(&format!(
        "SELECT coalesce(wal_status, 'none') FROM pg_replication_slots WHERE slot_name = '{}'",
        db.name
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn retained_wal_gauge_and_warning() {
    let db = shared().await.fresh_db("slot_gauge").await.unwrap();
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); CREATE PUBLICATION walaudit FOR ALL TABLES",
    )
    .await
    .unwrap();
    db.create_slot().await.unwrap();
    let restart: String = db
        .scalar(&format!(
            "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = '{}'",
            db.name
        ))
        .await
        .unwrap();
    let restart: Lsn = restart.parse().unwrap();
    // About 2 MB of WAL the slot has not consumed yet.
    db.execute("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 8000) g")
        .await
        .unwrap();
    // The test cluster commits asynchronously: the WAL write position (what
    // pg_current_wal_lsn() and so the gauge report) reaches the insert position within the
    // WAL writer's delay. Wait for it, so the lower bound below holds.
    let inserted: String = db
        .scalar("SELECT pg_current_wal_insert_lsn()::text")
        .await
        .unwrap();
    let before_start: Lsn = inserted.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let written: String = db
            .scalar("SELECT pg_current_wal_lsn()::text")
            .await
            .unwrap();
        if written.parse::<Lsn>().unwrap() >= before_start {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "WAL writes did not reach {inserted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_least = before_start.0 - restart.0;
    assert!(at_least > 1_000_000, "the workload wrote {at_least} bytes");

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = "[source]\nretained_wal_warn = \"64KiB\"\n";
    let child = spawn_run(&db, &dir.path().join("lake"), port, Some(config));
    wait_streaming(port).await;
    let series = format!("walaudit_slot_retained_wal_bytes{{slot=\"{}\"}}", db.name);
    let retained = metric(port, &series)
        .await
        .unwrap_or_else(|| panic!("no {series}"));
    let now: String = db
        .scalar("SELECT pg_current_wal_lsn()::text")
        .await
        .unwrap();
    let at_most = now.parse::<Lsn>().unwrap().0 - restart.0;
    // Sampled before replication started: at least what was written before, at most what the
    // whole cluster has written since the slot was created.
    assert!(
        retained as u64 >= at_least && retained as u64 <= at_most,
        "retained {retained} not in [{at_least}, {at_most}]"
    );
    let status = |s: &str| {
        format!(
            "walaudit_slot_wal_status{{slot=\"{}\",status=\"{s}\"}}",
            db.name
        )
    };
    assert_eq!(metric(port, &status("reserved")).await, Some(1.0));
    assert_eq!(metric(port, &status("lost")).await, Some(0.0));

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (code, stderr) = finish(child, Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("slot retains more WAL than source.retained_wal_warn"),
        "the warning is logged past the threshold: {stderr}"
    );
}

/// Insert, switch to a new WAL segment and checkpoint until every slot of `dbs` is lost.
async fn churn_wal_until_lost(admin: &TestDb, dbs: &[&TestDb]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    admin
        .execute("CREATE TABLE IF NOT EXISTS churn (v text)")
        .await
        .unwrap();
    loop {
        let mut statuses = Vec::new();
        for db in dbs {
            statuses.push(wal_status(db).await);
        }
        if statuses.iter().all(|s| s == "lost") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "slots not invalidated: {statuses:?}"
        );
        admin
            .execute(
                "INSERT INTO churn SELECT repeat('w', 500) FROM generate_series(1, 2000);
                 SELECT pg_switch_wal(); CHECKPOINT;",
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidated_slot_stops_run_with_the_recovery_steps() {
    // Slots may keep at most 1 MB beyond the checkpoint: two segment switches lose them.
    let cluster =
        PgCluster::start_async(ClusterOptions::default().setting("max_slot_wal_keep_size", "1MB"))
            .await
            .unwrap();
    let idle = cluster.fresh_db("lost_idle").await.unwrap();
    let busy = cluster.fresh_db("lost_busy").await.unwrap();
    let admin = cluster.fresh_db("lost_churn").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for db in [&idle, &busy] {
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
            .await
            .unwrap();
        db.execute("INSERT INTO t VALUES (1)").await.unwrap();
    }

    // The idle slot: consumed once (run --drain creates it and captures row 1), then not.
    let idle_lake = dir.path().join("idle");
    let child = Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .args([
            "run", "--drain", "--source", &idle.url, "--slot", &idle.name,
        ])
        .arg("--lake")
        .arg(&idle_lake)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = finish(child, Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let confirmed: String = idle
        .scalar(&format!(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{}'",
            idle.name
        ))
        .await
        .unwrap();

    // The busy slot: the engine streams, but holds a change it never makes durable (no flush
    // for an hour), so it cannot confirm and the slot falls behind while active.
    let port = free_port();
    let stalled = "[lake]\nflush_rows = 1000000\nflush_interval = \"1h\"\n";
    let engine = spawn_run(&busy, &dir.path().join("busy"), port, Some(stalled));
    wait_streaming(port).await;
    busy.execute("INSERT INTO t VALUES (2)").await.unwrap();
    let (series, within) = ("walaudit_transactions_total", Duration::from_secs(30));
    wait_metric(
        port,
        series,
        1.0,
        within,
        "the engine did not receive the insert",
    )
    .await;

    churn_wal_until_lost(&admin, &[&idle, &busy]).await;

    // The running engine: the server ends its walsender; the reconnect finds the slot lost,
    // and the engine stops instead of retrying.
    let (code, stderr) = finish(engine, Duration::from_secs(60)).await;
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!(
        "replication slot {} was invalidated (wal_status = lost)",
        busy.name
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        stderr.contains(&format!("pg_drop_replication_slot('{}')", busy.name)),
        "{stderr}"
    );
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one line: {stderr}");

    // A new run on the idle, lost slot refuses at once, naming the gap's start.
    let child = Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .args(["run", "--source", &idle.url, "--slot", &idle.name])
        .arg("--lake")
        .arg(&idle_lake)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = finish(child, Duration::from_secs(60)).await;
    assert_eq!(code, Some(1), "{stderr}");
    for part in [
        format!("replication slot {} was invalidated", idle.name),
        format!("changes after {confirmed} are missing from the lake"),
        format!("SELECT pg_drop_replication_slot('{}')", idle.name),
        "re-snapshot the tables".to_owned(),
    ] {
        assert!(stderr.contains(&part), "{part:?} in {stderr}");
    }
    assert!(!stderr.contains("reconnecting"), "not retried: {stderr}");

    // The watch reports the loss too (what stops an engine whose connection survives), and
    // exports the status.
    let metrics = std::sync::Arc::new(Metrics::new());
    let params = ConnParams::parse(&idle.url).unwrap();
    let mut watch = SlotWatch::new(params, &idle.name, 0, metrics.clone());
    let err = watch.check().await.unwrap_err();
    assert!(matches!(err, SourceError::SlotLost { .. }), "{err}");
    let text = metrics.render();
    let lost = format!(
        "walaudit_slot_wal_status{{slot=\"{}\",status=\"lost\"}} 1",
        idle.name
    );
    assert!(text.contains(&lost), "{text}");

    drop((idle, busy, admin));
    cluster.shutdown_async().await.unwrap();
}
