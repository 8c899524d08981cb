//! COPY binary format (`decode::copy_binary`). Input: `[columns] [cut] [data]`: the data is
//! pushed into a `BinaryRows` of `columns % 8` fields `cut` bytes at a time.
//!
//! Checks:
//! * every row has exactly `columns` fields, and their bytes fit in the input;
//! * the rows and the outcome (the error, or `finish`'s verdict) do not depend on how the data
//!   is cut: the same as when it is pushed in one piece;
//! * a stream that reads without error re-encodes (signature, header, rows, end marker) to one
//!   that reads to the same rows.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walaudit::decode::copy_binary::{BinaryRows, CopyBinaryError};
use walaudit_fuzz::pieces;

type Row = Vec<Option<Vec<u8>>>;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

fuzz_target!(|data: &[u8]| {
    walaudit_fuzz::input(data);
    let Some((&[columns, cut], data)) = data.split_first_chunk::<2>() else {
        return;
    };
    let columns = usize::from(columns % 8);

    let (rows, outcome) = read(&pieces(data, cut), columns);
    for row in &rows {
        assert_eq!(row.len(), columns);
    }
    let field_bytes: usize = rows.iter().flatten().flatten().map(Vec::len).sum();
    assert!(field_bytes <= data.len());
    let (whole_rows, whole_outcome) = read(&[data], columns);
    assert_eq!(whole_rows, rows, "rows of the data cut every {cut} bytes");
    assert_eq!(
        whole_outcome, outcome,
        "outcome of the data cut every {cut} bytes"
    );

    if outcome.is_ok() {
        let again = encode(&rows);
        assert_eq!(read(&[&again], columns), (rows, Ok(())), "round trip");
    }
});

/// The rows read from `pieces`, and how reading ended.
fn read(pieces: &[&[u8]], columns: usize) -> (Vec<Row>, Result<(), CopyBinaryError>) {
    let mut reader = BinaryRows::new(columns);
    let mut rows = Vec::new();
    for piece in pieces {
        let pushed = reader.push::<CopyBinaryError>(piece, |fields| {
            rows.push(fields.map(|f| f.map(<[u8]>::to_vec)).collect());
            Ok(())
        });
        if let Err(e) = pushed {
            return (rows, Err(e));
        }
    }
    let outcome = reader.finish();
    (rows, outcome)
}

/// A COPY binary stream of `rows`, as the server writes it.
fn encode(rows: &[Row]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    for row in rows {
        let count = i16::try_from(row.len()).expect("at most 7 fields");
        out.extend_from_slice(&count.to_be_bytes());
        for field in row {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    let len = i32::try_from(v.len()).expect("fields of a fuzz input");
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}
