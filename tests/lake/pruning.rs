//! Key lookups skip row groups: every file of a change table carries a bloom filter on its key
//! columns (capture, compaction), and a lookup of one random key reads about one row group
//! where file and row-group min/max statistics alone would read them all.

use deltalake::DeltaTable;
use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
use walaudit::query::{LakeOptions, LakeQuery};

use super::{drain_to_lake, lake_rows, open, setup};
use crate::support::shared;

/// Per Parquet file of `table`: the columns with a bloom filter in every row group, and the
/// row-group count.
fn bloom_columns(table: &DeltaTable) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    for uri in table.get_file_uris().unwrap() {
        let path = uri.strip_prefix("file://").unwrap_or(&uri).to_owned();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let meta = reader.metadata();
        let groups = meta.num_row_groups();
        let columns = meta.file_metadata().schema_descr().columns();
        let with_filter = (0..columns.len())
            .filter(|&c| {
                (0..groups).all(|g| meta.row_group(g).column(c).bloom_filter_offset().is_some())
            })
            .map(|c| columns[c].path().string())
            .collect();
        out.push((with_filter, groups));
    }
    out
}

/// `(total, matched)` of the `row_groups_pruned_bloom_filter` metric in an EXPLAIN ANALYZE plan
/// (DataFusion prints `N total → M matched`).
fn bloom_metric(plan: &str) -> (usize, usize) {
    let at = plan
        .find("row_groups_pruned_bloom_filter=")
        .unwrap_or_else(|| panic!("no bloom-filter metric in the plan:\n{plan}"));
    let rest = &plan[at + "row_groups_pruned_bloom_filter=".len()..];
    let numbers: Vec<usize> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .map(|s| s.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

#[tokio::test(flavor = "multi_thread")]
async fn key_lookups_skip_row_groups_by_bloom_filter() {
    let db = shared().await.fresh_db("lake_bloom").await.unwrap();
    db.execute(
        "CREATE TABLE keyed (id text PRIMARY KEY, v int); \
         CREATE TABLE pair (a int, b text, v int, PRIMARY KEY (a, b)); \
         CREATE TABLE loose (x int, y text); ALTER TABLE loose REPLICA IDENTITY FULL",
    )
    .await
    .unwrap();
    let slot = setup(&db).await.unwrap();
    // Random text keys: every file's min/max spans almost the whole key range.
    for round in 0..8 {
        db.execute(&format!(
            "INSERT INTO keyed SELECT md5(g || '-{round}'), g FROM generate_series(1, 400) g; \
             INSERT INTO pair SELECT g, 'k' || g, {round} FROM generate_series({}, {}) g; \
             INSERT INTO loose VALUES ({round}, 'x')",
            round * 50 + 1,
            round * 50 + 50
        ))
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    // One commit (one file) per transaction.
    drain_to_lake(&db, &slot, dir.path(), 400, true)
        .await
        .unwrap();

    let keyed = open(dir.path(), "public", "keyed").await.unwrap();
    let files = bloom_columns(&keyed);
    assert!(files.len() >= 8, "one file per transaction: {files:?}");
    for (columns, _) in &files {
        assert_eq!(columns, &["id"], "a filter on the key only");
    }
    let pair = open(dir.path(), "public", "pair").await.unwrap();
    for (columns, _) in bloom_columns(&pair) {
        assert_eq!(columns, ["a", "b"], "a filter on each key column");
    }
    let loose = open(dir.path(), "public", "loose").await.unwrap();
    for (columns, _) in bloom_columns(&loose) {
        assert!(
            columns.is_empty(),
            "REPLICA IDENTITY FULL, no filter: {columns:?}"
        );
    }

    let lake = dir.path().to_str().unwrap();
    let query = LakeQuery::open(lake, LakeOptions::default()).await.unwrap();
    let key: String = db.scalar("SELECT md5('250-5')").await.unwrap();
    let found = lake_rows(
        &query,
        &format!("SELECT v, _op FROM public.keyed WHERE id = '{key}'"),
    )
    .await
    .unwrap();
    assert_eq!(found, [["250", "c"]]);
    let plan = lake_rows(
        &query,
        &format!("EXPLAIN ANALYZE SELECT v FROM public.keyed WHERE id = '{key}'"),
    )
    .await
    .unwrap()
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("\n");
    let (total, matched) = bloom_metric(&plan);
    assert!(
        total >= 6 && matched <= 2,
        "the filters should leave about one of the row groups that statistics kept \
         ({total} total, {matched} matched):\n{plan}"
    );

    // Compaction keeps the filters.
    let (compacted, metrics) = walaudit::lake::maintenance::optimize(keyed).await.unwrap();
    assert!(metrics.num_files_removed >= 8, "{metrics:?}");
    for (columns, _) in bloom_columns(&compacted) {
        assert_eq!(columns, ["id"], "compacted files keep the key filter");
    }
    let query = LakeQuery::open(lake, LakeOptions::default()).await.unwrap();
    let found = lake_rows(
        &query,
        &format!("SELECT v, _op FROM public.keyed WHERE id = '{key}'"),
    )
    .await
    .unwrap();
    assert_eq!(found, [["250", "c"]]);
}
