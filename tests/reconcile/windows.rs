//! Count windows between a Postgres source and a Postgres warehouse copy: equal windows, one
//! short by 3 rows, one with 2 extra, an in-flight window not judged; the keys of the
//! mismatching windows; the transfer audit records in the lake.

use walaudit::query::{LakeOptions, LakeQuery};
use walaudit::reconcile::command::{diff_options, open_store};
use walaudit::reconcile::{DiffKind, RunOptions, RunStatus, WindowStatus};

use super::{config, recs, run};
use crate::lake::lake_rows;
use crate::support::{TestDb, shared};

const HOUR: i64 = 3600;

/// 12,000 orders, one every 3 seconds, from 12 h to 2 h before the current hour; the
/// warehouse holds them with other types (numeric scale, varchar, timestamp without time zone
/// holding UTC) and with planted faults.
async fn orders(source: &TestDb, wh: &TestDb) -> i64 {
    let now = chrono::Utc::now().timestamp();
    let hour = now - now.rem_euclid(HOUR);
    let base = hour - 12 * HOUR;
    source
        .execute(&format!(
            "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int, amount numeric(12,2), \
             status text, note text, updated_at timestamptz NOT NULL);
             INSERT INTO orders SELECT g, g % 97, (g % 1000) / 10.0,
                 (ARRAY['new','paid','shipped'])[1 + g % 3], 'note ' || g,
                 to_timestamp({base} + 3 * g)
             FROM generate_series(1, 12000) g;
             INSERT INTO orders SELECT 990000 + g, 1, 1, 'new', 'late', now() - interval '1 minute'
             FROM generate_series(1, 5) g"
        ))
        .await
        .unwrap();
    wh.execute(&format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, amount numeric(14,4), \
         status varchar(20), note text, updated_at timestamp NOT NULL);
         INSERT INTO orders SELECT g, g % 97, (g % 1000) / 10.0,
             (ARRAY['new','paid','shipped'])[1 + g % 3], 'note ' || g,
             to_timestamp({base} + 3 * g) AT TIME ZONE 'UTC'
         FROM generate_series(1, 12000) g;
         DELETE FROM orders WHERE id IN (2500, 2600, 2700);
         INSERT INTO orders VALUES
             (900001, 5, 9.5, 'new', 'extra', to_timestamp({base} + 5 * 3600 + 60) AT TIME ZONE 'UTC'),
             (900002, 5, 9.5, 'new', 'extra', to_timestamp({base} + 5 * 3600 + 90) AT TIME ZONE 'UTC');
         UPDATE orders SET note = 'changed' WHERE id = 8500;
         UPDATE orders SET amount = NULL WHERE id = 8600;"
    ))
    .await
    .unwrap();
    base
}

const JOBS: &str = r#"
reconciliations:
  - name: orders_to_wh
    source: {connection: source, dataset: public.orders}
    target: {connection: wh, dataset: public.orders}
    key: [id]
    time_column: updated_at
    window: 1h
    grace: 10m
  - name: orders_recent
    pipeline: incremental
    source: {connection: source, dataset: public.orders}
    target: {connection: wh, dataset: public.orders}
    key: [id]
    time_column: updated_at
    window: 1h
    lookback: 4h
    grace: 10m
"#;

#[tokio::test(flavor = "multi_thread")]
async fn windows_find_the_short_and_the_extra_window_and_their_keys() {
    let cluster = shared().await;
    let source = cluster.fresh_db("rec_src").await.unwrap();
    let wh = cluster.fresh_db("rec_wh").await.unwrap();
    let base = orders(&source, &wh).await;
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(&source, &wh, lake.path());
    let all = recs(JOBS, &cfg);

    // Historical: every window; two mismatch; the last one is in flight.
    let report = run(&all[0], &cfg, RunOptions::default()).await;
    assert_eq!(report.error, None);
    assert_eq!(report.status, RunStatus::Mismatch);
    let judged: Vec<(i64, u64, u64, WindowStatus)> = report
        .windows
        .iter()
        .map(|w| {
            (
                (w.start.unwrap() - base) / 3600,
                w.source,
                w.target,
                w.status,
            )
        })
        .collect();
    let mut want = vec![(0, 1199, 1199, WindowStatus::Match)];
    for k in 1..10 {
        let (s, t, status) = match k {
            2 => (1200, 1197, WindowStatus::Mismatch),
            5 => (1200, 1202, WindowStatus::Mismatch),
            _ => (1200, 1200, WindowStatus::Match),
        };
        want.push((k, s, t, status));
    }
    want.push((10, 1, 1, WindowStatus::Match));
    // The late rows' window: the current hour (the one before it in an hour's first minute).
    let (last, judged) = judged.split_last().unwrap();
    assert!(matches!(last.0, 11 | 12), "{last:?}");
    assert_eq!((last.1, last.2, last.3), (5, 0, WindowStatus::InFlight));
    assert_eq!(judged, want.as_slice());
    // The keys of the two mismatching windows only (the changed rows are in window 7).
    let diff = report.diff.as_ref().expect("a mismatch runs the diff");
    assert_eq!((diff.missing, diff.extra, diff.changed), (3, 2, 0));
    let ids: Vec<(DiffKind, String)> = diff
        .keys
        .iter()
        .map(|k| (k.kind, k.key["id"].clone().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            (DiffKind::Missing, "2500".to_owned()),
            (DiffKind::Missing, "2600".into()),
            (DiffKind::Missing, "2700".into()),
            (DiffKind::Extra, "900001".into()),
            (DiffKind::Extra, "900002".into()),
        ]
    );

    // `reconcile diff`: every judged window, so the changed values too (not the scale of
    // amount, the varchar status or the timestamp type).
    let all_keys = run(&all[0], &cfg, diff_options(None)).await;
    let diff = all_keys.diff.as_ref().unwrap();
    assert_eq!(
        (diff.missing, diff.extra, diff.changed),
        (3, 2, 2),
        "{diff:?}"
    );
    let changed: Vec<(String, Vec<String>)> = diff
        .keys
        .iter()
        .filter(|k| k.kind == DiffKind::Changed)
        .map(|k| (k.key["id"].clone().unwrap(), k.columns.clone()))
        .collect();
    assert_eq!(
        changed,
        [
            ("8500".to_owned(), vec!["note".to_owned()]),
            ("8600".into(), vec!["amount".into()])
        ]
    );
    // One window only.
    let one = run(&all[0], &cfg, diff_options(Some(base + 5 * HOUR))).await;
    assert_eq!(one.windows.len(), 1);
    assert_eq!(one.diff.as_ref().unwrap().extra, 2);
    assert_eq!(one.diff.as_ref().unwrap().missing, 0);

    // Incremental: the windows of the last 4 hours match; the older faults are not judged.
    let recent = run(&all[1], &cfg, RunOptions::default()).await;
    assert_eq!(recent.status, RunStatus::Match, "{:?}", recent.windows);
    let starts: Vec<i64> = recent
        .windows
        .iter()
        .map(|w| (w.start.unwrap() - base) / 3600)
        .collect();
    assert_eq!(starts[..3], [8, 9, 10]);
    assert_eq!(recent.windows[3].status, WindowStatus::InFlight);
    assert_eq!(starts.len(), 4);
    assert!(recent.diff.is_none());

    // The transfer audit records.
    let store = open_store(&cfg).await.unwrap();
    store.record(&report).await.unwrap();
    store.record(&recent).await.unwrap();
    let q = LakeQuery::open(lake.path().to_str().unwrap(), LakeOptions::default())
        .await
        .unwrap();
    let rows = lake_rows(
        &q,
        &format!(
            "SELECT event_type, status, record_count_before, record_count_after, difference, \
             missing_keys, extra_keys, changed_keys, pipeline, source_system, target_system \
             FROM _walaudit.reconciliations WHERE job_id = '{}' ORDER BY event_type, \
             window_start",
            report.job_id
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 12, "start + 11 judged windows: {rows:?}");
    assert_eq!(rows[0][0], "start");
    let short = &rows[3];
    assert_eq!(
        short[..8],
        ["success", "mismatch", "1200", "1197", "-3", "3", "2", "0"],
        "{rows:?}"
    );
    assert_eq!(short[8], "historical");
    assert_eq!(short[9], "postgres:source/public.orders");
    assert_eq!(short[10], "postgres:wh/public.orders");
    let keys = lake_rows(
        &q,
        "SELECT kind, \"key\" FROM _walaudit.reconciliation_diffs ORDER BY kind, \"key\"",
    )
    .await
    .unwrap();
    assert_eq!(keys.len(), 5);
    assert_eq!(keys[0], ["extra", r#"{"id":"900001"}"#]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_commands_run_diff_and_validate_reconciliations() {
    let cluster = shared().await;
    let source = cluster.fresh_db("rec_cli_src").await.unwrap();
    let wh = cluster.fresh_db("rec_cli_wh").await.unwrap();
    orders(&source, &wh).await;
    let dir = tempfile::tempdir().unwrap();
    let checks = dir.path().join("checks");
    std::fs::create_dir(&checks).unwrap();
    std::fs::write(checks.join("r.yml"), JOBS).unwrap();
    let config = dir.path().join("walaudit.toml");
    std::fs::write(&config, format!("[connections.wh]\nurl = \"{}\"\n", wh.url)).unwrap();
    let lake = dir.path().join("lake");
    let walaudit = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("WALAUDIT_LOG", "warn")
            .output()
            .unwrap()
    };
    let common = [
        "--source",
        &source.url,
        "--checks",
        checks.to_str().unwrap(),
        "--lake",
        lake.to_str().unwrap(),
    ];
    let run = walaudit(
        &[
            &["reconcile"][..],
            &common,
            &["run", "--name", "orders_to_wh"],
        ]
        .concat(),
    );
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("orders_to_wh: mismatch"), "{out}");
    assert!(
        out.contains("keys: 3 missing in the target, 2 extra, 0 changed"),
        "{out}"
    );
    let diff = walaudit(
        &[
            &["reconcile"][..],
            &common,
            &["diff", "--name", "orders_to_wh", "--format", "json"],
        ]
        .concat(),
    );
    let report: serde_json::Value =
        serde_json::from_slice(&diff.stdout).unwrap_or_else(|e| panic!("{e}: {diff:?}"));
    assert_eq!(report["diff"]["changed"], 2, "{report}");
    // `check validate` checks the reconciliations of the same files.
    std::fs::write(checks.join("bad.yml"), "reconciliations:\n  - name: x\n    source: {connection: source, dataset: t}\n    target: {connection: nowhere, dataset: t}\n    key: [id]\n").unwrap();
    let v = walaudit(&[&["check"][..], &common, &["validate"]].concat());
    let err = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.yml:2: reconciliation `x`: connection `nowhere` is not defined"),
        "{err}"
    );
}
