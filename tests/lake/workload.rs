//! A mixed workload over three tables: the lake holds every change once, and the latest image
//! per key equals the source.

use super::{assert_unique, drain_to_lake, marker, open, pg_rows, rows, session, setup};
use crate::support::shared;

pub const SCHEMA: &str = "
    CREATE TABLE accounts (id int PRIMARY KEY, name text, balance numeric(12,2), active bool,
                           created timestamptz);
    CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb, tags text[], happened date);
    CREATE TABLE items (sku text PRIMARY KEY, qty int, price float8, data bytea);
";

/// Inserts, updates and deletes across the three tables; returns the number of changes.
pub async fn workload(db: &crate::support::TestDb, round: i32) -> anyhow::Result<usize> {
    let base = round * 1000;
    let mut changes = 0;
    for i in 0..20 {
        let id = base + i;
        db.execute(&format!(
            "BEGIN;
             INSERT INTO accounts VALUES ({id}, 'acct {id}', {id}.25, {}, '2024-03-01 10:00:00+00'::timestamptz + interval '{i} minutes');
             INSERT INTO events VALUES ({id}, '{{\"n\": {i}, \"k\": \"v\"}}', ARRAY['a','b{i}'], '2024-01-01'::date + {i});
             INSERT INTO items VALUES ('sku-{id}', {i}, {i}.5, '\\x00ff{:02x}');
             COMMIT;",
            i % 2 == 0,
            i
        ))
        .await?;
        changes += 3;
    }
    db.execute(&format!(
        "UPDATE accounts SET balance = balance + 1, name = name || '!' WHERE id >= {base} AND id < {base} + 10"
    ))
    .await?;
    changes += 10;
    db.execute(&format!("DELETE FROM events WHERE id >= {base} + 15"))
        .await?;
    changes += 5;
    db.execute(&format!(
        "BEGIN; UPDATE items SET qty = qty * 2 WHERE sku = 'sku-{base}';
         DELETE FROM accounts WHERE id = {base} + 19; COMMIT;"
    ))
    .await?;
    changes += 2;
    Ok(changes)
}

/// Latest image per key in the lake vs the source, for the three tables.
pub async fn assert_equal_to_source(db: &crate::support::TestDb, dir: &std::path::Path) {
    let cases = [
        (
            "accounts",
            "id",
            "CAST(id AS VARCHAR) AS c0, name AS c1, CAST(balance AS VARCHAR) AS c2, \
             CAST(active AS VARCHAR) AS c3, CAST(CAST(created AS BIGINT) AS VARCHAR) AS c4",
            "SELECT id::text, name, balance::text, active::text, \
             ((extract(epoch FROM created) * 1000000)::bigint)::text FROM accounts ORDER BY id",
        ),
        (
            "events",
            "id",
            "CAST(id AS VARCHAR) AS c0, payload AS c1, array_to_string(tags, ',') AS c2, \
             CAST(happened AS VARCHAR) AS c3",
            "SELECT id::text, payload::text, array_to_string(tags, ','), happened::text \
             FROM events ORDER BY id",
        ),
        (
            "items",
            "sku",
            "sku AS c0, CAST(qty AS VARCHAR) AS c1, CAST(price AS VARCHAR) AS c2, \
             encode(data, 'hex') AS c3",
            "SELECT sku, qty::text, price::text, encode(data, 'hex') FROM items ORDER BY sku",
        ),
    ];
    for (table, key, lake_cols, pg_sql) in cases {
        let delta = open(dir, "public", table).await.unwrap();
        let ctx = session(&delta).await.unwrap();
        let latest = format!(
            "SELECT {lake_cols} FROM (SELECT *, row_number() OVER (PARTITION BY {key} \
             ORDER BY _lsn DESC, _seq DESC) AS rn FROM t) WHERE rn = 1 AND _op <> 'd' \
             ORDER BY {key}"
        );
        let got = rows(&ctx, &latest).await.unwrap();
        let want = pg_rows(db, pg_sql).await.unwrap();
        assert_eq!(got, want, "latest images of {table} equal the source");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workload_lands_once_and_equals_the_source() {
    let db = shared().await.fresh_db("lake_workload").await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    let slot = setup(&db).await.unwrap();
    let expected = workload(&db, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let summary = drain_to_lake(&db, &slot, dir.path(), 7, true)
        .await
        .unwrap();
    assert_eq!(summary.capture.changes as usize, expected);
    assert!(!summary.durable_lsn.is_zero());

    let mut total = 0;
    for table in ["accounts", "events", "items"] {
        let delta = open(dir.path(), "public", table).await.unwrap();
        let ctx = session(&delta).await.unwrap();
        total += assert_unique(&ctx).await.unwrap();
        // The marker is the commit LSN of the last transaction the table holds.
        let max_lsn = rows(&ctx, "SELECT max(_lsn) FROM t").await.unwrap();
        assert_eq!(
            marker(&delta, &slot).await.unwrap(),
            Some(max_lsn[0][0].parse().unwrap())
        );
        let config = delta.snapshot().unwrap().metadata().configuration().clone();
        assert_eq!(config["walaudit.sourceTable"], format!("public.{table}"));
        let key = if table == "items" {
            "[\"sku\"]"
        } else {
            "[\"id\"]"
        };
        assert_eq!(config["walaudit.keyColumns"], key);
        assert_eq!(config["delta.checkpointInterval"], "20");
    }
    assert_eq!(total as usize, expected);
    assert_equal_to_source(&db, dir.path()).await;

    // The transactions table: one row per source transaction, tables listed.
    let txns = open(dir.path(), "_walaudit", "transactions").await.unwrap();
    let ctx = session(&txns).await.unwrap();
    let n = rows(&ctx, "SELECT count(*), sum(change_count) FROM t")
        .await
        .unwrap();
    assert_eq!(
        n[0],
        vec![
            summary.capture.txns_committed.to_string(),
            expected.to_string()
        ]
    );
    let multi = rows(
        &ctx,
        "SELECT array_to_string(tables, ',') FROM t ORDER BY _lsn LIMIT 1",
    )
    .await
    .unwrap();
    assert_eq!(multi[0][0], "public.accounts,public.events,public.items");

    // The confirmed position covers the durable LSN (past it only where nothing was in flight)
    // and never passes the server's own position.
    let row = db
        .client()
        .query_one(
            "SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    let confirmed: walaudit::Lsn = row.get::<_, String>(0).parse().unwrap();
    let current: walaudit::Lsn = row.get::<_, String>(1).parse().unwrap();
    assert!(!summary.durable_lsn.is_zero());
    assert!(
        confirmed >= summary.durable_lsn && confirmed <= current,
        "{confirmed}"
    );
}
