//! `check suggest` on a real Postgres: the profile's checks, a job file that loads and
//! validates unchanged and whose run passes on the data it was profiled from.

use walaudit::checks::Status;
use walaudit::checks::command::{suggest, validate};

use super::{config, jobs, run};
use crate::support::shared;

#[tokio::test(flavor = "multi_thread")]
async fn a_suggested_job_holds_the_profile_and_passes_on_its_data() {
    let db = shared().await.fresh_db("checks_suggest").await.unwrap();
    db.execute(
        "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 20) g;
         CREATE TABLE orders (
             id int PRIMARY KEY,
             customer_id int NOT NULL REFERENCES customers (id),
             note text,
             status text NOT NULL,
             amount numeric(10,2),
             created_at timestamptz NOT NULL);
         INSERT INTO orders
         SELECT g, g % 20 + 1,
                CASE WHEN g % 10 = 0 THEN NULL ELSE 'note ' || g END,   -- 10% null
                (ARRAY['new','paid','shipped'])[g % 3 + 1],
                g * 1.5,
                now() - g * interval '1 minute'
         FROM generate_series(1, 100) g;
         ANALYZE;",
    )
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let cfg = config(Some(&db), lake.path());
    let yaml = suggest("orders", Some("source"), None, &cfg).await.unwrap();
    println!("{yaml}");

    assert!(
        yaml.starts_with("# Suggested by `walaudit check suggest` at "),
        "{yaml}"
    );
    assert!(
        yaml.contains("dataset public.orders: 100 rows, 6 columns."),
        "{yaml}"
    );
    for want in [
        "  - name: \"public.orders\"\n    connection: \"source\"\n    dataset: \"public.orders\"",
        "- type: missing\n        column: \"status\"\n        must_be: 0",
        "- type: missing\n        column: \"note\"\n        metric: percent\n        must_be_less_than_or_equal: 20",
        "valid_values: [\"new\", \"paid\", \"shipped\"]",
        "- type: invalid\n        column: \"amount\"\n        valid_min: 0\n        valid_max: 200",
        "- type: invalid\n        column: \"created_at\"\n        not_in_future: true",
        "- type: duplicate\n        columns: [\"id\"]",
        // The newest row is a minute or two old: twice that, at least 5 minutes more.
        "- type: freshness\n        column: \"created_at\"\n        must_be_less_than: ",
        "- type: reference\n        columns: [\"customer_id\"]\n        references: {dataset: \"public.customers\", columns: [\"id\"]}",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in\n{yaml}");
    }
    assert!(
        !yaml.contains("column: \"id\"\n        valid_min"),
        "no range on keys"
    );
    assert!(!yaml.contains("allow_full_scan"), "{yaml}");

    // It loads, passes the EXPLAIN guard, and its run passes on the same data.
    let loaded = jobs(&yaml, &cfg);
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].checks.len(), 13, "{:#?}", loaded[0].checks);
    validate(&loaded, &cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run(&loaded, &cfg).await;
    assert_eq!(out[0].status, Status::Pass, "{:#?}", out[0].results);

    // A dataset that is not there says so.
    let err = suggest("public.nope", None, None, &cfg).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("`public.nope` is no table or view"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lake_table_is_profiled_from_its_values() {
    let db = shared()
        .await
        .fresh_db("checks_suggest_lake")
        .await
        .unwrap();
    db.execute("CREATE TABLE items (id int PRIMARY KEY, qty int, kind text)")
        .await
        .unwrap();
    let slot = crate::capture::prepare(&db).await.unwrap();
    db.execute(
        "INSERT INTO items SELECT g, g % 7, (ARRAY['a','b'])[g % 2 + 1] \
         FROM generate_series(1, 40) g",
    )
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    crate::lake::drain_to_lake(&db, &slot, lake.path(), 1000, true)
        .await
        .unwrap();
    let cfg = config(None, lake.path());
    let yaml = suggest("current.public.items", Some("lake"), None, &cfg)
        .await
        .unwrap();
    println!("{yaml}");
    for want in [
        "connection: \"lake\"\n    dataset: \"current.public.items\"",
        "unique columns as observed",
        "- type: duplicate\n        columns: [\"id\"]",
        "valid_values: [\"a\", \"b\"]",
        "- type: invalid\n        column: \"qty\"\n        valid_min: 0\n        valid_max: 10",
        "- type: freshness\n        column: \"_commit_ts\"",
    ] {
        assert!(yaml.contains(want), "missing {want:?} in\n{yaml}");
    }
    assert!(
        !yaml.contains("type: reference"),
        "no foreign keys in the lake"
    );
    let loaded = jobs(&yaml, &cfg);
    let out = run(&loaded, &cfg).await;
    assert_eq!(out[0].status, Status::Pass, "{:#?}", out[0].results);
}
