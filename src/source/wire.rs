//! A small reader/writer for the Postgres wire protocol over any byte stream.
//!
//! ```text
//!  socket ──read_buf──► rbuf (BytesMut, 256 KiB) ──split_to(len).freeze()──► RawMessage { tag, body: Bytes }
//!                                                                              │
//!                                                  BackendMessage::parse ◄─────┘ (control messages)
//!  frontend encoders (postgres_protocol) ──► wbuf ──write_buf──► socket
//! ```
//!
//! # Invariants
//! * Reading is cancel-safe: bytes of a partly received message stay in `rbuf` and the next
//!   call continues where the cancelled one stopped.
//! * Writing is cancel-safe in the same sense: a cancelled [`Wire::flush`] leaves the unsent
//!   rest in `wbuf`, and the next flush sends it first, so messages are never torn.
//! * Message bodies are zero-copy slices of the read buffer.
//! * A declared length above [`MAX_MESSAGE_LEN`] is an error, never an allocation.
//! * Parsing untrusted bytes never panics.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::{ServerError, SourceError};

/// Largest message accepted (Postgres itself caps a field at 1 GiB).
pub const MAX_MESSAGE_LEN: usize = 1 << 30;
/// Read buffer allocation: many messages per allocation, split off without copying.
const READ_BUF: usize = 256 * 1024;
/// Below this much spare room, a new read buffer is reserved before reading.
const MIN_SPARE: usize = 32 * 1024;

/// One backend message: its tag byte and its body (without the length word).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMessage {
    pub tag: u8,
    pub body: Bytes,
}

/// Reading or parsing failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection error")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the server")]
    Eof,
    #[error("message {tag:?} declares length {len}, more than the 1 GiB limit")]
    TooLong { tag: char, len: usize },
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
}

impl WireError {
    /// Attaches what we were doing, and sorts the error by consequence.
    pub fn into_source(self, context: &'static str) -> SourceError {
        match self {
            WireError::Io(source) => SourceError::Io { context, source },
            WireError::Eof => SourceError::Closed { context },
            other => SourceError::protocol(context, other.to_string()),
        }
    }
}

/// The authentication requests we understand (`R` messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<String>,
    },
    SaslContinue(Bytes),
    SaslFinal(Bytes),
    /// Kerberos, GSSAPI, SSPI...: the request code.
    Other(i32),
}

/// The backend messages a replication connection sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendMessage {
    Authentication(Authentication),
    ParameterStatus {
        name: String,
        value: String,
    },
    BackendKeyData {
        process_id: i32,
        secret_key: i32,
    },
    ReadyForQuery {
        status: u8,
    },
    RowDescription {
        columns: Vec<String>,
    },
    DataRow {
        values: Vec<Option<Bytes>>,
    },
    CommandComplete {
        tag: String,
    },
    ErrorResponse(ServerError),
    NoticeResponse(ServerError),
    CopyBothResponse,
    CopyOutResponse,
    CopyData(Bytes),
    CopyDone,
    EmptyQueryResponse,
    /// Anything else (e.g. `NotificationResponse`), left to the caller.
    Other {
        tag: u8,
    },
}

impl BackendMessage {
    /// Parses a message body. Never panics.
    pub fn parse(raw: RawMessage) -> Result<BackendMessage, WireError> {
        let RawMessage { tag, body } = raw;
        let mut r = Reader {
            buf: body,
            what: "backend",
        };
        let msg = match tag {
            b'R' => {
                r.what = "Authentication";
                BackendMessage::Authentication(match r.i32()? {
                    0 => Authentication::Ok,
                    3 => Authentication::CleartextPassword,
                    5 => {
                        let s = r.take(4)?;
                        Authentication::Md5Password {
                            salt: [s[0], s[1], s[2], s[3]],
                        }
                    }
                    10 => {
                        let mut mechanisms = Vec::new();
                        while r.buf.first().is_some_and(|b| *b != 0) {
                            mechanisms.push(r.cstr()?);
                        }
                        Authentication::Sasl { mechanisms }
                    }
                    11 => Authentication::SaslContinue(r.rest()),
                    12 => Authentication::SaslFinal(r.rest()),
                    other => Authentication::Other(other),
                })
            }
            b'S' => {
                r.what = "ParameterStatus";
                BackendMessage::ParameterStatus {
                    name: r.cstr()?,
                    value: r.cstr()?,
                }
            }
            b'K' => {
                r.what = "BackendKeyData";
                BackendMessage::BackendKeyData {
                    process_id: r.i32()?,
                    secret_key: r.i32()?,
                }
            }
            b'Z' => {
                r.what = "ReadyForQuery";
                BackendMessage::ReadyForQuery { status: r.u8()? }
            }
            b'T' => {
                r.what = "RowDescription";
                let n = r.i16()?;
                let mut columns = Vec::with_capacity(n.clamp(0, 1024) as usize);
                for _ in 0..n {
                    columns.push(r.cstr()?);
                    // table oid, column number, type oid, type size, typmod, format
                    r.take(4 + 2 + 4 + 2 + 4 + 2)?;
                }
                BackendMessage::RowDescription { columns }
            }
            b'D' => {
                r.what = "DataRow";
                let n = r.i16()?;
                let mut values = Vec::with_capacity(n.clamp(0, 1024) as usize);
                for _ in 0..n {
                    let len = r.i32()?;
                    values.push(if len < 0 {
                        None
                    } else {
                        Some(r.take(len as usize)?)
                    });
                }
                BackendMessage::DataRow { values }
            }
            b'C' => {
                r.what = "CommandComplete";
                BackendMessage::CommandComplete { tag: r.cstr()? }
            }
            b'E' | b'N' => {
                r.what = "ErrorResponse";
                let fields = parse_error_fields(&mut r)?;
                if tag == b'E' {
                    BackendMessage::ErrorResponse(fields)
                } else {
                    BackendMessage::NoticeResponse(fields)
                }
            }
            b'W' => BackendMessage::CopyBothResponse,
            b'H' => BackendMessage::CopyOutResponse,
            b'd' => return Ok(BackendMessage::CopyData(r.buf)),
            b'c' => BackendMessage::CopyDone,
            b'I' => BackendMessage::EmptyQueryResponse,
            other => return Ok(BackendMessage::Other { tag: other }),
        };
        Ok(msg)
    }
}

fn parse_error_fields(r: &mut Reader) -> Result<ServerError, WireError> {
    let mut err = ServerError::default();
    let mut localized_severity = None;
    loop {
        let field = r.u8()?;
        if field == 0 {
            break;
        }
        let value = r.cstr()?;
        match field {
            b'S' => localized_severity = Some(value),
            b'V' => err.severity = value,
            b'C' => err.code = value,
            b'M' => err.message = value,
            b'D' => err.detail = Some(value),
            b'H' => err.hint = Some(value),
            _ => {}
        }
    }
    if err.severity.is_empty() {
        err.severity = localized_severity.unwrap_or_default();
    }
    Ok(err)
}

/// A bounds-checked cursor over a message body.
struct Reader {
    buf: Bytes,
    what: &'static str,
}

impl Reader {
    fn malformed(&self) -> WireError {
        WireError::Malformed { what: self.what }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, WireError> {
        if self.buf.len() < n {
            return Err(self.malformed());
        }
        Ok(self.buf.split_to(n))
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        if self.buf.is_empty() {
            return Err(self.malformed());
        }
        Ok(self.buf.get_u8())
    }

    fn i16(&mut self) -> Result<i16, WireError> {
        Ok(i16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn i32(&mut self) -> Result<i32, WireError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&mut self) -> Result<String, WireError> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| self.malformed())?;
        let s = self.buf.split_to(end);
        self.buf.advance(1);
        String::from_utf8(s.to_vec()).map_err(|_| self.malformed())
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }
}

/// Splits one complete message off the front of `buf`, if there is one.
pub fn split_message(buf: &mut BytesMut) -> Result<Option<RawMessage>, WireError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let declared = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    let len = usize::try_from(declared)
        .ok()
        .filter(|len| *len >= 4)
        .ok_or(WireError::Malformed {
            what: "message length",
        })?;
    if len > MAX_MESSAGE_LEN {
        return Err(WireError::TooLong {
            tag: tag as char,
            len,
        });
    }
    if buf.len() < 1 + len {
        // Make room for the whole message now, so the next reads fill it in one allocation.
        buf.reserve(1 + len - buf.len());
        return Ok(None);
    }
    let mut msg = buf.split_to(1 + len);
    msg.advance(5);
    Ok(Some(RawMessage {
        tag,
        body: msg.freeze(),
    }))
}

/// Buffered message I/O over a stream.
#[derive(Debug)]
pub struct Wire<S> {
    io: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(io: S) -> Self {
        Wire {
            io,
            rbuf: BytesMut::with_capacity(READ_BUF),
            wbuf: BytesMut::with_capacity(1024),
        }
    }

    /// The next message. Cancel-safe.
    pub async fn read_raw(&mut self) -> Result<RawMessage, WireError> {
        loop {
            if let Some(msg) = split_message(&mut self.rbuf)? {
                return Ok(msg);
            }
            if self.rbuf.capacity() - self.rbuf.len() < MIN_SPARE {
                self.rbuf.reserve(READ_BUF);
            }
            if self.io.read_buf(&mut self.rbuf).await? == 0 {
                return Err(WireError::Eof);
            }
        }
    }

    /// The next message, parsed. Cancel-safe.
    pub async fn read_message(&mut self) -> Result<BackendMessage, WireError> {
        BackendMessage::parse(self.read_raw().await?)
    }

    /// The write buffer: encode frontend messages into it, then [`Wire::flush`].
    pub fn wbuf(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Sends everything in the write buffer. Cancel-safe (see the module docs).
    pub async fn flush(&mut self) -> std::io::Result<()> {
        while self.wbuf.has_remaining() {
            if self.io.write_buf(&mut self.wbuf).await? == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
        }
        self.io.flush().await
    }

    /// Flushes, then shuts the write side down (TLS close_notify, TCP FIN).
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.io.shutdown().await
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proptest::prelude::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn parse(tag: u8, body: &[u8]) -> Result<BackendMessage, WireError> {
        BackendMessage::parse(RawMessage {
            tag,
            body: Bytes::copy_from_slice(body),
        })
    }

    #[test]
    fn authentication_requests() {
        assert_eq!(
            parse(b'R', &0i32.to_be_bytes()).unwrap(),
            BackendMessage::Authentication(Authentication::Ok)
        );
        let mut md5 = 5i32.to_be_bytes().to_vec();
        md5.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            parse(b'R', &md5).unwrap(),
            BackendMessage::Authentication(Authentication::Md5Password { salt: [1, 2, 3, 4] })
        );
        let mut sasl = 10i32.to_be_bytes().to_vec();
        sasl.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        assert_eq!(
            parse(b'R', &sasl).unwrap(),
            BackendMessage::Authentication(Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()]
            })
        );
        let mut cont = 11i32.to_be_bytes().to_vec();
        cont.extend_from_slice(b"r=abc");
        assert_eq!(
            parse(b'R', &cont).unwrap(),
            BackendMessage::Authentication(Authentication::SaslContinue(Bytes::from_static(
                b"r=abc"
            )))
        );
        assert!(parse(b'R', &[0, 0]).is_err());
    }

    #[test]
    fn error_fields() {
        let body = b"SERROR\0VERROR\0C42704\0Mreplication slot \"x\" does not exist\0Hdo it\0\0";
        let BackendMessage::ErrorResponse(e) = parse(b'E', body).unwrap() else {
            panic!()
        };
        assert_eq!(e.severity, "ERROR");
        assert_eq!(e.code, "42704");
        assert_eq!(e.message, "replication slot \"x\" does not exist");
        assert_eq!(e.hint.as_deref(), Some("do it"));
        assert_eq!(e.detail, None);
        assert!(matches!(parse(b'N', b"SFEHLER\0C01000\0Mx\0\0").unwrap(),
            BackendMessage::NoticeResponse(n) if n.severity == "FEHLER"));
        assert!(parse(b'E', b"C42704").is_err());
    }

    #[test]
    fn rows_and_completion() {
        let mut t = BytesMut::new();
        t.put_i16(2);
        for name in [&b"systemid"[..], b"timeline"] {
            t.put_slice(name);
            t.put_u8(0);
            t.put_slice(&[0; 18]);
        }
        assert_eq!(
            parse(b'T', &t).unwrap(),
            BackendMessage::RowDescription {
                columns: vec!["systemid".into(), "timeline".into()]
            }
        );
        let mut d = BytesMut::new();
        d.put_i16(2);
        d.put_i32(3);
        d.put_slice(b"abc");
        d.put_i32(-1);
        assert_eq!(
            parse(b'D', &d).unwrap(),
            BackendMessage::DataRow {
                values: vec![Some(Bytes::from_static(b"abc")), None]
            }
        );
        assert!(
            parse(b'D', &[0, 1, 0, 0, 0, 9, b'x']).is_err(),
            "cell longer than the row"
        );
        assert_eq!(
            parse(b'C', b"SELECT 1\0").unwrap(),
            BackendMessage::CommandComplete {
                tag: "SELECT 1".into()
            }
        );
        assert_eq!(
            parse(b'Z', b"I").unwrap(),
            BackendMessage::ReadyForQuery { status: b'I' }
        );
        assert_eq!(
            parse(b'W', &[0, 0, 0]).unwrap(),
            BackendMessage::CopyBothResponse
        );
        assert_eq!(
            parse(b'A', b"").unwrap(),
            BackendMessage::Other { tag: b'A' }
        );
    }

    #[test]
    fn split_waits_for_whole_messages_and_rejects_absurd_lengths() {
        let mut all = msg(b'd', b"hello");
        all.extend(msg(b'c', b""));
        let mut buf = BytesMut::new();
        for (i, byte) in all.iter().enumerate() {
            buf.put_u8(*byte);
            let got = split_message(&mut buf).unwrap();
            match i {
                9 => assert_eq!(got.unwrap().body, Bytes::from_static(b"hello")),
                14 => assert_eq!(got.unwrap().tag, b'c'),
                _ => assert!(got.is_none(), "at byte {i}"),
            }
        }
        let mut huge = BytesMut::from(&[b'd', 0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            split_message(&mut huge),
            Err(WireError::TooLong { .. })
        ));
        let mut negative = BytesMut::from(&[b'd', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(split_message(&mut negative).is_err());
        let mut short = BytesMut::from(&[b'd', 0, 0, 0, 3][..]);
        assert!(split_message(&mut short).is_err());
    }

    #[tokio::test]
    async fn reads_across_chunks_and_survives_cancellation() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut wire = Wire::new(client);
        let payload = vec![7u8; 1000];
        let bytes = msg(b'd', &payload);
        let (first, second) = bytes.split_at(600);
        server.write_all(first).await.unwrap();
        // The first read times out half-way through the message: nothing may be lost.
        let cancelled =
            tokio::time::timeout(std::time::Duration::from_millis(20), wire.read_raw()).await;
        assert!(cancelled.is_err());
        server.write_all(second).await.unwrap();
        let got = wire.read_raw().await.unwrap();
        assert_eq!((got.tag, got.body.len()), (b'd', 1000));
        drop(server);
        assert!(matches!(wire.read_raw().await, Err(WireError::Eof)));
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(tag in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(tag, &body);
        }

        #[test]
        fn random_streams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(m)) = split_message(&mut buf) {
                let _ = BackendMessage::parse(m);
            }
        }
    }
}
