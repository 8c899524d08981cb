//! Transaction assembly: pgoutput messages in, committed transactions out, in commit order.
//!
//! ```text
//!  Message ─► Assembler ─┬─ Relation/Type ─► RelationCache (columns resolved to PgType)
//!                        ├─ Begin..Commit ─► TxnBuffer (memory, spills to disk past a limit)
//!                        ├─ Stream*       ─► one TxnBuffer per streamed xid, subxact aborts
//!                        └─ Commit        ─► Committed { meta, changes (chunked) } ─► sink
//! ```
//!
//! # Invariants
//! * Transactions leave in commit order; changes inside one in `seq` order from 0, so
//!   `(commit_lsn, seq)` orders and identifies every change.
//! * An aborted transaction or subtransaction leaves nothing behind.
//! * Memory held by open transactions is bounded by `max_memory`; the rest is on disk.
//! * A value the source did not send is never a silent NULL: it is filled from the before image
//!   or listed in `unavailable`.

pub mod assembler;
pub mod buffer;
pub mod change;
pub mod context;
pub mod json;
pub mod relations;
pub mod rows;
pub mod spill;

pub use change::*;

pub use assembler::{Assembler, AssemblerConfig, CaptureStats, Output};
pub use buffer::{ChangeChunks, CommittedTxn};

/// Capture cannot go on. All variants are permanent for the stream position they occur at.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "the server sent a change for relation oid {oid} before describing it: the replication \
         stream is inconsistent; restart the engine, and report a bug if it repeats"
    )]
    UnknownRelation { oid: u32 },
    #[error("a row of {table} has {found} columns where its relation has {expected}")]
    ColumnCount {
        table: String,
        expected: usize,
        found: usize,
    },
    #[error("unexpected message order in the replication stream: {0}")]
    Protocol(String),
    #[error(
        "cannot write or read a spill file: check that capture.spill_dir exists, is writable \
         and has free space"
    )]
    Spill(#[source] std::io::Error),
}

impl CaptureError {
    pub(crate) fn protocol(what: &str) -> Self {
        CaptureError::Protocol(what.to_owned())
    }
}

#[cfg(test)]
mod tests;
