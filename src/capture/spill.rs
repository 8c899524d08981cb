//! Spill files: the changes of a large open transaction, written to local disk in order.
//!
//! A file is anonymous (`tempfile`), so it disappears with the process. Records are
//! length-prefixed; table shapes are kept in memory and referenced by index, so a record holds
//! only the row data. Reading back yields records in the order they were written.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::capture::{Before, Change, Op, TableInfo};
use crate::decode::Cell;

/// Records are refused past this size: a corrupt length prefix must not allocate gigabytes.
const MAX_RECORD: usize = 1 << 30;

/// An open spill file being appended to.
#[derive(Debug)]
pub struct SpillWriter {
    out: BufWriter<File>,
    tables: Vec<Arc<TableInfo>>,
    scratch: BytesMut,
    records: u64,
    bytes: u64,
}

impl SpillWriter {
    pub fn create(dir: Option<&Path>) -> io::Result<SpillWriter> {
        let file = match dir {
            Some(dir) => tempfile::tempfile_in(dir)?,
            None => tempfile::tempfile()?,
        };
        Ok(SpillWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            tables: Vec::new(),
            scratch: BytesMut::new(),
            records: 0,
            bytes: 0,
        })
    }

    /// Append one change of subtransaction `subxid`; returns the bytes written.
    pub fn append(&mut self, subxid: u32, change: &Change) -> io::Result<usize> {
        let table = self.table_index(&change.table);
        let b = &mut self.scratch;
        b.clear();
        b.put_u32(0); // length, patched below
        b.put_u32(subxid);
        b.put_u32(table);
        b.put_u8(op_code(change.op));
        b.put_u8(change.truncate_options);
        put_cells(b, &change.row);
        match &change.before {
            None => b.put_u8(0),
            Some(before) => {
                b.put_u8(if before.key_only { 2 } else { 1 });
                put_cells(b, &before.row);
            }
        }
        match &change.changed {
            None => b.put_u8(0),
            Some(changed) => {
                b.put_u8(1);
                put_indices(b, changed);
            }
        }
        put_indices(b, &change.unavailable);
        let len = b.len();
        b[..4].copy_from_slice(&((len - 4) as u32).to_be_bytes());
        self.out.write_all(b)?;
        self.records += 1;
        self.bytes += len as u64;
        Ok(len)
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Finish writing and read the records back from the start.
    pub fn into_reader(self) -> io::Result<SpillReader> {
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        Ok(SpillReader {
            input: BufReader::with_capacity(1 << 20, file),
            tables: self.tables,
            remaining: self.records,
        })
    }

    fn table_index(&mut self, table: &Arc<TableInfo>) -> u32 {
        if let Some(i) = self.tables.iter().rposition(|t| Arc::ptr_eq(t, table)) {
            return i as u32;
        }
        self.tables.push(Arc::clone(table));
        (self.tables.len() - 1) as u32
    }
}

/// Reads a finished spill file in write order.
#[derive(Debug)]
pub struct SpillReader {
    input: BufReader<File>,
    tables: Vec<Arc<TableInfo>>,
    remaining: u64,
}

impl SpillReader {
    /// The next record as `(subxid, change)`; `None` after the last one.
    pub fn next_record(&mut self) -> io::Result<Option<(u32, Change)>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_RECORD {
            return Err(corrupt("record length"));
        }
        let mut body = vec![0u8; len];
        self.input.read_exact(&mut body)?;
        self.remaining -= 1;
        decode_record(Bytes::from(body), &self.tables).map(Some)
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("spill file is corrupt at {what}"),
    )
}

fn op_code(op: Op) -> u8 {
    match op {
        Op::Read => 0,
        Op::Insert => 1,
        Op::Update => 2,
        Op::Delete => 3,
        Op::Truncate => 4,
    }
}

fn put_cells(b: &mut BytesMut, cells: &[Cell]) {
    b.put_u16(cells.len() as u16);
    for cell in cells {
        match cell {
            Cell::Null => b.put_u8(0),
            Cell::UnchangedToast => b.put_u8(1),
            Cell::Text(v) | Cell::Binary(v) => {
                b.put_u8(if matches!(cell, Cell::Text(_)) { 2 } else { 3 });
                b.put_u32(v.len() as u32);
                b.put_slice(v);
            }
        }
    }
}

fn put_indices(b: &mut BytesMut, indices: &[u16]) {
    b.put_u16(indices.len() as u16);
    for i in indices {
        b.put_u16(*i);
    }
}

/// A cursor over one record; every read is bounds-checked.
struct Record {
    buf: Bytes,
}

impl Record {
    fn need(&self, n: usize) -> io::Result<()> {
        if self.buf.remaining() < n {
            Err(corrupt("a truncated record"))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> io::Result<u8> {
        self.need(1)?;
        Ok(self.buf.get_u8())
    }
    fn u16(&mut self) -> io::Result<u16> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }
    fn u32(&mut self) -> io::Result<u32> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }
    fn cells(&mut self) -> io::Result<Vec<Cell>> {
        let n = self.u16()? as usize;
        let mut cells = Vec::with_capacity(n);
        for _ in 0..n {
            cells.push(match self.u8()? {
                0 => Cell::Null,
                1 => Cell::UnchangedToast,
                kind @ (2 | 3) => {
                    let len = self.u32()? as usize;
                    self.need(len)?;
                    let v = self.buf.split_to(len);
                    if kind == 2 {
                        Cell::Text(v)
                    } else {
                        Cell::Binary(v)
                    }
                }
                _ => return Err(corrupt("a cell kind")),
            });
        }
        Ok(cells)
    }
    fn indices(&mut self) -> io::Result<Vec<u16>> {
        let n = self.u16()? as usize;
        (0..n).map(|_| self.u16()).collect()
    }
}

fn decode_record(buf: Bytes, tables: &[Arc<TableInfo>]) -> io::Result<(u32, Change)> {
    let mut r = Record { buf };
    let subxid = r.u32()?;
    let table = tables
        .get(r.u32()? as usize)
        .ok_or_else(|| corrupt("a table index"))?;
    let op = match r.u8()? {
        0 => Op::Read,
        1 => Op::Insert,
        2 => Op::Update,
        3 => Op::Delete,
        4 => Op::Truncate,
        _ => return Err(corrupt("an op code")),
    };
    let truncate_options = r.u8()?;
    let row = r.cells()?;
    let before = match r.u8()? {
        0 => None,
        flag @ (1 | 2) => Some(Before {
            key_only: flag == 2,
            row: r.cells()?,
        }),
        _ => return Err(corrupt("a before flag")),
    };
    let changed = match r.u8()? {
        0 => None,
        1 => Some(r.indices()?),
        _ => return Err(corrupt("a changed flag")),
    };
    let unavailable = r.indices()?;
    let change = Change {
        table: Arc::clone(table),
        op,
        seq: 0,
        row,
        before,
        changed,
        unavailable,
        truncate_options,
    };
    Ok((subxid, change))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::capture::ColumnInfo;
    use crate::decode::{PgType, ReplicaIdentity};

    fn table(oid: u32) -> Arc<TableInfo> {
        Arc::new(TableInfo {
            oid,
            schema: "s".into(),
            name: format!("t{oid}"),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![ColumnInfo {
                name: "c".into(),
                type_oid: 25,
                type_modifier: -1,
                is_key: true,
                pg_type: PgType::Text,
            }],
        })
    }

    fn cell() -> impl Strategy<Value = Cell> {
        prop_oneof![
            Just(Cell::Null),
            Just(Cell::UnchangedToast),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| Cell::Text(v.into())),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| Cell::Binary(v.into())),
        ]
    }

    fn change_strategy() -> impl Strategy<Value = (u32, Change)> {
        let cells = || proptest::collection::vec(cell(), 0..6);
        let idx = || proptest::collection::vec(any::<u16>(), 0..4);
        (
            any::<u32>(),
            0u8..5,
            any::<u8>(),
            cells(),
            proptest::option::of((any::<bool>(), cells())),
            proptest::option::of(idx()),
            idx(),
            0u32..3,
        )
            .prop_map(|(subxid, op, opts, row, before, changed, unavailable, t)| {
                let op = [Op::Read, Op::Insert, Op::Update, Op::Delete, Op::Truncate][op as usize];
                let before = before.map(|(key_only, row)| Before { key_only, row });
                let change = Change {
                    table: table(t),
                    op,
                    seq: 0,
                    row,
                    before,
                    changed,
                    unavailable,
                    truncate_options: opts,
                };
                (subxid, change)
            })
    }

    proptest! {
        #[test]
        fn round_trip(records in proptest::collection::vec(change_strategy(), 0..30)) {
            let mut w = SpillWriter::create(None).unwrap();
            for (subxid, change) in &records {
                w.append(*subxid, change).unwrap();
            }
            prop_assert_eq!(w.records(), records.len() as u64);
            let mut r = w.into_reader().unwrap();
            for (subxid, change) in &records {
                let (s, c) = r.next_record().unwrap().unwrap();
                prop_assert_eq!(s, *subxid);
                prop_assert_eq!(&c, change);
            }
            prop_assert!(r.next_record().unwrap().is_none());
        }

        #[test]
        fn corrupt_records_error_not_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_record(Bytes::from(body), &[table(1)]);
        }
    }
}
