use proptest::prelude::*;

use super::*;

type Row = Vec<Option<Vec<u8>>>;

/// The COPY binary stream of `rows`, as the server writes it.
fn encode(rows: &[Row], extension: &[u8]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&(extension.len() as u32).to_be_bytes());
    out.extend_from_slice(extension);
    for row in rows {
        out.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for field in row {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Feeds `data` cut at `cuts` and collects the rows.
fn read(data: &[u8], cuts: &[usize], columns: usize) -> Result<Vec<Row>, CopyBinaryError> {
    let mut reader = BinaryRows::new(columns);
    let mut rows = Vec::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(data.len());
    for cut in cuts {
        reader.push::<CopyBinaryError>(&data[start..cut], |fields| {
            rows.push(fields.map(|f| f.map(<[u8]>::to_vec)).collect());
            Ok(())
        })?;
        start = cut;
    }
    reader.finish()?;
    Ok(rows)
}

#[test]
fn rows_nulls_and_empty_values() {
    let rows: Vec<Row> = vec![
        vec![Some(b"abc".to_vec()), None, Some(Vec::new())],
        vec![None, None, Some(vec![0, 0xff])],
    ];
    let data = encode(&rows, b"");
    assert_eq!(read(&data, &[], 3), Ok(rows.clone()));
    // One byte at a time, and with a header extension.
    let cuts: Vec<usize> = (0..data.len()).collect();
    assert_eq!(read(&data, &cuts, 3), Ok(rows.clone()));
    assert_eq!(read(&encode(&rows, b"ext"), &[5, 20], 3), Ok(rows));
}

#[test]
fn malformed_streams_are_errors() {
    let rows: Vec<Row> = vec![vec![Some(b"1".to_vec()), None]];
    let data = encode(&rows, b"");
    assert_eq!(
        read(&data, &[], 3),
        Err(CopyBinaryError::ColumnCount {
            expected: 3,
            found: 2
        })
    );
    assert_eq!(
        read(&data[..data.len() - 2], &[], 2),
        Err(CopyBinaryError::Unterminated(0))
    );
    assert_eq!(
        read(&data[..data.len() - 3], &[], 2),
        Err(CopyBinaryError::Unterminated(data.len() - 3 - HEADER_LEN))
    );
    let mut after = data.clone();
    after.extend_from_slice(&[0, 2]);
    assert_eq!(read(&after, &[], 2), Err(CopyBinaryError::AfterTrailer));
    let mut bad = data.clone();
    bad[0] = b'X';
    assert_eq!(read(&bad, &[], 2), Err(CopyBinaryError::Signature));
    let mut negative = data;
    // The first field's length: -2.
    negative[HEADER_LEN + 2..HEADER_LEN + 6].copy_from_slice(&(-2i32).to_be_bytes());
    assert_eq!(
        read(&negative, &[], 2),
        Err(CopyBinaryError::FieldLength(-2))
    );
}

fn row_strategy(columns: usize) -> impl Strategy<Value = Row> {
    proptest::collection::vec(
        proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..20)),
        columns,
    )
}

proptest! {
    #[test]
    fn any_cuts_give_the_same_rows(
        rows in (1usize..6).prop_flat_map(|c| proptest::collection::vec(row_strategy(c), 0..12)),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let columns = rows.first().map_or(1, Vec::len);
        let data = encode(&rows, b"");
        prop_assert_eq!(read(&data, &cuts, columns), Ok(rows));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..200),
        columns in 0usize..5,
        with_header in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let mut data = if with_header { encode(&[], b"")[..HEADER_LEN].to_vec() } else { Vec::new() };
        data.extend_from_slice(&tail);
        let _ = read(&data, &cuts, columns);
    }
}
