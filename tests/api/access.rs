//! Every route × no token and each role → the expected 401/403 or success; job management
//! with versions authored by the token's name; file jobs read-only (409), bad definitions 422.

use reqwest::Method;
use serde_json::{Value, json};
use walaudit::api::auth::Role;

use super::{config, get, request, shop, tokens};

const FILE_JOB: &str = "jobs:\n  - name: orders_count\n    dataset: public.orders\n    \
                        checks:\n      - type: row_count\n        must_be_greater_than: 0\n";

#[tokio::test(flavor = "multi_thread")]
async fn every_route_by_role_and_job_management() {
    let (db, slot) = shop("api_access").await;
    let lake = tempfile::tempdir().unwrap();
    crate::lake::drain_to_lake(&db, &slot, lake.path(), 1000, true)
        .await
        .unwrap();
    let checks = tempfile::tempdir().unwrap();
    std::fs::write(checks.path().join("jobs.yml"), FILE_JOB).unwrap();
    let (tokens, entries) = tokens();
    let mut cfg = config(lake.path(), entries);
    cfg.checks.dir = Some(checks.path().to_owned());
    let cancel = tokio_util::sync::CancellationToken::new();
    let restart = cfg.clone();
    let (addr, _status, serving) = crate::checks::serve(cfg, cancel.clone()).await;
    let addr = addr.to_string();

    let api_job = |name: &str| {
        json!({"name": name, "connection": "lake", "dataset": "public.orders",
               "checks": [{"type": "row_count", "must_be_greater_than": 0}]})
    };
    // (method, path, body, least role).
    let routes: Vec<(Method, String, Option<Value>, Role)> = vec![
        (Method::GET, "/audit_events".into(), None, Role::Viewer),
        (Method::GET, "/tables".into(), None, Role::Viewer),
        (
            Method::GET,
            "/tables/public.orders/history?key=1".into(),
            None,
            Role::Viewer,
        ),
        (Method::GET, "/openapi.json".into(), None, Role::Viewer),
        (Method::GET, "/metrics".into(), None, Role::Viewer),
        (Method::GET, "/readyz".into(), None, Role::Viewer),
        (Method::GET, "/jobs".into(), None, Role::Viewer),
        (Method::GET, "/jobs/orders_count".into(), None, Role::Viewer),
        (
            Method::GET,
            "/jobs/orders_count/runs".into(),
            None,
            Role::Viewer,
        ),
        (Method::GET, "/alerts".into(), None, Role::Viewer),
        (
            Method::GET,
            "/gates/orders_count".into(),
            None,
            Role::Viewer,
        ),
        (Method::GET, "/reconciliations".into(), None, Role::Viewer),
        (
            Method::POST,
            "/jobs/orders_count/run".into(),
            None,
            Role::Operator,
        ),
        (
            Method::POST,
            "/jobs".into(),
            Some(api_job("api_a")),
            Role::Admin,
        ),
        (
            Method::PUT,
            "/jobs/api_b".into(),
            Some(api_job("api_b")),
            Role::Admin,
        ),
        (Method::DELETE, "/jobs/api_b".into(), None, Role::Admin),
    ];
    for (method, path, body, least) in &routes {
        let (code, reply) = request(method.clone(), &addr, path, None, body.clone()).await;
        assert_eq!(code, 401, "{method} {path} without a token: {reply}");
        for role in [Role::Viewer, Role::Auditor, Role::Operator, Role::Admin] {
            let token = Some(tokens[&role].as_str());
            let (code, reply) = request(method.clone(), &addr, path, token, body.clone()).await;
            if role < *least {
                assert_eq!(code, 403, "{method} {path} as {role:?}: {reply}");
            } else {
                assert!(
                    (200..300).contains(&code) || (path.starts_with("/gates") && code == 423),
                    "{method} {path} as {role:?}: {code} {reply}"
                );
            }
        }
    }
    let (code, _) = get(&addr, "/healthz", None).await;
    assert_eq!(code, 200);
    // Row values only from auditor up.
    let (_, viewer_page) = get(&addr, "/audit_events", Some(&tokens[&Role::Viewer])).await;
    let (_, auditor_page) = get(&addr, "/audit_events", Some(&tokens[&Role::Auditor])).await;
    assert!(viewer_page["data"][0].get("after").is_none());
    assert!(auditor_page["data"][0].get("after").is_some());

    let admin = Some(tokens[&Role::Admin].as_str());
    // The API job is scheduled and listed; the file job is read-only.
    let (_, job) = get(&addr, "/jobs/api_a", admin).await;
    assert_eq!(
        (job["origin"].clone(), job["read_only"].clone()),
        (json!("api"), json!(false))
    );
    assert_eq!(job["author"], "admin-token");
    let (code, body) = request(
        Method::PUT,
        &addr,
        "/jobs/orders_count",
        admin,
        Some(api_job("orders_count")),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    let (code, _) = request(Method::DELETE, &addr, "/jobs/orders_count", admin, None).await;
    assert_eq!(code, 409);
    let (code, _) = request(Method::POST, &addr, "/jobs", admin, Some(api_job("api_a"))).await;
    assert_eq!(code, 409);
    let mut bad = api_job("api_c");
    bad["checks"][0]["type"] = json!("no_such_check");
    let (code, body) = request(Method::POST, &addr, "/jobs", admin, Some(bad)).await;
    assert_eq!(code, 422, "{body}");
    assert!(body["error"]["details"][0]["line"].is_number(), "{body}");
    let (code, _) = request(Method::DELETE, &addr, "/jobs/nope", admin, None).await;
    assert_eq!(code, 404);
    // Each change is a version in _walaudit/jobs with the token's name as author.
    let mut changed = api_job("api_a");
    changed["description"] = json!("changed");
    let (code, _) = request(Method::PUT, &addr, "/jobs/api_a", admin, Some(changed)).await;
    assert_eq!(code, 200);
    let q = walaudit::query::LakeQuery::open(
        lake.path().to_str().unwrap(),
        walaudit::query::LakeOptions::default(),
    )
    .await
    .unwrap();
    let rows = crate::lake::lake_rows(
        &q,
        "SELECT name, version, author, deleted FROM _walaudit.jobs WHERE origin = 'api' \
         ORDER BY name, version",
    )
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ["api_a", "1", "admin-token", "false"],
            ["api_a", "2", "admin-token", "false"],
            ["api_b", "1", "admin-token", "false"],
            ["api_b", "2", "admin-token", "true"],
        ]
        .map(|r| r.map(str::to_owned).to_vec())
    );
    // The gate of a job that has not run is closed; after a run it opens.
    let (code, _) = request(Method::POST, &addr, "/jobs/api_a/run", admin, None).await;
    assert_eq!(code, 202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (code, gate) = get(&addr, "/gates/api_a", admin).await;
        if code == 200 {
            assert_eq!(gate["open"], true);
            break;
        }
        assert_eq!(code, 423, "{gate}");
        assert!(
            std::time::Instant::now() < deadline,
            "the gate never opened: {gate}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    cancel.cancel();
    serving.await.unwrap().unwrap();

    // A restarted server schedules the stored API jobs again (and not the deleted one).
    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, _status, serving) = crate::checks::serve(restart, cancel.clone()).await;
    let addr = addr.to_string();
    let (code, job) = get(&addr, "/jobs/api_a", admin).await;
    assert_eq!((code, job["version"].clone()), (200, json!(2)), "{job}");
    assert_eq!(job["definition"]["description"], "changed");
    assert_eq!(get(&addr, "/jobs/api_b", admin).await.0, 404);
    cancel.cancel();
    serving.await.unwrap().unwrap();
}
