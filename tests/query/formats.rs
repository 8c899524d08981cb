//! Output formats: each result written and read back.

use std::fs::File;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::arrow::util::display::array_value_to_string;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use walaudit::query::{LakeOptions, LakeQuery, OutputFormat, ResultWriter};

use super::fixture;

const SQL: &str = "SELECT id, status, pg_lsn(_lsn) AS lsn, _changed, _before \
                   FROM public.orders WHERE id = 1 ORDER BY _lsn, _seq";

/// Runs [`SQL`] into a file in `format` and returns the file's path (kept in `dir`).
async fn write(format: OutputFormat, dir: &tempfile::TempDir, name: &str) -> std::path::PathBuf {
    let lake = fixture().await;
    let session = LakeQuery::open(lake.path(), LakeOptions::default())
        .await
        .unwrap();
    let batches = session.collect(SQL).await.unwrap();
    let path = dir.path().join(name);
    let file = File::create(&path).unwrap();
    let mut writer = ResultWriter::new(format, batches[0].schema(), Box::new(file)).unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    writer.finish().unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(OutputFormat::Csv, &dir, "out.csv").await;
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows[0], "id,status,lsn,_changed,_before");
    // Nested columns are written as text; a null stays empty.
    assert_eq!(rows[1], "1,new,0/100,,");
    assert_eq!(rows[2], "1,paid,0/200,,");
    assert_eq!(rows[3], "1,shipped,0/400,,");
    assert_eq!(rows.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_lines_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(OutputFormat::Json, &dir, "out.json").await;
    let text = std::fs::read_to_string(path).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], 1);
    assert_eq!(rows[1]["status"], "paid");
    assert_eq!(rows[2]["lsn"], "0/400");
    assert!(rows[2]["_before"].is_null());
    assert!(rows[2].as_object().unwrap().contains_key("_changed"));
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(OutputFormat::Parquet, &dir, "out.parquet").await;
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let batch = deltalake::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 3);
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(ids.values(), &[1, 1, 1]);
    let status = batch.column_by_name("status").unwrap();
    assert_eq!(array_value_to_string(status, 2).unwrap(), "shipped");
    assert!(batch.column_by_name("_before").unwrap().is_null(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn table_of_an_empty_result_has_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let lake = fixture().await;
    let session = LakeQuery::open(lake.path(), LakeOptions::default())
        .await
        .unwrap();
    let mut schema = None;
    session
        .sql("SELECT id, status FROM public.orders WHERE id = 42", |_| {
            Ok(())
        })
        .await
        .map(|s| schema = Some(s))
        .unwrap();
    let path = dir.path().join("out.txt");
    let writer = ResultWriter::new(
        OutputFormat::Table,
        schema.unwrap(),
        Box::new(File::create(&path).unwrap()),
    )
    .unwrap();
    writer.finish().unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "+----+--------+",
            "| id | status |",
            "+----+--------+",
            "+----+--------+"
        ]
    );
}
