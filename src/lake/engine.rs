//! Rows of the engine's own tables: `_walaudit/transactions` and `_walaudit/messages`.
//!
//! ```text
//!  TxnMeta + touched tables ──► TxnRows::append ──► RecordBatch (transactions_schema)
//!  CapturedMessage          ──► MessageRows::append ─► RecordBatch (messages_schema)
//! ```
//!
//! # Invariants
//! * One captured transaction is one row of `transactions`; one message is one row of
//!   `messages`. `finish` returns the rows since the last `finish`, in order.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_schema::{DataType, Field, SchemaRef};

use super::schema::{messages_schema, transactions_schema};
use crate::Lsn;
use crate::capture::{CapturedMessage, TxnMeta};
use crate::decode::pgtype::LIST_ELEMENT;

/// Rows of `_walaudit/transactions`.
pub struct TxnRows {
    schema: SchemaRef,
    lsn: Int64Builder,
    xid: Int64Builder,
    commit_ts: TimestampMicrosecondBuilder,
    origin: StringBuilder,
    change_count: Int64Builder,
    tables: ListBuilder<StringBuilder>,
    actor: StringBuilder,
    context: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl Default for TxnRows {
    fn default() -> Self {
        TxnRows {
            schema: transactions_schema(),
            lsn: Int64Builder::new(),
            xid: Int64Builder::new(),
            commit_ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            origin: StringBuilder::new(),
            change_count: Int64Builder::new(),
            tables: ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
                LIST_ELEMENT,
                DataType::Utf8,
                true,
            ))),
            actor: StringBuilder::new(),
            context: StringBuilder::new(),
            rows: 0,
            bytes: 0,
        }
    }
}

impl TxnRows {
    pub fn append(&mut self, txn: &TxnMeta, tables: &[String]) {
        self.lsn.append_value(lsn_i64(txn.commit_lsn));
        self.xid.append_value(i64::from(txn.xid));
        self.commit_ts.append_value(txn.commit_ts_micros);
        self.origin.append_option(txn.origin.as_deref());
        self.change_count
            .append_value(i64::try_from(txn.change_count).unwrap_or(i64::MAX));
        for table in tables {
            self.tables.values().append_value(table);
        }
        self.tables.append(true);
        let context = txn.context.as_ref();
        let actor = context.and_then(|c| c.actor.as_deref());
        let raw = context.map(|c| c.raw.as_str());
        self.actor.append_option(actor);
        self.context.append_option(raw);
        self.rows += 1;
        self.bytes += 64
            + tables.iter().map(String::len).sum::<usize>()
            + actor.map_or(0, str::len)
            + raw.map_or(0, str::len);
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(self.lsn.finish()),
                Arc::new(self.xid.finish()),
                Arc::new(self.commit_ts.finish()),
                Arc::new(self.origin.finish()),
                Arc::new(self.change_count.finish()),
                Arc::new(self.tables.finish()),
                Arc::new(self.actor.finish()),
                Arc::new(self.context.finish()),
            ],
        )
        .expect("transaction rows are built to match transactions_schema")
    }
}

/// Rows of `_walaudit/messages`.
pub struct MessageRows {
    schema: SchemaRef,
    lsn: Int64Builder,
    commit_lsn: Int64Builder,
    xid: Int64Builder,
    transactional: BooleanBuilder,
    prefix: StringBuilder,
    content: BinaryBuilder,
    content_text: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl Default for MessageRows {
    fn default() -> Self {
        MessageRows {
            schema: messages_schema(),
            lsn: Int64Builder::new(),
            commit_lsn: Int64Builder::new(),
            xid: Int64Builder::new(),
            transactional: BooleanBuilder::new(),
            prefix: StringBuilder::new(),
            content: BinaryBuilder::new(),
            content_text: StringBuilder::new(),
            rows: 0,
            bytes: 0,
        }
    }
}

impl MessageRows {
    pub fn append(&mut self, m: &CapturedMessage) {
        self.lsn.append_value(lsn_i64(m.lsn));
        self.commit_lsn.append_option(m.commit_lsn.map(lsn_i64));
        self.xid.append_option(m.xid.map(i64::from));
        self.transactional.append_value(m.transactional);
        self.prefix.append_value(&m.prefix);
        self.content.append_value(&m.content);
        self.content_text
            .append_option(std::str::from_utf8(&m.content).ok());
        self.rows += 1;
        self.bytes += 48 + m.prefix.len() + 2 * m.content.len();
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(self.lsn.finish()),
                Arc::new(self.commit_lsn.finish()),
                Arc::new(self.xid.finish()),
                Arc::new(self.transactional.finish()),
                Arc::new(self.prefix.finish()),
                Arc::new(self.content.finish()),
                Arc::new(self.content_text.finish()),
            ],
        )
        .expect("message rows are built to match messages_schema")
    }
}

fn lsn_i64(lsn: Lsn) -> i64 {
    i64::try_from(lsn.0).unwrap_or(i64::MAX)
}
