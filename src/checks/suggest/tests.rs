use std::time::Duration;

use super::render::{duration, job_name, nice_up};
use super::*;
use crate::checks::load::{Context, load_sources};
use crate::checks::model::{CheckKind, Origin};

fn col(name: &str, kind: Kind) -> ColumnProfile {
    ColumnProfile {
        name: name.into(),
        kind,
        nulls: 0,
        distinct: None,
        min: None,
        max: None,
        newest: None,
        values: None,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-02T01:00:00Z")
        .unwrap()
        .to_utc()
}

fn orders() -> Profile {
    let hour = 3_600_000_000;
    Profile {
        connection: "source".into(),
        dataset: "public.orders".into(),
        rows: 100,
        columns: vec![
            ColumnProfile {
                distinct: Some(100),
                min: Some(1.0),
                max: Some(100.0),
                ..col("id", Kind::Number)
            },
            ColumnProfile {
                nulls: 5,
                distinct: Some(60),
                min: Some(1.0),
                max: Some(60.0),
                ..col("customer_id", Kind::Number)
            },
            ColumnProfile {
                distinct: Some(3),
                values: Some(vec!["new".into(), "it's \"paid\"".into(), "shipped".into()]),
                ..col("status", Kind::Text)
            },
            ColumnProfile {
                distinct: Some(90),
                min: Some(-3.5),
                max: Some(123.4),
                ..col("amount", Kind::Number)
            },
            ColumnProfile {
                newest: Some(now().timestamp_micros() - hour),
                ..col("created_at", Kind::Timestamp)
            },
            ColumnProfile {
                nulls: 100,
                ..col("note", Kind::Text)
            },
        ],
        keys: vec![vec!["id".into()]],
        foreign_keys: vec![ForeignKey {
            columns: vec!["customer_id".into()],
            dataset: "public.customers".into(),
            ref_columns: vec!["id".into()],
        }],
        catalog: true,
    }
}

fn load(yaml: &str) -> Vec<crate::checks::Job> {
    let sources = vec![(Origin::File("suggested.yml".into()), yaml.to_owned())];
    load_sources(&sources, &Context::new([])).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

#[test]
fn the_suggested_job_loads_and_holds_a_check_per_finding() {
    let yaml = render(&orders(), 1_000_000, now());
    assert!(yaml.starts_with("# Suggested by `walaudit check suggest` at 2026-12-02T01:00:00Z\n"));
    let jobs = load(&yaml);
    assert_eq!(jobs.len(), 1);
    let j = &jobs[0];
    assert_eq!(
        (j.name.as_str(), j.connection.as_str()),
        ("public.orders", "source")
    );
    assert!(!j.allow_full_scan);
    let names: Vec<&str> = j.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "row_count",
            "missing(id)",
            "missing(customer_id)",
            "missing(status)",
            "invalid(status)",
            "missing(amount)",
            "invalid(amount)",
            "missing(created_at)",
            "invalid(created_at)",
            "duplicate(id)",
            "freshness(created_at)",
            "reference(customer_id)",
        ],
        "{yaml}"
    );
    let kind = |name: &str| &j.checks.iter().find(|c| c.name == name).unwrap().kind;
    match kind("invalid(amount)") {
        CheckKind::Invalid { rules, .. } => {
            assert_eq!((rules.min, rules.max), (Some(-5.0), Some(200.0)))
        }
        other => panic!("{other:?}"),
    }
    match kind("invalid(status)") {
        CheckKind::Invalid { rules, .. } => {
            assert_eq!(rules.values, vec!["'new'", "'it''s \"paid\"'", "'shipped'"])
        }
        other => panic!("{other:?}"),
    }
    assert!(
        yaml.contains("must_be_less_than: 2h"),
        "1h old, bound twice: {yaml}"
    );
    assert!(
        yaml.contains("metric: percent\n        must_be_less_than_or_equal: 10"),
        "{yaml}"
    );
    assert!(yaml.contains("# note: every value is null"), "{yaml}");
    assert!(yaml.contains("references: {dataset: \"public.customers\", columns: [\"id\"]}"));
}

#[test]
fn a_large_table_is_allowed_its_full_scans_and_the_lake_finds_keys_in_the_values() {
    let mut p = orders();
    p.rows = 5_000_000;
    p.columns.truncate(1);
    p.columns[0].distinct = Some(5_000_000);
    let yaml = render(&p, 1_000_000, now());
    assert!(load(&yaml)[0].allow_full_scan, "{yaml}");

    let mut lake = orders();
    lake.connection = "lake".into();
    lake.dataset = "current.public.orders".into();
    lake.catalog = false;
    lake.keys.clear();
    lake.foreign_keys.clear();
    let jobs = load(&render(&lake, 1_000_000, now()));
    let names: Vec<&str> = jobs[0].checks.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"duplicate(id)"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("reference")));
    assert_eq!(jobs[0].name, "current.public.orders");
}

#[test]
fn bounds_and_durations_round_up() {
    assert_eq!(
        [0.3, 1.0, 1.5, 4.0, 100.0, 123.0, 4999.5].map(nice_up),
        [0.5, 1.0, 2.0, 5.0, 100.0, 200.0, 5000.0]
    );
    assert_eq!(duration(Duration::from_secs(61)), "2m");
    assert_eq!(duration(Duration::from_secs(7200)), "2h");
    assert_eq!(duration(Duration::from_secs(3 * 86_400 + 1)), "4d");
    assert_eq!(job_name("\"Sales\".\"Order Lines\""), "Sales.Order_Lines");
}
