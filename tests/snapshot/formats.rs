//! The two COPY formats of the historical load and the stream decode every value the same way.
//!
//! Three tables hold the same rows of edge values: `kinds` (every column has a binary reader,
//! loaded in COPY's binary format), `mixed` (the same plus interval and array columns, so it is
//! loaded in the text format) and `streamed` (filled after the load and captured by `run` from
//! pgoutput's text). Their lake rows, `_unavailable` included, must be equal, and equal the
//! source where the value is representable.

use super::{check, config, walaudit};
use crate::lake::lake_rows;
use crate::support::shared;

const COLUMNS: &str = "id int PRIMARY KEY, b bool, i2 int2, i4 int4, i8 int8, o oid, \
    f4 float4, f8 float8, n numeric(12,2), nw numeric(38,10), t text, vc varchar(20), \
    bc char(5), nm name, js json, jb jsonb, u uuid, by bytea, d date, ts timestamp, \
    tz timestamptz";

const ROWS: &str = r#"
  (1, true, 7, 42, 9000000000, 12345, 1.5, 3.141592653589793, 123.45, 1.5, 'hello', 'v',
   'ab', 'pg_class', '{"a": [1, 2.50]}', '{"b": 1, "a": [true, null]}',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x00ff5c0a09', '2024-02-29',
   '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789012+05:30'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL),
  (3, false, -32768, -2147483648, -9223372036854775808, 4294967295, '-Infinity', 'NaN',
   -9999999999.99, -0.0000000001, E'a\tb\nc\\d é 🦀', '', 'x', 'nm', '[]', '{}',
   '00000000-0000-0000-0000-000000000000', '', 'infinity', '-infinity', 'infinity'),
  (4, true, 32767, 2147483647, 9223372036854775807, 0, 1e-45, 1.7976931348623157e308, 'NaN',
   1234567890123456789012345678.1234567890, repeat('long ', 300), 'x', 'abcde', '',
   '"s"', '"s"', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '\x01', '0044-03-15 BC',
   '10000-01-01 00:00:00', '0001-01-01 00:00:00 BC'),
  (5, false, 0, 0, 0, 1, 'Infinity', '-0', 0, 0.0000000001, 'z', 'y', '', 'n', 'null',
   '[1, "2", {"c": null}]', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\x5c',
   '9999-12-31', '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00+00')
"#;

/// Source columns rendered as text by DataFusion, and the unavailable columns.
const LAKE_COLUMNS: &str = "CAST(id AS VARCHAR) AS key, CAST(b AS VARCHAR), CAST(i2 AS VARCHAR), \
    CAST(i4 AS VARCHAR), CAST(i8 AS VARCHAR), CAST(o AS VARCHAR), CAST(f4 AS VARCHAR), \
    CAST(f8 AS VARCHAR), CAST(n AS VARCHAR), CAST(nw AS VARCHAR), t, vc, bc, nm, js, jb, u, \
    encode(by, 'hex'), CAST(d AS VARCHAR), CAST(CAST(ts AS BIGINT) AS VARCHAR), \
    CAST(CAST(tz AS BIGINT) AS VARCHAR), array_to_string(_unavailable, ',')";

#[tokio::test(flavor = "multi_thread")]
async fn binary_and_text_copies_and_the_stream_agree_on_every_value() {
    let db = shared().await.fresh_db("snap_formats").await.unwrap();
    db.execute(&format!(
        "CREATE TABLE kinds ({COLUMNS});
         CREATE TABLE mixed ({COLUMNS}, iv interval, arr int[]);
         CREATE TABLE streamed ({COLUMNS});
         INSERT INTO kinds VALUES {ROWS};
         INSERT INTO mixed SELECT *, interval '1 day 02:03:04', ARRAY[1, NULL, 3] FROM kinds;
         CREATE PUBLICATION walaudit FOR TABLE kinds, mixed, streamed;"
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lake = lake.to_str().unwrap().to_owned();
    let cfg = config(dir.path(), "workers = 2");

    let out = walaudit(&db, &cfg, &lake, &["snapshot"])
        .env("WALAUDIT_LOG", "info,walaudit=debug")
        .output()
        .await
        .unwrap();
    check(&out, "walaudit snapshot");
    let log = String::from_utf8_lossy(&out.stderr);
    let format_of = |table: &str| {
        log.lines()
            .filter(|l| l.contains("snapshot chunk committed") && l.contains(table))
            .map(|l| {
                if l.contains("format=binary") {
                    "binary"
                } else if l.contains("format=text") {
                    "text"
                } else {
                    "unknown"
                }
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(format_of("public.kinds"), ["binary"], "{log}");
    assert_eq!(format_of("public.mixed"), ["text"], "{log}");

    db.execute("INSERT INTO streamed SELECT * FROM kinds")
        .await
        .unwrap();
    let out = walaudit(&db, &cfg, &lake, &["run", "--drain"])
        .output()
        .await
        .unwrap();
    check(&out, "walaudit run --drain");

    let query = walaudit::query::LakeQuery::open(&lake, Default::default())
        .await
        .unwrap();
    let mut results = Vec::new();
    for (table, op) in [("kinds", "r"), ("mixed", "r"), ("streamed", "c")] {
        let got = lake_rows(
            &query,
            &format!("SELECT {LAKE_COLUMNS} FROM public.{table} WHERE _op = '{op}' ORDER BY key"),
        )
        .await
        .unwrap();
        assert_eq!(got.len(), 5, "{table}: {got:?}");
        results.push((table, got));
    }
    let (_, streamed) = &results[2];
    for (table, got) in &results[..2] {
        for (g, s) in got.iter().zip(streamed) {
            assert_eq!(
                g, s,
                "{table} (snapshot) differs from the streamed decoding"
            );
        }
    }
    // And the values are the source's: spot checks of each kind of outcome.
    let kinds = &results[0].1;
    assert_eq!(kinds[0][8], "123.45");
    assert_eq!(kinds[0][16], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(kinds[0][17], "00ff5c0a09");
    assert_eq!(kinds[0][19], "1709210096789012");
    assert_eq!(kinds[0][20], "1709190296789012");
    assert_eq!(kinds[0][21], "");
    assert!(
        kinds[1][1..21].iter().all(|v| v == "NULL"),
        "{:?}",
        kinds[1]
    );
    assert_eq!(kinds[2][12], "x    ", "char(5) keeps its padding");
    assert_eq!(kinds[2][10], "a\tb\nc\\d é 🦀");
    assert_eq!(
        kinds[3][21], "n,d,ts,tz",
        "unrepresentable values are listed"
    );
    assert_eq!(kinds[4][21], "");
}
