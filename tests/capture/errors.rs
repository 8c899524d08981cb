//! Bad input: each is a one-line error that names the fix, a non-zero exit, and no panic.

use std::process::Output;

use crate::support::{ClusterOptions, PgCluster, WalLevel, shared};

async fn walaudit(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .args(args)
        .env_remove("WALAUDIT_SOURCE")
        .env_remove("WALAUDIT_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("the walaudit binary runs")
}

/// The one line of stderr; fails unless the run failed cleanly and said each of `needles`.
fn one_line_error(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    let line = lines[0].to_owned();
    assert!(line.starts_with("error: "), "{line}");
    for needle in needles {
        assert!(line.contains(needle), "`{needle}` missing from: {line}");
    }
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password() {
    let db = shared().await.fresh_db("badpw").await.unwrap();
    let url = db.url_for("postgres", "not-the-password");
    let out = walaudit(&["tail", "--source", &url, "--drain"]).await;
    let line = one_line_error(&out, &["password", "--source"]);
    assert!(
        !line.contains("not-the-password"),
        "the password leaked: {line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_host() {
    let out = walaudit(&[
        "tail",
        "--source",
        "postgres://u:p@127.0.0.1:1/db",
        "--drain",
    ])
    .await;
    one_line_error(&out, &["127.0.0.1:1", "running"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_publication() {
    let db = shared().await.fresh_db("nopub").await.unwrap();
    let out = walaudit(&["tail", "--source", &db.url, "--drain"]).await;
    one_line_error(&out, &["walaudit", "CREATE PUBLICATION"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_slot_is_not_created_for_a_read_only_tail() {
    let db = shared().await.fresh_db("noslot").await.unwrap();
    db.execute("CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await
        .unwrap();
    let out = walaudit(&["tail", "--source", &db.url, "--slot", "nosuch", "--drain"]).await;
    one_line_error(&out, &["nosuch", "pg_create_logical_replication_slot"]);
    let slots: i64 = db
        // Slots of this database only: other tests share the cluster and make their own.
        .scalar("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
        .await
        .unwrap();
    assert_eq!(slots, 0, "no slot was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn table_without_replica_identity() {
    let db = shared().await.fresh_db("noident").await.unwrap();
    db.execute("CREATE TABLE nopk (a int); CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await
        .unwrap();
    let out = walaudit(&["tail", "--source", &db.url, "--drain"]).await;
    one_line_error(
        &out,
        &["ALTER TABLE \"public\".\"nopk\" REPLICA IDENTITY FULL;"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wal_level_replica() {
    let cluster = PgCluster::start_async(ClusterOptions::default().wal_level(WalLevel::Replica))
        .await
        .unwrap();
    let db = cluster.fresh_db("replica").await.unwrap();
    db.execute("CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await
        .unwrap();
    let out = walaudit(&["tail", "--source", &db.url, "--drain"]).await;
    one_line_error(&out, &["wal_level", "logical", "ALTER SYSTEM"]);
    drop(db);
    cluster.shutdown_async().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_config_file_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[source]\nstatus_interval = \"soon\"\n").unwrap();
    let out = walaudit(&["--config", path.to_str().unwrap(), "tail"]).await;
    one_line_error(&out, &["status_interval", "not a duration"]);
}
