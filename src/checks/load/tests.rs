use super::*;
use crate::checks::model::{CheckKind, Metric};
use crate::checks::threshold::Cond;

fn cx() -> Context {
    Context::new(["warehouse".to_owned()])
}

fn load(files: &[(&str, &str)]) -> Result<Vec<Job>, LoadErrors> {
    let sources: Vec<(Origin, String)> = files
        .iter()
        .map(|(p, t)| (Origin::File(p.to_string()), t.to_string()))
        .collect();
    load_sources(&sources, &cx())
}

fn one_error(file: &str, text: &str) -> LoadError {
    let errs = load(&[(file, text)]).unwrap_err().0;
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

const GOOD: &str = r#"
jobs:
  - name: orders_daily
    connection: source
    dataset: public.orders
    filter: "created_at >= TIMESTAMP '{window_start}' AND created_at < TIMESTAMP '{window_end}'"
    window: 1d
    schedule: "0 * * * *"
    timezone: Europe/Berlin
    timeout: 90s
    severity: critical
    checks:
      - type: row_count
        must_be_between: [10, 1000]
        warn:
          must_be_greater_than: 100
      - type: missing
        column: customer_id
        metric: percent
        missing_values: ["", "n/a"]
        must_be_less_than: 1.5
      - type: invalid
        column: status
        valid_values: [new, paid, shipped]
      - type: freshness
        column: created_at
        must_be_less_than: 2h
      - type: duplicate
        columns: [id]
      - type: anomaly
        of: row_count
        sensitivity: 4
  - name: orders_copy
    depends_on: [orders_daily]
    dataset: current.public.orders
    checks:
      - type: compare
        query: SELECT count(*) FROM current.public.orders
        against: SELECT count(*) FROM public.orders
        against_connection: warehouse
        as: difference
        must_be: 0
"#;

#[test]
fn a_good_file_loads_typed() {
    let jobs = load(&[("checks/orders.yml", GOOD)]).unwrap();
    assert_eq!(jobs.len(), 2);
    let j = &jobs[0];
    assert_eq!(
        (j.name.as_str(), j.connection.as_str(), j.line),
        ("orders_daily", "source", 3)
    );
    assert_eq!(j.timeout.as_secs(), 90);
    assert_eq!(j.window.unwrap().as_secs(), 86_400);
    assert_eq!(j.severity, Severity::Critical);
    let names: Vec<&str> = j.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "row_count",
            "missing(customer_id)",
            "invalid(status)",
            "freshness(created_at)",
            "duplicate(id)",
            "anomaly(row_count)"
        ]
    );
    assert_eq!(j.checks[0].fail.conds, vec![Cond::Between(10.0, 1000.0)]);
    assert_eq!(
        j.checks[0].warn.as_ref().unwrap().conds,
        vec![Cond::Gt(100.0)]
    );
    assert!(matches!(
        &j.checks[1].kind,
        CheckKind::Missing { metric: Metric::Percent, missing_values, .. } if missing_values == &["''", "'n/a'"]
    ));
    // Defaults: a missing/invalid/duplicate check passes at 0; freshness thresholds take durations.
    assert_eq!(j.checks[2].fail.conds, vec![Cond::Eq(0.0)]);
    assert_eq!(j.checks[3].fail.conds, vec![Cond::Lt(7200.0)]);
    assert_eq!(j.checks[1].line, 17);
    assert_eq!(jobs[1].connection, "lake");
    assert_eq!(jobs[1].depends_on, ["orders_daily"]);
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    checks:\n      - type: row_count\n     bad: [\n",
    );
    assert_eq!((e.file.as_str(), e.line), ("a.yml", 5));
    assert!(e.message.contains("did not find expected key"), "{e}");
}

#[test]
fn an_unknown_key_is_named_with_what_is_allowed() {
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    dataset: t\n    checks:\n      - type: row_count\n        must_bee: 3\n",
    );
    assert_eq!(e.line, 6);
    assert!(e.message.contains("unknown field `must_bee`"), "{e}");
    assert!(e.message.contains("must_be"), "lists the allowed keys: {e}");
    assert!(e.message.contains("check the spelling"), "{e}");
}

#[test]
fn an_unknown_check_type_lists_the_types() {
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    dataset: t\n    checks:\n      - type: row_cont\n",
    );
    assert_eq!(e.line, 5);
    assert!(
        e.message
            .contains("`type: row_cont` is not a check type: use one of row_count, missing"),
        "{e}"
    );
}

#[test]
fn a_threshold_of_the_wrong_type_is_refused() {
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    dataset: t\n    checks:\n      - type: row_count\n        must_be_between: 5\n",
    );
    assert_eq!(e.line, 5);
    assert!(
        e.message
            .contains("`must_be_between` takes two numbers `[low, high]`, not `5`"),
        "{e}"
    );
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    dataset: t\n    checks:\n      - type: schema\n        forbidden: [ssn]\n        must_be: 0\n",
    );
    assert!(e.message.contains("takes no threshold keys"), "{e}");
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    dataset: t\n    checks:\n      - type: row_count\n        column: id\n",
    );
    assert!(
        e.message
            .contains("`column` is not an argument of row_count checks"),
        "{e}"
    );
}

#[test]
fn a_cron_typo_and_a_bad_time_zone_are_refused() {
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    dataset: t\n    schedule: \"0 * * *\"\n    checks:\n      - type: row_count\n",
    );
    assert_eq!(e.line, 2);
    assert!(e.message.contains("5 fields"), "{e}");
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    dataset: t\n    schedule: \"0 * * * *\"\n    timezone: Mars/Olympus\n    checks:\n      - type: row_count\n",
    );
    assert!(
        e.message
            .contains("unknown time zone `Mars/Olympus`: use an IANA name"),
        "{e}"
    );
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    dataset: t\n    schedule: \"0 25 * * *\"\n    checks:\n      - type: row_count\n",
    );
    assert!(e.message.contains("the hour field `25`"), "{e}");
    assert!(e.message.contains("0-23"), "{e}");
}

#[test]
fn a_missing_connection_names_the_ones_there_are() {
    let e = one_error(
        "a.yml",
        "jobs:\n  - name: x\n    connection: snowflake\n    dataset: t\n    checks:\n      - type: row_count\n",
    );
    assert!(
        e.message.contains("connection `snowflake` is not defined: use one of lake, source, warehouse or add a [connections.snowflake]"),
        "{e}"
    );
}

#[test]
fn nothing_is_half_loaded_and_all_errors_come_at_once() {
    let bad = "jobs:\n  - name: x\n    dataset: t\n    timeout: 11m\n    checks:\n      - type: freshness\n        column: at\n";
    let errs = load(&[("good.yml", GOOD), ("bad.yml", bad)]).unwrap_err();
    let text = errs.to_string();
    assert_eq!(errs.0.len(), 2, "{text}");
    assert!(
        text.contains("bad.yml:2: job `x`: `timeout` is 660s; a job may run at most 10m"),
        "{text}"
    );
    assert!(
        text.contains("bad.yml:6: job `x`: check `freshness` (freshness): needs a threshold"),
        "{text}"
    );
    assert!(
        text.starts_with("2 problems in the job files (nothing was loaded"),
        "{text}"
    );
}

#[test]
fn names_dependencies_and_windows_are_checked_across_files() {
    let a = "jobs:\n  - name: a\n    dataset: t\n    depends_on: [b]\n    checks:\n      - type: row_count\n";
    let b = "jobs:\n  - name: b\n    dataset: t\n    depends_on: [a, nope]\n    checks:\n      - type: row_count\n  - name: a\n    dataset: t\n    checks:\n      - type: row_count\n";
    let text = load(&[("a.yml", a), ("b.yml", b)]).unwrap_err().to_string();
    assert!(
        text.contains("job `a` is defined twice (also at a.yml:2)"),
        "{text}"
    );
    assert!(
        text.contains("`depends_on` names `nope`, which is no job"),
        "{text}"
    );
    assert!(
        text.contains("`depends_on` forms a cycle: a → b → a"),
        "{text}"
    );
    let w = "jobs:\n  - name: w\n    dataset: t\n    checks:\n      - type: row_count\n        filter: at > TIMESTAMP '{window_start}'\n";
    let e = one_error("w.yml", w);
    assert!(e.message.contains("give the job a `window`"), "{e}");
}

#[test]
fn check_names_are_unique_and_anomalies_watch_a_check() {
    let dup = "jobs:\n  - name: x\n    dataset: t\n    checks:\n      - type: missing\n        column: a\n      - type: missing\n        column: a\n";
    let e = one_error("a.yml", dup);
    assert!(
        e.message
            .contains("two checks are named `missing(a)` (the other is on line 5)"),
        "{e}"
    );
    let anomaly = "jobs:\n  - name: x\n    dataset: t\n    checks:\n      - type: anomaly\n        of: rows\n";
    let e = one_error("a.yml", anomaly);
    assert!(
        e.message.contains("`of: rows` names no check of this job"),
        "{e}"
    );
}

#[test]
fn a_directory_of_files_loads_recursively_and_sorted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/b.yaml"),
        "jobs:\n  - name: b\n    dataset: t\n    checks:\n      - type: row_count\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.yml"),
        "jobs:\n  - name: a\n    dataset: t\n    checks:\n      - type: row_count\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a job file").unwrap();
    let jobs = load_dir(dir.path(), &cx()).unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let empty = tempfile::tempdir().unwrap();
    let e = load_dir(empty.path(), &cx()).unwrap_err().to_string();
    assert!(e.contains("holds no job files"), "{e}");
}

#[test]
fn a_metric_and_its_anomaly_need_no_dataset_and_reconciliations_may_share_the_file() {
    let text = "jobs:\n  - name: m\n    connection: source\n    checks:\n      - type: metric\n        \
                name: n\n        query: SELECT 1\n        must_be: 1\n      - type: anomaly\n        \
                of: n\n\
                reconciliations:\n  - name: r\n    source: {connection: source, dataset: a}\n    \
                target: {connection: lake, dataset: b}\n    key: [id]\n";
    let jobs = load(&[("a.yml", text)]).unwrap();
    assert_eq!(jobs[0].checks.len(), 2);
    let only = "reconciliations:\n  - name: r\n    source: {connection: source, dataset: a}\n    \
                target: {connection: lake, dataset: b}\n    key: [id]\n";
    assert!(load(&[("b.yml", only)]).unwrap().is_empty());
    let e = one_error("c.yml", "description: nothing\n");
    assert!(e.message.contains("unknown field"), "{e}");
    let e = one_error("d.yml", "{}\n");
    assert!(
        e.message
            .contains("holds neither `jobs:` nor `reconciliations:`"),
        "{e}"
    );
}
