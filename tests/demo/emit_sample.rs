//! `walaudit emit-sample`: the counts it reports are what the source holds and what capture
//! sees, every transaction carries its actor, and a seed repeats the workload exactly.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::capture::{drain, prepare};
use crate::support::{TestDb, shared};

/// Run emit-sample against `db`; its JSON summary.
async fn emit(db: &TestDb, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .arg("emit-sample")
        .args(args)
        .args(["--url", &db.url])
        .env_remove("WALAUDIT_CONFIG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Orders and items as text, ordered: equal for equal workloads.
async fn contents(db: &TestDb) -> (String, String) {
    let orders = db
        .scalar(
            "SELECT coalesce(string_agg(concat_ws(':', id, customer_id, status, total), ',' \
             ORDER BY id), '') FROM orders",
        )
        .await
        .unwrap();
    let items = db
        .scalar(
            "SELECT coalesce(string_agg(concat_ws(':', order_id, line, product_id, qty, price), \
             ',' ORDER BY order_id, line), '') FROM order_items",
        )
        .await
        .unwrap();
    (orders, items)
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_actors_and_seed_are_what_capture_sees() {
    let db = shared().await.fresh_db("emit_sample").await.unwrap();
    let slot = prepare(&db).await.unwrap();
    let args = [
        "200",
        "--seed",
        "42",
        "--tx-size",
        "2",
        "--mix",
        "insert=50,update=30,delete=20",
        "--actors",
        "alice,bob",
    ];
    let stats = emit(&db, &args).await;
    let n = |key: &str| stats[key].as_u64().unwrap();
    assert_eq!(n("transactions"), 200, "{stats}");
    assert_eq!(n("inserts") + n("updates") + n("deletes"), 400, "{stats}");
    assert!(n("updates") > 0 && n("deletes") > 0, "{stats}");
    assert_eq!(n("seed"), 42);
    let per_actor: BTreeMap<String, u64> = serde_json::from_value(stats["actors"].clone()).unwrap();
    assert_eq!(per_actor.keys().collect::<Vec<_>>(), ["alice", "bob"]);
    assert_eq!(per_actor.values().sum::<u64>(), 200);

    // The source holds what the summary says.
    let orders: i64 = db.scalar("SELECT count(*) FROM orders").await.unwrap();
    assert_eq!(orders as u64, n("inserts") - n("deletes"));
    let products: i64 = db.scalar("SELECT count(*) FROM products").await.unwrap();
    assert_eq!(products, 10);

    // Capture sees the seed transaction and then the 200, each with its actor and request id.
    let txns = drain(&db, &slot).await.unwrap();
    assert_eq!(txns.len(), 201);
    let actor_of =
        |t: &walaudit::sink::StoredTxn| t.meta.context.as_ref().and_then(|c| c.actor.clone());
    assert_eq!(actor_of(&txns[0]).as_deref(), Some("walaudit-setup"));
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut ops: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (i, txn) in txns[1..].iter().enumerate() {
        let actor = actor_of(txn).expect("every transaction has an actor");
        *seen.entry(actor).or_default() += 1;
        let context: Value = serde_json::from_str(&txn.meta.context.as_ref().unwrap().raw).unwrap();
        assert_eq!(context["request_id"], format!("req-2a-{i}"));
        for change in &txn.changes {
            let key = (change.table.qualified_name(), change.op.code().to_owned());
            *ops.entry(key).or_default() += 1;
        }
    }
    assert_eq!(seen, per_actor);
    let op = |table: &str, op: &str| ops.get(&(table.into(), op.into())).copied().unwrap_or(0);
    assert_eq!(op("public.orders", "c"), n("inserts"));
    assert_eq!(op("public.orders", "u"), n("updates"));
    assert_eq!(op("public.orders", "d"), n("deletes"));
    assert_eq!(op("public.order_items", "c"), n("items"));

    // The same seed on a fresh database repeats the workload exactly; another seed does not.
    let again = shared().await.fresh_db("emit_sample_again").await.unwrap();
    let stats_again = emit(&again, &args).await;
    assert_eq!(stats_again["inserts"], stats["inserts"]);
    assert_eq!(contents(&again).await, contents(&db).await);
    let other = shared().await.fresh_db("emit_sample_other").await.unwrap();
    let mut other_args = args;
    other_args[2] = "43";
    emit(&other, &other_args).await;
    assert_ne!(contents(&other).await, contents(&db).await);
}
