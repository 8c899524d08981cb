//! The checksum bisection with text, UUID and compound keys, across two Postgres databases
//! and between Postgres and the lake (whose SQL normalises the same values to the same hashes),
//! and on a 1,000,000-row table against reladiff's answer.

use std::collections::BTreeSet;
use std::process::Command;

use walaudit::reconcile::command::diff_options;
use walaudit::reconcile::{DiffKind, RunStatus};

use super::{config, recs, run};
use crate::lake::drain_to_lake;
use crate::support::shared;

/// `(kind, key as key=value pairs, columns)` of a diff, sorted.
fn found(report: &walaudit::reconcile::RunReport) -> Vec<(DiffKind, String, Vec<String>)> {
    assert_eq!(report.error, None, "{report:?}");
    report
        .diff
        .as_ref()
        .unwrap()
        .keys
        .iter()
        .map(|k| {
            let key: Vec<String> = k
                .key
                .iter()
                .map(|(c, v)| format!("{c}={}", v.as_deref().unwrap_or("NULL")))
                .collect();
            (k.kind, key.join(","), k.columns.clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn compound_text_and_uuid_keys_find_exactly_the_planted_differences() {
    let cluster = shared().await;
    let source = cluster.fresh_db("rec_keys_src").await.unwrap();
    let wh = cluster.fresh_db("rec_keys_wh").await.unwrap();
    let items = "INSERT INTO items SELECT 'region-' || (g % 7), 'sku-' || g, g % 13, (g % 500) / 4.0 \
                 FROM generate_series(1, 50000) g";
    let docs = "INSERT INTO docs SELECT md5('doc' || g)::uuid, 'body ' || g, g % 2 = 0, \
                DATE '2026-01-01' + (g % 300), TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * interval '1.5 seconds' \
                FROM generate_series(1, 30000) g";
    source
        .execute(&format!(
            "CREATE TABLE items (region text, sku text, qty int, price numeric(10,2), \
             PRIMARY KEY (region, sku)); {items};
             CREATE TABLE docs (id uuid PRIMARY KEY, body text, flag bool, day date, at timestamptz); {docs}"
        ))
        .await
        .unwrap();
    wh.execute(&format!(
        "CREATE TABLE items (region varchar(40), sku varchar(40), qty bigint, price numeric(12,4), \
         PRIMARY KEY (region, sku)); {items};
         DELETE FROM items WHERE region = 'region-6' AND sku = 'sku-1000';
         INSERT INTO items VALUES ('region-9', 'sku-new', 1, 1);
         UPDATE items SET qty = qty + 1 WHERE region = 'region-1' AND sku = 'sku-20000';
         CREATE TABLE docs (id uuid PRIMARY KEY, body text, flag bool, day date, at timestamp(3)); \
         {};
         UPDATE docs SET flag = NOT flag WHERE id = md5('doc7')::uuid;
         UPDATE docs SET day = NULL WHERE id = md5('doc8')::uuid;
         INSERT INTO docs VALUES (md5('extra')::uuid, 'x', true, NULL, NULL);",
        docs.replace("TIMESTAMPTZ '2026-01-01 00:00:00+00'", "TIMESTAMP '2026-01-01 00:00:00'")
    ))
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(&source, &wh, lake.path());
    let all = recs(
        r#"
reconciliations:
  - name: items
    source: {connection: source, dataset: public.items}
    target: {connection: wh, dataset: public.items}
    key: [region, sku]
  - name: docs
    source: {connection: source, dataset: public.docs}
    target: {connection: wh, dataset: public.docs}
    key: [id]
"#,
        &cfg,
    );
    let items = run(&all[0], &cfg, diff_options(None)).await;
    assert_eq!(
        found(&items),
        [
            (
                DiffKind::Changed,
                "region=region-1,sku=sku-20000".to_owned(),
                vec!["qty".to_owned()]
            ),
            (
                DiffKind::Missing,
                "region=region-6,sku=sku-1000".into(),
                vec![]
            ),
            (
                DiffKind::Extra,
                "region=region-9,sku=sku-new".into(),
                vec![]
            ),
        ]
    );
    // Equal counts (one missing, one extra): only the diff sees the differences.
    assert_eq!(
        (items.windows[0].source, items.windows[0].target),
        (50000, 50000)
    );
    assert_eq!(items.status, RunStatus::Mismatch);
    let docs = run(&all[1], &cfg, diff_options(None)).await;
    // The key text Postgres gives `md5(name)::uuid`.
    let mut ids = Vec::new();
    for name in ["doc7", "doc8", "extra"] {
        let sql = format!("SELECT 'id=' || md5('{name}')::uuid::text");
        ids.push(source.scalar::<String>(&sql).await.unwrap());
    }
    let mut want = vec![
        (DiffKind::Changed, ids[0].clone(), vec!["flag".to_owned()]),
        (DiffKind::Changed, ids[1].clone(), vec!["day".to_owned()]),
        (DiffKind::Extra, ids[2].clone(), vec![]),
    ];
    want.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    assert_eq!(found(&docs), want);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lake_copy_of_a_table_equals_its_source_value_for_value() {
    let db = shared().await.fresh_db("rec_lake").await.unwrap();
    db.execute(
        "CREATE TABLE docs (id uuid PRIMARY KEY, n int, amount numeric(12,3), body text, \
         flag bool, day date, at timestamptz, local timestamp)",
    )
    .await
    .unwrap();
    let slot = crate::capture::prepare(&db).await.unwrap();
    db.execute(
        "INSERT INTO docs SELECT md5('d' || g)::uuid, g, g / 8.0, CASE WHEN g % 10 = 0 THEN NULL \
         ELSE 'body ' || g END, g % 3 = 0, DATE '2026-01-01' + g % 90, \
         TIMESTAMPTZ '2026-01-01 00:00:00.123456+00' + g * interval '1 minute', \
         TIMESTAMP '2026-01-01 00:00:00.5' + g * interval '1 second' \
         FROM generate_series(1, 5000) g",
    )
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    drain_to_lake(&db, &slot, lake.path(), 1000, true)
        .await
        .unwrap();
    let cfg = config(&db, &db, lake.path());
    let all = recs(
        r#"
reconciliations:
  - name: docs_in_lake
    source: {connection: source, dataset: public.docs}
    target: {connection: lake, dataset: current.public.docs}
    key: [id]
    columns: [n, amount, body, flag, day, at, local]
"#,
        &cfg,
    );
    let report = run(&all[0], &cfg, diff_options(None)).await;
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(report.status, RunStatus::Match, "{:?}", report.diff);
    assert_eq!(report.target_system, "lake:lake/current.public.docs");
    // A change after the lake's copy: the lake is one update behind.
    db.execute("UPDATE docs SET body = 'later' WHERE n = 42")
        .await
        .unwrap();
    let behind = run(&all[0], &cfg, diff_options(None)).await;
    let keys = found(&behind);
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].0, DiffKind::Changed);
    assert_eq!(keys[0].2, ["body"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_rows_with_scattered_differences_agree_with_reladiff() {
    let Some(reladiff) = reladiff() else {
        panic!("reladiff is missing: run tests/setup.sh (it installs it into a virtualenv)");
    };
    let cluster = shared().await;
    let source = cluster.fresh_db("rec_big_src").await.unwrap();
    let wh = cluster.fresh_db("rec_big_wh").await.unwrap();
    let fill = "INSERT INTO big SELECT g, g % 1000, 'v' || (g * 7 % 100003) FROM generate_series(1, 1000000) g";
    source
        .execute(&format!(
            "CREATE TABLE big (id bigint PRIMARY KEY, a int, b text); {fill}"
        ))
        .await
        .unwrap();
    wh.execute(&format!(
        "CREATE TABLE big (id bigint PRIMARY KEY, a int, b text); {fill};
         DELETE FROM big WHERE id % 99991 = 17;
         UPDATE big SET b = b || '!' WHERE id % 123457 = 5;
         INSERT INTO big SELECT 2000000 + g, 0, 'new' FROM generate_series(1, 4) g;"
    ))
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(&source, &wh, lake.path());
    let all = recs(
        r#"
reconciliations:
  - name: big
    source: {connection: source, dataset: public.big}
    target: {connection: wh, dataset: public.big}
    key: [id]
"#,
        &cfg,
    );
    let report = run(&all[0], &cfg, diff_options(None)).await;
    let ours: BTreeSet<(String, String)> = found(&report)
        .into_iter()
        .map(|(kind, key, _)| {
            let id = key.trim_start_matches("id=").to_owned();
            let sign = match kind {
                DiffKind::Missing => "-",
                DiffKind::Extra => "+",
                DiffKind::Changed => "~",
            };
            (id, sign.to_owned())
        })
        .collect();
    let d = report.diff.as_ref().unwrap();
    let deleted = (1..=1_000_000u64).filter(|i| i % 99991 == 17).count() as u64;
    let changed = (1..=1_000_000u64)
        .filter(|i| i % 123457 == 5 && i % 99991 != 17)
        .count() as u64;
    assert_eq!(
        (d.missing, d.extra, d.changed),
        (deleted, 4, changed),
        "{d:?}"
    );
    // reladiff prints `- (id, a, b)` for rows only in the first table and `+` for rows only in
    // the second; a changed row is a - and a + of the same key.
    let url = |u: &str| u.replacen("postgres://", "postgresql://", 1);
    let out = Command::new(&reladiff)
        .args([&url(&source.url), "big", &url(&wh.url), "big"])
        .args(["-k", "id", "-c", "a", "-c", "b"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut theirs: std::collections::BTreeMap<String, BTreeSet<char>> = Default::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        let Some(sign) = line.chars().next().filter(|c| *c == '-' || *c == '+') else {
            continue;
        };
        let id = line[1..]
            .trim()
            .trim_start_matches('(')
            .split(',')
            .next()
            .unwrap()
            .trim()
            .trim_matches('\'')
            .to_owned();
        theirs.entry(id).or_default().insert(sign);
    }
    let theirs: BTreeSet<(String, String)> = theirs
        .into_iter()
        .map(|(id, signs)| {
            let kind = match (signs.contains(&'-'), signs.contains(&'+')) {
                (true, true) => "~",
                (true, false) => "-",
                _ => "+",
            };
            (id, kind.to_owned())
        })
        .collect();
    assert_eq!(ours, theirs);
}

/// The reladiff of the virtualenv tests/setup.sh makes (`$WALAUDIT_VENV`, else
/// `~/.cache/walaudit-venv`).
fn reladiff() -> Option<std::path::PathBuf> {
    let venv = match std::env::var_os("WALAUDIT_VENV") {
        Some(v) => std::path::PathBuf::from(v),
        None => std::path::Path::new(&std::env::var_os("HOME")?).join(".cache/walaudit-venv"),
    };
    let p = venv.join("bin/reladiff");
    p.is_file().then_some(p)
}
