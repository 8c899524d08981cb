//! SIGKILL in the middle of a load, changes to the source, restart: the chunks already in the
//! lake are not copied again, no key gets two snapshot images, and the result is exact.

use std::time::{Duration, Instant};

use super::{
    assert_current_equals_source, assert_single_read_per_key, check, commits, config, loads,
    walaudit,
};
use crate::support::shared;

const ROWS: i64 = 300_000;

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_load_resumes_without_copying_finished_chunks() {
    let db = shared().await.fresh_db("snap_resume").await.unwrap();
    db.execute(&format!(
        "CREATE TABLE res (id int PRIMARY KEY, v text NOT NULL, n int);
         INSERT INTO res SELECT g, 'v' || g, g % 7 FROM generate_series(1, {ROWS}) g;"
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.to_str().unwrap().to_owned();
    let cfg = config(dir.path(), "chunk_rows = 10000\nworkers = 1");

    let mut first = walaudit(&db, &cfg, &lake, &["snapshot"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once a few chunks are committed (table creation + at least 3 chunk commits).
    let table_dir = lake_dir.join("public").join("res");
    let deadline = Instant::now() + Duration::from_secs(300);
    while commits(&table_dir) < 4 {
        assert!(Instant::now() < deadline, "no chunk committed in time");
        if first.try_wait().unwrap().is_some() {
            let out = first.wait_with_output().await.unwrap();
            panic!(
                "the load ended before it could be killed ({:?}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let committed_before_kill = commits(&table_dir) - 1;

    // The source moves on between the two attempts, in every part of the key range.
    db.execute(
        "UPDATE res SET v = 'changed', n = NULL WHERE id % 997 = 0;
         DELETE FROM res WHERE id % 1009 = 0;
         INSERT INTO res SELECT g, 'late', 1 FROM generate_series(300001, 300500) g;",
    )
    .await
    .unwrap();

    let out = walaudit(&db, &cfg, &lake, &["snapshot"])
        .output()
        .await
        .unwrap();
    check(&out, "the resumed snapshot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chunks already in the lake are not copied again"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("public.res") && stdout.contains("done"),
        "{stdout}"
    );

    let records = loads(&lake).await;
    assert_eq!(records.len(), 1, "one load, resumed: {records:?}");
    let load = &records[0];
    assert_eq!(load.status, "done");
    assert_eq!(load.chunks, 30, "{load:?}");
    assert_eq!(
        load.chunks_skipped as usize, committed_before_kill,
        "{load:?}"
    );
    assert!(load.chunks_skipped >= 3 && load.chunks_skipped < load.chunks);
    // Each chunk is committed exactly once over both attempts.
    assert_eq!(commits(&table_dir) - 1, load.chunks as usize);

    // A second `snapshot` has nothing left to do.
    let out = walaudit(&db, &cfg, &lake, &["snapshot"])
        .output()
        .await
        .unwrap();
    check(&out, "a snapshot with nothing to load");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to load"));

    // The changes made after the slot was created arrive through the stream.
    let out = walaudit(&db, &cfg, &lake, &["run", "--drain"])
        .output()
        .await
        .unwrap();
    check(&out, "run --drain");
    let reads = assert_single_read_per_key(&lake, "res", "id").await;
    assert_eq!(reads, load.rows_written);
    let columns = [
        ("CAST(id AS VARCHAR)", "id::text"),
        ("v", "v"),
        ("CAST(n AS VARCHAR)", "n::text"),
    ];
    assert_current_equals_source(&db, &lake, "res", &columns, "CAST(id AS BIGINT)").await;
}
