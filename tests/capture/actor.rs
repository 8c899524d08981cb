//! Who made the change: the transaction's audit-context message.

use serde_json::json;

use super::{changes_json, drain, field, prepare};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_contexts_without_and_malformed() {
    let db = shared().await.fresh_db("actor").await.unwrap();
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let slot = prepare(&db).await.unwrap();
    let alice = db.connect().await.unwrap();
    let bob = db.connect().await.unwrap();
    alice
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    bob.batch_execute(
        "BEGIN; SELECT pg_logical_emit_message(true, 'walaudit', '{\"user\":\"bob\",\"ip\":\"10.0.0.7\"}');
         INSERT INTO t VALUES (2)",
    )
    .await
    .unwrap();
    // Alice's context comes after her first change: it still applies to all of them.
    alice
        .batch_execute(
            "SELECT pg_logical_emit_message(true, 'walaudit', '{\"actor\":\"alice@example.com\"}');
             INSERT INTO t VALUES (3)",
        )
        .await
        .unwrap();
    bob.batch_execute("INSERT INTO t VALUES (4); COMMIT")
        .await
        .unwrap();
    alice.batch_execute("COMMIT").await.unwrap();
    db.execute("INSERT INTO t VALUES (5)").await.unwrap();
    db.execute(
        "BEGIN; SELECT pg_logical_emit_message(true, 'walaudit', '{\"actor\": oops');
         INSERT INTO t VALUES (6); COMMIT;",
    )
    .await
    .unwrap();
    // A message with another prefix is not a context, and a non-transactional one neither.
    db.execute(
        "BEGIN; SELECT pg_logical_emit_message(true, 'other', 'x');
         SELECT pg_logical_emit_message(false, 'walaudit', '{\"actor\":\"nobody\"}');
         INSERT INTO t VALUES (7); COMMIT;",
    )
    .await
    .unwrap();
    let txns = drain(&db, &slot).await.unwrap();
    let got = changes_json(&txns);
    let summary: Vec<_> = got
        .iter()
        .map(|c| (field(c, "id"), c["actor"].clone(), c["context"].clone()))
        .collect();
    let bob_ctx = json!({"user": "bob", "ip": "10.0.0.7"});
    let alice_ctx = json!({"actor": "alice@example.com"});
    assert_eq!(
        summary,
        vec![
            (json!(2), json!("bob"), bob_ctx.clone()),
            (json!(4), json!("bob"), bob_ctx),
            (json!(1), json!("alice@example.com"), alice_ctx.clone()),
            (json!(3), json!("alice@example.com"), alice_ctx),
            (json!(5), json!(null), json!(null)),
            (json!(6), json!(null), json!("{\"actor\": oops")),
            (json!(7), json!(null), json!(null)),
        ]
    );
    // The other messages are kept for the messages table, not lost.
    let last = txns.last().unwrap();
    assert_eq!(last.messages.len(), 1);
    assert_eq!(last.messages[0].prefix, "other");
    assert_eq!(last.messages[0].commit_lsn, Some(last.meta.commit_lsn));
}
