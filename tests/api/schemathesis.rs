//! Schemathesis (PyPI) against `/openapi.json` of a live `walaudit serve` with an admin token:
//! no 5xx and no response that breaks its schema, over every route, with a bounded number of
//! examples per operation.

use std::process::Command;

use walaudit::api::auth::Role;

use super::{config, shop, tokens};

/// The venv `tests/setup.sh` fills (`$WALAUDIT_VENV` overrides).
fn schemathesis() -> std::path::PathBuf {
    let venv = std::env::var("WALAUDIT_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/walaudit-venv", std::env::var("HOME").unwrap()));
    let bin = std::path::Path::new(&venv).join("bin/schemathesis");
    assert!(
        bin.exists(),
        "{} is missing: run tests/setup.sh (it installs schemathesis into {venv})",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let bin = schemathesis();
    let (db, slot) = shop("api_schemathesis").await;
    let lake = tempfile::tempdir().unwrap();
    crate::lake::drain_to_lake(&db, &slot, lake.path(), 1000, true)
        .await
        .unwrap();
    let checks = tempfile::tempdir().unwrap();
    std::fs::write(
        checks.path().join("jobs.yml"),
        "jobs:\n  - name: orders_count\n    dataset: public.orders\n    checks:\n      - type: row_count\n",
    )
    .unwrap();
    let (tokens, entries) = tokens();
    let mut cfg = config(lake.path(), entries);
    cfg.checks.dir = Some(checks.path().to_owned());
    let cancel = tokio_util::sync::CancellationToken::new();
    let (addr, _status, serving) = crate::checks::serve(cfg, cancel.clone()).await;
    let token = tokens[&Role::Admin].clone();
    let url = format!("http://{addr}/openapi.json");
    let home = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["run", &url])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", "15", "--no-color"])
            .env("HOME", home.path())
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    cancel.cancel();
    serving.await.unwrap().unwrap();
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{text}"
    );
    assert!(text.contains("Open API 3.1"), "{text}");
}
