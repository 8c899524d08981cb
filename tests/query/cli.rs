//! `walaudit query` as a user runs it: the binary against a fabricated lake.

use std::process::{Command, Output};

use super::fixture;

fn walaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .env("WALAUDIT_LISTEN", "127.0.0.1:0")
        .args(args)
        .env_remove("WALAUDIT_LAKE")
        .env_remove("WALAUDIT_CONFIG")
        .output()
        .expect("run walaudit")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn query_prints_a_table_and_csv() {
    let lake = fixture().await;
    let sql = "SELECT id, status, pg_lsn(_lsn) AS lsn FROM current.public.orders ORDER BY id";
    let out = walaudit(&["query", sql, "--lake", lake.path()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "+----+---------+-------+",
            "| id | status  | lsn   |",
            "+----+---------+-------+",
            "| 1  | shipped | 0/400 |",
            "| 4  | moved   | 0/300 |",
            "+----+---------+-------+",
        ]
    );

    let out = Command::new(env!("CARGO_BIN_EXE_walaudit"))
        .env("WALAUDIT_LISTEN", "127.0.0.1:0")
        .args(["query", sql, "--format", "csv"])
        .env("WALAUDIT_LAKE", lake.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "id,status,lsn\n1,shipped,0/400\n4,moved,0/300\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn query_writes_parquet_to_a_file() {
    let lake = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.parquet");
    let out = walaudit(&[
        "query",
        "SELECT * FROM public.orders",
        "--lake",
        lake.path(),
        "--format",
        "parquet",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let reader = deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 7);

    let out = walaudit(&[
        "query",
        "SELECT 1",
        "--lake",
        lake.path(),
        "--format",
        "parquet",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("give a file with --output"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn query_errors_say_what_to_do() {
    let lake = fixture().await;
    let out = walaudit(&["query", "SELECT * FROM public.nope", "--lake", lake.path()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error: table public.nope is not in the lake at {}: has `walaudit run` captured it?",
            lake.path()
        )),
        "{err}"
    );

    let out = walaudit(&["query", "DROP TABLE public.orders", "--lake", lake.path()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("error: walaudit query is read-only"),
        "{}",
        stderr(&out)
    );

    let out = walaudit(&["query", "SELECT 1", "--lake", "/nonexistent/walaudit-lake"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the lake at /nonexistent/walaudit-lake does not exist"),
        "{}",
        stderr(&out)
    );
}
