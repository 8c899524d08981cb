//! Parser of pgoutput messages (logical replication protocol versions 1 and 2).
//!
//! ```text
//!  XLogData payload: Bytes ──► parse(buf, in_stream) ──► Message
//!                                    │
//!                                    └─ Text/Binary cells = buf.slice(..)  (refcount bump, no copy)
//! ```
//!
//! Wire formats: <https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html>.
//! All integers are big-endian; strings are NUL-terminated UTF-8.
//!
//! # Invariants
//! * Zero-copy: every tuple cell value is a slice of the input `Bytes`; the only allocations are
//!   the tuple `Vec` (sized once from the column count) and the names of Relation, Type and
//!   Origin messages, which are rare.
//! * Never panics on arbitrary input: every malformed, truncated or over-long message is a
//!   [`DecodeError`]. Trailing bytes after a complete message are an error too (except the
//!   16-byte abort LSN/timestamp a v4 Stream Abort may carry), so a framing bug upstream cannot
//!   hide.
//! * `in_stream` must be `true` exactly between Stream Start and Stream Stop: there the
//!   Relation, Type, Insert, Update, Delete, Truncate and Message messages carry the xid of the
//!   streamed (sub)transaction right after their tag, and their `xid` field is `Some`.
//!
//! [`encode`] is the exact inverse, for tests, benchmarks and fixtures. Tests here check
//! hand-written wire bytes; the properties that need the encoder (round trip, truncated and
//! corrupted encodings, a 200k-input fuzz loop) live in [`super::encode`].

use bytes::Bytes;

pub use super::encode::{encode, encoded};
use super::{
    Begin, Cell, Commit, DecodeError, Delete, Insert, LogicalMessage, Message, OldKind, Origin,
    Relation, RelationColumn, ReplicaIdentity, StreamAbort, StreamCommit, StreamStart, Truncate,
    Tuple, TypeInfo, Update,
};
use crate::Lsn;

/// Bytes a protocol v4 Stream Abort appends (abort LSN and abort timestamp) when parallel
/// streaming is on. walaudit does not request it, but tolerates them.
const STREAM_ABORT_V4_EXTRA: usize = 16;

const DELETE_MARKER: &str = "Delete old tuple marker 'K' or 'O'";

/// Decodes one pgoutput message from the payload of an XLogData frame.
///
/// `in_stream` is `true` between a Stream Start and the matching Stream Stop; it decides whether
/// the xid-bearing messages are read with their leading xid. Text and binary cells of the result
/// share `buf`'s memory.
pub fn parse(buf: Bytes, in_stream: bool) -> Result<Message, DecodeError> {
    let mut c = Cursor { buf: &buf, pos: 0 };
    let msg = match c.u8("message tag")? {
        b'B' => Message::Begin(Begin {
            final_lsn: c.lsn("Begin final LSN")?,
            commit_ts: c.i64("Begin commit timestamp")?,
            xid: c.u32("Begin xid")?,
        }),
        b'C' => Message::Commit(Commit {
            flags: c.u8("Commit flags")?,
            commit_lsn: c.lsn("Commit LSN")?,
            end_lsn: c.lsn("Commit end LSN")?,
            commit_ts: c.i64("Commit timestamp")?,
        }),
        b'O' => Message::Origin(Origin {
            commit_lsn: c.lsn("Origin commit LSN")?,
            name: c.cstr("Origin name")?,
        }),
        b'R' => Message::Relation(c.relation(in_stream)?),
        b'Y' => Message::Type(TypeInfo {
            xid: c.stream_xid(in_stream)?,
            oid: c.u32("Type oid")?,
            namespace: c.cstr("Type namespace")?,
            name: c.cstr("Type name")?,
        }),
        b'I' => Message::Insert(Insert {
            xid: c.stream_xid(in_stream)?,
            relation_oid: c.u32("Insert relation oid")?,
            new: c
                .expect(b'N', "Insert new tuple marker 'N'")
                .and_then(|()| c.tuple())?,
        }),
        b'U' => Message::Update(c.update(in_stream)?),
        b'D' => Message::Delete(Delete {
            xid: c.stream_xid(in_stream)?,
            relation_oid: c.u32("Delete relation oid")?,
            old: c
                .u8(DELETE_MARKER)
                .and_then(|m| c.old_tuple(m, DELETE_MARKER))?,
        }),
        b'T' => Message::Truncate(c.truncate(in_stream)?),
        b'M' => Message::Message(LogicalMessage {
            xid: c.stream_xid(in_stream)?,
            transactional: c.u8("Message flags")? & 1 != 0,
            lsn: c.lsn("Message LSN")?,
            prefix: c.cstr("Message prefix")?,
            content: c.sized("Message content length", "Message content")?,
        }),
        b'S' => Message::StreamStart(StreamStart {
            xid: c.u32("Stream Start xid")?,
            first_segment: c.u8("Stream Start first-segment flag")? == 1,
        }),
        b'E' => Message::StreamStop,
        b'c' => Message::StreamCommit(StreamCommit {
            xid: c.u32("Stream Commit xid")?,
            flags: c.u8("Stream Commit flags")?,
            commit_lsn: c.lsn("Stream Commit LSN")?,
            end_lsn: c.lsn("Stream Commit end LSN")?,
            commit_ts: c.i64("Stream Commit timestamp")?,
        }),
        b'A' => {
            let abort = StreamAbort {
                xid: c.u32("Stream Abort xid")?,
                subxid: c.u32("Stream Abort subxid")?,
            };
            if c.remaining() == STREAM_ABORT_V4_EXTRA {
                c.pos += STREAM_ABORT_V4_EXTRA;
            }
            Message::StreamAbort(abort)
        }
        tag => return Err(DecodeError::UnknownTag { tag }),
    };
    match c.remaining() {
        0 => Ok(msg),
        count => Err(DecodeError::Trailing {
            what: kind_name(&msg),
            count,
        }),
    }
}

/// The message kind as the protocol documentation names it, for error messages.
fn kind_name(msg: &Message) -> &'static str {
    match msg {
        Message::Begin(_) => "Begin",
        Message::Commit(_) => "Commit",
        Message::Origin(_) => "Origin",
        Message::Relation(_) => "Relation",
        Message::Type(_) => "Type",
        Message::Insert(_) => "Insert",
        Message::Update(_) => "Update",
        Message::Delete(_) => "Delete",
        Message::Truncate(_) => "Truncate",
        Message::Message(_) => "Message",
        Message::StreamStart(_) => "Stream Start",
        Message::StreamStop => "Stream Stop",
        Message::StreamCommit(_) => "Stream Commit",
        Message::StreamAbort(_) => "Stream Abort",
    }
}

/// A read position over the message. Invariant: `pos <= buf.len()`.
struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Cursor<'_> {
    #[inline]
    fn rest(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let rest = self.rest();
        match rest.first_chunk::<N>() {
            Some(&chunk) => {
                self.pos += N;
                Ok(chunk)
            }
            None => Err(DecodeError::Truncated {
                what,
                needed: N - rest.len(),
            }),
        }
    }

    #[inline]
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let [byte] = self.array(what)?;
        Ok(byte)
    }

    #[inline]
    fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.array(what).map(i16::from_be_bytes)
    }

    #[inline]
    fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.array(what).map(i32::from_be_bytes)
    }

    #[inline]
    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        self.array(what).map(u32::from_be_bytes)
    }

    #[inline]
    fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        self.array(what).map(i64::from_be_bytes)
    }

    #[inline]
    fn lsn(&mut self, what: &'static str) -> Result<Lsn, DecodeError> {
        self.array(what).map(|b| Lsn(u64::from_be_bytes(b)))
    }

    /// The xid that leads xid-bearing messages inside a streamed block.
    #[inline]
    fn stream_xid(&mut self, in_stream: bool) -> Result<Option<u32>, DecodeError> {
        if in_stream {
            self.u32("streamed transaction xid").map(Some)
        } else {
            Ok(None)
        }
    }

    /// Reads one byte and checks it is `want`.
    #[inline]
    fn expect(&mut self, want: u8, what: &'static str) -> Result<(), DecodeError> {
        match self.u8(what)? {
            found if found == want => Ok(()),
            found => Err(DecodeError::Unexpected { what, found }),
        }
    }

    /// An Int32 length that must not be negative.
    #[inline]
    fn len32(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let len = self.i32(what)?;
        usize::try_from(len).map_err(|_| DecodeError::BadLength {
            what,
            len: len.into(),
        })
    }

    /// The next `len` bytes as a zero-copy slice of the input.
    #[inline]
    fn bytes(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let remaining = self.remaining();
        if len > remaining {
            return Err(DecodeError::Truncated {
                what,
                needed: len - remaining,
            });
        }
        let start = self.pos;
        self.pos += len;
        Ok(self.buf.slice(start..self.pos))
    }

    /// A NUL-terminated UTF-8 string.
    fn cstr(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let rest = self.rest();
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return Err(DecodeError::Truncated { what, needed: 1 });
        };
        let (text, _) = rest.split_at(nul);
        let text = std::str::from_utf8(text).map_err(|_| DecodeError::NotUtf8 { what })?;
        let text = text.to_owned();
        self.pos += nul + 1;
        Ok(text)
    }

    fn relation(&mut self, in_stream: bool) -> Result<Relation, DecodeError> {
        let xid = self.stream_xid(in_stream)?;
        let oid = self.u32("Relation oid")?;
        let namespace = self.cstr("Relation namespace")?;
        let name = self.cstr("Relation name")?;
        let replica_identity = match self.u8("Relation replica identity")? {
            b'd' => ReplicaIdentity::Default,
            b'n' => ReplicaIdentity::Nothing,
            b'f' => ReplicaIdentity::Full,
            b'i' => ReplicaIdentity::Index,
            found => {
                return Err(DecodeError::Unexpected {
                    what: "Relation replica identity 'd', 'n', 'f' or 'i'",
                    found,
                });
            }
        };
        let count = self.count16("Relation column count")?;
        // Each column takes at least 10 bytes: never reserve more than the input can hold.
        let mut columns = Vec::with_capacity(count.min(self.remaining() / 10));
        for _ in 0..count {
            let flags = self.u8("Relation column flags")?;
            columns.push(RelationColumn {
                is_key: flags & 1 != 0,
                name: self.cstr("Relation column name")?,
                type_oid: self.u32("Relation column type oid")?,
                type_modifier: self.i32("Relation column type modifier")?,
            });
        }
        Ok(Relation {
            xid,
            oid,
            namespace,
            name,
            replica_identity,
            columns,
        })
    }

    fn update(&mut self, in_stream: bool) -> Result<Update, DecodeError> {
        const MARKER: &str = "Update tuple marker 'K', 'O' or 'N'";
        let xid = self.stream_xid(in_stream)?;
        let relation_oid = self.u32("Update relation oid")?;
        let old = match self.u8(MARKER)? {
            b'N' => None,
            marker => {
                let old = self.old_tuple(marker, MARKER)?;
                self.expect(b'N', "Update new tuple marker 'N'")?;
                Some(old)
            }
        };
        let new = self.tuple()?;
        Ok(Update {
            xid,
            relation_oid,
            old,
            new,
        })
    }

    /// The old image after its marker byte: `K` (key columns) or `O` (whole row).
    fn old_tuple(
        &mut self,
        marker: u8,
        what: &'static str,
    ) -> Result<(OldKind, Tuple), DecodeError> {
        let kind = match marker {
            b'K' => OldKind::Key,
            b'O' => OldKind::Full,
            found => return Err(DecodeError::Unexpected { what, found }),
        };
        Ok((kind, self.tuple()?))
    }

    fn truncate(&mut self, in_stream: bool) -> Result<Truncate, DecodeError> {
        let xid = self.stream_xid(in_stream)?;
        let count = self.len32("Truncate relation count")?;
        let options = self.u8("Truncate options")?;
        let mut relation_oids = Vec::with_capacity(count.min(self.remaining() / 4));
        for _ in 0..count {
            relation_oids.push(self.u32("Truncate relation oid")?);
        }
        Ok(Truncate {
            xid,
            options,
            relation_oids,
        })
    }

    /// An Int16 count that must not be negative.
    #[inline]
    fn count16(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| DecodeError::BadLength {
            what,
            len: n.into(),
        })
    }

    /// TupleData: Int16 column count, then one kind byte (and maybe a value) per column.
    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let count = self.count16("tuple column count")?;
        // Each cell takes at least one byte: never reserve more than the input can hold.
        let mut cells = Vec::with_capacity(count.min(self.remaining()));
        for _ in 0..count {
            let cell = match self.u8("tuple cell kind")? {
                b'n' => Cell::Null,
                b'u' => Cell::UnchangedToast,
                b't' => Cell::Text(self.value()?),
                b'b' => Cell::Binary(self.value()?),
                kind => return Err(DecodeError::UnknownCellKind { kind }),
            };
            cells.push(cell);
        }
        Ok(cells)
    }

    #[inline]
    fn value(&mut self) -> Result<Bytes, DecodeError> {
        self.sized("tuple cell length", "tuple cell value")
    }

    /// An Int32 length, then that many bytes as a zero-copy slice of the input.
    #[inline]
    fn sized(&mut self, len_what: &'static str, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.len32(len_what)?;
        self.bytes(len, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-written wire bytes: whitespace-separated hex tokens (`0000_4000`, `_` ignored) and
    /// `"ascii"` tokens. Independent of the encoder, so fixtures check the real byte layout.
    fn wire(spec: &str) -> Bytes {
        let mut out = Vec::new();
        for token in spec.split_whitespace() {
            if let Some(ascii) = token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                out.extend_from_slice(ascii.as_bytes());
            } else {
                let hex = token.replace('_', "");
                assert!(hex.len() % 2 == 0, "odd hex token {token}");
                for i in (0..hex.len()).step_by(2) {
                    out.push(u8::from_str_radix(&hex[i..i + 2], 16).expect("hex token"));
                }
            }
        }
        Bytes::from(out)
    }

    fn text(s: &str) -> Cell {
        Cell::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn ok(spec: &str, in_stream: bool) -> Message {
        parse(wire(spec), in_stream).expect("valid fixture")
    }

    #[test]
    fn transaction_boundaries_and_origin() {
        let begin = "42 0000_0001_0000_0010 0000_0000_0000_002a 0000_0007";
        let want = Begin {
            final_lsn: Lsn(0x1_0000_0010),
            commit_ts: 42,
            xid: 7,
        };
        assert_eq!(ok(begin, false), Message::Begin(want.clone()));
        // Begin carries no stream xid, so the flag does not change it.
        assert_eq!(ok(begin, true), Message::Begin(want));
        let commit = "43 00 0000_0000_0000_0010 0000_0000_0000_0038 0000_0000_0000_0063";
        let want = Commit {
            flags: 0,
            commit_lsn: Lsn(0x10),
            end_lsn: Lsn(0x38),
            commit_ts: 99,
        };
        assert_eq!(ok(commit, false), Message::Commit(want));
        let origin = ok(r#"4f 0000_0000_0000_0005 "node_a" 00"#, false);
        assert_eq!(
            origin,
            Message::Origin(Origin {
                commit_lsn: Lsn(5),
                name: "node_a".into()
            })
        );
    }

    #[test]
    fn relation_with_two_columns_and_a_key() {
        let msg = ok(
            r#"52 0000_4000 "public" 00 "orders" 00 "d" 0002
               01 "id" 00 0000_0017 ffff_ffff  00 "note" 00 0000_0413 0000_0044"#,
            false,
        );
        let col = |is_key, name: &str, type_oid, type_modifier| RelationColumn {
            is_key,
            name: name.into(),
            type_oid,
            type_modifier,
        };
        let want = Relation {
            xid: None,
            oid: 16384,
            namespace: "public".into(),
            name: "orders".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![col(true, "id", 23, -1), col(false, "note", 1043, 68)],
        };
        assert_eq!(msg, Message::Relation(want));
        let ty = ok(r#"59 0001_1170 "public" 00 "mood" 00"#, false);
        let want = TypeInfo {
            xid: None,
            oid: 70000,
            namespace: "public".into(),
            name: "mood".into(),
        };
        assert_eq!(ty, Message::Type(want));
    }

    #[test]
    fn insert_with_null_unchanged_and_text_cells_is_zero_copy() {
        let buf = wire(r#"49 0000_4000 "N" 0004 "n" "u" "t" 0000_0002 "hi" "b" 0000_0001 ff"#);
        let msg = parse(buf.clone(), false);
        let Ok(Message::Insert(insert)) = msg else {
            panic!("not an insert: {msg:?}")
        };
        assert_eq!(insert.xid, None);
        assert_eq!(insert.relation_oid, 16384);
        let binary = Cell::Binary(Bytes::from_static(&[0xff]));
        assert_eq!(
            insert.new,
            vec![Cell::Null, Cell::UnchangedToast, text("hi"), binary]
        );
        let Cell::Text(hi) = &insert.new[2] else {
            unreachable!()
        };
        assert_eq!(
            hi.as_ptr(),
            buf[15..].as_ptr(),
            "text cell must point into the input"
        );
    }

    #[test]
    fn updates_and_deletes() {
        let key = r#"55 0000_4000 "K" 0002 "t" 0000_0001 "1" "n"
                     "N" 0002 "t" 0000_0001 "2" "t" 0000_0003 "abc""#;
        let old = Some((OldKind::Key, vec![text("1"), Cell::Null]));
        let want = Update {
            xid: None,
            relation_oid: 16384,
            old,
            new: vec![text("2"), text("abc")],
        };
        assert_eq!(ok(key, false), Message::Update(want));

        let full = r#"55 0000_0007 "O" 0002 "t" 0000_0001 "1" "t" 0000_0001 "x"
                      "N" 0002 "t" 0000_0001 "1" "u""#;
        let old = Some((OldKind::Full, vec![text("1"), text("x")]));
        let new = vec![text("1"), Cell::UnchangedToast];
        assert_eq!(
            ok(full, false),
            Message::Update(Update {
                xid: None,
                relation_oid: 7,
                old,
                new
            })
        );

        let plain = ok(r#"55 0000_0007 "N" 0001 "n""#, false);
        let want = Update {
            xid: None,
            relation_oid: 7,
            old: None,
            new: vec![Cell::Null],
        };
        assert_eq!(plain, Message::Update(want));

        let delete = ok(r#"44 0000_0007 "K" 0002 "t" 0000_0002 "42" "n""#, false);
        let old = (OldKind::Key, vec![text("42"), Cell::Null]);
        assert_eq!(
            delete,
            Message::Delete(Delete {
                xid: None,
                relation_oid: 7,
                old
            })
        );
    }

    #[test]
    fn truncate_two_relations() {
        let msg = ok("54 0000_0002 03 0000_4000 0000_4006", false);
        let want = Truncate {
            xid: None,
            options: 3,
            relation_oids: vec![16384, 16390],
        };
        assert_eq!(msg, Message::Truncate(want));
    }

    #[test]
    fn logical_messages() {
        let msg = ok(
            r#"4d 01 0000_0000_0000_0020 "walaudit" 00 0000_0005 "actor""#,
            false,
        );
        let prefix = "walaudit".to_owned();
        let content = Bytes::from_static(b"actor");
        let want = LogicalMessage {
            xid: None,
            transactional: true,
            lsn: Lsn(0x20),
            prefix,
            content,
        };
        assert_eq!(msg, Message::Message(want));
        // Inside a streamed block the xid comes first.
        let msg = ok(
            r#"4d 0000_0009 00 0000_0000_0000_0001 "p" 00 0000_0000"#,
            true,
        );
        let (prefix, content) = ("p".to_owned(), Bytes::new());
        let want = LogicalMessage {
            xid: Some(9),
            transactional: false,
            lsn: Lsn(1),
            prefix,
            content,
        };
        assert_eq!(msg, Message::Message(want));
    }

    #[test]
    fn stream_control_messages() {
        let start = |first| {
            Message::StreamStart(StreamStart {
                xid: 900,
                first_segment: first,
            })
        };
        assert_eq!(ok("53 0000_0384 01", false), start(true));
        assert_eq!(ok("53 0000_0384 00", false), start(false));
        assert_eq!(ok("45", true), Message::StreamStop);
        let commit = "63 0000_0384 00 0000_0000_0000_0100 0000_0000_0000_0128 0000_0000_0000_004d";
        let want = StreamCommit {
            xid: 900,
            flags: 0,
            commit_lsn: Lsn(0x100),
            end_lsn: Lsn(0x128),
            commit_ts: 77,
        };
        assert_eq!(ok(commit, false), Message::StreamCommit(want));
        let abort = Message::StreamAbort(StreamAbort {
            xid: 900,
            subxid: 901,
        });
        assert_eq!(ok("41 0000_0384 0000_0385", false), abort);
        // Protocol v4 with parallel streaming appends abort LSN and timestamp.
        assert_eq!(
            ok(
                &format!("41 0000_0384 0000_0385 {}", "ab".repeat(16)),
                false
            ),
            abort
        );
    }

    #[test]
    fn streamed_insert_carries_xid() {
        let spec = r#"49 0000_0384 0000_4000 "N" 0001 "t" 0000_0001 "5""#;
        let want = Insert {
            xid: Some(900),
            relation_oid: 16384,
            new: vec![text("5")],
        };
        assert_eq!(ok(spec, true), Message::Insert(want));
        // Read without the stream flag, the xid is taken for the oid and 'N' is missing.
        assert!(parse(wire(spec), false).is_err());
    }

    #[test]
    fn malformed_inputs_are_precise_errors() {
        // `wire bytes => error message`.
        let cases = [
            r#" => pgoutput message ended early: needed 1 more bytes for message tag"#,
            r#""Z" => unknown pgoutput message tag 90"#,
            r#"42 0000_0000_0000_0000 0000_0000_0000_0000 0000_00
               => pgoutput message ended early: needed 1 more bytes for Begin xid"#,
            r#"45 00 => 1 trailing bytes after a complete Stream Stop message"#,
            r#"43 00 0000_0000_0000_0000 0000_0000_0000_0000 0000_0000_0000_0000 0102
               => 2 trailing bytes after a complete Commit message"#,
            r#"49 0000_0001 "N" 0001 "t" ffff_ffff => tuple cell length has an invalid length -1"#,
            r#"49 0000_0001 "N" 0001 "t" 0000_0009 "ab"
               => pgoutput message ended early: needed 7 more bytes for tuple cell value"#,
            r#"49 0000_0001 "N" fffe => tuple column count has an invalid length -2"#,
            r#"49 0000_0001 "N" 0001 "x" => unknown tuple cell kind 120"#,
            r#"49 0000_0001 "K" => unexpected byte 75 where Insert new tuple marker 'N' was expected"#,
            r#"55 0000_0001 "K" 0000 "O"
               => unexpected byte 79 where Update new tuple marker 'N' was expected"#,
            r#"55 0000_0001 "X"
               => unexpected byte 88 where Update tuple marker 'K', 'O' or 'N' was expected"#,
            r#"44 0000_0001 "N"
               => unexpected byte 78 where Delete old tuple marker 'K' or 'O' was expected"#,
            r#"52 0000_0001 "s" 00 "t" 00 "x" 0000
               => unexpected byte 120 where Relation replica identity 'd', 'n', 'f' or 'i' was expected"#,
            r#"52 0000_0001 "s" 00 "t" 00 "d" 8000
               => Relation column count has an invalid length -32768"#,
            r#"4f 0000_0000_0000_0001 fffe 00 => Origin name is not valid UTF-8"#,
            r#"4f 0000_0000_0000_0001 "no-nul"
               => pgoutput message ended early: needed 1 more bytes for Origin name"#,
            r#"54 ffff_ffff 00 => Truncate relation count has an invalid length -1"#,
            r#"54 0000_0002 00 0000_0001
               => pgoutput message ended early: needed 4 more bytes for Truncate relation oid"#,
            r#"4d 01 0000_0000_0000_0001 "p" 00 ffff_fffb
               => Message content length has an invalid length -5"#,
            r#"41 0000_0384 0000_0385 0000_0000_0000_0000
               => 8 trailing bytes after a complete Stream Abort message"#,
        ];
        for case in cases {
            let (spec, want) = case.split_once("=>").expect("case has `=>`");
            let err = parse(wire(spec), false).expect_err(spec);
            assert_eq!(err.to_string(), want.trim(), "input {spec}");
        }
    }
}
