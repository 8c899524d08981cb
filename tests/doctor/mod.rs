//! `walaudit doctor` against healthy and deliberately misconfigured servers.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{
    ClusterOptions, PasswordEncryption, PgCluster, WalLevel, shared, unique_name,
};

mod lake;

/// Run doctor with `--format json`; returns the exit code and check → (status, detail, fix).
/// The lake is a fresh temporary directory unless `args` name one.
async fn doctor(args: &[&str]) -> (i32, BTreeMap<String, (String, String, String)>) {
    let lake = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .arg("doctor")
        .args(args)
        .args(["--format", "json"])
        .env_remove("WALAUDIT_SOURCE")
        .env_remove("WALAUDIT_CONFIG")
        .env("WALAUDIT_LAKE", lake.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let checks: Vec<Value> = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} / {}", String::from_utf8_lossy(&out.stderr)));
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let map = checks
        .iter()
        .map(|c| {
            (
                text(&c["check"]),
                (text(&c["status"]), text(&c["detail"]), text(&c["fix"])),
            )
        })
        .collect();
    (out.status.code().unwrap(), map)
}

fn status(map: &BTreeMap<String, (String, String, String)>, check: &str) -> String {
    map.get(check)
        .unwrap_or_else(|| panic!("no check {check}: {map:?}"))
        .0
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_source_passes_every_check() {
    let db = shared().await.fresh_db("doctor_ok").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await
        .unwrap();
    let slot = db.name.clone();
    db.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ))
    .await
    .unwrap();
    let (code, map) = doctor(&["--source", &db.url, "--slot", &slot]).await;
    for check in [
        "connection",
        "version",
        "wal_level",
        "role",
        "publication",
        "identity",
    ] {
        assert_eq!(status(&map, check), "ok", "{check}: {map:?}");
    }
    assert_eq!(status(&map, "slot"), "ok", "{map:?}");
    assert_eq!(status(&map, "clock"), "ok", "{map:?}");
    assert_eq!(status(&map, "lake"), "ok", "{map:?}");
    assert_eq!(code, 0, "{map:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_misconfiguration_fails_with_its_fix() {
    let cluster = shared().await;
    let db = cluster.fresh_db("doctor_bad").await.unwrap();
    db.execute("CREATE TABLE nopk (a int); CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await
        .unwrap();
    let slot = db.name.clone();
    db.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding')"
    ))
    .await
    .unwrap();
    let role = unique_name("norepl");
    cluster
        .create_role(&role, "pw", PasswordEncryption::ScramSha256, "")
        .await
        .unwrap();

    // As the superuser: the table and the slot are wrong.
    let (code, map) = doctor(&["--source", &db.url, "--slot", &slot]).await;
    assert_eq!(code, 1);
    assert_eq!(status(&map, "identity"), "fail");
    assert!(
        map["identity"]
            .2
            .contains("ALTER TABLE \"public\".\"nopk\" REPLICA IDENTITY FULL")
    );
    assert_eq!(status(&map, "slot"), "fail");
    assert!(map["slot"].1.contains("pgoutput"), "{:?}", map["slot"]);

    // A role without REPLICATION.
    let url = db.url_for(&role, "pw");
    let (code, map) = doctor(&["--source", &url, "--slot", &slot]).await;
    assert_eq!(code, 1);
    assert_eq!(status(&map, "role"), "fail");
    assert!(map["role"].1.contains("REPLICATION"), "{:?}", map["role"]);

    // A missing publication that walaudit may not create.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("walaudit.toml");
    std::fs::write(
        &config,
        "[source]\ncreate_publication = false\ncreate_slot = false\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let args = [
        "--config",
        config,
        "--source",
        &db.url,
        "--publication",
        "nope",
        "--slot",
        "none",
    ];
    let (code, map) = doctor(&args).await;
    assert_eq!(code, 1);
    assert_eq!(status(&map, "publication"), "fail");
    assert!(
        map["publication"].2.contains("CREATE PUBLICATION"),
        "{:?}",
        map["publication"]
    );
    assert_eq!(status(&map, "slot"), "fail");
    assert!(
        map["slot"]
            .2
            .contains("pg_create_logical_replication_slot('none'")
    );

    // An unreachable server: one failed check, non-zero exit, no panic.
    // The lake is still checked.
    let (code, map) = doctor(&["--source", "postgres://u:p@127.0.0.1:1/db"]).await;
    assert_eq!((code, map.len()), (1, 2), "{map:?}");
    assert_eq!(status(&map, "connection"), "fail");
    assert_eq!(status(&map, "lake"), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn wal_level_replica_fails() {
    let cluster = PgCluster::start_async(ClusterOptions::default().wal_level(WalLevel::Replica))
        .await
        .unwrap();
    let db = cluster.fresh_db("doctor_replica").await.unwrap();
    let (code, map) = doctor(&["--source", &db.url]).await;
    assert_eq!(code, 1);
    assert_eq!(status(&map, "wal_level"), "fail");
    assert!(map["wal_level"].2.contains("wal_level = logical"));
    drop(db);
    cluster.shutdown_async().await.unwrap();
}
