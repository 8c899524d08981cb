//! The read-only query seam (`walaudit::sql`) over the lake: writes and session changes are
//! refused and change nothing, a deadline stops a long query, the handle's memory pool and the
//! result limits hold, and results are exactly what `LakeQuery::collect` returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::DataType;
use walaudit::query::{LakeOptions, LakeQuery};
use walaudit::sql::{Dialect, LakeTarget, Limits, ReadOnlySql, SqlError, SqlState};

use super::fixture;
use super::lake::TestLake;

async fn open(lake: &TestLake, options: LakeOptions) -> (Arc<LakeQuery>, LakeTarget) {
    let query = Arc::new(LakeQuery::open(lake.path(), options).await.unwrap());
    (query.clone(), LakeTarget::new(query))
}

async fn count(target: &LakeTarget, table: &str) -> usize {
    let got = target
        .query(&format!("SELECT * FROM {table}"), &Limits::default())
        .await
        .unwrap();
    got.num_rows()
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_refuses_ddl_dml_and_set_and_nothing_changes() {
    let lake = fixture().await;
    let (_, target) = open(&lake, LakeOptions::default()).await;
    assert_eq!(target.dialect(), Dialect::DataFusion);
    let before = count(&target, "public.orders").await;
    let copy_to =
        std::env::temp_dir().join(format!("walaudit-seam-copy-{}.csv", std::process::id()));
    for sql in [
        "CREATE TABLE t (x INT)".to_owned(),
        "CREATE VIEW v AS SELECT 1".to_owned(),
        "DROP TABLE public.orders".to_owned(),
        "INSERT INTO public.orders (id) VALUES (9)".to_owned(),
        "DELETE FROM public.orders".to_owned(),
        "UPDATE public.orders SET status = 'x'".to_owned(),
        format!("COPY (SELECT 1) TO '{}'", copy_to.display()),
        "SET datafusion.execution.batch_size = 1".to_owned(),
        // Past the first keyword: DataFusion's read-only options refuse it.
        "EXPLAIN ANALYZE INSERT INTO public.orders (id) VALUES (9)".to_owned(),
    ] {
        let err = target.query(&sql, &Limits::default()).await.unwrap_err();
        assert!(
            matches!(err, SqlError::ReadOnlyViolation { .. }),
            "{sql}: {err:?}"
        );
        assert!(err.to_string().starts_with("lake "), "{err}");
    }
    assert!(!copy_to.exists(), "COPY wrote {}", copy_to.display());
    // A new session sees the same lake: nothing was written.
    let (_, fresh) = open(&lake, LakeOptions::default()).await;
    assert_eq!(count(&fresh, "public.orders").await, before);
    assert_eq!(count(&fresh, "current.public.orders").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_results_equal_collect() {
    let lake = fixture().await;
    let (query, target) = open(&lake, LakeOptions::default()).await;
    for sql in [
        "SELECT id, status, amount, _op, pg_lsn(_lsn) AS lsn FROM public.orders ORDER BY _lsn, _seq",
        "SELECT * FROM current.public.orders ORDER BY id",
        "SELECT id, status FROM as_of('public.orders', TIMESTAMP '2024-01-01 10:07:00') ORDER BY id",
        "SELECT name, qty FROM current.public.items ORDER BY name",
        "SELECT _actor, change_count FROM _walaudit.transactions ORDER BY _lsn",
        "SELECT count(*) AS n, sum(amount) AS total FROM current.public.orders",
    ] {
        let want = query.collect(sql).await.unwrap();
        let got = target.query(sql, &Limits::default()).await.unwrap();
        // The same rows and values; DataFusion's view types become plain ones.
        let want = concat_batches(&want[0].schema(), &want).unwrap();
        let got = got.concat().unwrap();
        assert_eq!(got.num_rows(), want.num_rows(), "{sql}");
        for (field, (got, want)) in got
            .schema()
            .fields()
            .iter()
            .zip(got.columns().iter().zip(want.columns()))
        {
            assert!(!matches!(field.data_type(), DataType::Utf8View), "{sql}");
            let want = cast(want, field.data_type()).unwrap();
            assert_eq!(got, &want, "{sql}: column {}", field.name());
        }
        assert_eq!(
            got.schema()
                .fields()
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>(),
            want.schema()
                .fields()
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>(),
            "{sql}"
        );
        assert!(got.num_rows() > 0, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_zero_rows_carry_the_schema() {
    let lake = fixture().await;
    let (_, target) = open(&lake, LakeOptions::default()).await;
    let got = target
        .query(
            "SELECT id, status, amount FROM current.public.orders WHERE id < 0",
            &Limits::default(),
        )
        .await
        .unwrap();
    assert_eq!(got.num_rows(), 0);
    assert!(got.batches.is_empty());
    let types: Vec<(&str, &DataType)> = got
        .schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        types,
        [
            ("id", &DataType::Int64),
            ("status", &DataType::Utf8),
            ("amount", &DataType::Decimal128(10, 2)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_deadline_stops_a_long_query() {
    let lake = fixture().await;
    let (_, target) = open(&lake, LakeOptions::default()).await;
    let started = Instant::now();
    let err = target
        .query(
            "SELECT sum(value) FROM generate_series(1, 100000000000)",
            &Limits::with_deadline(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SqlError::Timeout { deadline, .. } if deadline == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The handle is still good.
    assert_eq!(count(&target, "current.public.orders").await, 2);

    // The session's own timeout caps the deadline.
    let options = LakeOptions {
        timeout: Some(Duration::from_millis(200)),
        ..LakeOptions::default()
    };
    let (_, capped) = open(&lake, options).await;
    let err = capped
        .query(
            "SELECT sum(value) FROM generate_series(1, 100000000000)",
            &Limits::with_deadline(Duration::from_secs(600)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SqlError::Timeout { deadline, .. } if deadline == Duration::from_millis(200)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_limits_hold() {
    let lake = fixture().await;
    let (_, target) = open(&lake, LakeOptions::default()).await;
    let rows = Limits {
        max_rows: 100,
        ..Limits::default()
    };
    let got = target
        .query("SELECT value FROM generate_series(1, 100)", &rows)
        .await
        .unwrap();
    assert_eq!(got.num_rows(), 100);
    let err = target
        .query("SELECT value FROM generate_series(1, 101)", &rows)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SqlError::ResourcesExhausted { what, .. } if what == "more than 100 rows"),
        "{err:?}"
    );

    // The handle's memory pool: an aggregate that cannot spill fails instead of growing.
    let options = LakeOptions {
        memory_limit: 1 << 20,
        ..LakeOptions::default()
    };
    let (query, small) = open(&lake, options).await;
    assert!(matches!(
        query.memory_limit(),
        deltalake::datafusion::execution::memory_pool::MemoryLimit::Finite(n) if n == 1 << 20
    ));
    let err = small
        .query(
            "SELECT array_agg(value) FROM generate_series(1, 5000000)",
            &Limits::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, SqlError::ResourcesExhausted { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_errors_name_the_target() {
    let lake = fixture().await;
    let (_, target) = open(&lake, LakeOptions::default()).await;
    let err = target
        .query("SELECT * FROM public.nope", &Limits::default())
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some(&SqlState::UNDEFINED_TABLE), "{err:?}");
    assert_eq!(err.target(), format!("lake {}", lake.path()));
    let err = target
        .query("SELECT nope FROM public.orders", &Limits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, SqlError::Sql { .. }), "{err:?}");
    assert!(err.to_string().contains("nope"), "{err}");
}
