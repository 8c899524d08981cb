//! Every check type on a real Postgres (connection `source`), the merged scan, timeouts, gates.

use std::time::{Duration, Instant};

use walaudit::checks::Status::{self, Blocked, Fail, Pass, Timeout, Warn};

use super::{config, expect, jobs, run};
use crate::support::{TestDb, shared};

/// 100 orders and 60 customers whose defects are counted in the comments.
async fn shop(db: &TestDb) {
    db.execute(
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT g FROM generate_series(1, 60) g;
         CREATE TABLE orders (
             id int PRIMARY KEY, customer_id int, status text, amount numeric(10,2),
             email text, created_at timestamptz);
         INSERT INTO orders
         SELECT g,
                CASE WHEN g <= 5 THEN NULL WHEN g >= 98 THEN 50 ELSE g END,  -- 5 missing; 50 ×4
                CASE WHEN g IN (9, 10) THEN 'lost'                             -- 2 invalid
                     ELSE (ARRAY['new','paid','shipped'])[g % 3 + 1] END,
                g,                                                             -- 91..100 > 90
                CASE WHEN g IN (6, 7) THEN '' WHEN g = 8 THEN 'n/a' ELSE 'u' || g || '@x.org' END,
                CASE WHEN g = 100 THEN now() + interval '1 day'                -- 1 in the future
                     ELSE now() - g * interval '1 hour' - interval '1 minute' END
         FROM generate_series(1, 100) g;
         ANALYZE orders;",
    )
    .await
    .unwrap();
}

const TYPES: &str = r#"
jobs:
  - name: orders
    connection: source
    dataset: public.orders
    checks:
      - type: row_count
        must_be: 100
      - type: row_count
        name: paid_rows
        filter: status = 'paid'
        must_be_greater_than: 0
        warn:
          must_be_greater_than: 1000
      - type: row_count
        name: too_few
        must_be_greater_than: 1000
      - type: missing
        column: customer_id
      - type: missing
        name: missing_pct
        column: customer_id
        metric: percent
        must_be_less_than: 10
      - type: missing
        name: email_missing
        column: email
        missing_values: ["", "n/a"]
        must_be_less_than_or_equal: 3
      - type: invalid
        column: status
        valid_values: [new, paid, shipped]
      - type: invalid
        name: amount_range
        column: amount
        valid_min: 1
        valid_max: 90
        must_be_between: [0, 20]
      - type: invalid
        name: email_format
        column: email
        valid_regex: '^[^@]+@[^@]+$'
      - type: invalid
        name: email_length
        column: email
        valid_min_length: 3
      - type: invalid
        name: future
        column: created_at
        not_in_future: true
      - type: freshness
        column: created_at
        filter: id < 100
        must_be_less_than: 2h
      - type: freshness
        name: stale
        column: created_at
        filter: id < 100
        must_be_less_than: 30m
      - type: duplicate
        columns: [customer_id]
      - type: duplicate
        columns: [id]
      - type: aggregate
        group_by: [customer_id]
        expression: count(*)
        filter: customer_id IS NOT NULL
        each:
          must_be_less_than_or_equal: 2
      - type: reference
        columns: [customer_id]
        references: {dataset: public.customers, columns: [id]}
      - type: reference
        name: known_customers
        columns: [customer_id]
        filter: customer_id <= 60
        references: {dataset: public.customers, columns: [id]}
      - type: metric
        query: SELECT sum(amount) FROM public.orders
        must_be: 5050
      - type: compare
        query: SELECT count(*) FROM public.orders
        against: SELECT count(*) FROM public.customers
        as: ratio
        must_be_between: [1.5, 2]
      - type: compare
        name: diff
        query: SELECT count(*) FROM public.orders
        against: SELECT count(*) FROM public.customers
        as: difference
        must_be: 0
      - type: failed_rows
        query: SELECT * FROM public.orders WHERE amount > 95
        samples: 2
      - type: schema
        required: {id: integer, amount: numeric, created_at: timestamptz}
      - type: schema
        name: strict_schema
        required: {id: bigint}
        forbidden: [email]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_check_type_measures_its_value_on_postgres() {
    let db = shared().await.fresh_db("checks_types").await.unwrap();
    shop(&db).await;
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let out = run(&jobs(TYPES, &cfg), &cfg).await;
    let o = &out[0];
    expect(
        o,
        &[
            ("row_count", Pass, Some(100.0)),
            ("paid_rows", Warn, Some(33.0)),
            ("too_few", Fail, Some(100.0)),
            ("missing(customer_id)", Fail, Some(5.0)),
            ("missing_pct", Pass, Some(5.0)),
            ("email_missing", Pass, Some(3.0)),
            ("invalid(status)", Fail, Some(2.0)),
            ("amount_range", Pass, Some(10.0)),
            ("email_format", Fail, Some(3.0)),
            ("email_length", Fail, Some(2.0)),
            ("future", Fail, Some(1.0)),
            ("duplicate(customer_id)", Fail, Some(4.0)),
            ("duplicate(id)", Pass, Some(0.0)),
            ("aggregate(count(*) by customer_id)", Fail, Some(1.0)),
            ("reference(customer_id)", Fail, Some(37.0)),
            ("known_customers", Pass, Some(0.0)),
            ("metric", Pass, Some(5050.0)),
            ("compare", Pass, Some(1.667)),
            ("diff", Fail, Some(40.0)),
            ("failed_rows", Fail, Some(5.0)),
            ("schema", Pass, Some(0.0)),
            ("strict_schema", Fail, Some(2.0)),
        ],
    );
    // Freshness: the newest row (before the future one) is 1h01m old.
    for (name, status) in [("freshness(created_at)", Pass), ("stale", Fail)] {
        let r = o.results.iter().find(|r| r.check == name).unwrap();
        let v = r.value.unwrap();
        assert!((3660.0..3800.0).contains(&v), "{name}: {v}");
        assert_eq!(r.status, status, "{name}");
    }
    assert_eq!(o.status, Fail, "the run is its worst check");
    // Samples: the failing rows, bounded by `samples`.
    let samples = |name: &str| {
        o.results
            .iter()
            .find(|r| r.check == name)
            .unwrap()
            .samples
            .clone()
            .unwrap_or_else(|| panic!("{name} kept no samples"))
    };
    let failed = samples("failed_rows");
    assert_eq!(failed.as_array().unwrap().len(), 2, "{failed}");
    assert!(
        failed[0]["amount"].is_string() || failed[0]["amount"].is_number(),
        "{failed}"
    );
    let missing = samples("missing(customer_id)");
    assert_eq!(missing.as_array().unwrap().len(), 5, "{missing}");
    assert!(
        missing
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["customer_id"].is_null())
    );
    let dups = samples("duplicate(customer_id)");
    assert_eq!(dups[0]["customer_id"], 50, "{dups}");
    assert_eq!(dups[0]["duplicates"], 4, "{dups}");
    assert!(
        o.results
            .iter()
            .find(|r| r.check == "row_count")
            .unwrap()
            .samples
            .is_none(),
        "a passing check keeps no samples"
    );
    let schema = samples("strict_schema");
    assert_eq!(
        schema["violations"].as_array().unwrap().len(),
        2,
        "{schema}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_select_the_rows_of_the_window_before_the_run() {
    let db = shared().await.fresh_db("checks_window").await.unwrap();
    shop(&db).await;
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let yaml = r#"
jobs:
  - name: last_day
    connection: source
    dataset: public.orders
    window: 1d
    filter: "created_at >= TIMESTAMPTZ '{window_start}' AND created_at < TIMESTAMPTZ '{window_end}'"
    checks:
      - type: row_count
        must_be: 23
      - type: metric
        name: paid_in_window
        query: "SELECT count(*) FROM public.orders WHERE status = 'paid' AND created_at >= TIMESTAMPTZ '{window_start}' AND created_at < TIMESTAMPTZ '{window_end}'"
        must_be_greater_than: 0
"#;
    let out = run(&jobs(yaml, &cfg), &cfg).await;
    expect(&out[0], &[("row_count", Pass, Some(23.0))]);
    // ids 1..23 are in the window; paid where g % 3 == 1: 1, 4, 7, 13, 16, 19, 22 (10 is lost).
    expect(&out[0], &[("paid_in_window", Pass, Some(7.0))]);
}

/// Sequential scans of `table` the server counted.
async fn seq_scans(db: &TestDb, table: &str) -> i64 {
    db.scalar::<i64>(&format!(
        "SELECT seq_scan FROM pg_stat_user_tables WHERE relname = '{table}'"
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_aggregate_checks_are_one_query() {
    let db = shared().await.fresh_db("checks_merge").await.unwrap();
    shop(&db).await;
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let mut yaml = String::from(
        "jobs:\n  - name: merged\n    connection: source\n    dataset: public.orders\n    checks:\n",
    );
    for i in 0..5 {
        yaml += &format!(
            "      - {{type: row_count, name: rows_{i}, filter: 'id > {i}', must_be_greater_than: 0}}\n\
             \x20     - {{type: missing, name: missing_{i}, column: customer_id, filter: 'id > {i}', must_be_less_than: 50}}\n\
             \x20     - {{type: invalid, name: invalid_{i}, column: amount, valid_max: {}, must_be_less_than: 200}}\n\
             \x20     - {{type: freshness, name: fresh_{i}, column: created_at, filter: 'id > {i} AND id < 100', must_be_less_than: 1d}}\n",
            90 + i
        );
    }
    let jobs = jobs(&yaml, &cfg);
    assert_eq!(jobs[0].checks.len(), 20);
    // Let the statistics of the setup settle, then count the scans the run adds.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = seq_scans(&db, "orders").await;
    let out = run(&jobs, &cfg).await;
    assert_eq!(out[0].status, Pass, "{:#?}", out[0].results);
    assert_eq!(out[0].statements, 1, "20 aggregate checks, one statement");
    expect(
        &out[0],
        &[("rows_3", Pass, Some(97.0)), ("invalid_4", Pass, Some(6.0))],
    );
    // The server saw one scan of the table (its statistics are flushed within a second).
    let mut after = before;
    let deadline = Instant::now() + Duration::from_secs(10);
    while after == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = seq_scans(&db, "orders").await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(seq_scans(&db, "orders").await - before, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_past_its_timeout_is_cancelled_on_the_server() {
    let db = shared().await.fresh_db("checks_timeout").await.unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let yaml = r#"
jobs:
  - name: slow
    connection: source
    timeout: 2s
    checks:
      - type: metric
        query: SELECT count(*) FROM pg_sleep(60)
        must_be: 1
"#;
    let started = Instant::now();
    let out = run(&jobs(yaml, &cfg), &cfg).await;
    let took = started.elapsed();
    assert_eq!(out[0].status, Timeout, "{:#?}", out[0].results);
    assert_eq!(out[0].results[0].status, Timeout);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let active: i64 = db
        .scalar(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND \
             application_name = 'walaudit-checks' AND state = 'active'",
            db.name
        ))
        .await
        .unwrap();
    assert_eq!(active, 0, "the backend still runs the query");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_upstream_blocks_its_downstream_until_it_passes() {
    let db = shared().await.fresh_db("checks_gates").await.unwrap();
    db.execute("CREATE TABLE loaded (id int)").await.unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let yaml = r#"
jobs:
  - name: downstream
    connection: source
    dataset: public.loaded
    depends_on: [upstream]
    checks:
      - type: row_count
        must_be_less_than: 10
  - name: upstream
    connection: source
    dataset: public.loaded
    checks:
      - type: row_count
"#;
    let jobs = jobs(yaml, &cfg);
    let status = |out: &[walaudit::checks::RunOutcome], name: &str| -> Status {
        out.iter().find(|o| o.job == name).unwrap().status
    };
    let out = run(&jobs, &cfg).await;
    assert_eq!(status(&out, "upstream"), Fail);
    assert_eq!(status(&out, "downstream"), Blocked);
    let blocked = out.iter().find(|o| o.job == "downstream").unwrap();
    assert!(
        blocked.results.is_empty() && blocked.statements == 0,
        "not executed"
    );
    assert!(blocked.error.as_deref().unwrap().contains("`upstream`"));
    db.execute("INSERT INTO loaded VALUES (1)").await.unwrap();
    let out = run(&jobs, &cfg).await;
    assert_eq!(status(&out, "upstream"), Pass);
    assert_eq!(status(&out, "downstream"), Pass);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_unique_index_answers_a_duplicate_check_without_a_scan() {
    let db = shared().await.fresh_db("checks_unique").await.unwrap();
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, code text, grp int);
         CREATE UNIQUE INDEX t_code_some ON t (code) WHERE id < 5;
         INSERT INTO t SELECT g, 'c' || (g % 10), g % 3 FROM generate_series(1, 100) g",
    )
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let yaml = r#"
jobs:
  - name: uniq
    connection: source
    dataset: public.t
    checks:
      - type: duplicate
        columns: [id]
      - type: duplicate
        columns: [grp, id]
      - type: duplicate
        columns: [code]
"#;
    let out = run(&jobs(yaml, &cfg), &cfg).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = seq_scans(&db, "t").await;
    expect(
        &out[0],
        &[
            ("duplicate(id)", Pass, Some(0.0)),
            ("duplicate(grp, id)", Pass, Some(0.0)),
            // A partial unique index proves nothing about every row: measured, 10 groups of 10.
            ("duplicate(code)", Fail, Some(100.0)),
        ],
    );
    for r in &out[0].results[..2] {
        assert!(
            r.message
                .as_deref()
                .unwrap_or("")
                .contains("unique index t_pkey"),
            "{r:?}"
        );
    }
    // Only the partial-index check scanned the table.
    let out = run(&jobs(yaml, &cfg), &cfg).await;
    assert_eq!(out[0].status, Fail);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(seq_scans(&db, "t").await - before, 1);
}
