//! Fidelity: the lake, and the views over it, agree with the source on what real schemas do:
//! unchanged TOAST values, keyless tables with duplicate rows, lossless widenings (in
//! `lake::evolution`), decimal literals. Each test compares `current.<t>` with the source
//! table as multisets: every row, every column, duplicates counted.

use std::path::Path;

use walaudit::query::{LakeOptions, LakeQuery};

use crate::lake::{lake_rows, pg_rows};
use crate::snapshot::{check, walaudit};
use crate::support::TestDb;

mod decimal;
mod keyless;
mod reload;
mod subscription;
mod toast;

/// `walaudit run --drain` with `args` into `lake`; panics with the engine's log on failure.
pub async fn drain(db: &TestDb, dir: &Path, lake: &str, args: &[&str]) {
    let cfg = crate::snapshot::config(dir, "");
    let mut all = vec!["run", "--drain"];
    all.extend_from_slice(args);
    let out = walaudit(db, &cfg, lake, &all).output().await.unwrap();
    check(&out, "run --drain");
}

/// The rows of `lake_sql` over the lake and of `pg_sql` on the source, each sorted: equal
/// means the same multiset of rows.
pub async fn assert_same_rows(db: &TestDb, lake: &str, lake_sql: &str, pg_sql: &str) {
    let query = LakeQuery::open(lake, LakeOptions::default()).await.unwrap();
    let mut got = lake_rows(&query, lake_sql)
        .await
        .unwrap_or_else(|e| panic!("{lake_sql}: {e:?}"));
    let mut want = pg_rows(db, pg_sql).await.unwrap();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "lake ({lake_sql}) differs from the source ({pg_sql})"
    );
}

/// The source's current time, for `as_of` cutoffs between two commits.
pub async fn source_now(db: &TestDb) -> String {
    let row = db
        .client()
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', \
                            'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .unwrap();
    row.get(0)
}

/// `current.public.<table>` equals `SELECT <columns> FROM <table>` on the source, every column
/// rendered as text on both sides, as multisets.
pub async fn assert_table_equals_source(db: &TestDb, lake: &str, table: &str, columns: &[&str]) {
    let lake_cols: Vec<String> = columns
        .iter()
        .map(|c| format!("CAST(\"{c}\" AS VARCHAR) AS \"{c}\""))
        .collect();
    let pg_cols: Vec<String> = columns.iter().map(|c| format!("\"{c}\"::text")).collect();
    assert_same_rows(
        db,
        lake,
        &format!(
            "SELECT {} FROM current.public.\"{table}\"",
            lake_cols.join(", ")
        ),
        &format!("SELECT {} FROM \"{table}\"", pg_cols.join(", ")),
    )
    .await;
}

/// The single value of `sql` over the lake.
pub async fn lake_value(lake: &str, sql: &str) -> String {
    let query = LakeQuery::open(lake, LakeOptions::default()).await.unwrap();
    let got = lake_rows(&query, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    assert_eq!(got.len(), 1, "{sql}: {got:?}");
    got[0][0].clone()
}

/// A temporary directory and the lake path inside it.
pub fn lake_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").to_str().unwrap().to_owned();
    (dir, lake)
}
