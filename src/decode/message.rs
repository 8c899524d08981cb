//! The pgoutput logical replication messages (protocol versions 1 and 2).
//!
//! See <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.
//! Timestamps are microseconds since 2000-01-01 00:00:00 UTC, as Postgres sends them.

use bytes::Bytes;

use crate::Lsn;

/// Microseconds since the Postgres epoch (2000-01-01 00:00:00 UTC).
pub type PgTimestamp = i64;

/// Microseconds between the Unix epoch and the Postgres epoch.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// One decoded pgoutput message.
///
/// `xid` fields are `Some` only inside a streamed transaction block (protocol v2), where every
/// change names the (sub)transaction it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Begin(Begin),
    Commit(Commit),
    Origin(Origin),
    Relation(Relation),
    Type(TypeInfo),
    Insert(Insert),
    Update(Update),
    Delete(Delete),
    Truncate(Truncate),
    Message(LogicalMessage),
    StreamStart(StreamStart),
    StreamStop,
    StreamCommit(StreamCommit),
    StreamAbort(StreamAbort),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Begin {
    /// LSN of the transaction's commit record.
    pub final_lsn: Lsn,
    pub commit_ts: PgTimestamp,
    pub xid: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub flags: u8,
    /// LSN of the commit record.
    pub commit_lsn: Lsn,
    /// LSN just past the commit record: the position to confirm once the transaction is durable.
    pub end_lsn: Lsn,
    pub commit_ts: PgTimestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub commit_lsn: Lsn,
    pub name: String,
}

/// Replica identity setting of a relation (`pg_class.relreplident`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaIdentity {
    /// `d`: the primary key.
    Default,
    /// `n`: nothing.
    Nothing,
    /// `f`: all columns.
    Full,
    /// `i`: a unique index.
    Index,
}

impl ReplicaIdentity {
    /// The name `ALTER TABLE … REPLICA IDENTITY` uses, lowercase.
    pub fn name(self) -> &'static str {
        match self {
            ReplicaIdentity::Default => "default",
            ReplicaIdentity::Nothing => "nothing",
            ReplicaIdentity::Full => "full",
            ReplicaIdentity::Index => "index",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub xid: Option<u32>,
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: ReplicaIdentity,
    pub columns: Vec<RelationColumn>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity key (flag bit 1).
    pub is_key: bool,
    pub name: String,
    pub type_oid: u32,
    /// `atttypmod`; -1 when the type has none.
    pub type_modifier: i32,
}

/// A `Type` message: names a non-built-in data type used by a following Relation message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeInfo {
    pub xid: Option<u32>,
    pub oid: u32,
    pub namespace: String,
    pub name: String,
}

/// One column value of a tuple, as sent. Text and binary values are zero-copy slices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// `n`: SQL NULL.
    Null,
    /// `u`: an unchanged TOASTed value the server did not send.
    UnchangedToast,
    /// `t`: the value's text form.
    Text(Bytes),
    /// `b`: the value's binary form (only with the `binary` option, which walaudit does not use).
    Binary(Bytes),
}

/// The columns of one row, in relation column order.
pub type Tuple = Vec<Cell>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insert {
    pub xid: Option<u32>,
    pub relation_oid: u32,
    pub new: Tuple,
}

/// Which old image an Update or Delete carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OldKind {
    /// `K`: only the replica identity key columns (other cells are `Null`).
    Key,
    /// `O`: the whole old row (REPLICA IDENTITY FULL).
    Full,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub xid: Option<u32>,
    pub relation_oid: u32,
    /// Sent for REPLICA IDENTITY FULL (`O`) or when the key changed (`K`).
    pub old: Option<(OldKind, Tuple)>,
    pub new: Tuple,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    pub xid: Option<u32>,
    pub relation_oid: u32,
    pub old: (OldKind, Tuple),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncate {
    pub xid: Option<u32>,
    /// Bit 1: CASCADE, bit 2: RESTART IDENTITY.
    pub options: u8,
    pub relation_oids: Vec<u32>,
}

/// A message written by `pg_logical_emit_message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalMessage {
    pub xid: Option<u32>,
    pub transactional: bool,
    pub lsn: Lsn,
    pub prefix: String,
    pub content: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamStart {
    pub xid: u32,
    pub first_segment: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCommit {
    pub xid: u32,
    pub flags: u8,
    pub commit_lsn: Lsn,
    pub end_lsn: Lsn,
    pub commit_ts: PgTimestamp,
}

/// Abort of a streamed transaction (`subxid == xid`) or of one of its subtransactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamAbort {
    pub xid: u32,
    pub subxid: u32,
}
