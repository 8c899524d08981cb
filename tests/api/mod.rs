//! The HTTP API against a lake captured from a real Postgres workload with actors: the
//! seed's `GET /audit_events` examples with exact events and `meta`, every 400 case, row
//! histories, exports (here); the access matrix and job management (`access`); cursor paging
//! while `run` keeps appending (`cursor`); TLS (`tls`); Schemathesis over `/openapi.json`
//! (`schemathesis`).

mod access;
mod cursor;
mod schemathesis;
mod tls;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use walaudit::api::auth::{Role, new_token};
use walaudit::api::config::TokenConfig;
use walaudit::config::Config;

use crate::support::{TestDb, shared};

/// A token of each role: `(role, token)`, and their config entries.
pub fn tokens() -> (BTreeMap<Role, String>, Vec<TokenConfig>) {
    let mut tokens = BTreeMap::new();
    let mut entries = Vec::new();
    for role in [Role::Viewer, Role::Auditor, Role::Operator, Role::Admin] {
        let (token, sha256) = new_token().unwrap();
        tokens.insert(role, token);
        entries.push(TokenConfig {
            name: format!("{}-token", role.as_str()),
            role,
            sha256,
        });
    }
    (tokens, entries)
}

/// The shop workload, each transaction with its audit context:
/// * tx1 (actor 123, company 7): insert orders 1, 2, 3
/// * tx2 (actor alice, company 8): update order 1 to paid; insert line_items (1,1), (1,2)
/// * tx3 (actor 123, company 7): delete order 2
/// * tx4 (no context): update order 3 to shipped
pub async fn shop(name: &str) -> (TestDb, String) {
    let db = shared().await.fresh_db(name).await.unwrap();
    db.execute(
        "CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, amount numeric(10,2));
         CREATE TABLE line_items (order_id int, line int, sku text, PRIMARY KEY (order_id, line));",
    )
    .await
    .unwrap();
    let slot = crate::capture::prepare(&db).await.unwrap();
    for sql in [
        "BEGIN; SELECT pg_logical_emit_message(true, 'walaudit', '{\"actor\":\"123\",\"company_id\":7}');
         INSERT INTO orders VALUES (1, 'new', 10.50), (2, 'new', 20.00), (3, 'new', 30.25); COMMIT;",
        "BEGIN; SELECT pg_logical_emit_message(true, 'walaudit', '{\"actor\":\"alice\",\"company_id\":8}');
         UPDATE orders SET status = 'paid' WHERE id = 1;
         INSERT INTO line_items VALUES (1, 1, 'sku-a'), (1, 2, 'sku-b'); COMMIT;",
        "BEGIN; SELECT pg_logical_emit_message(true, 'walaudit', '{\"actor\":\"123\",\"company_id\":7}');
         DELETE FROM orders WHERE id = 2; COMMIT;",
        "UPDATE orders SET status = 'shipped' WHERE id = 3;",
    ] {
        db.execute(sql).await.unwrap();
    }
    (db, slot)
}

/// A config over `lake` with the tokens.
pub fn config(lake: &Path, tokens: Vec<TokenConfig>) -> Config {
    let mut c = crate::checks::config(None, lake);
    c.api.tokens = tokens;
    c.api.public_metrics = false;
    c.api.refresh_interval = std::time::Duration::from_millis(100);
    c
}

/// GET `path` with `token`; the status and the body (JSON when it parses, else a string).
pub async fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    request(reqwest::Method::GET, addr, path, token, None).await
}

pub async fn request(
    method: reqwest::Method,
    addr: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// `(event_type, table, resource_id)` of each event of a page.
fn summary(page: &Value) -> Vec<(String, String, String)> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_owned(),
                e["event_resource_type"].as_str().unwrap().to_owned(),
                e["resource_id"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

fn owned(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_examples_filters_and_every_bad_parameter() {
    let (db, slot) = shop("api_seed").await;
    let lake = tempfile::tempdir().unwrap();
    crate::lake::drain_to_lake(&db, &slot, lake.path(), 1000, true)
        .await
        .unwrap();
    let (tokens, entries) = tokens();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, _status, serving) =
        crate::checks::serve(config(lake.path(), entries), cancel.clone()).await;
    let addr = addr.to_string();
    let auditor = Some(tokens[&Role::Auditor].as_str());
    let viewer = Some(tokens[&Role::Viewer].as_str());

    // GET /audit_events: every event, newest first (commit, LSN, then order in the transaction).
    let (code, page) = get(&addr, "/audit_events", auditor).await;
    assert_eq!(code, 200, "{page}");
    let all = owned(&[
        ("update", "public.orders", "3"),
        ("delete", "public.orders", "2"),
        ("insert", "public.line_items", "1,2"),
        ("insert", "public.line_items", "1,1"),
        ("update", "public.orders", "1"),
        ("insert", "public.orders", "3"),
        ("insert", "public.orders", "2"),
        ("insert", "public.orders", "1"),
    ]);
    assert_eq!(summary(&page), all);
    assert_eq!(
        page["meta"],
        serde_json::json!({"current_page": 1, "total_pages": 1, "per_page": 10,
                           "total_count": 8, "next_cursor": null})
    );
    let first = &page["data"][7];
    assert_eq!(first["user_id"], "123");
    assert_eq!(first["company_id"], 7);
    assert_eq!(first["context"]["actor"], "123");
    assert_eq!(
        first["after"],
        serde_json::json!({"id": 1, "status": "new", "amount": "10.50"})
    );
    assert_eq!(first["changes"]["status"], serde_json::json!([null, "new"]));
    assert!(first["id"].as_str().unwrap().starts_with("public.orders:"));
    assert!(first["lsn"].as_str().unwrap().contains('/'));
    assert!(first["committed_at"].as_str().unwrap().ends_with('Z'));
    let now = chrono::Utc::now().timestamp();
    assert!((first["timestamp"].as_i64().unwrap() - now).abs() < 600);
    assert_eq!(page["data"][0]["user_id"], Value::Null);
    assert_eq!(page["data"][0]["context"], serde_json::json!({}));

    // ?page=2&per_page=20: past the end, an empty page with the same count.
    let (code, page) = get(&addr, "/audit_events?page=2&per_page=20", auditor).await;
    assert_eq!(code, 200);
    assert_eq!(page["data"], serde_json::json!([]));
    assert_eq!(
        page["meta"],
        serde_json::json!({"current_page": 2, "total_pages": 1, "per_page": 20,
                           "total_count": 8, "next_cursor": null})
    );
    let (_, page) = get(&addr, "/audit_events?page=2&per_page=3", auditor).await;
    assert_eq!(summary(&page), all[3..6].to_vec());
    assert_eq!(page["meta"]["total_pages"], 3);
    assert!(page["meta"]["next_cursor"].is_string());

    // ?user_id=123: that actor's events.
    let (_, page) = get(&addr, "/audit_events?user_id=123", viewer).await;
    assert_eq!(
        summary(&page),
        owned(&[
            ("delete", "public.orders", "2"),
            ("insert", "public.orders", "3"),
            ("insert", "public.orders", "2"),
            ("insert", "public.orders", "1"),
        ])
    );
    assert_eq!(page["meta"]["total_count"], 4);
    // A viewer sees no row values.
    for e in page["data"].as_array().unwrap() {
        for field in ["before", "after", "changes"] {
            assert!(e.get(field).is_none(), "{field} in {e}");
        }
    }

    // ?event_type=…&timestamp_from=…&timestamp_to=…
    let path = format!(
        "/audit_events?event_type=update&timestamp_from={}&timestamp_to={}",
        now - 3600,
        now + 3600
    );
    let (_, page) = get(&addr, &path, auditor).await;
    assert_eq!(
        summary(&page),
        owned(&[
            ("update", "public.orders", "3"),
            ("update", "public.orders", "1")
        ])
    );
    // An update without a before image: the old values are unknown.
    assert_eq!(page["data"][1]["changes"], Value::Null);
    assert_eq!(page["data"][1]["after"]["status"], "paid");
    let (_, page) = get(
        &addr,
        "/audit_events?timestamp_from=1&timestamp_to=2",
        auditor,
    )
    .await;
    assert_eq!(page["meta"]["total_count"], 0);

    // The other filters.
    let (_, page) = get(&addr, "/audit_events?company_id=8", auditor).await;
    assert_eq!(summary(&page), all[2..5].to_vec());
    let (_, page) = get(
        &addr,
        "/audit_events?event_resource_type=line_items",
        auditor,
    )
    .await;
    assert_eq!(summary(&page), all[2..4].to_vec());
    let (_, page) = get(
        &addr,
        "/audit_events?event_resource_type=public.line_items&resource_id=1,2",
        auditor,
    )
    .await;
    assert_eq!(summary(&page), all[2..3].to_vec());
    let (_, page) = get(&addr, "/audit_events?resource_id=1", auditor).await;
    assert_eq!(
        summary(&page),
        owned(&[
            ("update", "public.orders", "1"),
            ("insert", "public.orders", "1")
        ])
    );
    let (_, page) = get(&addr, "/audit_events?resource_id=abc", auditor).await;
    assert_eq!(page["meta"]["total_count"], 0);

    // Every 400 of the contract names its parameter.
    for (query, parameter) in [
        ("page=0", "page"),
        ("page=two", "page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("timestamp_from=yesterday", "timestamp_from"),
        ("timestamp_from=10&timestamp_to=x", "timestamp_to"),
        ("timestamp_to=10", "timestamp_to"),
        ("timestamp_from=10&timestamp_to=9", "timestamp_to"),
        ("event_type=upsert", "event_type"),
        ("event_resource_type=public.nope", "event_resource_type"),
        ("cursor=not-a-cursor", "cursor"),
        ("colour=red", "colour"),
    ] {
        let (code, body) = get(&addr, &format!("/audit_events?{query}"), viewer).await;
        assert_eq!(code, 400, "{query}: {body}");
        assert_eq!(body["error"]["parameter"], parameter, "{query}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }

    // A row's history, oldest first, with the old values filled in from the row before.
    let (code, h) = get(&addr, "/tables/public.orders/history?key=1", auditor).await;
    assert_eq!(code, 200, "{h}");
    let kinds: Vec<&str> = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["insert", "update"]);
    assert_eq!(
        h["data"][1]["changes"],
        serde_json::json!({"status": ["new", "paid"]})
    );
    assert_eq!(h["data"][1]["user_id"], "alice");
    let (_, h) = get(&addr, "/tables/orders/history?key=2", auditor).await;
    assert_eq!(
        h["data"][1]["changes"],
        serde_json::json!({"id": [2, null], "status": ["new", null], "amount": ["20.00", null]})
    );
    let (_, h) = get(&addr, "/tables/line_items/history?key=1,2", viewer).await;
    assert_eq!(h["data"].as_array().unwrap().len(), 1);
    assert!(h["data"][0].get("after").is_none());
    for (path, code) in [
        ("/tables/public.orders/history", 400),
        ("/tables/public.orders/history?key=1,2", 400),
        ("/tables/public.line_items/history?key=1", 400),
        ("/tables/public.nope/history?key=1", 404),
    ] {
        assert_eq!(get(&addr, path, viewer).await.0, code, "{path}");
    }
    let (_, tables) = get(&addr, "/tables", viewer).await;
    assert_eq!(tables[0]["name"], "public.line_items");
    assert_eq!(
        tables[0]["key_columns"],
        serde_json::json!(["order_id", "line"])
    );

    // Exports: every matching event, NDJSON or CSV.
    let client = reqwest::Client::new();
    let ndjson = client
        .get(format!("http://{addr}/audit_events?user_id=123"))
        .bearer_auth(tokens[&Role::Auditor].as_str())
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = ndjson
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines
            .iter()
            .all(|e| e["user_id"] == "123" && e.get("after").is_some())
    );
    let csv = client
        .get(format!("http://{addr}/audit_events"))
        .bearer_auth(tokens[&Role::Viewer].as_str())
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 9, "{csv}");
    assert!(rows[0].starts_with("id,timestamp,committed_at,user_id"));
    assert!(!rows[0].contains("after"));

    cancel.cancel();
    serving.await.unwrap().unwrap();
}
