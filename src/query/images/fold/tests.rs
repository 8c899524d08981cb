use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use deltalake::datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryPool, UnboundedMemoryPool,
};

use super::*;

/// One change: op, id, v (text), n (int), before (id, v, n = 1) when present, unavailable
/// columns.
struct C {
    op: &'static str,
    id: Option<i32>,
    v: Option<&'static str>,
    n: Option<i32>,
    before: Option<(i32, Option<&'static str>)>,
    unavailable: &'static [&'static str],
}

fn c(op: &'static str, id: i32, v: Option<&'static str>) -> C {
    C {
        op,
        id: Some(id),
        v,
        n: Some(1),
        before: None,
        unavailable: &[],
    }
}

fn source_fields() -> Fields {
    Fields::from(vec![
        Field::new("id", DataType::Int32, true),
        Field::new("v", DataType::Utf8, true),
        Field::new("n", DataType::Int32, true),
    ])
}

fn input_schema() -> SchemaRef {
    let mut fields: Vec<Field> = source_fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend([
        Field::new("_op", DataType::Utf8, false),
        Field::new("_lsn", DataType::Int64, false),
        Field::new("_seq", DataType::Int64, false),
        Field::new(
            "_commit_ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("_actor", DataType::Utf8, true),
        Field::new("_before", DataType::Struct(source_fields()), true),
        Field::new(
            "_unavailable",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]);
    Arc::new(Schema::new(fields))
}

/// The changes as one batch, `_lsn` = 100 + position.
fn batch(changes: &[C]) -> RecordBatch {
    let n = changes.len();
    let ids = Int32Array::from_iter(changes.iter().map(|c| c.id));
    let vs = StringArray::from_iter(changes.iter().map(|c| c.v));
    let ns = Int32Array::from_iter(changes.iter().map(|c| c.n));
    let before_ids = Int32Array::from_iter(changes.iter().map(|c| c.before.map(|b| b.0)));
    let before_vs = StringArray::from_iter(changes.iter().map(|c| c.before.and_then(|b| b.1)));
    let before_ns = Int32Array::from_iter(changes.iter().map(|c| c.before.map(|_| 1)));
    let before = StructArray::new(
        source_fields(),
        vec![
            Arc::new(before_ids),
            Arc::new(before_vs),
            Arc::new(before_ns),
        ],
        Some(NullBuffer::from_iter(
            changes.iter().map(|c| c.before.is_some()),
        )),
    );
    let mut unavailable = ListBuilder::new(StringBuilder::new());
    for change in changes {
        for name in change.unavailable {
            unavailable.values().append_value(name);
        }
        unavailable.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(vs),
        Arc::new(ns),
        Arc::new(StringArray::from_iter_values(changes.iter().map(|c| c.op))),
        Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| 100 + i))),
        Arc::new(Int64Array::from_iter_values(0..n as i64)),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values((0..n as i64).map(|i| 1_000 + i))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter(
            changes.iter().map(|_| Some("alice")),
        )),
        Arc::new(before),
        Arc::new(unavailable.finish()),
    ];
    RecordBatch::try_new(input_schema(), columns).unwrap()
}

fn spec(multiset: bool) -> ImageSpec {
    spec_with_starts(multiset, Vec::new())
}

fn spec_with_starts(multiset: bool, load_starts: Vec<i64>) -> ImageSpec {
    ImageSpec {
        load_starts,
        source_columns: vec!["id".into(), "v".into(), "n".into()],
        key_columns: if multiset {
            vec!["id".into(), "v".into(), "n".into()]
        } else {
            vec!["id".into()]
        },
        multiset,
    }
}

fn fold_with(multiset: bool, pool: Arc<dyn MemoryPool>, batches: &[Vec<C>]) -> Result<Vec<Row>> {
    fold_spec(spec(multiset), pool, batches)
}

fn fold_spec(spec: ImageSpec, pool: Arc<dyn MemoryPool>, batches: &[Vec<C>]) -> Result<Vec<Row>> {
    let input = input_schema();
    let output = output_schema(&spec, &input).unwrap();
    let reservation = MemoryConsumer::new("test").register(&pool);
    let mut fold = ImageFold::new(spec, &input, output, reservation)?;
    for changes in batches {
        fold.push(&batch(changes))?;
    }
    let mut rows = Vec::new();
    for out in fold.finish(2) {
        rows.extend(rendered(&out?));
    }
    rows.sort();
    Ok(rows)
}

/// A folded row: id, v, n, _lsn, _unavailable.
type Row = (Option<i32>, Option<String>, Option<i32>, i64, Vec<String>);

fn fold(multiset: bool, batches: &[Vec<C>]) -> Vec<Row> {
    fold_with(multiset, Arc::new(UnboundedMemoryPool::default()), batches).unwrap()
}

fn rendered(batch: &RecordBatch) -> Vec<Row> {
    let ids = batch.column(0).as_primitive::<Int32Type>();
    let vs = batch.column(1).as_string::<i32>();
    let ns = batch.column(2).as_primitive::<Int32Type>();
    let lsns = batch
        .column(3)
        .as_primitive::<arrow_array::types::Int64Type>();
    let unavailable = batch.column(6).as_list::<i32>();
    (0..batch.num_rows())
        .map(|i| {
            let names = unavailable.value(i);
            let names = names.as_string::<i32>();
            (
                ids.is_valid(i).then(|| ids.value(i)),
                vs.is_valid(i).then(|| vs.value(i).to_owned()),
                ns.is_valid(i).then(|| ns.value(i)),
                lsns.value(i),
                names.iter().flatten().map(str::to_owned).collect(),
            )
        })
        .collect()
}

fn row(id: i32, v: Option<&str>, n: Option<i32>, lsn: i64, unavailable: &[&str]) -> Row {
    (
        Some(id),
        v.map(str::to_owned),
        n,
        lsn,
        unavailable.iter().map(|s| s.to_string()).collect(),
    )
}

#[test]
fn keyed_images_replace_and_delete() {
    let got = fold(
        false,
        &[
            vec![c("r", 1, Some("a")), c("r", 2, Some("b"))],
            vec![c("u", 1, Some("a2")), c("d", 2, None), c("c", 3, Some("x"))],
        ],
    );
    assert_eq!(
        got,
        vec![
            row(1, Some("a2"), Some(1), 100, &[]),
            row(3, Some("x"), Some(1), 102, &[])
        ]
    );
}

#[test]
fn unchanged_toast_is_carried_from_the_previous_image() {
    let update = C {
        unavailable: &["v"],
        n: Some(7),
        ..c("u", 1, None)
    };
    let got = fold(false, &[vec![c("r", 1, Some("big"))], vec![update]]);
    // v from the snapshot row, n and _lsn from the update (its batch restarts at 100).
    assert_eq!(got, vec![row(1, Some("big"), Some(7), 100, &[])]);
}

#[test]
fn unchanged_toast_follows_a_key_change() {
    let moved = C {
        unavailable: &["v"],
        before: Some((1, None)),
        ..c("u", 5, None)
    };
    let again = C {
        unavailable: &["v"],
        n: Some(9),
        ..c("u", 5, None)
    };
    let got = fold(false, &[vec![c("c", 1, Some("big")), moved, again]]);
    assert_eq!(got, vec![row(5, Some("big"), Some(9), 102, &[])]);
}

#[test]
fn a_value_no_image_holds_stays_listed() {
    let update = C {
        unavailable: &["v"],
        ..c("u", 1, None)
    };
    assert_eq!(
        fold(false, &[vec![update]]),
        vec![row(1, None, Some(1), 100, &["v"])]
    );
    // The earlier image did not hold it either.
    let first = C {
        unavailable: &["v"],
        ..c("u", 2, None)
    };
    let second = C {
        unavailable: &["v"],
        ..c("u", 2, None)
    };
    assert_eq!(
        fold(false, &[vec![first, second]]),
        vec![row(2, None, Some(1), 101, &["v"])]
    );
}

#[test]
fn out_of_range_values_are_never_carried() {
    // n is an int column: listed in _unavailable it was out of range, not unchanged TOAST.
    let update = C {
        unavailable: &["n"],
        n: None,
        ..c("u", 1, Some("a"))
    };
    let got = fold(false, &[vec![c("r", 1, Some("a")), update]]);
    assert_eq!(got, vec![row(1, Some("a"), None, 101, &["n"])]);
}

#[test]
fn multisets_keep_duplicates() {
    let update = C {
        before: Some((1, Some("a"))),
        ..c("u", 1, Some("z"))
    };
    let got = fold(
        true,
        &[
            vec![
                c("r", 1, Some("a")),
                c("r", 1, Some("a")),
                c("r", 1, Some("a")),
            ],
            vec![c("c", 2, Some("b")), c("d", 1, Some("a")), update],
        ],
    );
    // Three copies of (1, a): one deleted, one updated to (1, z), one left untouched.
    assert_eq!(
        got,
        vec![
            row(1, Some("a"), Some(1), 102, &[]),
            row(1, Some("z"), Some(1), 102, &[]),
            row(2, Some("b"), Some(1), 100, &[]),
        ]
    );
}

#[test]
fn deleting_a_row_the_lake_never_saw_changes_nothing() {
    let got = fold(true, &[vec![c("r", 1, Some("a")), c("d", 2, Some("b"))]]);
    assert_eq!(got, vec![row(1, Some("a"), Some(1), 100, &[])]);
}

#[test]
fn truncate_empties_the_table() {
    let truncate = C {
        id: None,
        v: None,
        n: None,
        ..c("t", 0, None)
    };
    for multiset in [false, true] {
        let got = fold(
            multiset,
            &[vec![
                c("r", 1, Some("a")),
                c("c", 2, Some("b")),
                truncate_copy(&truncate),
                c("c", 3, None),
            ]],
        );
        assert_eq!(
            got,
            vec![row(3, None, Some(1), 103, &[])],
            "multiset {multiset}"
        );
    }
}

fn truncate_copy(t: &C) -> C {
    C {
        op: t.op,
        id: t.id,
        v: t.v,
        n: t.n,
        before: t.before,
        unavailable: t.unavailable,
    }
}

#[test]
fn the_result_is_reserved_from_the_pool() {
    let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(600));
    let many: Vec<C> = (0..50).map(|i| c("c", i, Some("value"))).collect();
    let err = fold_with(false, pool, &[many]).unwrap_err();
    assert!(err.to_string().contains("Resources exhausted"), "{err}");
}

#[test]
fn a_finished_load_replaces_what_came_before_it() {
    // Batch positions are _lsn 100, 101, ...: the stream inserted (1, a) at 100 and (2, b) at
    // 101; a re-snapshot at 102 read (2, b) and (3, c) (the source had lost 1 meanwhile).
    let changes = vec![
        c("c", 1, Some("a")),
        c("c", 2, Some("b")),
        c("r", 2, Some("b")),
        c("r", 3, Some("c")),
        c("c", 4, Some("d")),
    ];
    let copy = |v: &[C]| -> Vec<C> {
        v.iter()
            .map(|x| C {
                op: x.op,
                id: x.id,
                v: x.v,
                n: x.n,
                before: x.before,
                unavailable: x.unavailable,
            })
            .collect()
    };
    for multiset in [false, true] {
        let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
        let got = fold_spec(
            spec_with_starts(multiset, vec![102]),
            pool,
            &[copy(&changes)],
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                row(2, Some("b"), Some(1), 102, &[]),
                row(3, Some("c"), Some(1), 103, &[]),
                row(4, Some("d"), Some(1), 104, &[]),
            ],
            "multiset {multiset}"
        );
    }
    // Without the load start, the multiset counts (2, b) twice and keeps 1.
    let got = fold(true, &[copy(&changes)]);
    assert_eq!(got.len(), 5);
}
