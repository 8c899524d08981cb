//! walaudit: change-data-capture from PostgreSQL into an auditable Delta Lake.
//!
//! The crate reads like the data path (src/README.md, "How it works"; the lake format is the
//! README's "The lake on storage"):
//!
//! ```text
//!  PostgreSQL ──replication conn──► source ──frames──► decode ──pgoutput msgs──► capture
//!      ▲                                                                            │
//!      │                                              committed txns, commit order  ▼
//!      └──────────── standby status (flush = durable LSN) ◄──────────────────── sink (lake)
//! ```
//!
//! * [`source`]: replication connection, protocol frames, slot and publication management.
//! * [`decode`]: pgoutput messages (protocol v1 and v2), tuple data, Postgres text values.
//! * [`capture`]: transaction assembly in commit order, relation cache, TOAST fill, audit
//!   context, spill of large transactions to disk.
//! * [`sink`]: the `capture → lake` seam and an in-memory implementation.
//! * [`lake`]: Arrow row building for change tables and the Delta writer.
//! * [`pipeline`]: wires the stages (source → capture → sink) and owns their shutdown.
//! * [`engine`]: `walaudit run` as a library object: every task under one handle, with a
//!   typed status.
//! * [`snapshot`]: the historical load: exact, parallel, resumable initial snapshots.
//! * [`query`]: read-only DataFusion SQL over the lake (change logs, current state, as-of).
//! * [`sql`]: the read-only query seam (deadline, limits, Arrow results) over the lake, a
//!   Postgres connection, or memory, for checks and reconciliation.
//! * [`demo`]: the sample shop workload and the private cluster of `walaudit demo`.
//! * [`cluster`]: a throwaway PostgreSQL cluster from the installed server binaries (the
//!   demo's, and the tests' and benchmarks').
//! * `testing` (feature `test-utils`, on for the crate's own tests and benchmarks): the test
//!   harness: clusters with test settings, a fresh database per test, an in-process S3 server.
//! * [`slot_watch`]: the slot's retained WAL and `wal_status` while the engine runs.

pub mod api;
pub mod backoff;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod decode;
pub mod demo;
pub mod doctor;
pub mod engine;
pub mod lake;
pub mod lsn;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod report;
pub mod sink;
pub mod slot_watch;
pub mod snapshot;
pub mod source;
pub mod sql;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use lsn::Lsn;
