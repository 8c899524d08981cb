//! SIGTERM: the engine flushes what it holds, confirms it, and exits 0.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{open, rows, session};
use crate::support::{shared, wait_metric, wait_streaming};

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_flushes_confirms_and_exits_zero() {
    let db = shared().await.fresh_db("lake_sigterm").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Nothing is flushed by size or age: only the shutdown flush can put rows in the lake.
    let config = dir.path().join("walaudit.toml");
    std::fs::write(
        &config,
        "[lake]\nflush_rows = 1000000\nflush_interval = \"1h\"\n\n[api]\npublic_metrics = true\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "run",
            "--source",
            &db.url,
        ])
        .args(["--slot", &db.name, "--lake", lake.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_streaming(port).await;
    let within = Duration::from_secs(60);
    for id in 1..=10 {
        db.execute(&format!("INSERT INTO t VALUES ({id})"))
            .await
            .unwrap();
    }
    let what = "the engine did not receive the transactions";
    wait_metric(port, "walaudit_transactions_total", 10.0, within, what).await;
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(
        status.unwrap().code(),
        Some(0),
        "exit code; stderr: {stderr}"
    );

    let delta = open(&lake, "public", "t").await.unwrap();
    let ctx = session(&delta).await.unwrap();
    let ids = rows(&ctx, "SELECT id FROM t ORDER BY id").await.unwrap();
    let want: Vec<Vec<String>> = (1..=10).map(|i| vec![i.to_string()]).collect();
    assert_eq!(ids, want, "the shutdown flush wrote every received change");
    let confirmed: String = db
        .scalar(&format!(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{}'",
            db.name
        ))
        .await
        .unwrap();
    let confirmed: walaudit::Lsn = confirmed.parse().unwrap();
    // The last transaction's commit record lies before its end, which was confirmed. (Not the
    // server's current position: other tests write WAL on the shared cluster meanwhile.)
    let last_commit = rows(&ctx, "SELECT max(_lsn) FROM t").await.unwrap();
    let last_commit = walaudit::Lsn(last_commit[0][0].parse::<u64>().unwrap());
    assert!(
        confirmed > last_commit,
        "confirmed {confirmed} is past the last commit {last_commit}"
    );
}
