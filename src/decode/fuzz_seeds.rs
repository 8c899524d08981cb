//! The seed corpora of the fuzz targets (`tests/fuzz/corpus/<target>/`), written from real
//! encodings: pgoutput messages from [`super::encode`], COPY rows from
//! [`super::copy_text::encode_row`] and the server's binary layout, values in the text and
//! binary forms the server sends. Each input starts with the parameter bytes its target reads
//! (tests/fuzz/src/lib.rs, "Input layouts").
//!
//! The test checks that every committed seed is what this file writes and that it decodes, so
//! the seeds follow the wire format. After a change: `WALAUDIT_WRITE_FUZZ_SEEDS=1 cargo test
//! --lib fuzz_seeds` rewrites them.

use std::path::PathBuf;

use bytes::Bytes;

use super::copy_binary::BinaryRows;
use super::copy_text::{RowSplitter, encode_row, parse_row};
use super::encode::encoded;
use super::pgoutput::parse;
use super::*;
use crate::Lsn;

/// One input file of a target's corpus.
struct Seed {
    target: &'static str,
    name: &'static str,
    bytes: Vec<u8>,
}

fn seed(target: &'static str, name: &'static str, head: &[u8], body: &[u8]) -> Seed {
    Seed {
        target,
        name,
        bytes: [head, body].concat(),
    }
}

fn text(s: &str) -> Cell {
    Cell::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn messages() -> Vec<(&'static str, bool, Message)> {
    let row = vec![text("42"), Cell::Null, text("a\tb"), Cell::UnchangedToast];
    let relation = Relation {
        xid: None,
        oid: 16_385,
        namespace: "public".into(),
        name: "orders".into(),
        replica_identity: ReplicaIdentity::Default,
        columns: ["id", "note", "tags", "doc"]
            .iter()
            .zip([23, 25, 1009, 3802])
            .map(|(name, type_oid)| RelationColumn {
                is_key: *name == "id",
                name: (*name).into(),
                type_oid,
                type_modifier: -1,
            })
            .collect(),
    };
    vec![
        (
            "begin",
            false,
            Message::Begin(Begin {
                final_lsn: Lsn(0x16_B374_D848),
                commit_ts: 786_000_000_000_000,
                xid: 731,
            }),
        ),
        (
            "commit",
            false,
            Message::Commit(Commit {
                flags: 0,
                commit_lsn: Lsn(0x16_B374_D848),
                end_lsn: Lsn(0x16_B374_D878),
                commit_ts: 786_000_000_000_000,
            }),
        ),
        ("relation", false, Message::Relation(relation.clone())),
        (
            "insert",
            false,
            Message::Insert(Insert {
                xid: None,
                relation_oid: 16_385,
                new: row.clone(),
            }),
        ),
        (
            "update-key",
            false,
            Message::Update(Update {
                xid: None,
                relation_oid: 16_385,
                old: Some((OldKind::Key, vec![text("41"), Cell::Null, Cell::Null])),
                new: row.clone(),
            }),
        ),
        (
            "delete-full",
            false,
            Message::Delete(Delete {
                xid: None,
                relation_oid: 16_385,
                old: (
                    OldKind::Full,
                    vec![text("42"), Cell::Binary(Bytes::from_static(b"\0\x01"))],
                ),
            }),
        ),
        (
            "truncate",
            false,
            Message::Truncate(Truncate {
                xid: None,
                options: 3,
                relation_oids: vec![16_385, 16_390],
            }),
        ),
        (
            "message",
            false,
            Message::Message(LogicalMessage {
                xid: None,
                transactional: true,
                lsn: Lsn(0x16_B374_D850),
                prefix: "walaudit".into(),
                content: Bytes::from_static(br#"{"actor":"alice"}"#),
            }),
        ),
        (
            "origin",
            false,
            Message::Origin(Origin {
                commit_lsn: Lsn(0x10),
                name: "upstream".into(),
            }),
        ),
        (
            "stream-start",
            false,
            Message::StreamStart(StreamStart {
                xid: 900,
                first_segment: true,
            }),
        ),
        (
            "stream-relation",
            true,
            Message::Relation(Relation {
                xid: Some(900),
                ..relation
            }),
        ),
        (
            "stream-type",
            true,
            Message::Type(TypeInfo {
                xid: Some(900),
                oid: 16_400,
                namespace: "public".into(),
                name: "mood".into(),
            }),
        ),
        (
            "stream-insert",
            true,
            Message::Insert(Insert {
                xid: Some(901),
                relation_oid: 16_385,
                new: row,
            }),
        ),
        ("stream-stop", false, Message::StreamStop),
        (
            "stream-commit",
            false,
            Message::StreamCommit(StreamCommit {
                xid: 900,
                flags: 0,
                commit_lsn: Lsn(0x20),
                end_lsn: Lsn(0x48),
                commit_ts: 786_000_000_000_000,
            }),
        ),
        (
            "stream-abort",
            false,
            Message::StreamAbort(StreamAbort {
                xid: 900,
                subxid: 901,
            }),
        ),
    ]
}

/// The COPY binary stream of `rows`: signature, flags, header extension, rows, end marker.
fn copy_binary(rows: &[&[Option<&[u8]>]], extension: &[u8]) -> Vec<u8> {
    let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&(extension.len() as u32).to_be_bytes());
    out.extend_from_slice(extension);
    for row in rows {
        out.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for field in *row {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// numeric's binary form: ndigits, weight, sign, dscale, base-10000 digits.
fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [digits.len() as u16, weight as u16, sign, dscale] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

fn seeds() -> Vec<Seed> {
    let mut seeds: Vec<Seed> = messages()
        .into_iter()
        .map(|(name, in_stream, msg)| {
            seed("pgoutput", name, &[u8::from(in_stream)], &encoded(&msg))
        })
        .collect();

    let mut rows = Vec::new();
    encode_row(&[text("1"), Cell::Null, text("plain")], &mut rows);
    encode_row(
        &[text("2"), text("tab\there\nnewline \\ back"), text("")],
        &mut rows,
    );
    seeds.push(seed("copy_text", "rows", &[3, 0], &rows));
    seeds.push(seed("copy_text", "rows-cut", &[3, 5], &rows));
    seeds.push(seed(
        "copy_text",
        "escapes",
        &[2, 0],
        b"\\101\\x41\\b\\f\\v\t\\N\n",
    ));

    let data = copy_binary(
        &[
            &[Some(&42i32.to_be_bytes()), None, Some(b"note")],
            &[Some(&7i32.to_be_bytes()), Some(b""), None],
        ],
        b"",
    );
    seeds.push(seed("copy_binary", "rows", &[3, 0], &data));
    seeds.push(seed("copy_binary", "rows-cut", &[3, 7], &data));
    let data = copy_binary(&[&[Some(b"x")]], b"ext");
    seeds.push(seed("copy_binary", "extension", &[1, 0], &data));

    // value_text: [type] [p] [s] [text]; the type numbers are walaudit_fuzz::pg_type's.
    for (name, head, body) in [
        ("bool", [0, 0, 0], &b"t"[..]),
        ("int2", [1, 0, 0], b"-32768"),
        ("int8", [3, 0, 0], b"9223372036854775807"),
        ("float4", [4, 0, 0], b"1.17549435e-38"),
        ("float8", [5, 0, 0], b"-Infinity"),
        ("numeric", [6, 10, 2], b"-12345678.90"),
        ("text", [7, 0, 0], "grüße".as_bytes()),
        ("bytea", [8, 0, 0], b"\\x0aff"),
        ("bytea-escape", [8, 0, 0], b"a\\\\b\\001"),
        ("uuid", [9, 0, 0], b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
        ("date", [10, 0, 0], b"2024-02-29"),
        ("date-bc", [10, 0, 0], b"0044-03-15 BC"),
        ("timestamp", [11, 0, 0], b"2024-02-29 13:45:01.123456"),
        ("timestamptz", [12, 0, 0], b"1999-12-31 23:59:59+05:30"),
        ("int4-array", [0x12, 0, 0], b"{1,NULL,-3}"),
        (
            "text-array",
            [0x17, 0, 0],
            br#"{"a,b","x\"y",NULL,"NULL", plain }"#,
        ),
        ("array-2d", [0x32, 0, 0], b"{{1,2},{3,4}}"),
    ] {
        seeds.push(seed("value_text", name, &head, body));
    }

    // value_binary: [kind] [p] [s] [bytes]; the kind numbers are walaudit_fuzz::binary_kind's.
    let numeric_value = numeric(1, 0x4000, 2, &[1234, 5678, 9000]);
    let uuid = [
        0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9,
    ];
    for (name, head, body) in [
        ("bool", [0, 0, 0], vec![1]),
        ("int4", [2, 0, 0], (-5i32).to_be_bytes().to_vec()),
        ("oid", [4, 0, 0], u32::MAX.to_be_bytes().to_vec()),
        ("float8", [6, 0, 0], 0.1f64.to_be_bytes().to_vec()),
        ("numeric", [7, 12, 2], numeric_value),
        ("numeric-nan", [7, 12, 2], numeric(0, 0xc000, 0, &[])),
        ("jsonb", [9, 0, 0], b"\x01{\"a\": 1}".to_vec()),
        (
            "uuid",
            [10, 0, 0],
            [&uuid[..], &[0xbd, 0x38, 0x0a, 0x11]].concat(),
        ),
        ("date", [12, 0, 0], 8_825i32.to_be_bytes().to_vec()),
        (
            "timestamp",
            [13, 0, 0],
            762_443_101_123_456i64.to_be_bytes().to_vec(),
        ),
        ("timestamp-inf", [13, 0, 0], i64::MAX.to_be_bytes().to_vec()),
    ] {
        seeds.push(seed("value_binary", name, &head, &body));
    }
    seeds
}

/// Every seed reaches past the parser's first checks: it decodes without error.
fn decodes(seed: &Seed) -> bool {
    match seed.target {
        "pgoutput" => parse(
            Bytes::copy_from_slice(&seed.bytes[1..]),
            seed.bytes[0] & 1 != 0,
        )
        .is_ok(),
        "copy_text" => {
            let (columns, data) = (usize::from(seed.bytes[0]), &seed.bytes[2..]);
            let mut splitter = RowSplitter::default();
            let mut cells = Vec::new();
            let rows = splitter.push(Bytes::copy_from_slice(data), |line| {
                parse_row(&line, columns, &mut cells)
            });
            rows.is_ok() && splitter.finish().is_ok()
        }
        "copy_binary" => {
            let mut reader = BinaryRows::new(usize::from(seed.bytes[0]));
            let rows = reader.push::<copy_binary::CopyBinaryError>(&seed.bytes[2..], |_| Ok(()));
            rows.is_ok() && reader.finish().is_ok()
        }
        // Values may be unavailable on purpose (NaN numeric, BC date, a 2-D array): that the
        // parsers read them at all is the point.
        _ => true,
    }
}

#[test]
fn fuzz_seed_corpora_are_the_encoders_output() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus");
    let write = std::env::var_os("WALAUDIT_WRITE_FUZZ_SEEDS").is_some();
    let seeds = seeds();
    let total: usize = seeds.iter().map(|s| s.bytes.len()).sum();
    assert!(total < 16 * 1024, "seed corpora stay small: {total} bytes");
    for seed in &seeds {
        assert!(
            decodes(seed),
            "seed {}/{} does not decode",
            seed.target,
            seed.name
        );
        let path = root.join(seed.target).join(seed.name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &seed.bytes).unwrap();
        } else {
            let stored = std::fs::read(&path).unwrap_or_default();
            assert!(
                stored == seed.bytes,
                "{} is not what src/decode/fuzz_seeds.rs writes: rewrite the corpora with \
                 WALAUDIT_WRITE_FUZZ_SEEDS=1 cargo test --lib fuzz_seeds",
                path.display()
            );
        }
    }
}
