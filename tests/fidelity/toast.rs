//! Unchanged TOAST values: an update that does not touch a large value does not carry it, and
//! `current` / `as_of` take it from the key's previous image (snapshot row, earlier change, or
//! the old key's image across a key change); where no image holds it, the view says so.

use super::{assert_same_rows, drain, source_now};
use crate::lake::lake_rows;
use crate::support::shared;
use walaudit::query::{LakeOptions, LakeQuery};

const DOCS: &str = "CREATE TABLE docs (id int PRIMARY KEY, title text, body text, n int);
     ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;";
/// ~6.4 kB per body, stored out of line uncompressed (STORAGE EXTERNAL).
const BODIES: &str = "INSERT INTO docs SELECT g, 'doc ' || g, repeat(md5(g::text), 200), 0 \
     FROM generate_series(1, 20) g";

const LAKE_DOCS: &str = "SELECT CAST(id AS VARCHAR) AS id, title, md5(body) AS body, \
     CAST(n AS VARCHAR) AS n FROM current.public.docs";
const PG_DOCS: &str = "SELECT id::text, title, md5(body), n::text FROM docs";

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_toast_is_carried_forward_in_current_and_as_of() {
    let db = shared().await.fresh_db("fid_toast").await.unwrap();
    db.execute(DOCS).await.unwrap();
    db.execute(BODIES).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    drain(&db, dir.path(), &lake, &[]).await;

    // Phase 1: updates that leave the bodies alone, one of them after a key change, and a row
    // inserted (and then updated) by the stream.
    db.execute("UPDATE docs SET n = n + 1 WHERE id <= 10")
        .await
        .unwrap();
    db.execute("UPDATE docs SET id = id + 100, title = 'moved' WHERE id IN (1, 2)")
        .await
        .unwrap();
    db.execute("UPDATE docs SET n = 5 WHERE id = 101")
        .await
        .unwrap();
    db.execute("INSERT INTO docs VALUES (50, 'new', repeat('x', 7000), 0)")
        .await
        .unwrap();
    db.execute("UPDATE docs SET n = 1 WHERE id = 50")
        .await
        .unwrap();
    let phase1 = db
        .client()
        .query("SELECT id::text, title, md5(body), n::text FROM docs", &[])
        .await
        .unwrap();
    let phase1: Vec<Vec<String>> = phase1
        .iter()
        .map(|r| (0..4).map(|i| r.get::<_, String>(i)).collect())
        .collect();
    let between = source_now(&db).await;

    // Phase 2: a body replaced by a short value, then another update; more key changes.
    db.execute("UPDATE docs SET body = 'short' WHERE id = 3")
        .await
        .unwrap();
    db.execute("UPDATE docs SET n = 7 WHERE id = 3")
        .await
        .unwrap();
    db.execute("UPDATE docs SET id = 200 WHERE id = 101")
        .await
        .unwrap();
    db.execute("UPDATE docs SET n = 8 WHERE id = 200")
        .await
        .unwrap();
    db.execute("DELETE FROM docs WHERE id = 4").await.unwrap();
    drain(&db, dir.path(), &lake, &[]).await;

    // The change log really holds updates without their body (else this test proves nothing).
    let query = LakeQuery::open(&lake, LakeOptions::default())
        .await
        .unwrap();
    let toasted = lake_rows(
        &query,
        "SELECT count(*) FROM public.docs WHERE _op = 'u' AND array_has(_unavailable, 'body')",
    )
    .await
    .unwrap();
    let toasted: i64 = toasted[0][0].parse().unwrap();
    assert!(toasted >= 14, "only {toasted} updates without their body");

    assert_same_rows(&db, &lake, LAKE_DOCS, PG_DOCS).await;
    // Nothing is unavailable: every body has an earlier image.
    let listed = lake_rows(
        &query,
        "SELECT count(*) FROM current.public.docs WHERE cardinality(_unavailable) > 0",
    )
    .await
    .unwrap();
    assert_eq!(listed, vec![vec!["0".to_owned()]]);

    // as_of between the phases is phase 1's table.
    let mut got = lake_rows(
        &query,
        &format!(
            "SELECT CAST(id AS VARCHAR) AS id, title, md5(body) AS body, \
                    CAST(n AS VARCHAR) AS n \
             FROM as_of('public.docs', '{between}')"
        ),
    )
    .await
    .unwrap();
    let mut want = phase1;
    got.sort();
    want.sort();
    assert_eq!(got, want, "as_of('public.docs', '{between}')");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_no_image_holds_is_named_in_unavailable() {
    let db = shared().await.fresh_db("fid_toast_gap").await.unwrap();
    db.execute(DOCS).await.unwrap();
    db.execute(BODIES).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    // No historical load: the lake never sees the bodies of rows that existed before.
    drain(&db, dir.path(), &lake, &["--snapshot", "never"]).await;
    db.execute("UPDATE docs SET n = 1 WHERE id IN (1, 2)")
        .await
        .unwrap();
    db.execute("UPDATE docs SET body = 'fresh' WHERE id = 2")
        .await
        .unwrap();
    db.execute("UPDATE docs SET n = 2 WHERE id = 2")
        .await
        .unwrap();
    drain(&db, dir.path(), &lake, &["--snapshot", "never"]).await;

    let query = LakeQuery::open(&lake, LakeOptions::default())
        .await
        .unwrap();
    let got = lake_rows(
        &query,
        "SELECT CAST(id AS VARCHAR) AS id, body, CAST(n AS VARCHAR) AS n, \
                array_to_string(_unavailable, ',') AS unavailable \
         FROM current.public.docs ORDER BY id",
    )
    .await
    .unwrap();
    let row = |v: [&str; 4]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        got,
        vec![
            row(["1", "NULL", "1", "body"]),
            row(["2", "fresh", "2", ""])
        ]
    );
}
