//! The replication stream: CopyBoth frames in, standby status updates out.
//!
//! ```text
//!  socket ─► Wire rbuf (256 KiB) ─► 'd' CopyData ─► parse_frame ─► Frame::XLogData { data: Bytes slice }
//!                                                               └► Frame::Keepalive { reply_requested }
//!  send_status(write, flush, apply) ─► CopyData('r' …) ─► socket
//! ```
//!
//! # Invariants
//! * [`ReplicationStream::next_frame`] is cancel-safe (use it in `select!`); a partly received
//!   frame stays buffered.
//! * [`ReplicationStream::send_status`] never tears a message: if cancelled, the unsent rest
//!   goes out first on the next send.
//! * XLogData payloads are zero-copy slices of the read buffer. A payload kept alive keeps its
//!   256 KiB read block alive: copy what must outlive the transaction (e.g. cached relations).
//! * The reported positions are the caller's: this module never confirms anything by itself.

use bytes::{BufMut, Bytes, BytesMut};
use postgres_protocol::message::frontend;

use super::conn::log_notice;
use super::error::{ErrorContext, FrameError, SourceError, map_server_error};
use super::transport::Socket;
use super::wire::Wire;
use crate::Lsn;

const XLOG_HEADER: usize = 1 + 8 + 8 + 8;
const KEEPALIVE_LEN: usize = 1 + 8 + 8 + 1;

/// One message of the replication sub-protocol (inside a `CopyData`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// WAL data: for logical replication, exactly one pgoutput message.
    XLogData {
        /// WAL position of the data (0/0 for messages not tied to a record, e.g. in streamed
        /// transactions).
        wal_start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// Server clock, µs since 2000-01-01.
        server_time: i64,
        data: Bytes,
    },
    /// A heartbeat. Answer with [`ReplicationStream::send_status`] when `reply_requested`, or
    /// the server disconnects after `wal_sender_timeout`.
    Keepalive {
        wal_end: Lsn,
        server_time: i64,
        reply_requested: bool,
    },
}

/// Parses a CopyData payload. Never panics; `data` of XLogData shares `buf`'s memory.
pub fn parse_frame(buf: Bytes) -> Result<Frame, FrameError> {
    let kind = *buf.first().ok_or(FrameError::Empty)?;
    let be64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        u64::from_be_bytes(b)
    };
    match kind {
        b'w' => {
            if buf.len() < XLOG_HEADER {
                return Err(FrameError::Truncated {
                    kind: 'w',
                    len: buf.len(),
                    need: XLOG_HEADER,
                });
            }
            Ok(Frame::XLogData {
                wal_start: Lsn(be64(1)),
                wal_end: Lsn(be64(9)),
                server_time: be64(17) as i64,
                data: buf.slice(XLOG_HEADER..),
            })
        }
        b'k' => {
            if buf.len() < KEEPALIVE_LEN {
                return Err(FrameError::Truncated {
                    kind: 'k',
                    len: buf.len(),
                    need: KEEPALIVE_LEN,
                });
            }
            Ok(Frame::Keepalive {
                wal_end: Lsn(be64(1)),
                server_time: be64(9) as i64,
                reply_requested: buf[17] != 0,
            })
        }
        kind => Err(FrameError::UnknownKind { kind }),
    }
}

/// Encodes a frame as the server would (for tests and in-memory sources).
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::XLogData {
            wal_start,
            wal_end,
            server_time,
            data,
        } => {
            out.reserve(XLOG_HEADER + data.len());
            out.put_u8(b'w');
            out.put_u64(wal_start.0);
            out.put_u64(wal_end.0);
            out.put_i64(*server_time);
            out.put_slice(data);
        }
        Frame::Keepalive {
            wal_end,
            server_time,
            reply_requested,
        } => {
            out.put_u8(b'k');
            out.put_u64(wal_end.0);
            out.put_i64(*server_time);
            out.put_u8(u8::from(*reply_requested));
        }
    }
}

/// The standby status update ('r'): positions received, durably flushed and applied.
pub fn encode_status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    client_time: i64,
    reply_requested: bool,
) -> [u8; 34] {
    let mut msg = [0u8; 34];
    msg[0] = b'r';
    msg[1..9].copy_from_slice(&write.0.to_be_bytes());
    msg[9..17].copy_from_slice(&flush.0.to_be_bytes());
    msg[17..25].copy_from_slice(&apply.0.to_be_bytes());
    msg[25..33].copy_from_slice(&client_time.to_be_bytes());
    msg[33] = u8::from(reply_requested);
    msg
}

pub use crate::clock::pg_now_micros;

/// A running `START_REPLICATION`: read frames, report progress, finish cleanly.
#[derive(Debug)]
pub struct ReplicationStream {
    wire: Wire<Socket>,
    slot: String,
    user: String,
    database: String,
    /// The server ended the copy (CopyDone received).
    server_done: bool,
}

impl ReplicationStream {
    pub(crate) fn new(wire: Wire<Socket>, slot: &str, user: String, database: String) -> Self {
        ReplicationStream {
            wire,
            slot: slot.to_owned(),
            user,
            database,
            server_done: false,
        }
    }

    pub fn slot(&self) -> &str {
        &self.slot
    }

    /// The next frame; `None` once the server has ended the copy. Cancel-safe.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        const CTX: &str = "streaming";
        if self.server_done {
            return Ok(None);
        }
        loop {
            let raw = self.wire.read_raw().await.map_err(|e| e.into_source(CTX))?;
            match raw.tag {
                b'd' => return Ok(Some(parse_frame(raw.body)?)),
                // CopyDone, or CommandComplete when the server ends the copy on its side (e.g.
                // a fast shutdown): the stream is over, the caller reconnects.
                b'c' | b'C' => {
                    self.server_done = true;
                    return Ok(None);
                }
                b'E' | b'N' | b'S' => {
                    match super::wire::BackendMessage::parse(raw).map_err(|e| e.into_source(CTX))? {
                        super::wire::BackendMessage::ErrorResponse(err) => {
                            let ctx = ErrorContext {
                                command: "stream changes",
                                replication: true,
                                user: &self.user,
                                database: &self.database,
                                slot: Some(&self.slot),
                                streaming: true,
                            };
                            return Err(map_server_error(err, &ctx));
                        }
                        super::wire::BackendMessage::NoticeResponse(n) => log_notice(&n),
                        _ => {}
                    }
                }
                tag => {
                    return Err(SourceError::protocol(
                        CTX,
                        format!("message {:?} inside the replication stream", tag as char),
                    ));
                }
            }
        }
    }

    /// Sends a standby status update. `flush` is what Postgres may discard WAL up to: only
    /// positions that are durable downstream. Not lossy under cancellation (see module docs).
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), SourceError> {
        let msg = encode_status_update(write, flush, apply, pg_now_micros(), reply_requested);
        // A 34-byte body always fits a CopyData.
        if let Ok(data) = frontend::CopyData::new(&msg[..]) {
            data.write(self.wire.wbuf());
        }
        self.wire.flush().await.map_err(|source| SourceError::Io {
            context: "sending a status update",
            source,
        })
    }

    /// Ends the copy (CopyDone), drops any frames still in flight, waits for ReadyForQuery and
    /// closes the connection. Frames dropped here were not confirmed, so they are sent again
    /// next time. Bound it with a timeout: a server busy decoding a large transaction may take
    /// a while to notice; dropping the stream instead also ends the session, just less politely.
    pub async fn finish(mut self) -> Result<(), SourceError> {
        const CTX: &str = "ending replication";
        frontend::copy_done(self.wire.wbuf());
        self.wire.flush().await.map_err(|source| SourceError::Io {
            context: CTX,
            source,
        })?;
        loop {
            let raw = match self.wire.read_raw().await {
                Ok(raw) => raw,
                // The server may close right after ending the copy: that is a clean end too.
                Err(super::wire::WireError::Eof) => return Ok(()),
                Err(e) => return Err(e.into_source(CTX)),
            };
            match raw.tag {
                b'Z' => break,
                b'E' => {
                    if let Ok(super::wire::BackendMessage::ErrorResponse(err)) =
                        super::wire::BackendMessage::parse(raw)
                    {
                        let ctx = ErrorContext {
                            command: "end replication",
                            replication: true,
                            user: &self.user,
                            database: &self.database,
                            slot: Some(&self.slot),
                            streaming: true,
                        };
                        return Err(map_server_error(err, &ctx));
                    }
                }
                // CopyData still in flight, CopyDone, CommandComplete, notices.
                _ => {}
            }
        }
        frontend::terminate(self.wire.wbuf());
        let _ = self.wire.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(frame: &Frame) -> Bytes {
        let mut out = BytesMut::new();
        encode_frame(frame, &mut out);
        out.freeze()
    }

    #[test]
    fn xlogdata_payload_is_a_zero_copy_slice() {
        let frame = Frame::XLogData {
            wal_start: Lsn(0x1_0000_0010),
            wal_end: Lsn(0x1_0000_0020),
            server_time: 777,
            data: Bytes::from_static(b"Bpayload"),
        };
        let buf = encoded(&frame);
        let parsed = parse_frame(buf.clone()).unwrap();
        assert_eq!(parsed, frame);
        let Frame::XLogData { data, .. } = parsed else {
            unreachable!()
        };
        assert_eq!(data.as_ptr(), buf[XLOG_HEADER..].as_ptr(), "no copy");
    }

    #[test]
    fn keepalive_and_errors() {
        let ka = Frame::Keepalive {
            wal_end: Lsn(5),
            server_time: -3,
            reply_requested: true,
        };
        assert_eq!(parse_frame(encoded(&ka)).unwrap(), ka);
        assert_eq!(parse_frame(Bytes::new()), Err(FrameError::Empty));
        assert_eq!(
            parse_frame(Bytes::from_static(b"k\0\0")),
            Err(FrameError::Truncated {
                kind: 'k',
                len: 3,
                need: 18
            })
        );
        assert_eq!(
            parse_frame(Bytes::from_static(b"x")),
            Err(FrameError::UnknownKind { kind: b'x' })
        );
    }

    #[test]
    fn status_update_layout() {
        let msg = encode_status_update(Lsn(1), Lsn(2), Lsn(3), 4, true);
        assert_eq!(msg[0], b'r');
        assert_eq!(&msg[1..9], &1u64.to_be_bytes());
        assert_eq!(&msg[9..17], &2u64.to_be_bytes());
        assert_eq!(&msg[17..25], &3u64.to_be_bytes());
        assert_eq!(&msg[25..33], &4i64.to_be_bytes());
        assert_eq!(msg[33], 1);
    }

    #[test]
    fn clock_is_in_postgres_epoch() {
        // 2020-01-01 is 631_152_000 s after 2000-01-01; any sane clock is past it.
        assert!(pg_now_micros() > 631_152_000_000_000);
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                any::<i64>(),
                proptest::collection::vec(any::<u8>(), 0..64)
            )
                .prop_map(|(s, e, t, d)| Frame::XLogData {
                    wal_start: Lsn(s),
                    wal_end: Lsn(e),
                    server_time: t,
                    data: Bytes::from(d),
                }),
            (any::<u64>(), any::<i64>(), any::<bool>()).prop_map(|(e, t, r)| Frame::Keepalive {
                wal_end: Lsn(e),
                server_time: t,
                reply_requested: r,
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(frame in arb_frame()) {
            prop_assert_eq!(parse_frame(encoded(&frame)).unwrap(), frame);
        }

        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_frame(Bytes::from(data));
        }
    }
}
