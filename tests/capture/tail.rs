//! The `walaudit tail` binary end to end.

use serde_json::{Value, json};

use super::prepare;
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn tail_reads_an_existing_slot_without_confirming_progress() {
    let db = shared().await.fresh_db("tail").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        .await
        .unwrap();
    let slot = prepare(&db).await.unwrap();
    let confirmed = || async {
        let lsn: String = db
            .scalar(&format!(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ))
            .await
            .unwrap();
        lsn
    };
    let before = confirmed().await;
    db.execute("INSERT INTO t VALUES (1, 'one'), (2, 'two')")
        .await
        .unwrap();
    db.execute(
        "BEGIN; SELECT pg_logical_emit_message(true, 'walaudit', '{\"actor\":\"carol\"}');
         UPDATE t SET note = 'uno' WHERE id = 1; COMMIT;",
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
            .args(["tail", "--source", &db.url, "--slot", &slot, "--drain"])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tail failed: {stderr}");
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
            .collect();
        let summary: Vec<_> = lines
            .iter()
            .map(|l| (l["op"].clone(), l["row"].clone(), l["actor"].clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (json!("c"), json!({"id": 1, "note": "one"}), json!(null)),
                (json!("c"), json!({"id": 2, "note": "two"}), json!(null)),
                (json!("u"), json!({"id": 1, "note": "uno"}), json!("carol")),
            ],
            "the same changes on every read: tail never confirms progress"
        );
        let lsn = lines[2]["lsn"].as_str().unwrap();
        assert!(lsn.contains('/'), "lsn in Postgres notation: {lsn}");
        assert!(lines[2]["commit_ts"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(
        confirmed().await,
        before,
        "the slot's confirmed position did not move"
    );
}
