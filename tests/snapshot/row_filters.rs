//! Publication row filters (PostgreSQL 15): the load copies exactly the rows the publication
//! publishes, so `current` equals `SELECT … FROM t WHERE <filter>` after updates that move
//! rows into and out of the filter, and deletes of rows outside it. Column lists hold, with a
//! filter and without one.

use super::{
    affected, assert_current_is, check, config, loads, op_counts, ops, pg_count, walaudit,
};
use crate::lake::lake_rows;
use crate::support::shared;
use walaudit::query::{LakeOptions, LakeQuery};

/// Table, its row filter in SQL valid in both Postgres and DataFusion, and its published
/// columns rendered as text (DataFusion, Postgres).
struct Filtered {
    table: &'static str,
    filter: &'static str,
    columns: &'static [(&'static str, &'static str)],
}

const ACCT: Filtered = Filtered {
    table: "acct",
    filter: "status <> 'closed' AND balance >= 0",
    columns: &[
        ("CAST(id AS VARCHAR)", "id::text"),
        ("status", "status"),
        ("CAST(balance AS VARCHAR)", "balance::text"),
        ("region", "region"),
    ],
};
const TINY: Filtered = Filtered {
    table: "tiny",
    filter: "k % 3 = 0",
    columns: &[
        ("CAST(k AS VARCHAR)", "k::text"),
        ("CAST(v AS VARCHAR)", "v::text"),
    ],
};
const COLS: Filtered = Filtered {
    table: "cols",
    filter: "id > 1000",
    columns: &[
        ("CAST(id AS VARCHAR)", "id::text"),
        ("a", "a"),
        ("CAST(n AS VARCHAR)", "n::text"),
    ],
};
const LISTED: Filtered = Filtered {
    table: "listed",
    filter: "TRUE",
    columns: &[("CAST(id AS VARCHAR)", "id::text"), ("a", "a")],
};
const PART: Filtered = Filtered {
    table: "part",
    filter: "v >= 5",
    columns: &[
        ("CAST(id AS VARCHAR)", "id::text"),
        ("CAST(v AS VARCHAR)", "v::text"),
    ],
};

#[tokio::test(flavor = "multi_thread")]
async fn row_filtered_tables_hold_exactly_what_the_publication_publishes() {
    let db = shared().await.fresh_db("snap_row_filter").await.unwrap();
    db.execute(
        "-- A filter on non-key columns needs REPLICA IDENTITY FULL for updates and deletes.
         CREATE TABLE acct (id int PRIMARY KEY, status text NOT NULL, balance numeric(12,2),
                            region text);
         ALTER TABLE acct REPLICA IDENTITY FULL;
         INSERT INTO acct SELECT g, (ARRAY['open', 'closed', 'frozen'])[g % 3 + 1],
             CASE WHEN g % 11 = 0 THEN NULL ELSE (g % 200) - 50 END, 'r' || (g % 5)
         FROM generate_series(1, 5000) g;
         -- A filter on the key: the default replica identity is enough.
         CREATE TABLE tiny (k int PRIMARY KEY, v int);
         INSERT INTO tiny SELECT g, g FROM generate_series(1, 3000) g;
         -- A column list with a filter, and one without.
         CREATE TABLE cols (id int PRIMARY KEY, a text, secret text, n int);
         INSERT INTO cols SELECT g, 'a' || g, 'secret' || g, g % 10 FROM generate_series(1, 4000) g;
         CREATE TABLE listed (id int PRIMARY KEY, a text, hidden text);
         INSERT INTO listed SELECT g, 'a' || g, 'h' || g FROM generate_series(1, 1500) g;
         -- A partitioned root published via the root, with the root's filter.
         CREATE TABLE part (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
         CREATE TABLE part_1 PARTITION OF part FOR VALUES FROM (MINVALUE) TO (2000);
         CREATE TABLE part_2 PARTITION OF part FOR VALUES FROM (2000) TO (MAXVALUE);
         ALTER TABLE part_1 REPLICA IDENTITY FULL;
         ALTER TABLE part_2 REPLICA IDENTITY FULL;
         INSERT INTO part SELECT g, g % 10 FROM generate_series(1, 4000) g;
         -- Analyzed tables are sized by the planner's estimate of the filter, others counted.
         ANALYZE acct, cols;
         CREATE PUBLICATION walaudit FOR TABLE
             acct WHERE (status <> 'closed' AND balance >= 0),
             tiny WHERE (k % 3 = 0),
             cols (id, a, n) WHERE (id > 1000),
             listed (id, a),
             part WHERE (v >= 5)
         WITH (publish_via_partition_root = true);",
    )
    .await
    .unwrap();
    let all = [&ACCT, &TINY, &COLS, &LISTED, &PART];
    let mut at_load = Vec::new();
    for t in all {
        let sql = format!("SELECT count(*) FROM {} WHERE {}", t.table, t.filter);
        at_load.push(pg_count(&db, &sql).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    let cfg = config(dir.path(), "chunk_rows = 700\nworkers = 2");
    let out = walaudit(&db, &cfg, &lake, &["run", "--drain"])
        .output()
        .await
        .unwrap();
    check(&out, "run --drain with the initial load");

    let records = loads(&lake).await;
    for (t, rows) in all.iter().zip(&at_load) {
        let r = records
            .iter()
            .find(|r| r.table == format!("public.{}", t.table))
            .unwrap_or_else(|| panic!("no load of {}: {records:?}", t.table));
        assert_eq!(r.status, "done", "{r:?}");
        // The audit record's count applies the filter too.
        assert_eq!(r.rows_written, *rows, "{r:?}");
        assert_eq!(r.source_rows, Some(*rows), "{r:?}");
        // Chunks of about 700 copied rows.
        assert!(
            r.chunks >= rows / 700 / 2 && r.chunks <= rows / 700 + 2,
            "{r:?}"
        );
    }
    assert_no_image_outside_the_filter(&lake, &all).await;

    // acct: every case of PG15's rule for an UPDATE under a row filter.
    let inside = "status <> 'closed' AND balance >= 0";
    let acct_updated = affected(
        &db,
        &format!("UPDATE acct SET balance = balance + 1 WHERE {inside} AND id % 7 = 0"),
    )
    .await;
    // The old row matches, the new one does not: published as a DELETE.
    let acct_out = affected(
        &db,
        "UPDATE acct SET status = 'closed' WHERE status = 'open' AND balance >= 0 AND id % 5 = 0",
    )
    .await;
    // The old row does not match, the new one does: published as an INSERT of the new row.
    let acct_in = affected(
        &db,
        "UPDATE acct SET status = 'open' WHERE status = 'closed' AND balance >= 0 AND id % 4 = 0",
    )
    .await
        + affected(
            &db,
            "UPDATE acct SET balance = 10 WHERE balance IS NULL AND status <> 'closed' \
             AND id % 2 = 0",
        )
        .await;
    // Neither matches: nothing is published.
    affected(
        &db,
        "UPDATE acct SET region = 'x' WHERE status = 'closed' AND id % 3 = 0",
    )
    .await;
    // Deletes outside the filter publish nothing; the rows were never in the lake.
    let deleted_outside = affected(
        &db,
        "DELETE FROM acct WHERE (status = 'closed' OR balance < 0 OR balance IS NULL) \
         AND id % 6 = 1",
    )
    .await;
    assert!(deleted_outside > 0);
    let acct_deleted = affected(
        &db,
        &format!("DELETE FROM acct WHERE {inside} AND id % 9 = 0"),
    )
    .await;
    let acct_inserted = affected(
        &db,
        "INSERT INTO acct SELECT g, 'open', 5, 'new' FROM generate_series(5001, 5050) g",
    )
    .await;
    affected(
        &db,
        "INSERT INTO acct SELECT g, 'closed', 5, 'new' FROM generate_series(5051, 5100) g",
    )
    .await;

    // tiny: rows move in and out of the filter by key updates.
    let tiny_updated = affected(
        &db,
        "UPDATE tiny SET v = v + 1 WHERE k % 3 = 0 AND k % 2 = 0",
    )
    .await;
    let tiny_out = affected(
        &db,
        "UPDATE tiny SET k = k + 100001 WHERE k % 3 = 0 AND k % 5 = 0",
    )
    .await;
    let tiny_in = affected(
        &db,
        "UPDATE tiny SET k = k + 200000 WHERE k % 3 = 1 AND k % 7 = 0",
    )
    .await;
    affected(&db, "UPDATE tiny SET v = 0 WHERE k % 3 = 1 AND k % 11 = 0").await;
    affected(&db, "DELETE FROM tiny WHERE k % 3 = 2 AND k % 4 = 0").await;
    let tiny_deleted = affected(&db, "DELETE FROM tiny WHERE k % 3 = 0 AND k % 13 = 0").await;

    // cols: a column list with a filter on the key.
    let cols_updated = affected(
        &db,
        "UPDATE cols SET a = 'upd', secret = 'changed' WHERE id % 10 = 0 AND id > 1000",
    )
    .await;
    affected(
        &db,
        "UPDATE cols SET a = 'upd', secret = 'changed' WHERE id % 10 = 0 AND id <= 1000",
    )
    .await;
    let cols_in = affected(
        &db,
        "UPDATE cols SET id = id + 5000 WHERE id <= 1000 AND id % 7 = 0",
    )
    .await;
    let cols_out = affected(
        &db,
        "UPDATE cols SET id = -id WHERE id > 1000 AND id % 9 = 0",
    )
    .await;
    affected(&db, "DELETE FROM cols WHERE id <= 1000 AND id % 3 = 0").await;
    let cols_deleted = affected(&db, "DELETE FROM cols WHERE id > 1000 AND id % 11 = 0").await;

    // listed: a column list alone; an update of a column outside it is still published.
    let listed_updated = affected(&db, "UPDATE listed SET a = 'upd' WHERE id % 4 = 0").await
        + affected(&db, "UPDATE listed SET hidden = 'changed' WHERE id % 5 = 0").await;
    let listed_deleted = affected(&db, "DELETE FROM listed WHERE id % 6 = 0").await;
    let listed_inserted = affected(
        &db,
        "INSERT INTO listed SELECT g, 'new', 'h' FROM generate_series(1501, 1550) g",
    )
    .await;

    // part: the root's filter, and partition-key moves inside and out of it.
    let part_updated = affected(
        &db,
        "UPDATE part SET v = v + 10 WHERE v >= 5 AND id % 3 = 0",
    )
    .await;
    let part_out = affected(&db, "UPDATE part SET v = 0 WHERE v >= 5 AND id % 4 = 0").await;
    let part_in = affected(&db, "UPDATE part SET v = 7 WHERE v < 5 AND id % 6 = 0").await;
    // A move between partitions is a DELETE and an INSERT of the root, each filtered.
    let part_moved = affected(
        &db,
        "UPDATE part SET id = id + 10000 WHERE v >= 5 AND id < 2000 AND id % 7 = 0",
    )
    .await;
    let part_moved_out = affected(
        &db,
        "UPDATE part SET id = id + 20000, v = 1 WHERE v >= 5 AND id < 2000 AND id % 11 = 0",
    )
    .await;
    affected(&db, "DELETE FROM part WHERE v < 5 AND id % 5 = 0").await;
    let part_deleted = affected(&db, "DELETE FROM part WHERE v >= 5 AND id % 13 = 0").await;

    let out = walaudit(&db, &cfg, &lake, &["run", "--drain"])
        .output()
        .await
        .unwrap();
    check(&out, "run --drain streaming the changes");

    for t in all {
        let source = format!("{} WHERE {}", t.table, t.filter);
        assert_current_is(
            &db,
            &lake,
            &format!("public.{}", t.table),
            t.columns,
            &source,
        )
        .await;
    }
    assert_no_image_outside_the_filter(&lake, &all).await;
    let expected = [
        ops(&[
            ("r", at_load[0]),
            ("u", acct_updated),
            ("d", acct_out + acct_deleted),
            ("c", acct_in + acct_inserted),
        ]),
        ops(&[
            ("r", at_load[1]),
            ("u", tiny_updated),
            ("d", tiny_out + tiny_deleted),
            ("c", tiny_in),
        ]),
        ops(&[
            ("r", at_load[2]),
            ("u", cols_updated),
            ("d", cols_out + cols_deleted),
            ("c", cols_in),
        ]),
        ops(&[
            ("r", at_load[3]),
            ("u", listed_updated),
            ("d", listed_deleted),
            ("c", listed_inserted),
        ]),
        ops(&[
            ("r", at_load[4]),
            ("u", part_updated),
            ("d", part_out + part_moved + part_moved_out + part_deleted),
            ("c", part_in + part_moved),
        ]),
    ];
    for (t, want) in all.iter().zip(expected) {
        let got = op_counts(&lake, &format!("public.{}", t.table)).await;
        assert_eq!(got, want, "changes per _op of {}", t.table);
    }

    // The columns outside a column list never reach the lake.
    let query = LakeQuery::open(&lake, LakeOptions::default())
        .await
        .unwrap();
    for (table, hidden) in [("cols", "secret"), ("listed", "hidden")] {
        let sql = format!("SELECT {hidden} FROM public.{table}");
        assert!(
            lake_rows(&query, &sql).await.is_err(),
            "public.{table} has the column {hidden}, which the column list leaves out"
        );
    }
}

/// No `r` row of any table fails its filter (the stream's rows pass it by construction).
async fn assert_no_image_outside_the_filter(lake: &str, tables: &[&Filtered]) {
    let query = LakeQuery::open(lake, LakeOptions::default()).await.unwrap();
    for t in tables {
        let sql = format!(
            "SELECT count(*) FROM public.{} WHERE _op = 'r' AND ({}) IS NOT TRUE",
            t.table, t.filter
        );
        let n = lake_rows(&query, &sql).await.unwrap();
        assert_eq!(
            n[0][0], "0",
            "snapshot rows of {} outside its filter",
            t.table
        );
    }
}
