//! Decimal literals in `walaudit query` are decimals: equality and ranges on a decimal column
//! give Postgres' answers, also for values that are not exact in binary floating point.

use super::drain;
use crate::lake::{lake_rows, pg_rows};
use crate::support::shared;
use walaudit::query::{LakeOptions, LakeQuery};

#[tokio::test(flavor = "multi_thread")]
async fn decimal_literals_filter_decimal_columns_exactly() {
    let db = shared().await.fresh_db("fid_decimal").await.unwrap();
    db.execute(
        "CREATE TABLE payments (id int PRIMARY KEY, amount numeric(12,2), rate numeric(6,4));
         INSERT INTO payments VALUES (1, 42.10, 0.1000), (2, 0.10, 0.2000), (3, 0.20, 0.3000),
             (4, 0.30, 1.0010), (5, 19.99, 0.0001), (6, 1234567890.12, 9.9999), (7, NULL, NULL);",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    drain(&db, dir.path(), &lake, &[]).await;

    let query = LakeQuery::open(&lake, LakeOptions::default())
        .await
        .unwrap();
    let filters = [
        ("amount = 42.10", 1),
        ("amount = 0.3", 1),
        ("amount BETWEEN 0.10 AND 0.30", 3),
        ("amount > 0.1 AND amount < 0.3", 1),
        ("amount IN (0.10, 19.99, 1234567890.12)", 3),
        ("amount + 0.01 = 0.31", 1),
        ("amount * 3 = 0.90", 1),
        ("rate = 0.1", 1),
        ("rate >= 1.001", 2),
        ("amount <> 42.1", 5),
    ];
    for (filter, expected) in filters {
        let sql = |table: &str| {
            format!("SELECT CAST(id AS VARCHAR) AS id FROM {table} WHERE {filter} ORDER BY 1")
        };
        let got = lake_rows(&query, &sql("current.public.payments"))
            .await
            .unwrap_or_else(|e| panic!("{filter}: {e:?}"));
        let want = pg_rows(&db, &sql("payments")).await.unwrap();
        assert_eq!(got, want, "WHERE {filter}");
        assert_eq!(got.len(), expected, "WHERE {filter}: {got:?}");
    }
    // Aggregates stay exact too.
    let got = lake_rows(
        &query,
        "SELECT CAST(sum(amount) AS VARCHAR) AS s FROM current.public.payments \
         WHERE amount < 100",
    )
    .await
    .unwrap();
    assert_eq!(got, vec![vec!["62.69".to_owned()]]);
}
