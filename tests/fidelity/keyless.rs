//! Tables without a key (REPLICA IDENTITY FULL) are multisets: duplicate rows count, and an
//! update or delete of one copy leaves the others.

use super::{assert_same_rows, drain, source_now};
use crate::lake::lake_rows;
use crate::support::shared;
use walaudit::query::{LakeOptions, LakeQuery};

const LAKE_EVENTS: &str = "SELECT kind, CAST(qty AS VARCHAR) AS qty FROM current.public.events";
const PG_EVENTS: &str = "SELECT kind, qty::text FROM events";

/// One copy of the rows matching `filter`, by ctid.
fn one(filter: &str) -> String {
    format!("ctid = (SELECT ctid FROM events WHERE {filter} LIMIT 1)")
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_rows_are_kept_and_changed_one_copy_at_a_time() {
    let db = shared().await.fresh_db("fid_keyless").await.unwrap();
    db.execute(
        "CREATE TABLE events (kind text, qty int);
         ALTER TABLE events REPLICA IDENTITY FULL;
         INSERT INTO events VALUES ('a', 1), ('a', 1), ('a', 1), ('b', 2), ('b', 2),
                                   (NULL, NULL), (NULL, NULL);",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    drain(&db, dir.path(), &lake, &[]).await;
    // Nothing touched yet: all seven copies.
    assert_same_rows(&db, &lake, LAKE_EVENTS, PG_EVENTS).await;
    let loaded = source_now(&db).await;
    let initial = crate::lake::pg_rows(&db, PG_EVENTS).await.unwrap();

    for sql in [
        format!("UPDATE events SET qty = 9 WHERE {}", one("kind = 'a'")),
        format!("DELETE FROM events WHERE {}", one("kind = 'b'")),
        "INSERT INTO events VALUES ('b', 2), ('c', 3), ('c', 3)".to_owned(),
        format!("DELETE FROM events WHERE {}", one("kind IS NULL")),
        // An update whose new row equals the old one.
        format!("UPDATE events SET kind = 'c' WHERE {}", one("kind = 'c'")),
    ] {
        db.execute(&sql).await.unwrap();
    }
    drain(&db, dir.path(), &lake, &[]).await;
    assert_same_rows(&db, &lake, LAKE_EVENTS, PG_EVENTS).await;

    // as_of right after the load: the seven original copies.
    let query = LakeQuery::open(&lake, LakeOptions::default())
        .await
        .unwrap();
    let mut got = lake_rows(
        &query,
        &format!(
            "SELECT kind, CAST(qty AS VARCHAR) AS qty FROM as_of('public.events', '{loaded}')"
        ),
    )
    .await
    .unwrap();
    let mut want = initial;
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // A truncate empties the multiset; copies inserted after it count again.
    db.execute("TRUNCATE events; INSERT INTO events VALUES ('z', 1), ('z', 1)")
        .await
        .unwrap();
    drain(&db, dir.path(), &lake, &[]).await;
    assert_same_rows(&db, &lake, LAKE_EVENTS, PG_EVENTS).await;
}
