//! The JSON form of captured changes (`walaudit tail`'s output), and a sink that writes it as
//! one object per line.
//!
//! ```text
//!  (TxnMeta, Change) ──► change_json ──► {"schema", "table", "op", "lsn", "seq", "xid",
//!                                          "commit_ts", "actor", "context", "changed",
//!                                          "unavailable", "row", "before"}
//! ```

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::Lsn;
use crate::capture::{CapturedMessage, Change, TableInfo, TxnMeta};
use crate::decode::Cell;
use crate::decode::value::{format_timestamp_micros, to_json};
use crate::sink::{Sink, SinkError};

/// A sink printing one JSON object per change; durable once written and flushed.
pub struct JsonLinesSink {
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    durable: Lsn,
    line: Vec<u8>,
}

impl JsonLinesSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonLinesSink {
            out: std::io::BufWriter::new(out),
            durable: Lsn::ZERO,
            line: Vec::new(),
        }
    }

    fn io_error(err: std::io::Error) -> SinkError {
        SinkError {
            message: "cannot write to standard output".into(),
            recovery: crate::recovery::Recovery::Fatal,
            source: Some(Box::new(err)),
        }
    }
}

impl Sink for JsonLinesSink {
    async fn write(&mut self, txn: &TxnMeta, changes: Vec<Change>) -> Result<(), SinkError> {
        for change in &changes {
            self.line.clear();
            serde_json::to_writer(&mut self.line, &change_json(txn, change))
                .map_err(|e| SinkError::permanent(format!("cannot encode a change: {e}")))?;
            self.line.push(b'\n');
            self.out.write_all(&self.line).map_err(Self::io_error)?;
        }
        Ok(())
    }

    async fn commit(&mut self, txn: &TxnMeta, _: Vec<CapturedMessage>) -> Result<(), SinkError> {
        self.out.flush().map_err(Self::io_error)?;
        self.durable = txn.end_lsn;
        Ok(())
    }

    async fn message(&mut self, _: CapturedMessage) -> Result<(), SinkError> {
        Ok(())
    }

    async fn flush(&mut self) -> Result<Lsn, SinkError> {
        self.out.flush().map_err(Self::io_error)?;
        Ok(self.durable)
    }

    fn durable_lsn(&self) -> Lsn {
        self.durable
    }
}

/// The JSON object `tail` prints for one change.
pub fn change_json(txn: &TxnMeta, change: &Change) -> Value {
    let table = &change.table;
    let mut unavailable: Vec<u16> = change.unavailable.clone();
    let row = row_json(table, &change.row, Some(&mut unavailable));
    unavailable.sort_unstable();
    unavailable.dedup();
    let before = change
        .before
        .as_ref()
        .map(|b| row_json(table, &b.row, None));
    let names = |idx: &[u16]| -> Vec<&str> {
        idx.iter()
            .filter_map(|i| table.columns.get(*i as usize))
            .map(|c| &*c.name)
            .collect()
    };
    let context = txn.context.as_ref().map(|c| {
        if c.well_formed {
            serde_json::from_str(&c.raw).unwrap_or_else(|_| Value::String(c.raw.clone()))
        } else {
            Value::String(c.raw.clone())
        }
    });
    json!({
        "schema": table.schema,
        "table": table.name,
        "op": change.op.code(),
        "lsn": txn.commit_lsn.to_string(),
        "seq": change.seq,
        "xid": txn.xid,
        "commit_ts": format_timestamp_micros(txn.commit_ts_micros, true),
        "actor": txn.context.as_ref().and_then(|c| c.actor.clone()),
        "context": context,
        "changed": change.changed.as_deref().map(names),
        "unavailable": names(&unavailable),
        "row": row,
        "before": before,
    })
}

/// Column name → typed JSON value; values the type cannot hold become null and, when
/// `unavailable` is given, are listed there. Truncates (no cells) give `null`.
fn row_json(table: &TableInfo, cells: &[Cell], mut unavailable: Option<&mut Vec<u16>>) -> Value {
    if cells.is_empty() {
        return Value::Null;
    }
    let mut map = Map::with_capacity(cells.len());
    for (i, (column, cell)) in table.columns.iter().zip(cells).enumerate() {
        let value = match cell {
            Cell::Null | Cell::UnchangedToast => Value::Null,
            Cell::Text(text) | Cell::Binary(text) => {
                let value = to_json(&column.pg_type, text);
                if let (true, Some(list)) = (value.is_null(), unavailable.as_deref_mut()) {
                    list.push(i as u16);
                }
                value
            }
        };
        map.insert(column.name.clone(), value);
    }
    Value::Object(map)
}
