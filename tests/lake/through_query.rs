//! End to end through the product: `walaudit run --drain` writes the lake, then SQL over it
//! (`current.*`, `as_of`, the change log) answers exactly what the source holds.

use std::time::Duration;

use walaudit::query::{LakeOptions, LakeQuery};

use super::workload::{SCHEMA, workload};
use super::{lake_rows, pg_rows};
use crate::support::{TestDb, shared};

/// `walaudit run --drain` (the binary) into `lake` on slot `db.name`.
async fn run_drain(db: &TestDb, lake: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .env("WALAUDIT_LISTEN", "127.0.0.1:0")
        .args([
            "run", "--drain", "--source", &db.url, "--slot", &db.name, "--lake", lake,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "run --drain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn current_and_as_of_over_a_lake_written_by_run_equal_the_source() {
    let db = shared().await.fresh_db("lake_query_e2e").await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    db.execute("CREATE TABLE prices (id int PRIMARY KEY, p int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap();
    // The first run creates the publication (all tables) and the slot.
    run_drain(&db, lake).await;

    let changes = workload(&db, 3).await.unwrap();
    db.execute("INSERT INTO prices VALUES (1, 1)")
        .await
        .unwrap();
    db.execute("UPDATE prices SET p = 2 WHERE id = 1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between: String = db.scalar("SELECT clock_timestamp()::text").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    db.execute("UPDATE prices SET p = 3 WHERE id = 1")
        .await
        .unwrap();
    run_drain(&db, lake).await;

    let query = LakeQuery::open(lake, LakeOptions::default()).await.unwrap();
    // The change log holds every change once.
    let mut total = 0;
    for table in ["accounts", "events", "items"] {
        let sql = format!("SELECT count(*), count(DISTINCT (_lsn, _seq)) FROM public.{table}");
        let counts = lake_rows(&query, &sql).await.unwrap();
        assert_eq!(counts[0][0], counts[0][1], "no duplicates in {table}");
        total += counts[0][0].parse::<usize>().unwrap();
    }
    assert_eq!(total, changes);

    // current.<table> equals the source on every row and column.
    let cases = [
        (
            "CAST(id AS VARCHAR) AS c0, name AS c1, CAST(balance AS VARCHAR) AS c2, \
             CAST(active AS VARCHAR) AS c3, CAST(CAST(created AS BIGINT) AS VARCHAR) AS c4 \
             FROM current.public.accounts ORDER BY id",
            "SELECT id::text, name, balance::text, active::text, \
             ((extract(epoch FROM created) * 1000000)::bigint)::text FROM accounts ORDER BY id",
        ),
        (
            "CAST(id AS VARCHAR) AS c0, payload AS c1, array_to_string(tags, ',') AS c2, \
             CAST(happened AS VARCHAR) AS c3 FROM current.public.events ORDER BY id",
            "SELECT id::text, payload::text, array_to_string(tags, ','), happened::text \
             FROM events ORDER BY id",
        ),
        (
            "sku AS c0, CAST(qty AS VARCHAR) AS c1, CAST(price AS VARCHAR) AS c2, \
             encode(data, 'hex') AS c3 FROM current.public.items ORDER BY sku",
            "SELECT sku, qty::text, price::text, encode(data, 'hex') FROM items ORDER BY sku",
        ),
    ];
    for (lake_sql, pg_sql) in cases {
        let got = lake_rows(&query, &format!("SELECT {lake_sql}"))
            .await
            .unwrap();
        let want = pg_rows(&db, pg_sql).await.unwrap();
        assert!(!want.is_empty());
        assert_eq!(got, want, "{lake_sql}");
    }

    // as_of between the two updates returns the earlier image; current the later one.
    let as_of = format!("SELECT p FROM as_of('public.prices', TIMESTAMP '{between}') WHERE id = 1");
    let as_of = as_of.replace("+00'", "'");
    assert_eq!(
        lake_rows(&query, &as_of).await.unwrap(),
        vec![vec!["2".to_owned()]]
    );
    let now = lake_rows(&query, "SELECT p FROM current.public.prices")
        .await
        .unwrap();
    assert_eq!(now, vec![vec!["3".to_owned()]]);

    // The CLI answers over the same lake.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .args(["query", "--lake", lake, "--format", "csv"])
        .arg("SELECT _op, count(*) AS n FROM public.prices GROUP BY _op ORDER BY _op")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "_op,n\nc,1\nu,2\n");
}
