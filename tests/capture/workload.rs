//! Inserts, updates (DEFAULT and FULL identity), a key change, deletes, truncate and TOAST.

use serde_json::json;

use super::{changes_json, drain, prepare};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn known_workload_is_decoded_exactly() {
    let db = shared().await.fresh_db("workload").await.unwrap();
    db.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text, qty int);
         CREATE TABLE audited (id int PRIMARY KEY, name text, qty int);
         ALTER TABLE audited REPLICA IDENTITY FULL;",
    )
    .await
    .unwrap();
    let slot = prepare(&db).await.unwrap();
    // One statement per transaction (a multi-statement simple query is one transaction).
    for sql in [
        "INSERT INTO items VALUES (1, 'apple', 5), (2, 'pear', 7)",
        "UPDATE items SET qty = 6 WHERE id = 1",
        "UPDATE items SET id = 10 WHERE id = 2",
        "DELETE FROM items WHERE id = 1",
        "INSERT INTO audited VALUES (1, 'plum', 1)",
        "UPDATE audited SET qty = 2 WHERE id = 1",
        "DELETE FROM audited WHERE id = 1",
        "TRUNCATE items",
    ] {
        db.execute(sql).await.unwrap();
    }
    let txns = drain(&db, &slot).await.unwrap();
    assert_eq!(txns.len(), 8, "one transaction per statement");
    let got = changes_json(&txns);
    let row = |id: i32, name: &str, qty: i32| json!({"id": id, "name": name, "qty": qty});
    let base = |table: &str, op: &str, row: serde_json::Value| {
        json!({"schema": "public", "table": table, "op": op, "seq": 0, "actor": null,
               "context": null, "changed": null, "unavailable": [], "row": row, "before": null})
    };
    let mut expected = vec![
        base("items", "c", row(1, "apple", 5)),
        base("items", "c", row(2, "pear", 7)),
        base("items", "u", row(1, "apple", 6)),
        base("items", "u", row(10, "pear", 7)),
        base("items", "d", json!({"id": 1, "name": null, "qty": null})),
        base("audited", "c", row(1, "plum", 1)),
        base("audited", "u", row(1, "plum", 2)),
        base("audited", "d", row(1, "plum", 2)),
        base("items", "t", json!(null)),
    ];
    expected[1]["seq"] = json!(1);
    // A key change sends the old key: before holds it, the rest is unknown.
    expected[3]["before"] = json!({"id": 2, "name": null, "qty": null});
    // FULL identity: the whole before image and the changed columns.
    expected[6]["before"] = row(1, "plum", 1);
    expected[6]["changed"] = json!(["qty"]);
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "change {i}");
    }
    // (commit_lsn, seq) is strictly increasing over the whole stream.
    let keys: Vec<_> = txns
        .iter()
        .flat_map(|t| t.changes.iter().map(move |c| (t.meta.commit_lsn, c.seq)))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_toast_is_filled_or_marked_never_silently_null() {
    let db = shared().await.fresh_db("toast").await.unwrap();
    db.execute(
        "CREATE TABLE docs (id int PRIMARY KEY, body text, n int);
         ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;
         CREATE TABLE docs_full (id int PRIMARY KEY, body text, n int);
         ALTER TABLE docs_full ALTER COLUMN body SET STORAGE EXTERNAL;
         ALTER TABLE docs_full REPLICA IDENTITY FULL;",
    )
    .await
    .unwrap();
    // Incompressible-ish text well over the TOAST threshold (2 kB), stored out of line.
    let body: String = (0..6000)
        .map(|i| char::from(b'a' + ((i * 7 + i / 13) % 26) as u8))
        .collect();
    db.execute(&format!(
        "INSERT INTO docs VALUES (1, '{body}', 0); INSERT INTO docs_full VALUES (1, '{body}', 0);"
    ))
    .await
    .unwrap();
    let slot = prepare(&db).await.unwrap();
    db.execute("UPDATE docs SET n = 1 WHERE id = 1; UPDATE docs_full SET n = 1 WHERE id = 1;")
        .await
        .unwrap();
    let got = changes_json(&drain(&db, &slot).await.unwrap());
    assert_eq!(got.len(), 2);
    // DEFAULT identity: the body was not sent; null and listed as unavailable.
    assert_eq!(got[0]["row"], json!({"id": 1, "body": null, "n": 1}));
    assert_eq!(got[0]["unavailable"], json!(["body"]));
    // FULL identity: filled from the before image, not changed, nothing unavailable.
    assert_eq!(got[1]["row"]["body"], json!(body));
    assert_eq!(got[1]["unavailable"], json!([]));
    assert_eq!(got[1]["changed"], json!(["n"]));
}
