//! The EXPLAIN guard on a real Postgres: full scans of a 2M-row table refused with the plan
//! line, the same checks on the indexed column accepted, `allow_full_scan`, join counts.

use walaudit::checks::command::{guard_jobs, open_targets, validate};
use walaudit::checks::guard::GuardErrors;

use walaudit::checks::Status::Pass;

use super::{config, expect, jobs, run};
use crate::support::shared;

const BIG: &str = r#"
jobs:
  - name: unindexed
    connection: source
    dataset: public.big
    checks:
      - type: row_count
        filter: amount = 5
  - name: whole
    connection: source
    dataset: public.big
    checks:
      - type: row_count
      - type: missing
        column: amount
  - name: indexed
    connection: source
    dataset: public.big
    checks:
      - type: row_count
        filter: id BETWEEN 1 AND 1000
      - type: missing
        column: amount
        filter: id BETWEEN 1 AND 1000
      - type: duplicate
        columns: [id]
        filter: id BETWEEN 1 AND 1000
      - type: schema
        required: {id: integer}
  - name: indexed_job
    connection: source
    dataset: public.big
    filter: id BETWEEN 1 AND 1000
    checks:
      - type: row_count
      - type: invalid
        column: amount
        valid_max: 999
  - name: allowed
    connection: source
    dataset: public.big
    allow_full_scan: true
    checks:
      - type: row_count
        filter: amount = 5
"#;

fn refusals(e: &walaudit::checks::command::CommandError) -> &GuardErrors {
    match e {
        walaudit::checks::command::CommandError::Guard(g) => g,
        other => panic!("not a guard error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn full_scans_of_a_large_table_are_refused_with_the_plan_line() {
    let db = shared().await.fresh_db("checks_guard").await.unwrap();
    db.execute(
        "CREATE TABLE big (id int NOT NULL, amount int);
         INSERT INTO big SELECT g, g % 1000 FROM generate_series(1, 2000000) g;
         ALTER TABLE big ADD PRIMARY KEY (id);
         ANALYZE big;",
    )
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let all = jobs(BIG, &cfg);

    let err = validate(&all, &cfg).await.unwrap_err();
    let g = refusals(&err);
    let text = err.to_string();
    let refused: Vec<(&str, Vec<&str>)> =
        g.0.iter()
            .map(|r| {
                (
                    r.job.as_str(),
                    r.checks.iter().map(String::as_str).collect(),
                )
            })
            .collect();
    assert_eq!(
        refused,
        vec![
            ("unindexed", vec!["row_count"]),
            ("whole", vec!["row_count", "missing(amount)"]),
        ],
        "{text}"
    );
    for r in &g.0 {
        assert!(r.file.ends_with("jobs.yml"), "{r}");
        assert!(r.message.contains("Seq Scan on big  (cost="), "{r}");
        assert!(r.message.contains("public.big"), "{r}");
        assert!(r.message.contains("checks.max_scan_rows = 1000000"), "{r}");
        assert!(r.message.contains("allow_full_scan: true"), "{r}");
    }
    // Each at the line of its (first) check.
    let line_of = |needle: &str| {
        BIG.lines()
            .position(|l| l.contains(needle))
            .map(|i| i as u32 + 1)
            .unwrap()
    };
    assert_eq!(g.0[0].line, line_of("filter: amount = 5") - 1);
    assert!(
        text.contains(&format!(
            "jobs.yml:{}: job `unindexed`, check `row_count`: ",
            g.0[0].line
        )),
        "{text}"
    );
    assert!(
        text.contains("job `whole`, checks `row_count`, `missing(amount)` (one merged scan)"),
        "{text}"
    );
    println!("{text}");

    // The accepted ones alone pass, on `check run`'s path too.
    let ok: Vec<_> = all
        .iter()
        .filter(|j| ["indexed", "indexed_job", "allowed"].contains(&j.name.as_str()))
        .cloned()
        .collect();
    validate(&ok, &cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let targets = open_targets(&ok, &cfg).await.unwrap();
    guard_jobs(&ok, &targets, &cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The merged scan of checks that all have a filter reads only the rows they admit.
    let out = run(&ok[..1], &cfg).await;
    expect(
        &out[0],
        &[
            ("row_count", Pass, Some(1000.0)),
            ("missing(amount)", Pass, Some(0.0)),
            ("duplicate(id)", Pass, Some(0.0)),
            ("schema", Pass, Some(0.0)),
        ],
    );

    // The limit is on sequential scans only: the indexed job's index scans and its columns
    // probe (`LIMIT 0`) pass a limit of 10 rows too.
    let mut strict = cfg.clone();
    strict.checks.max_scan_rows = 10;
    validate(&ok[..1], &strict)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn more_joins_than_max_joins_are_refused() {
    let db = shared().await.fresh_db("checks_guard_joins").await.unwrap();
    let mut setup = String::new();
    for i in 1..=6 {
        setup += &format!(
            "CREATE TABLE t{i} (id int PRIMARY KEY); INSERT INTO t{i} SELECT generate_series(1, 50); ANALYZE t{i};"
        );
    }
    db.execute(&setup).await.unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let join = |n: usize| {
        let mut q = "SELECT count(*) FROM t1".to_owned();
        for i in 2..=n + 1 {
            q += &format!(" JOIN t{i} ON t{i}.id = t1.id");
        }
        q
    };
    let yaml = format!(
        r#"
jobs:
  - name: five
    connection: source
    checks:
      - type: metric
        query: "{}"
        must_be: 50
  - name: four
    connection: source
    checks:
      - type: metric
        query: "{}"
        must_be: 50
  - name: broken
    connection: source
    checks:
      - type: metric
        query: SELECT count(*) FROM no_such_table
        must_be: 0
"#,
        join(5),
        join(4)
    );
    let all = jobs(&yaml, &cfg);
    let err = validate(&all, &cfg).await.unwrap_err();
    let g = refusals(&err);
    assert_eq!(g.0.len(), 2, "{err}");
    let five =
        g.0.iter()
            .find(|r| r.job == "five")
            .unwrap_or_else(|| panic!("{err}"));
    assert!(
        five.message
            .contains("has 5 joins, more than checks.max_joins = 4"),
        "{five}"
    );
    assert!(
        five.message.contains(" Join  (cost=") || five.message.contains("Nested Loop  (cost="),
        "{five}"
    );
    let broken =
        g.0.iter()
            .find(|r| r.job == "broken")
            .unwrap_or_else(|| panic!("{err}"));
    assert!(broken.message.contains("no_such_table"), "{broken}");
    println!("{err}");

    // `check run` leaves the unplannable query to the run (it records an error there).
    let targets = open_targets(&all, &cfg).await.unwrap();
    let err = guard_jobs(&all, &targets, &cfg).await.unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].job, "five");
}
