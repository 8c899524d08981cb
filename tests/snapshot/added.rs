//! A table added to the publication while `run` streams under load is loaded and ends exactly
//! equal to the source, while the other tables keep streaming.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use super::{assert_current_equals_source, check, commits, config, loads, walaudit};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn table_added_while_run_streams_is_loaded_exactly() {
    let db = shared().await.fresh_db("snap_added").await.unwrap();
    db.execute(
        "CREATE TABLE hot (id bigserial PRIMARY KEY, v int NOT NULL);
         -- A text key in random order: chunk bounds come from a row sample.
         CREATE TABLE late (k text PRIMARY KEY, v text NOT NULL);
         INSERT INTO late SELECT md5(g::text), 'v' || g FROM generate_series(1, 400000) g;
         CREATE PUBLICATION walaudit FOR TABLE hot;",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.to_str().unwrap().to_owned();
    let cfg = config(dir.path(), "poll_interval = \"500ms\"\nchunk_rows = 50000");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let client = db.connect().await.unwrap();
        tokio::spawn(async move {
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sql = format!(
                    "BEGIN;
                     INSERT INTO hot (v) VALUES ({i});
                     UPDATE late SET v = 'w{i}' WHERE k = md5('{id}');
                     DELETE FROM late WHERE k = md5('{del}');
                     INSERT INTO late VALUES (md5('{new}'), 'n');
                     COMMIT;",
                    id = (i * 7919) % 400_000 + 1,
                    del = (i * 104_729) % 400_000 + 1,
                    new = 400_000 + i,
                );
                client.batch_execute(&sql).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut engine = walaudit(&db, &cfg, &lake, &["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The stream is flowing once transactions reach the lake.
    let txns = lake_dir.join("_walaudit").join("transactions");
    let deadline = Instant::now() + Duration::from_secs(120);
    while commits(&txns) < 2 {
        if Instant::now() > deadline || engine.try_wait().unwrap().is_some() {
            engine.start_kill().ok();
            let out = engine.wait_with_output().await.unwrap();
            panic!(
                "hot never reached the lake:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.execute("ALTER PUBLICATION walaudit ADD TABLE late")
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(600);
    let late = loop {
        let records = loads(&lake).await;
        if let Some(r) = records
            .iter()
            .find(|r| r.table == "public.late" && r.finished())
        {
            break r.clone();
        }
        if Instant::now() > deadline || engine.try_wait().unwrap().is_some() {
            engine.start_kill().ok();
            let out = engine.wait_with_output().await.unwrap();
            panic!(
                "late was not loaded: {records:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A re-snapshot of the streaming table, requested from another process while `run`
    // streams into the same change table.
    let out = walaudit(&db, &cfg, &lake, &["snapshot", "--tables", "public.hot"])
        .output()
        .await
        .unwrap();
    check(&out, "snapshot --tables public.hot while run streams");
    let hot_load = loads(&lake)
        .await
        .into_iter()
        .find(|r| r.table == "public.hot" && r.kind == "requested")
        .expect("a requested load of hot");
    assert!(
        hot_load.finished() && hot_load.rows_written > 0,
        "{hot_load:?}"
    );
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let pid = engine.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let out = engine.wait_with_output().await.unwrap();
    check(&out, "run (stopped by SIGTERM)");
    let out = walaudit(&db, &cfg, &lake, &["run", "--drain"])
        .output()
        .await
        .unwrap();
    check(&out, "run --drain");

    assert_eq!(late.kind, "added", "{late:?}");
    assert_eq!(late.source_rows, Some(late.rows_written));
    // The stream did not pause for the load: hot's change table got commits while it ran.
    let hot = deltalake::open_table(
        walaudit::lake::LakeLocation::new(&lake, &Default::default())
            .unwrap()
            .table_url("public", "hot"),
    )
    .await
    .unwrap();
    let (from, to) = (late.started_at / 1000, late.finished_at.unwrap() / 1000);
    let during: Vec<i64> = hot
        .history(None)
        .filter_map(|c| async move { c.ok().and_then(|c| c.timestamp) })
        .filter(|t| std::future::ready(*t >= from && *t <= to))
        .collect()
        .await;
    eprintln!(
        "late loaded: {} rows in {} ms; hot commits meanwhile: {}",
        late.rows_written,
        late.duration_ms.unwrap_or(0),
        during.len()
    );
    assert!(
        !during.is_empty(),
        "no commit to hot during the {} ms load",
        to - from
    );

    let late_cols = [("k", "k"), ("v", "v")];
    assert_current_equals_source(&db, &lake, "late", &late_cols, "k").await;
    let hot_cols = [
        ("CAST(id AS VARCHAR)", "id::text"),
        ("CAST(v AS VARCHAR)", "v::text"),
    ];
    assert_current_equals_source(&db, &lake, "hot", &hot_cols, "CAST(id AS BIGINT)").await;
}
