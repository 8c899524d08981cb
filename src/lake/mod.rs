//! The audit lake: change-table schemas, Arrow row building, and the Delta writer.
//!
//! ```text
//!  (TxnMeta, Change) ──► LakeSink ──► ChangeBatchBuilder::append ──► typed Arrow builders
//!                          │      flush (rows | bytes | age | memory)
//!                          ▼
//!                  evolve::conform ──► LakeTable::append ──► one Delta commit + txn marker
//!                          │                                   <lake>/<schema>/<table>/
//!                          └──► _walaudit/transactions, _walaudit/messages
//!
//!  LakeLocation (storage) ──► catalog: names, properties, list_tables / discover
//!        (writer, query, maintenance, historical load)
//! ```
//!
//! # Invariants
//! * The on-storage layout is the lake format (README, "The lake on storage"): source
//!   columns first, then the metadata columns.
//! * A value the lake type cannot hold is written as null **and** named in `_unavailable`;
//!   nothing is dropped, rounded or clamped (except ±infinity dates/timestamps, by contract).
//! * Every append is one Delta commit carrying the exactly-once marker (`txn` action
//!   `walaudit:<slot>` = commit LSN of the last transaction in it); markers never go backward.

pub(crate) mod column;
mod engine;
mod error;

pub mod batch;
pub mod catalog;
pub mod durable;
pub mod evolve;
pub mod maintenance;
pub mod options;
pub mod probe;
pub mod pruning;
pub mod read_batch;
pub mod rows;
pub mod schema;
pub mod sink;
pub mod storage;
pub mod table;
pub mod widen;

pub use batch::ChangeBatchBuilder;
pub use catalog::{CatalogTable, TableKind, TableRef};
pub use error::LakeError;
pub use schema::{SchemaError, change_schema, messages_schema, transactions_schema};
pub use sink::{LakeSink, LakeSinkOptions, LakeStats};
pub use storage::LakeLocation;
pub use table::{LakeTable, Marker};
