//! Batch-builder tests: a table with one column of every lake type, checked cell by cell.

use super::*;
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ListArray};
use bytes::Bytes;

use crate::Lsn;
use crate::capture::{AuditContext, Before, ColumnInfo};
use crate::decode::{PgType, ReplicaIdentity};

const COLUMNS: &[(&str, PgType)] = &[
    ("id", PgType::Int8),
    ("b", PgType::Bool),
    ("i2", PgType::Int2),
    ("i4", PgType::Int4),
    ("f4", PgType::Float4),
    ("f8", PgType::Float8),
    (
        "d",
        PgType::Decimal {
            precision: 10,
            scale: 2,
        },
    ),
    ("t", PgType::Text),
    ("u", PgType::Uuid),
    ("by", PgType::Bytea),
    ("dt", PgType::Date),
    ("ts", PgType::Timestamp),
    ("tz", PgType::Timestamptz),
];

fn table() -> Arc<TableInfo> {
    let mut columns: Vec<ColumnInfo> = COLUMNS
        .iter()
        .map(|(name, ty)| ColumnInfo {
            name: (*name).into(),
            type_oid: 0,
            type_modifier: -1,
            is_key: *name == "id",
            pg_type: ty.clone(),
        })
        .collect();
    for (name, elem) in [("ai", PgType::Int4), ("at", PgType::Text)] {
        columns.push(ColumnInfo {
            name: name.into(),
            type_oid: 0,
            type_modifier: -1,
            is_key: false,
            pg_type: PgType::Array(Box::new(elem)),
        });
    }
    Arc::new(TableInfo {
        oid: 16500,
        schema: "public".into(),
        name: "every_type".into(),
        replica_identity: ReplicaIdentity::Full,
        columns,
    })
}

fn txn(context: Option<AuditContext>) -> TxnMeta {
    TxnMeta {
        xid: 4242,
        commit_lsn: Lsn(0x16_B374_D848),
        end_lsn: Lsn(0x16_B374_D900),
        commit_ts_micros: 1_704_164_645_000_000,
        origin: None,
        context,
        change_count: 5,
        streamed: false,
    }
}

fn cells(values: &[Option<&str>]) -> Vec<Cell> {
    values
        .iter()
        .map(|v| match v {
            Some(s) => Cell::Text(Bytes::copy_from_slice(s.as_bytes())),
            None => Cell::Null,
        })
        .collect()
}

const GOOD: [Option<&str>; 15] = [
    Some("1"),
    Some("t"),
    Some("-32768"),
    Some("2147483647"),
    Some("0.1"),
    Some("NaN"),
    Some("-12345678.90"),
    Some("héllo"),
    Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
    Some("\\x0a0b"),
    Some("2024-02-29"),
    Some("2024-01-02 03:04:05.123456"),
    Some("2024-01-02 08:34:05.5+05:30"),
    Some("{1,NULL,3}"),
    Some(r#"{"a,b",NULL,"NULL"}"#),
];

/// Every unrepresentable kind of value, plus an unchanged-TOAST column (`t`).
const BAD: [Option<&str>; 15] = [
    Some("2"),
    Some("maybe"),
    Some("40000"),
    Some("1.5"),
    Some("1e39"),
    Some("-Infinity"),
    Some("NaN"),
    None,
    Some("not-a-uuid"),
    Some("\\x0"),
    Some("0044-03-15 BC"),
    Some("10000-01-01 00:00:00"),
    Some("9999-12-31 23:00:00-02"),
    Some("{{1,2},{3,4}}"),
    Some("[0:1]={a,b}"),
];

fn change(op: Op, seq: u64, row: Vec<Cell>) -> Change {
    Change {
        table: table(),
        op,
        seq,
        row,
        before: None,
        changed: None,
        unavailable: vec![],
        truncate_options: 0,
    }
}

fn list_strings(list: &ListArray, row: usize) -> Option<Vec<String>> {
    list.is_valid(row).then(|| {
        let values = list.value(row);
        values
            .as_string::<i32>()
            .iter()
            .map(|s| s.unwrap_or("<null>").to_owned())
            .collect()
    })
}

fn build() -> (ChangeBatchBuilder, RecordBatch) {
    let mut b = ChangeBatchBuilder::new(table(), 2).unwrap();
    let ctx = AuditContext {
        raw: r#"{"actor":"alice"}"#.into(),
        actor: Some("alice".into()),
        well_formed: true,
    };
    let t = txn(Some(ctx));
    // 0: insert, every value representable.
    b.append(&t, &change(Op::Insert, 0, cells(&GOOD)));
    // 1: update with a full before image, unrepresentable values and an unavailable column.
    let mut update = change(Op::Update, 1, cells(&BAD));
    update.unavailable = vec![7, 999];
    update.changed = Some(vec![0, 3, 999]);
    update.before = Some(Before {
        key_only: false,
        row: cells(&GOOD),
    });
    b.append(&t, &update);
    // 2: update with a key-only before image (key change).
    let mut key_change = change(Op::Update, 2, cells(&GOOD));
    let mut key = vec![None; 15];
    key[0] = Some("7");
    key_change.before = Some(Before {
        key_only: true,
        row: cells(&key),
    });
    b.append(&t, &key_change);
    // 3: truncate.
    let mut truncate = change(Op::Truncate, 3, vec![]);
    truncate.truncate_options = 1;
    b.append(&t, &truncate);
    // 4: all nulls, binary cell, short row, no context.
    let mut row = cells(&[None; 13]);
    row[7] = Cell::Binary(Bytes::from_static(b"bin"));
    b.append(&txn(None), &change(Op::Delete, 4, row));
    assert_eq!(b.len(), 5);
    assert!(b.approx_bytes() > 5 * METADATA_BYTES_PER_ROW);
    let batch = b.finish();
    (b, batch)
}

#[test]
fn schema_matches_change_schema() {
    let (b, batch) = build();
    assert_eq!(batch.schema(), change_schema(&table()).unwrap());
    assert_eq!(b.schema(), &batch.schema());
    assert_eq!(batch.num_rows(), 5);
    assert_eq!(batch.num_columns(), 15 + 10);
}

#[test]
fn source_values_cell_by_cell() {
    let (_, batch) = build();
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    let id = col("id");
    let id = id.as_primitive::<Int64Type>();
    assert_eq!((id.value(0), id.value(1), id.value(2)), (1, 2, 1));
    assert!(id.is_null(3) && id.is_null(4));
    let b = col("b");
    let b = b.as_boolean();
    assert!(b.value(0) && b.is_null(1) && b.is_null(3));
    let i2 = col("i2");
    assert_eq!(i2.as_primitive::<Int16Type>().value(0), i16::MIN);
    assert!(i2.is_null(1));
    let i4 = col("i4");
    assert_eq!(i4.as_primitive::<Int32Type>().value(0), i32::MAX);
    assert!(i4.is_null(1), "1.5 is not an int4");
    let f4 = col("f4");
    assert_eq!(f4.as_primitive::<Float32Type>().value(0), 0.1f32);
    assert!(f4.is_null(1));
    let f8 = col("f8");
    let f8 = f8.as_primitive::<Float64Type>();
    assert!(f8.value(0).is_nan());
    assert_eq!(f8.value(1), f64::NEG_INFINITY, "infinities are kept");
    let d = col("d");
    assert_eq!(d.data_type(), &DataType::Decimal128(10, 2));
    assert_eq!(d.as_primitive::<Decimal128Type>().value(0), -1_234_567_890);
    assert!(d.is_null(1));
    let t = col("t");
    let t = t.as_string::<i32>();
    assert_eq!(t.value(0), "héllo");
    assert!(t.is_null(1));
    assert_eq!(t.value(4), "bin", "binary cells are read as text");
    let u = col("u");
    assert_eq!(
        u.as_string::<i32>().value(0),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    assert!(u.is_null(1));
    let by = col("by");
    assert_eq!(by.as_binary::<i32>().value(0), &[0x0a, 0x0b]);
    assert!(by.is_null(1));
    let dt = col("dt");
    assert_eq!(dt.as_primitive::<Date32Type>().value(0), 19_782);
    assert!(dt.is_null(1));
    let ts = col("ts");
    assert_eq!(
        ts.as_primitive::<TimestampMicrosecondType>().value(0),
        1_704_164_645_123_456
    );
    assert!(ts.is_null(1));
    let tz = col("tz");
    assert_eq!(
        tz.as_primitive::<TimestampMicrosecondType>().value(0),
        1_704_164_645_500_000
    );
    assert!(tz.is_null(1));
    let ai = col("ai");
    let ai = ai.as_list::<i32>();
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
    assert!(ai.is_null(1) && ai.is_null(3) && ai.is_null(4));
    let at = col("at");
    let at = at.as_list::<i32>();
    assert_eq!(
        list_strings(at, 0),
        Some(vec![
            "a,b".to_owned(),
            "<null>".to_owned(),
            "NULL".to_owned()
        ])
    );
    assert_eq!(list_strings(at, 1), None);
    for c in batch.columns()[..15].iter() {
        assert!(c.is_null(3), "truncate rows hold no source values");
    }
}

#[test]
fn unavailable_lists_union_in_column_order() {
    let (b, batch) = build();
    let list = batch
        .column_by_name("_unavailable")
        .unwrap()
        .as_list::<i32>()
        .clone();
    assert_eq!(list_strings(&list, 0), Some(vec![]));
    let expect: Vec<String> = COLUMNS[1..]
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .filter(|n| n != "f8")
        .chain(["ai".to_owned(), "at".to_owned()])
        .collect();
    assert_eq!(
        list_strings(&list, 1),
        Some(expect),
        "every bad value and the toast column, not f8"
    );
    assert_eq!(list_strings(&list, 2), Some(vec![]));
    assert_eq!(list_strings(&list, 3), Some(vec![]));
    assert_eq!(
        list_strings(&list, 4),
        Some(vec!["ai".to_owned(), "at".to_owned()]),
        "cells missing from a short row"
    );
    // 12 unrepresentable row values (all but id, f8 = -Infinity and the toast column).
    assert_eq!(b.unavailable_values(), 12);
}

#[test]
fn metadata_columns() {
    let (_, batch) = build();
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    let op = col("_op");
    let ops: Vec<_> = op.as_string::<i32>().iter().flatten().collect();
    assert_eq!(ops, ["c", "u", "u", "t", "d"]);
    let lsn = col("_lsn");
    assert!(
        lsn.as_primitive::<Int64Type>()
            .values()
            .iter()
            .all(|v| *v == 0x16_B374_D848)
    );
    let seq = col("_seq");
    assert_eq!(seq.as_primitive::<Int64Type>().values(), &[0, 1, 2, 3, 4]);
    let xid = col("_xid");
    assert!(
        xid.as_primitive::<Int64Type>()
            .values()
            .iter()
            .all(|v| *v == 4242)
    );
    let ts = col("_commit_ts");
    assert_eq!(
        ts.as_primitive::<TimestampMicrosecondType>().value(0),
        1_704_164_645_000_000
    );
    let changed = col("_changed");
    let changed = changed.as_list::<i32>();
    assert_eq!(list_strings(changed, 0), None);
    assert_eq!(
        list_strings(changed, 1),
        Some(vec!["id".to_owned(), "i4".to_owned()])
    );
    assert_eq!(list_strings(changed, 3), None);
    let actor = col("_actor");
    let actor = actor.as_string::<i32>();
    assert_eq!(actor.value(0), "alice");
    assert!(actor.is_null(4));
    let context = col("_context");
    let context = context.as_string::<i32>();
    assert_eq!(context.value(1), r#"{"actor":"alice"}"#);
    assert!(context.is_null(4));
}

#[test]
fn before_images() {
    let (_, batch) = build();
    let before = batch.column_by_name("_before").unwrap().as_struct().clone();
    assert!(before.is_null(0) && before.is_valid(1) && before.is_valid(2));
    assert!(before.is_null(3) && before.is_null(4));
    let id = before
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .clone();
    assert_eq!((id.value(1), id.value(2)), (1, 7));
    let d = before
        .column_by_name("d")
        .unwrap()
        .as_primitive::<Decimal128Type>()
        .clone();
    assert_eq!(d.value(1), -1_234_567_890, "full before image");
    assert!(
        d.is_null(2),
        "key-only before image: non-key columns are null"
    );
    let at = before
        .column_by_name("at")
        .unwrap()
        .as_list::<i32>()
        .clone();
    assert_eq!(list_strings(&at, 1).map(|v| v.len()), Some(3));
    assert!(at.is_null(2));
}

#[test]
fn builder_is_reusable_after_finish() {
    let (mut b, _) = build();
    assert_eq!((b.len(), b.approx_bytes()), (0, 0));
    assert!(b.is_empty());
    assert_eq!(b.finish().num_rows(), 0);
    b.append(&txn(None), &change(Op::Read, 9, cells(&GOOD)));
    let batch = b.finish();
    assert_eq!(batch.num_rows(), 1);
    let op = batch
        .column_by_name("_op")
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_owned();
    assert_eq!(op, "r");
    let seq = batch
        .column_by_name("_seq")
        .unwrap()
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(seq, 9);
    assert_eq!(b.unavailable_values(), 12, "the counter is cumulative");
}

#[test]
fn reserved_column_is_a_schema_error() {
    let mut t = (*table()).clone();
    t.columns[1].name = "_lsn".into();
    assert!(matches!(
        ChangeBatchBuilder::new(Arc::new(t), 1),
        Err(SchemaError::ReservedColumn { .. })
    ));
}

/// `cargo test --release --lib lake::batch -- --ignored --nocapture`
#[test]
#[ignore = "throughput measurement"]
fn throughput_seven_columns() {
    let table = Arc::new(TableInfo {
        oid: 1,
        schema: "public".into(),
        name: "bench".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: [
            ("id", PgType::Int8),
            ("name", PgType::Text),
            (
                "amount",
                PgType::Decimal {
                    precision: 12,
                    scale: 2,
                },
            ),
            ("qty", PgType::Int4),
            ("active", PgType::Bool),
            ("created", PgType::Timestamptz),
            ("note", PgType::Text),
        ]
        .into_iter()
        .map(|(n, ty)| ColumnInfo {
            name: n.into(),
            type_oid: 0,
            type_modifier: -1,
            is_key: n == "id",
            pg_type: ty,
        })
        .collect(),
    });
    let row = cells(&[
        Some("123456"),
        Some("customer-123456"),
        Some("1234.56"),
        Some("42"),
        Some("t"),
        Some("2024-01-02 03:04:05.123456+00"),
        Some("some note text of moderate length"),
    ]);
    let mut c = change(Op::Insert, 0, row);
    c.table = table.clone();
    let t = txn(None);
    let mut b = ChangeBatchBuilder::new(table, 8192).unwrap();
    let n = 2_000_000;
    let start = std::time::Instant::now();
    let mut rows = 0;
    for i in 0..n {
        c.seq = i;
        b.append(&t, &c);
        if b.len() == 8192 {
            rows += b.finish().num_rows();
        }
    }
    rows += b.finish().num_rows();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(rows, n as usize);
    println!("{:.0} changes/s", n as f64 / secs);
}
