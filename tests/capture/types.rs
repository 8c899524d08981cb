//! Every type of the mapping, with edge values, through the real server: as tail prints it and
//! as the lake's Arrow batch holds it.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Decimal128Type, Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use serde_json::{Value, json};
use walaudit::lake::batch::ChangeBatchBuilder;

use super::{changes_json, drain, prepare};
use crate::support::shared;

const SCHEMA: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'happy');
    CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
    CREATE DOMAIN price AS numeric(10, 2);
    CREATE TABLE every (
        id int PRIMARY KEY,
        b bool, i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8,
        n numeric(12, 2), nn numeric, nbig numeric(50, 10), m money,
        t text, vc varchar(10), bp char(3), nm name, e mood,
        by bytea, u uuid, j json, jb jsonb,
        d date, ts timestamp, tz timestamptz, tm time, ttz timetz, iv interval,
        ai int4[], at text[], an numeric(5, 1)[], dom posint, pr price,
        ip inet, bits bit(4), r int4range
    );";

const ROWS: &str = "
    INSERT INTO every VALUES (1,
        true, -32768, 2147483647, -9223372036854775808, 4294967295, 1.5, 0.1,
        -1234567890.12, 3.14159265358979323846264338327950288419716939937510, 1.5, '$12.34',
        'héllo \"q\"', 'abc', 'ab', 'nm', 'happy',
        '\\x00ff10', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{\"a\": [1, 2]}', '{\"b\": null}',
        '2024-02-29', '2024-01-02 03:04:05.123456', '2024-01-02 08:34:05.5+05:30',
        '13:14:15', '13:14:15+02', '1 year 2 mons 3 days 04:05:06',
        '{1,NULL,3}', '{\"a,b\",\"x\\\"y\",NULL,\"NULL\"}', '{1.5,-2.0}', 7, 9.99,
        '192.168.0.1/24', B'1010', '[1,5)');
    INSERT INTO every (id, f4, f8, n, d, ts, tz) VALUES
        (2, 'NaN', 'Infinity', 'NaN', 'infinity', 'infinity', '-infinity');
    INSERT INTO every (id, f8, d, ts, tz, ai) VALUES
        (3, '-Infinity', '0044-03-15 BC', '10000-01-01 00:00:00', '0001-01-01 00:00:00+00',
         '{{1,2},{3,4}}');
    INSERT INTO every (id) VALUES (4);";

fn expected_row1() -> Value {
    json!({
        "id": 1, "b": true, "i2": -32768, "i4": 2147483647, "i8": i64::MIN, "o": 4294967295u64,
        "f4": 1.5, "f8": 0.1,
        "n": "-1234567890.12",
        "nn": "3.14159265358979323846264338327950288419716939937510",
        "nbig": "1.5000000000", "m": "$12.34",
        "t": "héllo \"q\"", "vc": "abc", "bp": "ab ", "nm": "nm", "e": "happy",
        "by": "\\x00ff10", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "j": "{\"a\": [1, 2]}", "jb": "{\"b\": null}",
        "d": "2024-02-29", "ts": "2024-01-02T03:04:05.123456",
        "tz": "2024-01-02T03:04:05.500000Z",
        "tm": "13:14:15", "ttz": "13:14:15+02", "iv": "1 year 2 mons 3 days 04:05:06",
        "ai": [1, null, 3], "at": ["a,b", "x\"y", null, "NULL"], "an": ["1.5", "-2.0"],
        "dom": 7, "pr": "9.99",
        "ip": "192.168.0.1/24", "bits": "1010", "r": "[1,5)",
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mapped_type_with_edge_values() {
    let db = shared().await.fresh_db("types").await.unwrap();
    db.execute(SCHEMA).await.unwrap();
    let slot = prepare(&db).await.unwrap();
    db.execute(ROWS).await.unwrap();
    let txns = drain(&db, &slot).await.unwrap();
    let got = changes_json(&txns);
    assert_eq!(got.len(), 4);

    assert_eq!(got[0]["row"], expected_row1());
    assert_eq!(got[0]["unavailable"], json!([]));

    // Specials: NaN/±Infinity floats kept, NaN numeric(p,s) unavailable, infinity clamped.
    let r2 = &got[1]["row"];
    assert_eq!(
        (&r2["f4"], &r2["f8"], &r2["n"]),
        (&json!("NaN"), &json!("Infinity"), &json!(null))
    );
    assert_eq!(
        (&r2["d"], &r2["ts"]),
        (&json!("9999-12-31"), &json!("9999-12-31T23:59:59.999999"))
    );
    assert_eq!(r2["tz"], json!("0001-01-01T00:00:00.000000Z"));
    assert_eq!(got[1]["unavailable"], json!(["n"]));

    // Out of range (BC, year 10000) and a 2-D array: null and listed, never a wrong value.
    let r3 = &got[2]["row"];
    assert_eq!(r3["f8"], json!("-Infinity"));
    assert_eq!(
        (&r3["d"], &r3["ts"], &r3["ai"]),
        (&json!(null), &json!(null), &json!(null))
    );
    assert_eq!(r3["tz"], json!("0001-01-01T00:00:00.000000Z"));
    assert_eq!(got[2]["unavailable"], json!(["d", "ts", "ai"]));

    // NULLs are nulls, not unavailable.
    assert!(
        got[3]["row"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| k == "id" || v.is_null())
    );
    assert_eq!(got[3]["unavailable"], json!([]));

    // The same changes as the lake's Arrow batch.
    let txn_changes: Vec<_> = txns
        .iter()
        .flat_map(|t| t.changes.iter().map(move |c| (&t.meta, c)))
        .collect();
    let mut builder = ChangeBatchBuilder::new(Arc::clone(&txn_changes[0].1.table), 8).unwrap();
    for (meta, change) in &txn_changes {
        builder.append(meta, change);
    }
    check_batch(&builder.finish());
}

fn check_batch(batch: &RecordBatch) {
    assert_eq!(batch.num_rows(), 4);
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let n = col("n").as_primitive::<Decimal128Type>();
    assert_eq!(n.value(0), -123_456_789_012);
    assert!(n.is_null(1), "NaN numeric is null in the lake");
    let d = col("d").as_primitive::<Date32Type>();
    assert_eq!(d.value(0), 19782, "2024-02-29 is day 19782");
    assert_eq!(d.value(1), 2_932_896, "infinity is 9999-12-31");
    assert!(d.is_null(2));
    let tz = col("tz").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(tz.value(0), 1_704_164_645_500_000);
    let ai = col("ai").as_list::<i32>();
    let first = ai.value(0);
    let first = first.as_primitive::<Int32Type>();
    assert_eq!(
        (
            first.len(),
            first.value(0),
            first.is_null(1),
            first.value(2)
        ),
        (3, 1, true, 3)
    );
    assert!(
        ai.is_null(2),
        "a 2-D value in an int4[] column is unavailable"
    );
    let unavailable = col("_unavailable").as_list::<i32>();
    let row3 = unavailable.value(2);
    let names: Vec<_> = row3
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["d", "ts", "ai"]);
    assert_eq!(col("_op").as_string::<i32>().value(0), "c");
}
