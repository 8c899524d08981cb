//! Decoding of the bytes Postgres sends: pgoutput messages, `COPY` output and the text and
//! binary forms of values.
//!
//! ```text
//!  XLogData payload (Bytes) ──► pgoutput::parse        ──► Message (cells are slices of the payload)
//!  COPY text CopyData       ──► copy_text::RowSplitter ──► parse_row ──► cells (as pgoutput's)
//!  COPY binary CopyData     ──► copy_binary::BinaryRows ──► fields of each complete row
//!  cell text + PgType        ──► value::*              ──► typed values (Arrow builders, JSON)
//!  COPY binary field + kind  ──► binary::*             ──► the same typed values (historical load)
//! ```
//!
//! All of it reads untrusted bytes, and it is the light core of the crate: it builds without the
//! `engine` feature, which is how the fuzz targets (tests/fuzz) compile it.
//!
//! # Invariants
//! * Zero-copy: tuple cells are `Bytes` slices of the frame they came in.
//! * Arbitrary input never panics: the message parser returns [`DecodeError`] and the value
//!   parsers return [`value::ValueError`] on malformed bytes (proven by property tests over
//!   random bytes, and by the coverage-guided fuzz targets in tests/fuzz).
//! * Bounded memory: a length or count field never reserves more than the input can hold.

pub mod binary;
pub mod copy_binary;
pub mod copy_text;
pub mod encode;
#[cfg(test)]
mod fuzz_seeds;
pub mod message;
pub mod pgoutput;
pub mod pgtype;
pub mod value;

pub use message::*;
pub use pgtype::{CatalogType, PgType, TypeCatalog};

/// The bytes are not a well-formed pgoutput message. Permanent for that message: the stream
/// cannot be trusted past it, so capture stops and reports the position.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("pgoutput message ended early: needed {needed} more bytes for {what}")]
    Truncated { what: &'static str, needed: usize },
    #[error("unknown pgoutput message tag {tag:?}")]
    UnknownTag { tag: u8 },
    #[error("unknown tuple cell kind {kind:?}")]
    UnknownCellKind { kind: u8 },
    #[error("unexpected byte {found:?} where {what} was expected")]
    Unexpected { what: &'static str, found: u8 },
    #[error("{what} is not valid UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("{what} has an invalid length {len}")]
    BadLength { what: &'static str, len: i64 },
    #[error("{count} trailing bytes after a complete {what} message")]
    Trailing { what: &'static str, count: usize },
}
