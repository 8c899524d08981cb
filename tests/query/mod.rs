//! `walaudit query` and the query layer over a fabricated lake (no Postgres needed): change
//! logs, current state, as-of reconstruction, SQL functions, read-only enforcement, output
//! formats, errors with hints, and the CLI. Then the read-only query seam (`walaudit::sql`)
//! over that lake (`seam`) and over a real Postgres (`seam_pg`).

mod cli;
mod formats;
pub(crate) mod lake;
mod s3;
mod seam;
mod seam_pg;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::pretty::pretty_format_batches;
use walaudit::capture::Op;
use walaudit::decode::PgType;
use walaudit::query::{LakeOptions, LakeQuery, QueryError};

use lake::{TestLake, change, table, truncate, txn, update_with_before};

/// The result as trimmed lines of the aligned table, for exact comparisons.
fn lines(batches: &[RecordBatch]) -> Vec<String> {
    pretty_format_batches(batches)
        .expect("format")
        .to_string()
        .lines()
        .map(|l| l.trim().to_owned())
        .collect()
}

async fn query(lake: &TestLake, sql: &str) -> Vec<String> {
    let session = LakeQuery::open(lake.path(), LakeOptions::default())
        .await
        .expect("open lake");
    lines(
        &session
            .collect(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}")),
    )
}

async fn query_err(lake: &TestLake, sql: &str) -> QueryError {
    let session = LakeQuery::open(lake.path(), LakeOptions::default())
        .await
        .expect("open lake");
    session.collect(sql).await.expect_err(sql)
}

/// `public.orders` (key `id`) through four transactions:
/// * 0/100 @ +0m (alice): insert 1, 2, 3
/// * 0/200 @ +5m (bob): update 1 → paid; delete 2
/// * 0/300 @ +10m: update 3 changing its key to 4 (before image: key only)
/// * 0/400 @ +15m (carol): update 1 → shipped
///
/// `public.items` (no key, REPLICA IDENTITY FULL):
/// * 0/100 @ +0m: insert (a, 1), (b, 2)
/// * 0/250 @ +7m: truncate, then insert (c, 3) in the same transaction
/// * 0/350 @ +12m: insert (d, 4), (e, 5); delete (e, 5)
///
/// `_walaudit.transactions`: the four orders transactions.
pub(crate) async fn fixture() -> TestLake {
    let lake = TestLake::new();
    let orders = table(
        "public",
        "orders",
        &[
            ("id", PgType::Int8),
            ("status", PgType::Text),
            (
                "amount",
                PgType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
        ],
        &["id"],
    );
    lake.append(
        &orders,
        &["id"],
        &[
            (
                txn(0x100, 0, Some("alice")),
                vec![
                    change(
                        &orders,
                        Op::Insert,
                        0,
                        &[Some("1"), Some("new"), Some("10.00")],
                    ),
                    change(
                        &orders,
                        Op::Insert,
                        1,
                        &[Some("2"), Some("new"), Some("20.00")],
                    ),
                    change(
                        &orders,
                        Op::Insert,
                        2,
                        &[Some("3"), Some("new"), Some("30.00")],
                    ),
                ],
            ),
            (
                txn(0x200, 5, Some("bob")),
                vec![
                    change(
                        &orders,
                        Op::Update,
                        0,
                        &[Some("1"), Some("paid"), Some("10.00")],
                    ),
                    change(&orders, Op::Delete, 1, &[Some("2"), None, None]),
                ],
            ),
        ],
    )
    .await;
    lake.append(
        &orders,
        &["id"],
        &[
            (
                txn(0x300, 10, None),
                vec![update_with_before(
                    &orders,
                    0,
                    &[Some("3"), None, None],
                    true,
                    &[Some("4"), Some("moved"), Some("30.00")],
                )],
            ),
            (
                txn(0x400, 15, Some("carol")),
                vec![change(
                    &orders,
                    Op::Update,
                    0,
                    &[Some("1"), Some("shipped"), Some("10.00")],
                )],
            ),
        ],
    )
    .await;

    let items = table(
        "public",
        "items",
        &[("name", PgType::Text), ("qty", PgType::Int4)],
        &[],
    );
    lake.append(
        &items,
        &[],
        &[(
            txn(0x100, 0, None),
            vec![
                change(&items, Op::Insert, 0, &[Some("a"), Some("1")]),
                change(&items, Op::Insert, 1, &[Some("b"), Some("2")]),
            ],
        )],
    )
    .await;
    lake.append(
        &items,
        &[],
        &[
            (
                txn(0x250, 7, None),
                vec![
                    truncate(&items, 0),
                    change(&items, Op::Insert, 1, &[Some("c"), Some("3")]),
                ],
            ),
            (
                txn(0x350, 12, None),
                vec![
                    change(&items, Op::Insert, 0, &[Some("d"), Some("4")]),
                    change(&items, Op::Insert, 1, &[Some("e"), Some("5")]),
                    change(&items, Op::Delete, 2, &[Some("e"), Some("5")]),
                ],
            ),
        ],
    )
    .await;

    lake.append_transactions(&[
        (
            0x100,
            0x100,
            lake::T0,
            &["public.orders", "public.items"],
            Some("alice"),
        ),
        (
            0x200,
            0x200,
            lake::T0 + 5 * lake::MINUTE,
            &["public.orders"],
            Some("bob"),
        ),
    ])
    .await;
    lake
}

#[tokio::test(flavor = "multi_thread")]
async fn change_log_is_queryable() {
    let lake = fixture().await;
    let got = query(
        &lake,
        "SELECT id, _op, pg_lsn(_lsn) AS lsn, _seq, status, _actor, _commit_ts \
         FROM public.orders ORDER BY _lsn, _seq",
    )
    .await;
    assert_eq!(
        got,
        [
            "+----+-----+-------+------+---------+--------+----------------------+",
            "| id | _op | lsn   | _seq | status  | _actor | _commit_ts           |",
            "+----+-----+-------+------+---------+--------+----------------------+",
            "| 1  | c   | 0/100 | 0    | new     | alice  | 2024-01-01T10:00:00Z |",
            "| 2  | c   | 0/100 | 1    | new     | alice  | 2024-01-01T10:00:00Z |",
            "| 3  | c   | 0/100 | 2    | new     | alice  | 2024-01-01T10:00:00Z |",
            "| 1  | u   | 0/200 | 0    | paid    | bob    | 2024-01-01T10:05:00Z |",
            "| 2  | d   | 0/200 | 1    |         | bob    | 2024-01-01T10:05:00Z |",
            "| 4  | u   | 0/300 | 0    | moved   |        | 2024-01-01T10:10:00Z |",
            "| 1  | u   | 0/400 | 0    | shipped | carol  | 2024-01-01T10:15:00Z |",
            "+----+-----+-------+------+---------+--------+----------------------+",
        ]
    );
    // Unqualified names resolve in the default schema `public`; `lake` is the catalog.
    let got = query(
        &lake,
        "SELECT count(*) AS n FROM orders WHERE _lsn >= lsn('0/200')",
    )
    .await;
    assert_eq!(got[3], "| 4 |");
    let got = query(&lake, "SELECT count(*) AS n FROM lake.public.orders").await;
    assert_eq!(got[3], "| 7 |");
}

#[tokio::test(flavor = "multi_thread")]
async fn current_state_applies_updates_deletes_and_key_changes() {
    let lake = fixture().await;
    let got = query(
        &lake,
        "SELECT id, status, amount, pg_lsn(_lsn) AS lsn, _actor FROM current.public.orders ORDER BY id",
    )
    .await;
    assert_eq!(
        got,
        [
            "+----+---------+--------+-------+--------+",
            "| id | status  | amount | lsn   | _actor |",
            "+----+---------+--------+-------+--------+",
            "| 1  | shipped | 10.00  | 0/400 | carol  |",
            "| 4  | moved   | 30.00  | 0/300 |        |",
            "+----+---------+--------+-------+--------+",
        ]
    );
    // Only source columns plus _lsn, _commit_ts, _actor and _unavailable.
    let got = query(
        &lake,
        "SELECT column_name FROM information_schema.columns \
         WHERE table_catalog = 'current' AND table_name = 'orders' ORDER BY ordinal_position",
    )
    .await;
    let names: Vec<&str> = got[3..got.len() - 1]
        .iter()
        .map(|l| l.trim_matches(|c| c == '|' || c == ' '))
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "status",
            "amount",
            "_lsn",
            "_commit_ts",
            "_actor",
            "_unavailable"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn current_state_honours_truncate_and_keyless_identity() {
    let lake = fixture().await;
    let got = query(
        &lake,
        "SELECT name, qty, pg_lsn(_lsn) AS lsn FROM current.public.items ORDER BY name",
    )
    .await;
    assert_eq!(
        got,
        [
            "+------+-----+-------+",
            "| name | qty | lsn   |",
            "+------+-----+-------+",
            "| c    | 3   | 0/250 |",
            "| d    | 4   | 0/350 |",
            "+------+-----+-------+",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn as_of_returns_the_image_at_a_moment() {
    let lake = fixture().await;
    // Between the first and the second update of order 1.
    let got = query(
        &lake,
        "SELECT id, status, _actor FROM as_of('public.orders', TIMESTAMP '2024-01-01 10:07:00') ORDER BY id",
    )
    .await;
    assert_eq!(
        got,
        [
            "+----+--------+--------+",
            "| id | status | _actor |",
            "+----+--------+--------+",
            "| 1  | paid   | bob    |",
            "| 3  | new    | alice  |",
            "+----+--------+--------+",
        ]
    );
    // The bound is inclusive; a string works too, with a zone.
    let got = query(
        &lake,
        "SELECT id, status FROM as_of('public.orders', '2024-01-01T12:00:00+02:00') ORDER BY id",
    )
    .await;
    assert_eq!(
        got[3..6],
        ["| 1  | new    |", "| 2  | new    |", "| 3  | new    |"]
    );
    // Before the first change: nothing.
    let got = query(
        &lake,
        "SELECT count(*) AS n FROM as_of('public.orders', TIMESTAMP '2023-12-31 00:00:00')",
    )
    .await;
    assert_eq!(got[3], "| 0 |");
    // After everything: the current state.
    let now = query(
        &lake,
        "SELECT id, status FROM current.public.orders ORDER BY id",
    )
    .await;
    let late = query(
        &lake,
        "SELECT id, status FROM as_of('public.orders', now()) ORDER BY id",
    )
    .await;
    assert_eq!(now, late);
    // Truncates are honoured as of their moment.
    let got = query(
        &lake,
        "SELECT name FROM as_of('public.items', TIMESTAMP '2024-01-01 10:06:00') ORDER BY name",
    )
    .await;
    assert_eq!(got[3..5], ["| a    |", "| b    |"]);
    let got = query(
        &lake,
        "SELECT name FROM as_of('public.items', TIMESTAMP '2024-01-01 10:08:00') ORDER BY name",
    )
    .await;
    assert_eq!(got[3..5], ["| c    |", "+------+"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_tables_are_exposed() {
    let lake = fixture().await;
    let got = query(
        &lake,
        "SELECT pg_lsn(_lsn) AS lsn, _actor, change_count FROM _walaudit.transactions ORDER BY _lsn",
    )
    .await;
    assert_eq!(
        got[3..5],
        [
            "| 0/100 | alice  | 2            |",
            "| 0/200 | bob    | 1            |"
        ]
    );
    let session = LakeQuery::open(lake.path(), LakeOptions::default())
        .await
        .unwrap();
    let names: Vec<String> = session
        .tables()
        .iter()
        .map(|t| format!("{}.{} {:?} {:?}", t.schema, t.name, t.kind, t.key_columns))
        .collect();
    assert_eq!(
        names,
        [
            "_walaudit.transactions Engine []",
            "public.items Change [\"name\", \"qty\"]",
            "public.orders Change [\"id\"]",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_session_changes_are_refused() {
    let lake = fixture().await;
    for sql in [
        "CREATE TABLE t (x INT)",
        "CREATE VIEW v AS SELECT 1",
        "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/tmp/x.csv'",
        "DROP TABLE public.orders",
        "INSERT INTO public.orders (id) VALUES (9)",
        "DELETE FROM public.orders",
        "COPY (SELECT 1) TO '/tmp/walaudit-copy.csv'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let err = query_err(&lake, sql).await;
        assert!(matches!(err, QueryError::ReadOnly { .. }), "{sql}: {err:?}");
        let msg = err.to_string();
        assert!(msg.starts_with("walaudit query is read-only: "), "{msg}");
    }
    assert!(!std::path::Path::new("/tmp/walaudit-copy.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_tables_have_a_hint() {
    let lake = fixture().await;
    let expected = format!(
        "table public.nope is not in the lake at {}: has `walaudit run` captured it?",
        lake.path()
    );
    for sql in [
        "SELECT * FROM public.nope",
        "SELECT * FROM nope",
        "SELECT * FROM as_of('public.nope', TIMESTAMP '2024-01-01 00:00:00')",
    ] {
        let err = query_err(&lake, sql).await;
        assert!(
            matches!(err, QueryError::TableNotFound { .. }),
            "{sql}: {err:?}"
        );
        assert!(err.to_string().starts_with(&expected), "{sql}: {err}");
    }
    let err = query_err(&lake, "SELECT * FROM current.public.nope").await;
    assert!(
        err.to_string()
            .starts_with("table current.public.nope is not in the lake"),
        "{err}"
    );
    let err = LakeQuery::open("/nonexistent/walaudit-lake", LakeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::LakeNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("check --lake"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_stops_a_long_query() {
    let lake = fixture().await;
    let options = LakeOptions {
        timeout: Some(std::time::Duration::from_millis(200)),
        ..LakeOptions::default()
    };
    let session = LakeQuery::open(lake.path(), options).await.unwrap();
    let started = std::time::Instant::now();
    let err = session
        .collect("SELECT sum(value) FROM generate_series(1, 100000000000)")
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_pool_is_bounded() {
    use deltalake::datafusion::execution::memory_pool::MemoryLimit;
    let lake = fixture().await;
    let options = LakeOptions {
        memory_limit: 64 << 20,
        ..LakeOptions::default()
    };
    let session = LakeQuery::open(lake.path(), options).await.unwrap();
    let limit = session.memory_limit();
    assert!(matches!(limit, MemoryLimit::Finite(n) if n == 64 << 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn quoted_names_and_full_identity_updates() {
    let lake = TestLake::new();
    let orders = table(
        "Sales",
        "Orders",
        &[("Id", PgType::Int8), ("Note", PgType::Text)],
        &["Id"],
    );
    lake.append(
        &orders,
        &["Id"],
        &[
            (
                txn(0x100, 0, None),
                vec![
                    change(&orders, Op::Insert, 0, &[Some("1"), Some("a")]),
                    change(&orders, Op::Insert, 1, &[Some("2"), Some("b")]),
                ],
            ),
            (
                txn(0x200, 1, None),
                vec![update_with_before(
                    &orders,
                    0,
                    &[Some("1"), Some("a")],
                    false,
                    &[Some("1"), Some("z")],
                )],
            ),
            (
                txn(0x300, 2, None),
                vec![update_with_before(
                    &orders,
                    0,
                    &[Some("2"), Some("b")],
                    false,
                    &[Some("3"), Some("b")],
                )],
            ),
        ],
    )
    .await;
    let log = table(
        "Sales",
        "log",
        &[("msg", PgType::Text), ("n", PgType::Int4)],
        &[],
    );
    lake.append(
        &log,
        &[],
        &[
            (
                txn(0x100, 0, None),
                vec![
                    change(&log, Op::Insert, 0, &[Some("x"), Some("1")]),
                    change(&log, Op::Insert, 1, &[Some("y"), Some("2")]),
                ],
            ),
            (
                txn(0x200, 1, None),
                vec![update_with_before(
                    &log,
                    0,
                    &[Some("x"), Some("1")],
                    false,
                    &[Some("x"), Some("10")],
                )],
            ),
        ],
    )
    .await;

    let got = query(
        &lake,
        r#"SELECT "Id", "Note" FROM current."Sales"."Orders" ORDER BY "Id""#,
    )
    .await;
    assert_eq!(
        got[3..6],
        ["| 1  | z    |", "| 3  | b    |", "+----+------+"]
    );
    let got = query(
        &lake,
        r#"SELECT msg, n FROM current."Sales".log ORDER BY msg"#,
    )
    .await;
    assert_eq!(got[3..6], ["| x   | 10 |", "| y   | 2  |", "+-----+----+"]);
    let got = query(
        &lake,
        r#"SELECT "Id", "Note" FROM as_of('Sales.Orders', TIMESTAMP '2024-01-01 10:01:00') ORDER BY "Id""#,
    )
    .await;
    assert_eq!(
        got[3..6],
        ["| 1  | z    |", "| 2  | b    |", "+----+------+"]
    );
    // Unquoted names are lowercase, as in Postgres.
    let err = query_err(&lake, "SELECT * FROM Sales.Orders").await;
    assert!(matches!(err, QueryError::TableNotFound { .. }), "{err:?}");
}
