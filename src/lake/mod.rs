//! The audit lake: change-table schemas and Arrow row building (the Delta writer comes next).
//!
//! ```text
//!  (TxnMeta, Change) ──► ChangeBatchBuilder::append ──► typed Arrow builders (one per column)
//!                                                   ──► finish() ──► RecordBatch (change_schema)
//! ```
//!
//! # Invariants
//! * The on-storage layout is LAKE_FORMAT.md: source columns first, then the metadata columns.
//! * A value the lake type cannot hold is written as null **and** named in `_unavailable`;
//!   nothing is dropped, rounded or clamped (except ±infinity dates/timestamps, by contract).

mod column;

pub mod batch;
pub mod schema;

pub use batch::ChangeBatchBuilder;
pub use schema::{SchemaError, change_schema, messages_schema, transactions_schema};
