//! `walaudit demo` without the PostgreSQL server binaries stops at once, creates nothing, and
//! names what to do. (`WALAUDIT_PG_BIN` set means nothing else is tried, so a directory without
//! a server stands for a machine without one; the message for no binaries at all is unit-tested
//! in src/cluster/binaries.rs.)

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn demo_without_a_server_stops_at_once_with_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("demo-lake");
    let started = Instant::now();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .args(["demo", "--duration", "5s", "--lake", lake.to_str().unwrap()])
        .env("WALAUDIT_PG_BIN", dir.path().join("no-server"))
        .env_remove("WALAUDIT_CONFIG")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the demo stops at once")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    let expected = format!(
        "error: WALAUDIT_PG_BIN={} holds no initdb and postgres: point it at the directory \
         that does, or unset it and install the PostgreSQL server with:\n    ",
        dir.path().join("no-server").display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(
        stderr.contains("apt-get install -y postgresql-15\n"),
        "{stderr}"
    );
    assert!(
        !lake.exists(),
        "the demo created its lake before it stopped"
    );
}
