//! The read-only query seam (`walaudit::sql`) over a real Postgres: writes are refused and
//! change nothing, a deadline cancels the backend (which is idle when the call returns), a
//! dropped query does too, types arrive as exact Arrow values, errors carry SQLSTATEs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType,
};
use walaudit::source::ConnParams;
use walaudit::sql::{
    Dialect, Limits, PG_TYPE_KEY, PostgresOptions, PostgresTarget, ReadOnlySql, SqlError, SqlState,
};

use crate::support::{TestDb, shared, unique_name};

/// A handle on `db` whose backend shows up in `pg_stat_activity` as `app`.
async fn handle(db: &TestDb, app: &str) -> PostgresTarget {
    let mut params = ConnParams::parse(&db.url).unwrap();
    params.application_name = app.to_owned();
    PostgresTarget::connect(params, PostgresOptions::default())
        .await
        .unwrap()
}

/// Backends of `app` that are not idle (running, or inside a transaction).
async fn busy(db: &TestDb, app: &str) -> Vec<String> {
    let rows = db
        .client()
        .query(
            "SELECT coalesce(state, '') || ': ' || query FROM pg_stat_activity \
             WHERE application_name = $1 AND state IS DISTINCT FROM 'idle'",
            &[&app],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn text(handle: &PostgresTarget, sql: &str) -> String {
    let got = handle.query(sql, &Limits::default()).await.unwrap();
    got.concat()
        .unwrap()
        .column(0)
        .as_string::<i32>()
        .value(0)
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_refuses_writes_and_nothing_changes() {
    let db = shared().await.fresh_db("seam_writes").await.unwrap();
    db.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'); \
         CREATE SEQUENCE s",
    )
    .await
    .unwrap();
    let app = unique_name("seam_writes");
    let pg = handle(&db, &app).await;
    assert_eq!(pg.dialect(), Dialect::Postgres);
    for sql in [
        // Refused before they are sent.
        "INSERT INTO t VALUES (2, 'b')",
        "UPDATE t SET v = 'x'",
        "DELETE FROM t",
        "TRUNCATE t",
        "CREATE TABLE u (a int)",
        "DROP TABLE t",
        "COPY t FROM STDIN",
        "SET default_transaction_read_only = off",
        "COMMIT",
        "DO $$ BEGIN DELETE FROM t; END $$",
        // Refused by the read-only transaction.
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * INTO u FROM t",
        "SELECT nextval('s')",
        "EXPLAIN ANALYZE DELETE FROM t",
    ] {
        let err = pg.query(sql, &Limits::default()).await.unwrap_err();
        assert!(
            matches!(err, SqlError::ReadOnlyViolation { .. }),
            "{sql}: {err:?}"
        );
    }
    // A second statement cannot ride along: the server prepares one statement only.
    let err = pg
        .query("SELECT 1; DELETE FROM t", &Limits::default())
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some(&SqlState::SYNTAX_ERROR), "{err:?}");

    // What a query changes in the session dies with its transaction.
    pg.query(
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        &Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        text(
            &pg,
            "SELECT current_setting('default_transaction_read_only')"
        )
        .await,
        "on"
    );
    assert_eq!(
        text(&pg, "SELECT current_setting('transaction_read_only')").await,
        "on"
    );

    let rows: Vec<(i32, String)> = db
        .client()
        .query("SELECT id, v FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(1, "a".to_owned())]);
    let tables: i64 = db
        .scalar("SELECT count(*) FROM pg_class WHERE relname = 'u'")
        .await
        .unwrap();
    assert_eq!(tables, 0);
    let called: bool = db.scalar("SELECT is_called FROM s").await.unwrap();
    assert!(!called, "nextval ran");
    assert!(
        busy(&db, &app).await.is_empty(),
        "{:?}",
        busy(&db, &app).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_deadline_cancels_the_backend() {
    let db = shared().await.fresh_db("seam_deadline").await.unwrap();
    let app = unique_name("seam_deadline");
    let pg = handle(&db, &app).await;
    let started = Instant::now();
    let err = pg
        .query(
            "SELECT pg_sleep(5)",
            &Limits::with_deadline(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, SqlError::Timeout { deadline, .. } if deadline == Duration::from_millis(300)),
        "{err:?}"
    );
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(2)).contains(&took),
        "{took:?}"
    );
    // At once, not eventually: the backend is idle when Timeout is returned.
    assert!(
        busy(&db, &app).await.is_empty(),
        "{:?}",
        busy(&db, &app).await
    );
    // The same handle goes on.
    assert_eq!(text(&pg, "SELECT 'next'").await, "next");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_dropped_query_cancels_the_backend() {
    let db = shared().await.fresh_db("seam_dropped").await.unwrap();
    let app = unique_name("seam_dropped");
    let pg = handle(&db, &app).await;
    // The deadline (and so statement_timeout) is far away: only the cancel can stop it.
    let long = Limits::with_deadline(Duration::from_secs(120));
    let dropped = tokio::time::timeout(
        Duration::from_millis(500),
        pg.query("SELECT pg_sleep(60)", &long),
    )
    .await;
    assert!(dropped.is_err(), "pg_sleep(60) returned: {dropped:?}");
    let until = Instant::now() + Duration::from_secs(5);
    while !busy(&db, &app).await.is_empty() {
        assert!(
            Instant::now() < until,
            "still busy 5s after the drop: {:?}",
            busy(&db, &app).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    assert_eq!(text(&pg, "SELECT 'after'").await, "after");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_limits_cancel_and_the_handle_goes_on() {
    let db = shared().await.fresh_db("seam_limits").await.unwrap();
    let app = unique_name("seam_limits");
    let pg = handle(&db, &app).await;
    let limits = Limits {
        max_rows: 1000,
        ..Limits::default()
    };
    let started = Instant::now();
    let err = pg
        .query("SELECT generate_series(1, 1000000000) AS g", &limits)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SqlError::ResourcesExhausted { what, .. } if what == "more than 1000 rows"),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        busy(&db, &app).await.is_empty(),
        "{:?}",
        busy(&db, &app).await
    );

    // Errors carry their SQLSTATE and leave the connection usable.
    for (sql, code) in [
        ("SELECT * FROM nope", SqlState::UNDEFINED_TABLE),
        ("SELECT 1 / 0", SqlState::DIVISION_BY_ZERO),
        ("SELECT nope()", SqlState::UNDEFINED_FUNCTION),
    ] {
        let err = pg.query(sql, &Limits::default()).await.unwrap_err();
        assert_eq!(err.sqlstate(), Some(&code), "{sql}: {err:?}");
        assert!(err.to_string().starts_with("postgres "), "{err}");
    }
    // A value without an exact Arrow form fails the query, naming the column.
    for sql in [
        "SELECT 'NaN'::numeric(10,2) AS amount",
        "SELECT '0044-03-15 BC'::date AS amount",
    ] {
        let err = pg.query(sql, &Limits::default()).await.unwrap_err();
        assert!(
            matches!(&err, SqlError::Conversion { column, .. } if column == "amount"),
            "{sql}: {err:?}"
        );
    }
    assert_eq!(text(&pg, "SELECT 'ok'").await, "ok");

    // Queries from several tasks share the one connection in turn.
    let pg = Arc::new(pg);
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let pg = pg.clone();
            tokio::spawn(
                async move { text(&pg, &format!("SELECT pg_sleep(0.1)::text || '{i}'")).await },
            )
        })
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        assert_eq!(run.await.unwrap(), i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_types_become_exact_arrow_values() {
    let db = shared().await.fresh_db("seam_types").await.unwrap();
    db.execute(
        "CREATE TYPE mood AS ENUM ('ok', 'sad'); \
         CREATE TABLE kinds (i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, \
           amount numeric(12,2), big numeric, t text, vc varchar(10), c char(3), n name, \
           b bool, d date, ts timestamp, tstz timestamptz, u uuid, j json, jb jsonb, \
           by bytea, iv interval, m mood, arr int4[]); \
         INSERT INTO kinds VALUES (-2, 40000, 9007199254740993, 1.5, 0.1, 42.10, \
           3.14159265358979323846264338327950288419716939937510, 'ünï', 'var', 'ab', 'nm', \
           true, '2024-02-29', '2024-01-02 03:04:05.123456', \
           '2024-01-02 03:04:05.123456+02', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', \
           '{\"a\": 1}', '{\"b\": [1, 2]}', '\\x00ff', '1 day 2 hours', 'sad', '{1,NULL,3}'); \
         INSERT INTO kinds (i2) VALUES (NULL)",
    )
    .await
    .unwrap();
    let pg = handle(&db, &unique_name("seam_types")).await;
    let got = pg
        .query(
            "SELECT * FROM kinds ORDER BY i2 NULLS LAST",
            &Limits::default(),
        )
        .await
        .unwrap();
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let types: Vec<String> = got
        .schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    let list = DataType::List(Arc::new(deltalake::arrow::datatypes::Field::new(
        "element",
        DataType::Int32,
        true,
    )));
    let want: Vec<String> = [
        ("i2", DataType::Int16),
        ("i4", DataType::Int32),
        ("i8", DataType::Int64),
        ("f4", DataType::Float32),
        ("f8", DataType::Float64),
        ("amount", DataType::Decimal128(12, 2)),
        ("big", DataType::Utf8),
        ("t", DataType::Utf8),
        ("vc", DataType::Utf8),
        ("c", DataType::Utf8),
        ("n", DataType::Utf8),
        ("b", DataType::Boolean),
        ("d", DataType::Date32),
        ("ts", DataType::Timestamp(TimeUnit::Microsecond, None)),
        ("tstz", utc),
        ("u", DataType::Utf8),
        ("j", DataType::Utf8),
        ("jb", DataType::Utf8),
        ("by", DataType::Binary),
        ("iv", DataType::Utf8),
        ("m", DataType::Utf8),
        ("arr", list),
    ]
    .iter()
    .map(|(n, t)| format!("{n} {t}"))
    .collect();
    assert_eq!(types, want);
    let amount = got.schema.field_with_name("amount").unwrap();
    assert_eq!(amount.metadata()[PG_TYPE_KEY], "numeric");
    assert_eq!(
        got.schema.field_with_name("m").unwrap().metadata()[PG_TYPE_KEY],
        "mood"
    );

    let row = got.concat().unwrap();
    assert_eq!(row.num_rows(), 2);
    let col = |name: &str| row.column_by_name(name).unwrap().clone();
    let s = |name: &str| col(name).as_string::<i32>().value(0).to_owned();
    assert_eq!(col("i2").as_primitive::<Int16Type>().value(0), -2);
    assert_eq!(col("i4").as_primitive::<Int32Type>().value(0), 40_000);
    assert_eq!(
        col("i8").as_primitive::<Int64Type>().value(0),
        9_007_199_254_740_993
    );
    assert_eq!(col("f4").as_primitive::<Float32Type>().value(0), 1.5);
    assert_eq!(col("f8").as_primitive::<Float64Type>().value(0), 0.1);
    assert_eq!(
        col("amount").as_primitive::<Decimal128Type>().value(0),
        4210
    );
    assert_eq!(
        s("big"),
        "3.14159265358979323846264338327950288419716939937510"
    );
    assert_eq!(s("t"), "ünï");
    assert_eq!(s("vc"), "var");
    assert_eq!(s("c"), "ab ", "bpchar keeps its padding");
    assert_eq!(s("n"), "nm");
    assert!(col("b").as_boolean().value(0));
    assert_eq!(col("d").as_primitive::<Date32Type>().value(0), 19_782);
    let micros = 1_704_164_645_123_456;
    assert_eq!(
        col("ts")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        micros
    );
    assert_eq!(
        col("tstz")
            .as_primitive::<TimestampMicrosecondType>()
            .value(0),
        micros - 2 * 3_600_000_000
    );
    assert_eq!(s("u"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(s("j"), "{\"a\": 1}");
    assert_eq!(s("jb"), "{\"b\": [1, 2]}");
    assert_eq!(col("by").as_binary::<i32>().value(0), &[0, 255]);
    assert_eq!(s("iv"), "1 day 02:00:00");
    assert_eq!(s("m"), "sad");
    let arr = col("arr");
    let elems = arr.as_list::<i32>().value(0);
    let elems = elems.as_primitive::<Int32Type>();
    assert_eq!(elems.len(), 3);
    assert_eq!(
        (elems.value(0), elems.is_null(1), elems.value(2)),
        (1, true, 3)
    );
    for c in row.columns() {
        assert!(c.is_null(1), "the all-null row");
    }

    // An aggregate has no typmod: its exact text.
    assert_eq!(
        text(&pg, "SELECT sum(amount) + 0.001 AS total FROM kinds").await,
        "42.101"
    );
    // Zero rows carry the schema.
    let none = pg
        .query("SELECT i4, t FROM kinds WHERE false", &Limits::default())
        .await
        .unwrap();
    assert_eq!(none.num_rows(), 0);
    assert!(none.batches.is_empty());
    let fields: Vec<(String, DataType)> = none
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        fields,
        [
            ("i4".to_owned(), DataType::Int32),
            ("t".to_owned(), DataType::Utf8)
        ]
    );
}
