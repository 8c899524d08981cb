//! The change model: what capture produces for every committed row change.

use std::sync::Arc;

use bytes::Bytes;

use crate::Lsn;
use crate::decode::{Cell, PgType, ReplicaIdentity};

/// `_op` of the lake format (README, "Change tables").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `r`: a row read by a snapshot.
    Read,
    /// `c`: insert.
    Insert,
    /// `u`: update.
    Update,
    /// `d`: delete.
    Delete,
    /// `t`: truncate.
    Truncate,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Insert => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }
}

/// A captured table's shape as of a change, with every column's type resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct TableInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    /// `schema.table` as written in Postgres.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
    pub is_key: bool,
    /// How the column is represented in the lake.
    pub pg_type: PgType,
}

/// The audit context of a transaction: the JSON object of its `walaudit` logical message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditContext {
    /// The message content as text (lossy UTF-8 if it was not valid UTF-8).
    pub raw: String,
    /// `actor`, else `user`, `user_id`, `email` of the object; `None` if malformed or absent.
    pub actor: Option<String>,
    /// False when the content was not a JSON object: `raw` is kept, `actor` is `None`.
    pub well_formed: bool,
}

/// A transaction that committed on the source.
#[derive(Clone, Debug, PartialEq)]
pub struct TxnMeta {
    pub xid: u32,
    /// LSN of the commit record: `_lsn` of every change of the transaction.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record: what may be confirmed once the transaction is durable.
    pub end_lsn: Lsn,
    /// Commit time, microseconds since the Unix epoch (UTC).
    pub commit_ts_micros: i64,
    pub origin: Option<String>,
    pub context: Option<AuditContext>,
    /// Number of row changes (truncates count once per table).
    pub change_count: u64,
    /// Delivered through protocol-v2 streaming.
    pub streamed: bool,
}

/// One row change of a committed transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub table: Arc<TableInfo>,
    pub op: Op,
    /// Ordinal of the change inside its transaction, from 0.
    pub seq: u64,
    /// The row image as of this change: new row for `c`/`u`, old row for `d`, empty for `t`.
    /// Cells are never [`Cell::UnchangedToast`]: such values are filled from `before` or become
    /// `Null` and are listed in `unavailable`.
    pub row: Vec<Cell>,
    /// The previous image for `u` when the source sent one (FULL identity or key change).
    pub before: Option<Before>,
    /// Indices of columns whose value differs between before and row; `None` when unknown
    /// (no before image, or only the key columns of it).
    pub changed: Option<Vec<u16>>,
    /// Indices of columns whose true value `row` does not hold.
    pub unavailable: Vec<u16>,
    /// Truncate options (bit 1 CASCADE, bit 2 RESTART IDENTITY); 0 for other ops.
    pub truncate_options: u8,
}

/// A before image: the whole old row (FULL) or only its key columns (key change).
#[derive(Clone, Debug, PartialEq)]
pub struct Before {
    pub key_only: bool,
    pub row: Vec<Cell>,
}

/// A logical decoding message that is not the audit context of its transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedMessage {
    /// The message's own LSN.
    pub lsn: Lsn,
    /// Commit LSN and xid of its transaction when transactional.
    pub commit_lsn: Option<Lsn>,
    pub xid: Option<u32>,
    pub transactional: bool,
    pub prefix: String,
    pub content: Bytes,
}
