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
mod tests;
