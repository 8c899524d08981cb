//! Encoder of pgoutput messages: the exact inverse of [`super::pgoutput::parse`].
//!
//! Postgres writes these bytes in production; walaudit writes them only for property tests,
//! benchmarks and test fixtures (a fake walsender), so that every parser path can be driven
//! without a server.
//!
//! # Invariants
//! * `parse(encoded(m), in_stream) == Ok(m)` whenever `m` is representable on the wire and its
//!   xid-bearing fields are `Some` exactly when `in_stream` is `true` (proven by a property
//!   test in `pgoutput`).
//! * Representable means: names without NUL bytes, at most `i16::MAX` columns per tuple or
//!   relation, values and relation lists of at most `i32::MAX` entries. A count or length out
//!   of range is written as `-1`, which `parse` rejects, so an oversized message can never
//!   decode as a different one.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Cell, Message, OldKind, ReplicaIdentity, Tuple};

/// Appends the pgoutput encoding of `msg` to `out`. The xid of the xid-bearing messages
/// (Relation, Type, Insert, Update, Delete, Truncate, Message) is written iff it is `Some`.
pub fn encode(msg: &Message, out: &mut BytesMut) {
    match msg {
        Message::Begin(m) => {
            out.put_u8(b'B');
            out.put_u64(m.final_lsn.0);
            out.put_i64(m.commit_ts);
            out.put_u32(m.xid);
        }
        Message::Commit(m) => {
            out.put_u8(b'C');
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_ts);
        }
        Message::Origin(m) => {
            out.put_u8(b'O');
            out.put_u64(m.commit_lsn.0);
            put_cstr(out, &m.name);
        }
        Message::Relation(m) => {
            out.put_u8(b'R');
            put_xid(out, m.xid);
            out.put_u32(m.oid);
            put_cstr(out, &m.namespace);
            put_cstr(out, &m.name);
            out.put_u8(match m.replica_identity {
                ReplicaIdentity::Default => b'd',
                ReplicaIdentity::Nothing => b'n',
                ReplicaIdentity::Full => b'f',
                ReplicaIdentity::Index => b'i',
            });
            out.put_i16(count16(m.columns.len()));
            for col in &m.columns {
                out.put_u8(u8::from(col.is_key));
                put_cstr(out, &col.name);
                out.put_u32(col.type_oid);
                out.put_i32(col.type_modifier);
            }
        }
        Message::Type(m) => {
            out.put_u8(b'Y');
            put_xid(out, m.xid);
            out.put_u32(m.oid);
            put_cstr(out, &m.namespace);
            put_cstr(out, &m.name);
        }
        Message::Insert(m) => {
            out.put_u8(b'I');
            put_xid(out, m.xid);
            out.put_u32(m.relation_oid);
            out.put_u8(b'N');
            put_tuple(out, &m.new);
        }
        Message::Update(m) => {
            out.put_u8(b'U');
            put_xid(out, m.xid);
            out.put_u32(m.relation_oid);
            if let Some((kind, old)) = &m.old {
                out.put_u8(old_marker(*kind));
                put_tuple(out, old);
            }
            out.put_u8(b'N');
            put_tuple(out, &m.new);
        }
        Message::Delete(m) => {
            out.put_u8(b'D');
            put_xid(out, m.xid);
            out.put_u32(m.relation_oid);
            out.put_u8(old_marker(m.old.0));
            put_tuple(out, &m.old.1);
        }
        Message::Truncate(m) => {
            out.put_u8(b'T');
            put_xid(out, m.xid);
            out.put_i32(count32(m.relation_oids.len()));
            out.put_u8(m.options);
            for oid in &m.relation_oids {
                out.put_u32(*oid);
            }
        }
        Message::Message(m) => {
            out.put_u8(b'M');
            put_xid(out, m.xid);
            out.put_u8(u8::from(m.transactional));
            out.put_u64(m.lsn.0);
            put_cstr(out, &m.prefix);
            out.put_i32(count32(m.content.len()));
            out.put_slice(&m.content);
        }
        Message::StreamStart(m) => {
            out.put_u8(b'S');
            out.put_u32(m.xid);
            out.put_u8(u8::from(m.first_segment));
        }
        Message::StreamStop => out.put_u8(b'E'),
        Message::StreamCommit(m) => {
            out.put_u8(b'c');
            out.put_u32(m.xid);
            out.put_u8(m.flags);
            out.put_u64(m.commit_lsn.0);
            out.put_u64(m.end_lsn.0);
            out.put_i64(m.commit_ts);
        }
        Message::StreamAbort(m) => {
            out.put_u8(b'A');
            out.put_u32(m.xid);
            out.put_u32(m.subxid);
        }
    }
}

/// The pgoutput encoding of `msg` as a fresh buffer.
pub fn encoded(msg: &Message) -> Bytes {
    let mut out = BytesMut::new();
    encode(msg, &mut out);
    out.freeze()
}

fn put_xid(out: &mut BytesMut, xid: Option<u32>) {
    if let Some(xid) = xid {
        out.put_u32(xid);
    }
}

fn put_cstr(out: &mut BytesMut, s: &str) {
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}

fn old_marker(kind: OldKind) -> u8 {
    match kind {
        OldKind::Key => b'K',
        OldKind::Full => b'O',
    }
}

fn put_tuple(out: &mut BytesMut, tuple: &Tuple) {
    out.put_i16(count16(tuple.len()));
    for cell in tuple {
        match cell {
            Cell::Null => out.put_u8(b'n'),
            Cell::UnchangedToast => out.put_u8(b'u'),
            Cell::Text(v) => put_value(out, b't', v),
            Cell::Binary(v) => put_value(out, b'b', v),
        }
    }
}

fn put_value(out: &mut BytesMut, kind: u8, value: &Bytes) {
    out.put_u8(kind);
    out.put_i32(count32(value.len()));
    out.put_slice(value);
}

/// An Int16 count on the wire; `-1` (rejected by the parser) when out of range.
fn count16(n: usize) -> i16 {
    i16::try_from(n).unwrap_or(-1)
}

/// An Int32 count or length on the wire; `-1` (rejected by the parser) when out of range.
fn count32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(-1)
}

/// Proptest strategies for arbitrary wire-representable messages, shared by the tests of the
/// decode and capture layers.
#[cfg(test)]
pub(crate) mod strategy {
    use bytes::Bytes;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use crate::Lsn;
    use crate::decode::*;

    /// A message together with the `in_stream` flag it must be parsed with: the xid of the
    /// xid-bearing kinds is `Some` iff `in_stream`.
    pub(crate) fn message_with_stream_flag() -> impl Strategy<Value = (Message, bool)> {
        any::<bool>()
            .prop_flat_map(|in_stream| message(in_stream).prop_map(move |m| (m, in_stream)))
    }

    /// An arbitrary message whose xid fields match `in_stream`.
    pub(crate) fn message(in_stream: bool) -> impl Strategy<Value = Message> {
        let xid = move || {
            if in_stream {
                any::<u32>().prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            }
        };
        let lsn = || any::<u64>().prop_map(Lsn);
        prop_oneof![
            (lsn(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_ts, xid)| {
                Message::Begin(Begin {
                    final_lsn,
                    commit_ts,
                    xid,
                })
            }),
            (any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
                |(flags, commit_lsn, end_lsn, commit_ts)| {
                    Message::Commit(Commit {
                        flags,
                        commit_lsn,
                        end_lsn,
                        commit_ts,
                    })
                }
            ),
            (lsn(), name())
                .prop_map(|(commit_lsn, name)| Message::Origin(Origin { commit_lsn, name })),
            (
                xid(),
                any::<u32>(),
                name(),
                name(),
                replica_identity(),
                vec(column(), 0..6)
            )
                .prop_map(|(xid, oid, namespace, name, replica_identity, columns)| {
                    Message::Relation(Relation {
                        xid,
                        oid,
                        namespace,
                        name,
                        replica_identity,
                        columns,
                    })
                }),
            (xid(), any::<u32>(), name(), name()).prop_map(|(xid, oid, namespace, name)| {
                Message::Type(TypeInfo {
                    xid,
                    oid,
                    namespace,
                    name,
                })
            }),
            (xid(), any::<u32>(), tuple()).prop_map(|(xid, relation_oid, new)| {
                Message::Insert(Insert {
                    xid,
                    relation_oid,
                    new,
                })
            }),
            (
                xid(),
                any::<u32>(),
                proptest::option::of((old_kind(), tuple())),
                tuple()
            )
                .prop_map(|(xid, relation_oid, old, new)| {
                    Message::Update(Update {
                        xid,
                        relation_oid,
                        old,
                        new,
                    })
                }),
            (xid(), any::<u32>(), old_kind(), tuple()).prop_map(
                |(xid, relation_oid, kind, old)| {
                    Message::Delete(Delete {
                        xid,
                        relation_oid,
                        old: (kind, old),
                    })
                }
            ),
            (xid(), any::<u8>(), vec(any::<u32>(), 0..5)).prop_map(
                |(xid, options, relation_oids)| {
                    Message::Truncate(Truncate {
                        xid,
                        options,
                        relation_oids,
                    })
                }
            ),
            (xid(), any::<bool>(), lsn(), name(), vec(any::<u8>(), 0..32)).prop_map(
                |(xid, transactional, lsn, prefix, content)| {
                    Message::Message(LogicalMessage {
                        xid,
                        transactional,
                        lsn,
                        prefix,
                        content: Bytes::from(content),
                    })
                }
            ),
            (any::<u32>(), any::<bool>()).prop_map(|(xid, first_segment)| {
                Message::StreamStart(StreamStart { xid, first_segment })
            }),
            Just(Message::StreamStop),
            (any::<u32>(), any::<u8>(), lsn(), lsn(), any::<i64>()).prop_map(
                |(xid, flags, commit_lsn, end_lsn, commit_ts)| {
                    Message::StreamCommit(StreamCommit {
                        xid,
                        flags,
                        commit_lsn,
                        end_lsn,
                        commit_ts,
                    })
                }
            ),
            (any::<u32>(), any::<u32>())
                .prop_map(|(xid, subxid)| Message::StreamAbort(StreamAbort { xid, subxid })),
        ]
    }

    /// A name as Postgres sends it: any Unicode text without NUL.
    fn name() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,12}"
    }

    fn replica_identity() -> impl Strategy<Value = ReplicaIdentity> {
        prop_oneof![
            Just(ReplicaIdentity::Default),
            Just(ReplicaIdentity::Nothing),
            Just(ReplicaIdentity::Full),
            Just(ReplicaIdentity::Index),
        ]
    }

    fn column() -> impl Strategy<Value = RelationColumn> {
        (any::<bool>(), name(), any::<u32>(), any::<i32>()).prop_map(
            |(is_key, name, type_oid, type_modifier)| RelationColumn {
                is_key,
                name,
                type_oid,
                type_modifier,
            },
        )
    }

    fn old_kind() -> impl Strategy<Value = OldKind> {
        prop_oneof![Just(OldKind::Key), Just(OldKind::Full)]
    }

    pub(crate) fn tuple() -> impl Strategy<Value = Tuple> {
        let cell = prop_oneof![
            Just(Cell::Null),
            Just(Cell::UnchangedToast),
            vec(any::<u8>(), 0..24).prop_map(|v| Cell::Text(Bytes::from(v))),
            vec(any::<u8>(), 0..24).prop_map(|v| Cell::Binary(Bytes::from(v))),
        ];
        vec(cell, 0..8)
    }
}

/// Properties of the encode/parse pair, and the parser's no-panic guarantee driven by
/// encodings of valid messages (truncated, flipped) as well as by random bytes.
#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use proptest::strategy::ValueTree;

    use super::*;
    use crate::decode::pgoutput::parse;

    proptest! {
        #[test]
        fn encode_parse_round_trip((msg, in_stream) in strategy::message_with_stream_flag()) {
            prop_assert_eq!(parse(encoded(&msg), in_stream), Ok(msg));
        }

        #[test]
        fn strict_prefixes_are_rejected(
            (msg, in_stream) in strategy::message_with_stream_flag(),
            cut in any::<Index>(),
        ) {
            let buf = encoded(&msg);
            let cut = cut.index(buf.len());
            prop_assert!(parse(buf.slice(..cut), in_stream).is_err());
        }

        #[test]
        fn byte_flips_never_panic(
            (msg, in_stream) in strategy::message_with_stream_flag(),
            flips in vec((any::<Index>(), 1u8..), 1..4),
        ) {
            let mut buf = encoded(&msg).to_vec();
            for (at, mask) in flips {
                let at = at.index(buf.len());
                buf[at] ^= mask;
            }
            assert_stable(Bytes::from(buf), in_stream)?;
        }

        #[test]
        fn random_bytes_never_panic(buf in vec(any::<u8>(), 0..64), in_stream in any::<bool>()) {
            assert_stable(Bytes::from(buf), in_stream)?;
        }
    }

    /// Parses `buf`; whatever it accepts must survive an encode/parse round trip unchanged.
    fn assert_stable(buf: Bytes, in_stream: bool) -> Result<bool, TestCaseError> {
        match parse(buf, in_stream) {
            Ok(msg) => {
                prop_assert_eq!(parse(encoded(&msg), in_stream), Ok(msg));
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// SplitMix64: a tiny deterministic generator for the fuzz loop.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn fuzz_200k_inputs_never_panic() {
        const TAGS: &[u8] = b"BCORYIUDTMSEcA";
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let fixtures: Vec<(Vec<u8>, bool)> = (0..64)
            .map(|_| {
                let tree = strategy::message_with_stream_flag().new_tree(&mut runner);
                let (msg, in_stream) = tree.expect("strategy").current();
                (encoded(&msg).to_vec(), in_stream)
            })
            .collect();
        let mut rng = Rng(0x5EED_CAFE);
        let (mut accepted, mut rejected) = (0, 0);
        for _ in 0..200_000 {
            let mut in_stream = rng.below(2) == 0;
            let buf = if rng.below(3) == 0 {
                // Random bytes, mostly behind a valid tag.
                let mut buf: Vec<u8> = (0..rng.below(48)).map(|_| rng.next() as u8).collect();
                if !buf.is_empty() && rng.below(4) != 0 {
                    buf[0] = TAGS[rng.below(TAGS.len())];
                }
                buf
            } else {
                // A valid message, truncated, with a few bytes changed or one byte inserted.
                let (mut buf, stream) = fixtures[rng.below(fixtures.len())].clone();
                // Mostly with the flag it was encoded for, sometimes with the wrong one.
                in_stream = stream != (rng.below(10) == 0);
                match rng.below(3) {
                    0 => buf.truncate(rng.below(buf.len() + 1)),
                    1 => {
                        for _ in 0..=rng.below(3) {
                            let at = rng.below(buf.len());
                            buf[at] = rng.next() as u8;
                        }
                    }
                    _ => {
                        let at = rng.below(buf.len() + 1);
                        buf.insert(at, rng.next() as u8);
                    }
                }
                buf
            };
            match assert_stable(Bytes::from(buf), in_stream) {
                Ok(true) => accepted += 1,
                Ok(false) => rejected += 1,
                Err(err) => panic!("{err}"),
            }
        }
        // Both paths must be exercised heavily, or the loop proves nothing.
        assert!(accepted > 10_000, "only {accepted} inputs decoded");
        assert!(rejected > 10_000, "only {rejected} inputs rejected");
    }
}
