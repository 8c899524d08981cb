use serde_json::json;

use super::*;
use crate::checks::load::{Context, load_sources};

fn job(yaml: &str) -> Job {
    let sources = vec![(Origin::File("jobs.yml".into()), yaml.to_owned())];
    load_sources(&sources, &Context::new([])).unwrap().remove(0)
}

#[test]
fn plans_yield_their_seq_scans_and_joins() {
    let doc = json!([{"Plan": {
        "Node Type": "Hash Join", "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "orders", "Schema": "public",
             "Plan Rows": 2000000.0},
            {"Node Type": "Hash", "Plans": [
                {"Node Type": "Nested Loop", "Plans": [
                    {"Node Type": "Seq Scan", "Relation Name": "orders", "Schema": "public",
                     "Plan Rows": 10.0, "Filter": "(amount = 5)"},
                    {"Node Type": "Index Scan", "Relation Name": "customers"}]}]}]}}]);
    let facts = plan_facts(&doc);
    assert_eq!(facts.joins, 2);
    assert_eq!(facts.scans.len(), 2);
    assert_eq!(facts.scans[0].schema.as_deref(), Some("public"));
    assert_eq!(facts.scans[0].plan_rows, 2_000_000.0);
    assert_eq!(facts.scans[1].occurrence, 1, "the second scan of orders");
    assert!(!facts.scans[0].bounded && !facts.scans[1].bounded);
}

#[test]
fn a_scan_right_below_a_limit_without_a_filter_is_bounded() {
    let limit =
        |scan: serde_json::Value| json!([{"Plan": {"Node Type": "Limit", "Plans": [scan]}}]);
    let plain = json!({"Node Type": "Seq Scan", "Relation Name": "t", "Plan Rows": 5e6});
    assert!(plan_facts(&limit(plain.clone())).scans[0].bounded);
    let gather = json!({"Node Type": "Gather", "Plans": [plain.clone()]});
    assert!(plan_facts(&limit(gather)).scans[0].bounded);
    let filtered = json!({"Node Type": "Seq Scan", "Relation Name": "t", "Plan Rows": 5.0,
                          "Filter": "(x IS NULL)"});
    assert!(
        !plan_facts(&limit(filtered)).scans[0].bounded,
        "may read every row"
    );
    let sorted = json!({"Node Type": "Sort", "Plans": [plain]});
    assert!(
        !plan_facts(&limit(sorted)).scans[0].bounded,
        "a sort reads all"
    );
}

#[test]
fn text_lines_are_recognised() {
    assert!(seq_scan_on(
        "Seq Scan on orders  (cost=0.00..35811.00 rows=2000000 width=4)",
        "orders"
    ));
    assert!(seq_scan_on(
        "Parallel Seq Scan on orders o  (cost=0.00..1.00 rows=1 width=4)",
        "orders"
    ));
    assert!(seq_scan_on(
        "Seq Scan on \"Big Table\"  (cost=0.00..1.00 rows=1 width=4)",
        "Big Table"
    ));
    assert!(!seq_scan_on(
        "Seq Scan on orders_archive  (cost=0.00..1.00 rows=1 width=4)",
        "orders"
    ));
    assert!(is_join("Hash Anti Join  (cost=1.00..2.00 rows=1 width=4)"));
    assert!(is_join("Nested Loop  (cost=1.00..2.00 rows=1 width=4)"));
    assert!(is_join("Merge Join  (cost=1.00..2.00 rows=1 width=4)"));
    assert!(!is_join("Hash  (cost=1.00..2.00 rows=1 width=4)"));
    assert!(!is_join(
        "Seq Scan on big_join  (cost=1.00..2.00 rows=1 width=4)"
    ));
}

#[test]
fn a_job_plans_every_query_its_run_sends() {
    let j = job(r#"
jobs:
  - name: orders
    connection: source
    dataset: public.orders
    window: 1d
    filter: "created_at >= TIMESTAMPTZ '{window_start}'"
    checks:
      - type: row_count
      - type: missing
        column: customer_id
      - type: missing
        column: email
        samples: 0
      - type: duplicate
        columns: [id]
      - type: schema
        required: {id: integer}
      - type: compare
        query: SELECT count(*) FROM public.orders
        against: SELECT count(*) FROM public.customers
        against_connection: lake
        must_be: 1
"#);
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-02T01:00:00Z")
        .unwrap()
        .to_utc();
    let qs = queries(&j, at);
    let merged = &qs[0];
    assert_eq!(
        merged.checks,
        vec![0, 1, 2],
        "one merged scan for the scan checks"
    );
    assert!(
        merged.sql.contains("'2026-12-01T01:00:00Z'"),
        "{}",
        merged.sql
    );
    assert!(!merged.sql.contains("{window_start}"));
    let conns: Vec<(&str, &[usize])> = qs
        .iter()
        .map(|q| (q.connection.as_str(), q.checks.as_slice()))
        .collect();
    assert_eq!(
        conns,
        vec![
            ("source", &[0, 1, 2][..]),
            ("source", &[3][..]), // duplicate (its query returns its samples too)
            ("source", &[4][..]), // the columns probe
            ("source", &[5][..]), // compare: query
            ("lake", &[5][..]),   // compare: against
            ("source", &[1][..]), // samples of missing(customer_id)
        ]
    );
}

#[test]
fn the_merged_scan_keeps_only_rows_some_check_admits() {
    let filtered = job(r#"
jobs:
  - name: j
    connection: source
    dataset: t
    checks:
      - {type: row_count, filter: "id BETWEEN 1 AND 1000"}
      - {type: missing, column: x, filter: "id BETWEEN 1 AND 1000"}
      - {type: freshness, column: ts, filter: "id > 5", must_be_less_than: 1h}
      - {type: duplicate, columns: [id]}
"#);
    let (sql, _) = sql::merged_scan(&filtered, &Vars::default()).unwrap();
    assert!(
        sql.ends_with("AS walaudit_rows WHERE (id BETWEEN 1 AND 1000) OR (id > 5)"),
        "{sql}"
    );
    let whole = job(r#"
jobs:
  - name: j
    connection: source
    dataset: t
    checks:
      - {type: row_count, filter: "id BETWEEN 1 AND 1000"}
      - {type: missing, column: x}
"#);
    let (sql, _) = sql::merged_scan(&whole, &Vars::default()).unwrap();
    assert!(sql.ends_with("AS walaudit_rows"), "{sql}");
}

#[test]
fn refusals_name_the_place_the_job_and_the_checks() {
    let r = Refusal {
        file: "checks/orders.yml".into(),
        line: 7,
        job: "orders".into(),
        checks: vec!["row_count".into(), "missing(id)".into()],
        message: "the plan reads all of public.orders".into(),
    };
    assert_eq!(
        r.to_string(),
        "checks/orders.yml:7: job `orders`, checks `row_count`, `missing(id)` (one merged scan): \
         the plan reads all of public.orders"
    );
    let e = GuardErrors(vec![r]);
    assert!(
        e.to_string()
            .starts_with("the EXPLAIN guard found 1 problem (no job ran"),
        "{e}"
    );
}
