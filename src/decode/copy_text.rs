//! The text format of `COPY … TO STDOUT`: one row per line, columns separated by tabs, `\N` for
//! NULL, backslash escapes for the bytes that would break the framing.
//!
//! ```text
//!  CopyData (one row per message, PostgreSQL's documented behaviour; split lines are joined)
//!    ──► RowSplitter ──► line ──► parse_row ──► [Cell::Text(Bytes) | Cell::Null; columns]
//! ```
//!
//! Cells are zero-copy slices of the received bytes unless the value contains an escape. The
//! resulting text is exactly the value's output form, the same text pgoutput sends, so the
//! lake's value parsers read both.
//!
//! # Invariants
//! * Arbitrary bytes never panic: a malformed row is a [`CopyTextError`] (property-tested, and
//!   fuzzed by tests/fuzz's copy_text target).
//! * `parse_row(encode_row(cells)) == cells` for every row of text cells and nulls.
//! * [`RowSplitter`] yields the same lines however the data is cut, in time linear in its
//!   bytes.

use bytes::{Bytes, BytesMut};

use crate::decode::Cell;

/// A row of `COPY` output that is not what the table's column list promised.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CopyTextError {
    #[error("COPY row has {found} columns where {expected} were expected")]
    ColumnCount { expected: usize, found: usize },
    #[error("COPY row ends inside an escape sequence")]
    DanglingEscape,
    #[error("COPY output ended inside a row ({0} bytes without a line end)")]
    UnterminatedRow(usize),
}

/// Parses one line (without its `\n`) into `out` (cleared first), expecting `columns` cells.
pub fn parse_row(line: &Bytes, columns: usize, out: &mut Vec<Cell>) -> Result<(), CopyTextError> {
    out.clear();
    let bytes = line.as_ref();
    let mut start = 0;
    let mut found = 0;
    loop {
        let end = memchr_tab(&bytes[start..]).map_or(bytes.len(), |i| start + i);
        found += 1;
        if found <= columns {
            out.push(cell(line, start, end)?);
        }
        if end == bytes.len() {
            break;
        }
        start = end + 1;
    }
    if found != columns {
        return Err(CopyTextError::ColumnCount {
            expected: columns,
            found,
        });
    }
    Ok(())
}

fn memchr_tab(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\t')
}

fn cell(line: &Bytes, start: usize, end: usize) -> Result<Cell, CopyTextError> {
    let raw = &line[start..end];
    if raw == b"\\N" {
        return Ok(Cell::Null);
    }
    if !raw.contains(&b'\\') {
        return Ok(Cell::Text(line.slice(start..end)));
    }
    Ok(Cell::Text(unescape(raw)?.into()))
}

/// Decodes the backslash escapes of COPY's text format.
fn unescape(raw: &[u8]) -> Result<Vec<u8>, CopyTextError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = raw.get(i) else {
            return Err(CopyTextError::DanglingEscape);
        };
        i += 1;
        match e {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut value = u32::from(e - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((value & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Writes `cells` as one COPY text line, with its `\n` (the inverse of [`parse_row`]; used by
/// tests and benchmarks).
pub fn encode_row(cells: &[Cell], out: &mut Vec<u8>) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match c {
            Cell::Null | Cell::UnchangedToast => out.extend_from_slice(b"\\N"),
            Cell::Text(t) | Cell::Binary(t) => {
                for &b in t.iter() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        0x08 => out.extend_from_slice(b"\\b"),
                        0x0b => out.extend_from_slice(b"\\v"),
                        0x0c => out.extend_from_slice(b"\\f"),
                        _ => out.push(b),
                    }
                }
            }
        }
    }
    out.push(b'\n');
}

/// Cuts received COPY data into lines. PostgreSQL sends one row per CopyData message; lines
/// within a message are sliced without copying, and only a line split across messages is
/// joined.
#[derive(Debug, Default)]
pub struct RowSplitter {
    partial: BytesMut,
}

impl RowSplitter {
    /// Feeds one CopyData payload; calls `row` with every complete line (without `\n`).
    ///
    /// Linear in the bytes pushed, however a line is cut: only the new bytes are searched for
    /// the end of a pending line, and it is copied once per piece.
    pub fn push<E>(
        &mut self,
        data: Bytes,
        mut row: impl FnMut(Bytes) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut data = data;
        if !self.partial.is_empty() {
            let Some(end) = data.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(&data);
                return Ok(());
            };
            self.partial.extend_from_slice(&data[..end]);
            row(self.partial.split().freeze())?;
            data = data.slice(end + 1..);
        }
        let mut start = 0;
        while let Some(i) = data[start..].iter().position(|&b| b == b'\n') {
            row(data.slice(start..start + i))?;
            start += i + 1;
        }
        if start < data.len() {
            self.partial.extend_from_slice(&data[start..]);
        }
        Ok(())
    }

    /// The data ended: fails when it stopped inside a row.
    pub fn finish(&self) -> Result<(), CopyTextError> {
        match self.partial.len() {
            0 => Ok(()),
            n => Err(CopyTextError::UnterminatedRow(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &[u8]) -> Cell {
        Cell::Text(Bytes::copy_from_slice(s))
    }

    #[test]
    fn nulls_escapes_and_empty_values() {
        let line = Bytes::from_static(b"1\t\\N\t\ta\\tb\\nc\\\\d\t\\101\\x41\t\\q");
        let mut out = Vec::new();
        parse_row(&line, 6, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                text(b"1"),
                Cell::Null,
                text(b""),
                text(b"a\tb\nc\\d"),
                text(b"AA"),
                text(b"q")
            ]
        );
        // A literal backslash-N inside a longer value is not NULL.
        parse_row(&Bytes::from_static(b"\\\\N"), 1, &mut out).unwrap();
        assert_eq!(out, vec![text(b"\\N")]);
    }

    #[test]
    fn wrong_column_counts_and_dangling_escapes_are_errors() {
        let mut out = Vec::new();
        let err = parse_row(&Bytes::from_static(b"1\t2\t3"), 2, &mut out).unwrap_err();
        assert_eq!(
            err,
            CopyTextError::ColumnCount {
                expected: 2,
                found: 3
            }
        );
        let err = parse_row(&Bytes::from_static(b"ab\\"), 1, &mut out).unwrap_err();
        assert_eq!(err, CopyTextError::DanglingEscape);
    }

    #[test]
    fn splitter_joins_rows_split_across_messages() {
        let mut s = RowSplitter::default();
        let mut rows = Vec::new();
        for part in [&b"a\tb\nc"[..], b"d\te", b"\n", b"f\n"] {
            s.push::<()>(Bytes::copy_from_slice(part), |r| {
                rows.push(r);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(rows, vec!["a\tb", "cd\te", "f"]);
        s.finish().unwrap();
        s.push::<()>(Bytes::from_static(b"x"), |_| Ok(())).unwrap();
        assert_eq!(s.finish(), Err(CopyTextError::UnterminatedRow(1)));
    }

    /// A line that arrives in many pieces costs time linear in its length. Each push used to
    /// rescan and recopy everything pending: a line of n bytes in 1-byte pieces took n²/2 byte
    /// scans and copies (found by the copy_text fuzz target, whose executions per second
    /// dropped on long lines cut small).
    #[test]
    fn a_line_in_many_pieces_is_one_row() {
        // 64 Ki one-byte pieces: quadratic rescanning made this take 10 s in a debug build;
        // speed is for benchmarks, so this only checks the row comes out whole.
        const LEN: usize = 64 * 1024;
        let mut s = RowSplitter::default();
        let mut rows = Vec::new();
        let piece = Bytes::from_static(b"x");
        for _ in 0..LEN {
            s.push::<()>(piece.clone(), |r| {
                rows.push(r);
                Ok(())
            })
            .unwrap();
        }
        s.push::<()>(Bytes::from_static(b"\nnext\n"), |r| {
            rows.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].len(), LEN);
        assert!(rows[0].iter().all(|&b| b == b'x'));
        assert_eq!(rows[1], "next");
        s.finish().unwrap();
    }

    fn cell_strategy() -> impl Strategy<Value = Cell> {
        prop_oneof![
            1 => Just(Cell::Null),
            6 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(|v| Cell::Text(v.into())),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(
            cells in proptest::collection::vec(cell_strategy(), 1..8)
        ) {
            let mut line = Vec::new();
            encode_row(&cells, &mut line);
            let mut rows = Vec::new();
            let mut splitter = RowSplitter::default();
            splitter.push::<()>(line.into(), |r| { rows.push(r); Ok(()) }).unwrap();
            prop_assert_eq!(rows.len(), 1);
            let mut out = Vec::new();
            parse_row(&rows[0], cells.len(), &mut out).unwrap();
            prop_assert_eq!(out, cells);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            columns in 0usize..6,
        ) {
            let mut splitter = RowSplitter::default();
            let mut out = Vec::new();
            let _ = splitter.push::<CopyTextError>(bytes.into(), |r| parse_row(&r, columns, &mut out));
            let _ = splitter.finish();
        }
    }
}
