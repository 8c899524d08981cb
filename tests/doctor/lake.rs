//! `walaudit doctor`'s lake check: a writable lake passes and leaves nothing behind; a lake that
//! cannot be written (a file where a directory must be, which stops root too) fails with the fix,
//! in text and JSON.

use std::path::Path;

use super::{doctor, status};
use crate::support::{TestDb, shared};

/// A healthy source: publication and slot in place.
async fn healthy_db(hint: &str) -> TestDb {
    let db = shared().await.fresh_db(hint).await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION walaudit FOR ALL TABLES")
        .await
        .unwrap();
    db.create_slot().await.unwrap();
    db
}

/// Doctor in text format: exit code and stdout.
async fn doctor_text(db: &TestDb, lake: &Path) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .args(["doctor", "--source", &db.url, "--slot", &db.name])
        .arg("--lake")
        .arg(lake)
        .env_remove("WALAUDIT_CONFIG")
        .env_remove("WALAUDIT_LAKE")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn writable_lake_passes_and_keeps_nothing() {
    let db = healthy_db("doctor_lake_ok").await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake_arg = lake.to_str().unwrap();
    let (code, map) = doctor(&["--source", &db.url, "--slot", &db.name, "--lake", lake_arg]).await;
    assert_eq!(code, 0, "{map:?}");
    assert_eq!(status(&map, "lake"), "ok");
    assert!(map["lake"].1.contains("is writable"), "{:?}", map["lake"]);
    assert!(map["lake"].1.contains(lake_arg), "{:?}", map["lake"]);
    let left: Vec<_> = std::fs::read_dir(lake.join("_walaudit"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the probe object was deleted: {left:?}");

    let (code, text) = doctor_text(&db, &lake).await;
    assert_eq!(code, 0, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(" lake "))
        .unwrap_or_default();
    assert!(line.starts_with("ok "), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unwritable_lake_fails_with_the_fix() {
    let db = healthy_db("doctor_lake_bad").await;
    let dir = tempfile::tempdir().unwrap();

    // The lake directory exists, but a file sits where the engine's directory goes.
    let lake = dir.path().join("lake");
    std::fs::create_dir(&lake).unwrap();
    std::fs::write(lake.join("_walaudit"), "a file").unwrap();
    let lake_arg = lake.to_str().unwrap();
    let (code, map) = doctor(&["--source", &db.url, "--slot", &db.name, "--lake", lake_arg]).await;
    assert_eq!(code, 1, "the lake alone fails the run: {map:?}");
    assert_eq!(status(&map, "connection"), "ok");
    assert_eq!(status(&map, "lake"), "fail");
    let detail = &map["lake"].1;
    assert!(detail.contains("cannot write _walaudit/probe-"), "{detail}");
    assert!(detail.contains("--lake / lake.url"), "the fix: {detail}");

    let (code, text) = doctor_text(&db, &lake).await;
    assert_eq!(code, 1, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(" lake "))
        .unwrap_or_default();
    assert!(line.starts_with("FAIL "), "{text}");
    assert!(line.contains("cannot write"), "{text}");

    // The lake path runs through a file: it cannot even be created.
    let file = dir.path().join("file");
    std::fs::write(&file, "a file").unwrap();
    let below = file.join("lake");
    let below_arg = below.to_str().unwrap();
    let (code, map) = doctor(&["--source", &db.url, "--slot", &db.name, "--lake", below_arg]).await;
    assert_eq!(code, 1, "{map:?}");
    assert_eq!(status(&map, "lake"), "fail");
    assert!(
        map["lake"].1.contains("invalid lake location"),
        "{:?}",
        map["lake"]
    );
    assert!(
        map["lake"].2.contains("not below a file"),
        "{:?}",
        map["lake"]
    );
    let (code, text) = doctor_text(&db, &below).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("fix: point --lake / lake.url"), "{text}");
}
