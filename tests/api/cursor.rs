//! Cursor paging while `walaudit run` keeps appending: walking every page from the first
//! yields every event that existed at the first page exactly once, newest first.

use std::collections::HashSet;
use std::time::Duration;

use walaudit::api::auth::Role;
use walaudit::engine::{Engine, EngineOptions, EngineStatus};

use super::{get, tokens};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn pages_stay_put_while_changes_arrive() {
    let db = shared().await.fresh_db("api_cursor").await.unwrap();
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        .await
        .unwrap();
    crate::capture::prepare(&db).await.unwrap();
    db.execute("INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 60) g")
        .await
        .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let (tokens, entries) = tokens();
    let mut config = super::config(lake.path(), entries);
    config.source.url = Some(db.url.clone());
    config.source.slot = db.name.clone();
    config.source.create_slot = false;
    config.snapshot.mode = walaudit::config::SnapshotMode::Never;
    config.lake.flush_interval = Duration::from_millis(100);
    let options =
        EngineOptions::from_config(&config, false, "127.0.0.1:0".parse().unwrap()).unwrap();
    let engine = Engine::start(options, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    let addr = engine.listen_addr().to_string();
    let mut status = engine.status();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_for(|s| *s == EngineStatus::Streaming),
    )
    .await
    .unwrap()
    .unwrap();
    let token = Some(tokens[&Role::Viewer].as_str());
    // Wait until the 60 inserts are in the lake.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let first = loop {
        let (code, page) = get(&addr, "/audit_events?per_page=7", token).await;
        if code == 200 && page["meta"]["total_count"] == 60 {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never 60 events: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut seen: Vec<String> = Vec::new();
    let mut keys: HashSet<String> = HashSet::new();
    let mut page = first;
    let mut n = 0;
    loop {
        for e in page["data"].as_array().unwrap() {
            seen.push(e["id"].as_str().unwrap().to_owned());
            keys.insert(e["resource_id"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            page["meta"]["total_count"], 60,
            "the count stays that of the first page"
        );
        n += 1;
        // More changes arrive between pages.
        db.execute(&format!(
            "INSERT INTO notes SELECT g, 'late' FROM generate_series({0} * 10 + 1000, {0} * 10 + 1009) g",
            n
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(cursor) = page["meta"]["next_cursor"].as_str() else {
            break;
        };
        let (code, next) = get(
            &addr,
            &format!("/audit_events?per_page=7&cursor={cursor}"),
            token,
        )
        .await;
        assert_eq!(code, 200, "{next}");
        assert_eq!(next["meta"]["current_page"], n + 1);
        page = next;
    }
    assert_eq!(n, 9, "60 events in pages of 7");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 60, "each event once");
    assert_eq!(seen.len(), 60);
    let ids: HashSet<String> = (1..=60).map(|i| i.to_string()).collect();
    let (_, all) = get(
        &addr,
        "/audit_events?per_page=100",
        Some(tokens[&Role::Auditor].as_str()),
    )
    .await;
    assert!(
        all["meta"]["total_count"].as_u64().unwrap() > 60,
        "changes kept arriving"
    );
    assert_eq!(keys, ids, "exactly the rows that existed at the first page");
    // A cursor with other filters is refused.
    let (_, p1) = get(&addr, "/audit_events?per_page=7", token).await;
    let cursor = p1["meta"]["next_cursor"].as_str().unwrap();
    let (code, body) = get(
        &addr,
        &format!("/audit_events?per_page=7&user_id=x&cursor={cursor}"),
        token,
    )
    .await;
    assert_eq!(code, 400, "{body}");
    engine.shutdown_and_wait().await.unwrap();
}
