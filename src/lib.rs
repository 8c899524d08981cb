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
//! * [`checks`]: validation jobs; [`checks::schedule`] runs them on their cron schedules.
//! * [`reconcile`]: source vs copy: record counts per window, the differing keys by checksum
//!   bisection, transfer audit records.
//! * [`cluster`]: a throwaway PostgreSQL cluster from the installed server binaries (the
//!   demo's, and the tests' and benchmarks').
//! * `testing` (feature `test-utils`, on for the crate's own tests and benchmarks): the test
//!   harness: clusters with test settings, a fresh database per test, an in-process S3 server.
//! * [`slot_watch`]: the slot's retained WAL and `wal_status` while the engine runs.
//!
//! # Features
//! `engine` (default) is everything above but [`decode`] and [`lsn`]: without it
//! (`default-features = false`) the library is only the decoders of untrusted bytes (pgoutput,
//! COPY text and binary, Postgres values) and their light dependencies, which is what the fuzz
//! targets (tests/fuzz) build, without DataFusion, deltalake or tokio.

#[cfg(feature = "engine")]
pub mod api;
#[cfg(feature = "engine")]
pub mod backoff;
#[cfg(feature = "engine")]
pub mod capture;
#[cfg(feature = "engine")]
pub mod checks;
#[cfg(feature = "engine")]
pub mod cli;
#[cfg(feature = "engine")]
pub mod clock;
#[cfg(feature = "engine")]
pub mod cluster;
#[cfg(feature = "engine")]
pub mod config;
pub mod decode;
#[cfg(feature = "engine")]
pub mod demo;
#[cfg(feature = "engine")]
pub mod doctor;
#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "engine")]
pub mod lake;
pub mod lsn;
#[cfg(feature = "engine")]
pub mod metrics;
#[cfg(feature = "engine")]
pub mod pipeline;
#[cfg(feature = "engine")]
pub mod query;
#[cfg(feature = "engine")]
pub mod reconcile;
#[cfg(feature = "engine")]
pub mod recovery;
#[cfg(feature = "engine")]
pub mod report;
#[cfg(feature = "engine")]
pub mod sink;
#[cfg(feature = "engine")]
pub mod slot_watch;
#[cfg(feature = "engine")]
pub mod snapshot;
#[cfg(feature = "engine")]
pub mod source;
#[cfg(feature = "engine")]
pub mod sql;
#[cfg(feature = "test-utils")]
pub mod testing;

pub use lsn::Lsn;
