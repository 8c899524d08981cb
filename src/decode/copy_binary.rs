//! The binary format of `COPY … TO STDOUT (FORMAT binary)`: a signature and header, then per
//! row a 16-bit field count and, per field, a 32-bit length (`-1` for NULL) and the value's
//! binary form; a field count of `-1` ends the data.
//!
//! ```text
//!  CopyData payloads ──► BinaryRows::push ──► per complete row: Fields (Option<&[u8]> each)
//!                           └── partial row kept until the next payload completes it
//! ```
//!
//! PostgreSQL sends one row per CopyData message (the header rides with the first), so rows are
//! read in place; bytes are copied only when a row spans messages. (tokio-postgres'
//! `BinaryCopyOutStream` frames the same format, but allocates per row and hands values out only
//! through `FromSql`; the load wants the raw field bytes for its own decoders.)
//!
//! # Invariants
//! * A row reaches the caller only when all of its fields have arrived, with exactly the
//!   expected field count.
//! * Arbitrary bytes never panic: anything malformed is a [`CopyBinaryError`] (property-tested,
//!   and fuzzed by tests/fuzz's copy_binary target, which also checks that the rows do not
//!   depend on how the data is cut).

use bytes::{Buf as _, BytesMut};

/// `PGCOPY\n\377\r\n\0`.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags, header-extension length.
const HEADER_LEN: usize = 11 + 4 + 4;

/// COPY binary data that is not what the server documents, or not the promised columns.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CopyBinaryError {
    #[error("COPY binary data does not start with the PGCOPY signature")]
    Signature,
    #[error("COPY binary row has {found} fields where {expected} were expected")]
    ColumnCount { expected: usize, found: i16 },
    #[error("COPY binary field has an invalid length {0}")]
    FieldLength(i32),
    #[error("COPY binary data continues after its end marker")]
    AfterTrailer,
    #[error("COPY binary data ended without its end marker ({0} bytes of a row pending)")]
    Unterminated(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Rows,
    Done,
}

/// The fields of one row, in column order: `None` is SQL NULL.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        // Lengths were checked when the row was framed.
        let (len, rest) = self.bytes.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            self.bytes = rest;
            return Some(None);
        }
        let (value, rest) = rest.split_at(len as usize);
        self.bytes = rest;
        Some(Some(value))
    }
}

/// Frames COPY binary data into rows.
#[derive(Debug)]
pub struct BinaryRows {
    columns: usize,
    state: State,
    partial: BytesMut,
}

impl BinaryRows {
    /// A reader of rows with `columns` fields each.
    pub fn new(columns: usize) -> Self {
        Self {
            columns,
            state: State::Header,
            partial: BytesMut::new(),
        }
    }

    /// Feeds one CopyData payload; calls `row` with every row completed by it.
    pub fn push<E: From<CopyBinaryError>>(
        &mut self,
        data: &[u8],
        mut row: impl FnMut(Fields<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.partial.is_empty() {
            let used = self.frame(data, &mut row)?;
            self.partial.extend_from_slice(&data[used..]);
        } else {
            self.partial.extend_from_slice(data);
            let pending = std::mem::take(&mut self.partial);
            let used = self.frame(&pending, &mut row)?;
            self.partial = pending;
            self.partial.advance(used);
        }
        Ok(())
    }

    /// The data ended: fails unless it ended with the end marker.
    pub fn finish(&self) -> Result<(), CopyBinaryError> {
        match (self.state, self.partial.len()) {
            (State::Done, 0) => Ok(()),
            (State::Done, _) => Err(CopyBinaryError::AfterTrailer),
            (_, n) => Err(CopyBinaryError::Unterminated(n)),
        }
    }

    /// Reads the complete rows at the start of `data`; returns the bytes used.
    fn frame<E: From<CopyBinaryError>>(
        &mut self,
        data: &[u8],
        row: &mut impl FnMut(Fields<'_>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut at = 0;
        if self.state == State::Header {
            let Some(header) = data.get(..HEADER_LEN) else {
                return Ok(0);
            };
            if !header.starts_with(SIGNATURE) {
                return Err(CopyBinaryError::Signature.into());
            }
            let extension = u32::from_be_bytes(header[15..19].try_into().unwrap_or_default());
            let end = HEADER_LEN.saturating_add(extension as usize);
            if data.len() < end {
                return Ok(0);
            }
            at = end;
            self.state = State::Rows;
        }
        while at < data.len() {
            if self.state == State::Done {
                return Err(CopyBinaryError::AfterTrailer.into());
            }
            let Some(count) = data.get(at..at + 2) else {
                break;
            };
            let count = i16::from_be_bytes([count[0], count[1]]);
            if count == -1 {
                self.state = State::Done;
                at += 2;
                continue;
            }
            if usize::try_from(count).ok() != Some(self.columns) {
                return Err(CopyBinaryError::ColumnCount {
                    expected: self.columns,
                    found: count,
                }
                .into());
            }
            let Some(len) = row_len(&data[at + 2..], self.columns)? else {
                break;
            };
            row(Fields {
                bytes: &data[at + 2..at + 2 + len],
            })?;
            at += 2 + len;
        }
        Ok(at)
    }
}

/// Bytes of the `columns` fields at the start of `data`, or `None` if they have not all
/// arrived.
fn row_len(data: &[u8], columns: usize) -> Result<Option<usize>, CopyBinaryError> {
    let mut at = 0usize;
    for _ in 0..columns {
        let Some(len) = data.get(at..at + 4) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        match len {
            -1 => {}
            n if n >= 0 => at += n as usize,
            n => return Err(CopyBinaryError::FieldLength(n)),
        }
        if at > data.len() {
            return Ok(None);
        }
    }
    Ok(Some(at))
}

#[cfg(test)]
mod tests;
