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

pub mod change;

pub use change::*;
