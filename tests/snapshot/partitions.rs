//! Partitioned tables. Published via the root (`publish_via_partition_root = true`), a root's
//! rows are loaded from all its partitions under the root's name, whatever its chunking (an
//! integer key, a composite key, no key at all); published leaf by leaf (the default), each
//! leaf is loaded once under its own name, and a sub-partitioned middle level is not loaded.
//! Rows that move between partitions end up right in `current` either way. Partitions attached,
//! detached or truncated after the load behave as the README's known gaps describe.

use std::collections::BTreeMap;
use std::path::Path;

use super::{
    affected, assert_current_is, check, config, loads, op_counts, ops, pg_count, walaudit,
};
use crate::support::{TestDb, shared};

/// A list-partitioned root with a range-partitioned middle level and a default partition;
/// 12,000 rows, a composite primary key.
const EV: &str = "
    CREATE TABLE ev (id bigint NOT NULL, region text NOT NULL, v int, note text,
                     PRIMARY KEY (region, id)) PARTITION BY LIST (region);
    CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu') PARTITION BY RANGE (id);
    CREATE TABLE ev_eu_lo PARTITION OF ev_eu FOR VALUES FROM (MINVALUE) TO (5000);
    CREATE TABLE ev_eu_hi PARTITION OF ev_eu FOR VALUES FROM (5000) TO (MAXVALUE);
    CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
    CREATE TABLE ev_rest PARTITION OF ev DEFAULT;
    INSERT INTO ev SELECT g, (ARRAY['eu', 'us', 'ap'])[g % 3 + 1], nullif(g % 100, 7), 'n' || g
    FROM generate_series(1, 12000) g;";

const EV_COLUMNS: [(&str, &str); 4] = [
    ("CAST(id AS VARCHAR)", "id::text"),
    ("region", "region"),
    ("CAST(v AS VARCHAR)", "v::text"),
    ("note", "note"),
];

/// Changes to `ev` in every partition: inserts, updates in place, updates of the partition key
/// (across the top level, within the sub-partitioned level, into the default partition) and
/// deletes. Returns (inserted, updated in place, moved, deleted) rows.
async fn change_ev(db: &TestDb) -> (i64, i64, i64, i64) {
    let inserted = affected(
        db,
        "INSERT INTO ev SELECT g, (ARRAY['eu', 'us', 'ap'])[g % 3 + 1], 1, 'new' \
         FROM generate_series(12001, 12300) g",
    )
    .await;
    let updated = affected(
        db,
        "UPDATE ev SET v = coalesce(v, 0) + 1000, note = 'upd' WHERE id % 50 = 1",
    )
    .await;
    // Keys stay unique: every id has one region, and `id % 3 = 0` (eu) plus 10000 is a us id.
    let moved = affected(
        db,
        "UPDATE ev SET region = 'us', note = 'moved' WHERE region = 'eu' AND id % 97 = 0",
    )
    .await
        + affected(
            db,
            "UPDATE ev SET id = id + 10000 WHERE region = 'eu' AND id < 5000 AND id % 89 = 0",
        )
        .await
        + affected(
            db,
            "UPDATE ev SET region = 'ap' WHERE region = 'us' AND id % 83 = 0",
        )
        .await;
    let deleted = affected(db, "DELETE FROM ev WHERE id % 41 = 0").await;
    assert!(inserted > 0 && updated > 0 && moved > 0 && deleted > 0);
    (inserted, updated, moved, deleted)
}

async fn run_drain(db: &TestDb, cfg: &Path, lake: &str, what: &str) {
    let out = walaudit(db, cfg, lake, &["run", "--drain"])
        .output()
        .await
        .unwrap();
    check(&out, what);
}

/// Every load record, by table.
async fn loads_by_table(lake: &str) -> BTreeMap<String, walaudit::snapshot::LoadRecord> {
    loads(lake)
        .await
        .into_iter()
        .map(|r| (r.table.clone(), r))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn root_published_via_root_is_loaded_from_every_partition() {
    let db = shared().await.fresh_db("snap_part_root").await.unwrap();
    db.execute(EV).await.unwrap();
    db.execute(
        "CREATE TABLE nums (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
         CREATE TABLE nums_lo PARTITION OF nums FOR VALUES FROM (MINVALUE) TO (3000);
         CREATE TABLE nums_hi PARTITION OF nums FOR VALUES FROM (3000) TO (MAXVALUE);
         INSERT INTO nums SELECT g, md5(g::text) FROM generate_series(1, 6000) g;
         -- No key: chunked by ctid pages of the leaves.
         CREATE TABLE logs (n int NOT NULL, msg text) PARTITION BY RANGE (n);
         CREATE TABLE logs_a PARTITION OF logs FOR VALUES FROM (MINVALUE) TO (1000);
         CREATE TABLE logs_b PARTITION OF logs FOR VALUES FROM (1000) TO (MAXVALUE);
         ALTER TABLE logs REPLICA IDENTITY FULL;
         ALTER TABLE logs_a REPLICA IDENTITY FULL;
         ALTER TABLE logs_b REPLICA IDENTITY FULL;
         INSERT INTO logs SELECT g, md5(g::text) FROM generate_series(1, 8000) g;
         -- The leaves have statistics, the root none (reltuples -1): sizes come from the leaves.
         ANALYZE logs_a, logs_b;
         -- Only a sub-partitioned middle level published: loaded under its own name.
         CREATE TABLE grid (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
         CREATE TABLE grid_a PARTITION OF grid FOR VALUES FROM (0) TO (1000)
             PARTITION BY RANGE (id);
         CREATE TABLE grid_a1 PARTITION OF grid_a FOR VALUES FROM (0) TO (500);
         CREATE TABLE grid_a2 PARTITION OF grid_a FOR VALUES FROM (500) TO (1000);
         CREATE TABLE grid_b PARTITION OF grid FOR VALUES FROM (1000) TO (MAXVALUE);
         INSERT INTO grid SELECT g, g FROM generate_series(0, 1998, 2) g;
         -- ev_eu is named too, but under its published root it is not loaded apart.
         CREATE PUBLICATION walaudit FOR TABLE ev, ev_eu, nums, logs, grid_a
             WITH (publish_via_partition_root = true);",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.to_str().unwrap().to_owned();
    let cfg = config(dir.path(), "chunk_rows = 1000\nworkers = 2");
    run_drain(&db, &cfg, &lake, "run --drain with the initial load").await;

    let records = loads_by_table(&lake).await;
    let tables: Vec<&str> = records.keys().map(String::as_str).collect();
    assert_eq!(
        tables,
        ["public.ev", "public.grid_a", "public.logs", "public.nums"],
        "one load per published root, none per partition"
    );
    for (table, rows) in [
        ("ev", 12000),
        ("nums", 6000),
        ("logs", 8000),
        ("grid_a", 500),
    ] {
        let r = &records[&format!("public.{table}")];
        assert_eq!(r.status, "done", "{r:?}");
        assert_eq!(r.kind, "initial", "{r:?}");
        assert_eq!(r.rows_written, rows, "{r:?}");
        assert_eq!(r.source_rows, Some(rows), "{r:?}");
        if table != "grid_a" {
            assert!(r.chunks > 1, "{table} was planned as one chunk: {r:?}");
        }
    }
    for leaf in [
        "ev_eu", "ev_eu_lo", "ev_us", "ev_rest", "nums_lo", "logs_a", "grid_a1",
    ] {
        assert!(
            !lake_dir.join("public").join(leaf).exists(),
            "the partition {leaf} has a change table of its own"
        );
    }

    let (inserted, updated, moved, deleted) = change_ev(&db).await;
    let nums_moved = affected(
        &db,
        "UPDATE nums SET id = id + 10000 WHERE id < 3000 AND id % 37 = 0",
    )
    .await;
    let nums_inserted = affected(
        &db,
        "INSERT INTO nums SELECT g, 'new' FROM generate_series(6001, 6100) g",
    )
    .await;
    let nums_updated = affected(&db, "UPDATE nums SET v = 'upd' WHERE id % 11 = 0").await;
    let nums_deleted = affected(&db, "DELETE FROM nums WHERE id % 13 = 0").await;
    let logs_moved = affected(
        &db,
        "UPDATE logs SET n = n + 20000 WHERE n < 1000 AND n % 7 = 0",
    )
    .await;
    let logs_inserted = affected(
        &db,
        "INSERT INTO logs SELECT g, 'new' || g FROM generate_series(8001, 8050) g",
    )
    .await;
    let logs_updated = affected(&db, "UPDATE logs SET msg = 'upd' || n WHERE n % 19 = 0").await;
    let logs_deleted = affected(&db, "DELETE FROM logs WHERE n % 23 = 0").await;
    // Moves within grid_a stay published, moves out of it are deletes of grid_a, and rows
    // of grid_b are not published (ids are even, so odd ones are free).
    db.execute(
        "UPDATE grid SET id = id + 501 WHERE id < 500 AND id % 3 = 0;
         UPDATE grid SET id = id + 1001, v = -v
         WHERE id BETWEEN 500 AND 999 AND id % 2 = 0 AND id % 7 = 0;
         UPDATE grid SET v = 0 WHERE id % 5 = 0;
         DELETE FROM grid WHERE id % 11 = 0;",
    )
    .await
    .unwrap();
    run_drain(&db, &cfg, &lake, "run --drain streaming the changes").await;

    assert_current_is(&db, &lake, "public.ev", &EV_COLUMNS, "ev").await;
    let nums_cols = [("CAST(id AS VARCHAR)", "id::text"), ("v", "v")];
    assert_current_is(&db, &lake, "public.nums", &nums_cols, "nums").await;
    let logs_cols = [("CAST(n AS VARCHAR)", "n::text"), ("msg", "msg")];
    assert_current_is(&db, &lake, "public.logs", &logs_cols, "logs").await;
    let grid_cols = [
        ("CAST(id AS VARCHAR)", "id::text"),
        ("CAST(v AS VARCHAR)", "v::text"),
    ];
    assert_current_is(&db, &lake, "public.grid_a", &grid_cols, "grid_a").await;
    assert!(!lake_dir.join("public").join("grid").exists());

    // Through the root, a partition-key update is published (PG15) as a DELETE and an INSERT
    // of the root, in one transaction; an update within a partition as an UPDATE.
    assert_eq!(
        op_counts(&lake, "public.ev").await,
        ops(&[
            ("r", 12000),
            ("c", inserted + moved),
            ("u", updated),
            ("d", deleted + moved)
        ])
    );
    assert_eq!(
        op_counts(&lake, "public.nums").await,
        ops(&[
            ("r", 6000),
            ("c", nums_inserted + nums_moved),
            ("u", nums_updated),
            ("d", nums_deleted + nums_moved)
        ])
    );
    assert_eq!(
        op_counts(&lake, "public.logs").await,
        ops(&[
            ("r", 8000),
            ("c", logs_inserted + logs_moved),
            ("u", logs_updated),
            ("d", logs_deleted + logs_moved)
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leaves_published_one_by_one_are_each_loaded_once() {
    let db = shared().await.fresh_db("snap_part_leaves").await.unwrap();
    db.execute(EV).await.unwrap();
    // The middle level named too: pg_publication_tables still lists each leaf once.
    db.execute("CREATE PUBLICATION walaudit FOR TABLE ev, ev_eu")
        .await
        .unwrap();
    let leaves = ["ev_eu_hi", "ev_eu_lo", "ev_rest", "ev_us"];
    let mut at_load = BTreeMap::new();
    for leaf in leaves {
        at_load.insert(
            leaf,
            pg_count(&db, &format!("SELECT count(*) FROM ONLY {leaf}")).await,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.to_str().unwrap().to_owned();
    let cfg = config(dir.path(), "chunk_rows = 1000\nworkers = 2");
    run_drain(&db, &cfg, &lake, "run --drain with the initial load").await;

    let records = loads_by_table(&lake).await;
    let tables: Vec<&str> = records.keys().map(String::as_str).collect();
    let want: Vec<String> = leaves.iter().map(|l| format!("public.{l}")).collect();
    assert_eq!(tables, want, "one load per leaf, none of ev or ev_eu");
    for leaf in leaves {
        let r = &records[&format!("public.{leaf}")];
        assert_eq!(r.status, "done", "{r:?}");
        assert_eq!(r.rows_written, at_load[leaf], "{r:?}");
        assert_eq!(r.source_rows, Some(r.rows_written), "{r:?}");
    }
    assert_eq!(at_load.values().sum::<i64>(), 12000);
    for parent in ["ev", "ev_eu"] {
        assert!(!lake_dir.join("public").join(parent).exists(), "{parent}");
    }

    let (inserted, updated, moved, deleted) = change_ev(&db).await;
    // A partition attached with rows: it joins the publication, so `run` loads it (`added`).
    db.execute(
        "CREATE TABLE ev_sa (id bigint NOT NULL, region text NOT NULL, v int, note text);
         INSERT INTO ev_sa SELECT g, 'sa', g % 100, 'before attach'
         FROM generate_series(20001, 20500) g;
         ALTER TABLE ev ATTACH PARTITION ev_sa FOR VALUES IN ('sa');",
    )
    .await
    .unwrap();
    let sa_inserted = affected(
        &db,
        "INSERT INTO ev SELECT g, 'sa', 1, 'after attach' FROM generate_series(20501, 20520) g",
    )
    .await;
    // A partition detached leaves the publication: its change table keeps what was published.
    db.execute(
        "CREATE TABLE rest_at_detach AS SELECT * FROM ev_rest;
         ALTER TABLE ev DETACH PARTITION ev_rest;
         UPDATE ev_rest SET note = 'after detach';",
    )
    .await
    .unwrap();
    run_drain(&db, &cfg, &lake, "run --drain streaming the changes").await;

    let sa = &loads_by_table(&lake).await["public.ev_sa"];
    assert_eq!(sa.kind, "added", "{sa:?}");
    assert_eq!(sa.rows_written, 500 + sa_inserted, "{sa:?}");
    assert_eq!(sa.source_rows, Some(sa.rows_written), "{sa:?}");
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for leaf in ["ev_eu_hi", "ev_eu_lo", "ev_us", "ev_sa"] {
        assert_current_is(
            &db,
            &lake,
            &format!("public.{leaf}"),
            &EV_COLUMNS,
            &format!("ONLY {leaf}"),
        )
        .await;
    }
    assert_current_is(&db, &lake, "public.ev_rest", &EV_COLUMNS, "rest_at_detach").await;
    for leaf in ["ev_eu_hi", "ev_eu_lo", "ev_us", "ev_sa", "ev_rest"] {
        for (op, n) in op_counts(&lake, &format!("public.{leaf}")).await {
            *totals.entry(op).or_default() += n;
        }
    }
    // Leaf by leaf, a partition-key update is a DELETE on the old leaf and an INSERT on the
    // new one; the rows inserted into ev_sa after ATTACH were streamed and loaded.
    assert_eq!(
        totals,
        ops(&[
            ("r", 12000 + 500 + sa_inserted),
            ("c", inserted + moved + sa_inserted),
            ("u", updated),
            ("d", deleted + moved)
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_attached_and_detached_under_a_root_published_via_root() {
    let db = shared().await.fresh_db("snap_part_attach").await.unwrap();
    db.execute(EV).await.unwrap();
    db.execute("CREATE PUBLICATION walaudit FOR TABLE ev WITH (publish_via_partition_root = true)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = lake_dir.to_str().unwrap().to_owned();
    let cfg = config(dir.path(), "chunk_rows = 4000\nworkers = 2");
    run_drain(&db, &cfg, &lake, "run --drain with the initial load").await;
    assert_current_is(&db, &lake, "public.ev", &EV_COLUMNS, "ev").await;

    // ATTACH publishes nothing: the 500 rows ev_sa held before are not streamed. Rows
    // inserted through the root afterwards are, and so is an update of an older row (its
    // full new image).
    db.execute(
        "CREATE TABLE ev_sa (id bigint NOT NULL, region text NOT NULL, v int, note text);
         INSERT INTO ev_sa SELECT g, 'sa', g % 100, 'before attach'
         FROM generate_series(20001, 20500) g;
         ALTER TABLE ev ATTACH PARTITION ev_sa FOR VALUES IN ('sa');
         INSERT INTO ev SELECT g, 'sa', 1, 'after attach' FROM generate_series(20501, 20520) g;
         UPDATE ev SET note = 'updated after attach' WHERE region = 'sa' AND id % 5 = 0;",
    )
    .await
    .unwrap();
    // DETACH publishes nothing either: ev_us's rows stay in the root's change table, and
    // what happens to the detached table later is not published.
    db.execute(
        "CREATE TABLE us_at_detach AS SELECT * FROM ev_us;
         ALTER TABLE ev DETACH PARTITION ev_us;
         UPDATE ev_us SET note = 'after detach';
         DELETE FROM ev_us WHERE id % 2 = 0;",
    )
    .await
    .unwrap();
    // Through the root, the server publishes a TRUNCATE of the root, never one of a single
    // partition: ev_rest's rows stay too.
    db.execute(
        "CREATE TABLE rest_at_truncate AS SELECT * FROM ev_rest;
         TRUNCATE ev_rest;",
    )
    .await
    .unwrap();
    run_drain(
        &db,
        &cfg,
        &lake,
        "run --drain after ATTACH, DETACH and TRUNCATE",
    )
    .await;
    let never_streamed = "region = 'sa' AND id <= 20500 AND id % 5 <> 0";
    assert_current_is(
        &db,
        &lake,
        "public.ev",
        &EV_COLUMNS,
        &format!(
            "(SELECT * FROM ev WHERE NOT ({never_streamed}) \
              UNION ALL SELECT * FROM us_at_detach \
              UNION ALL SELECT * FROM rest_at_truncate) AS lake_view"
        ),
    )
    .await;

    // The documented remedy: a re-snapshot of the root loads the attached rows, and, as a
    // finished load replaces what the views held before it, drops the rows of the detached
    // and the truncated partition.
    let out = walaudit(&db, &cfg, &lake, &["snapshot", "--tables", "public.ev"])
        .output()
        .await
        .unwrap();
    check(&out, "snapshot --tables public.ev");
    let requested = loads(&lake)
        .await
        .into_iter()
        .find(|r| r.kind == "requested")
        .expect("a requested load of ev");
    let rows = pg_count(&db, "SELECT count(*) FROM ev").await;
    assert_eq!(requested.rows_written, rows, "{requested:?}");
    assert_eq!(requested.source_rows, Some(rows), "{requested:?}");
    assert_current_is(&db, &lake, "public.ev", &EV_COLUMNS, "ev").await;
}
