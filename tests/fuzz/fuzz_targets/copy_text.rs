//! COPY text format (`decode::copy_text`). Input: `[columns] [cut] [data]`: the data is pushed
//! into a `RowSplitter` `cut` bytes at a time, every line parsed as a row of `columns % 8`
//! cells.
//!
//! Checks:
//! * the splitter yields exactly the `\n`-terminated lines of the data, however it is cut, and
//!   `finish` fails exactly when bytes follow the last line end;
//! * a row either parses into exactly `columns` text or null cells, which encode (`encode_row`)
//!   to one line that parses back to the same cells, or is an error that says why (the column
//!   count found is the line's tab count + 1; a dangling escape needs a backslash).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use walaudit::decode::Cell;
use walaudit::decode::copy_text::{CopyTextError, RowSplitter, encode_row, parse_row};
use walaudit_fuzz::pieces;

fuzz_target!(|data: &[u8]| {
    walaudit_fuzz::input(data);
    let Some((&[columns, cut], data)) = data.split_first_chunk::<2>() else {
        return;
    };
    let columns = usize::from(columns % 8);

    let mut splitter = RowSplitter::default();
    let mut lines = Vec::new();
    for piece in pieces(data, cut) {
        splitter
            .push::<()>(Bytes::copy_from_slice(piece), |line| {
                lines.push(line);
                Ok(())
            })
            .expect("the callback never fails");
    }
    let mut expected: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let after_last = expected.pop().unwrap_or_default();
    assert_eq!(lines, expected, "lines of the data cut every {cut} bytes");
    match after_last.len() {
        0 => assert_eq!(splitter.finish(), Ok(())),
        n => assert_eq!(splitter.finish(), Err(CopyTextError::UnterminatedRow(n))),
    }

    let mut cells = Vec::new();
    for line in &lines {
        match parse_row(line, columns, &mut cells) {
            Ok(()) => {
                assert_eq!(cells.len(), columns);
                assert!(
                    cells
                        .iter()
                        .all(|c| matches!(c, Cell::Text(_) | Cell::Null))
                );
                let mut encoded = Vec::new();
                encode_row(&cells, &mut encoded);
                assert_eq!(encoded.pop(), Some(b'\n'));
                assert!(!encoded.contains(&b'\n'), "an encoded row is one line");
                let mut again = Vec::new();
                parse_row(&Bytes::from(encoded), columns, &mut again)
                    .expect("an encoded row parses");
                assert_eq!(again, cells, "round trip of {line:?}");
            }
            Err(CopyTextError::ColumnCount { expected, found }) => {
                assert_eq!(expected, columns);
                assert_eq!(found, line.iter().filter(|&&b| b == b'\t').count() + 1);
                assert_ne!(found, columns);
            }
            Err(CopyTextError::DanglingEscape) => assert!(line.contains(&b'\\')),
            Err(e @ CopyTextError::UnterminatedRow(_)) => panic!("parse_row returned {e:?}"),
        }
    }
});
