//! walaudit: change-data-capture from PostgreSQL into an auditable Delta Lake.
//!
//! The crate reads like the data path (see `shared/design/ARCHITECTURE.md`):
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
//! * [`lake`]: Arrow row building for change tables (the Delta writer comes on top).
//! * [`pipeline`]: wires the stages and owns shutdown.
//! * [`snapshot`]: the historical load: exact, parallel, resumable initial snapshots.
//! * [`query`]: read-only DataFusion SQL over the lake (change logs, current state, as-of).
//! * [`sql`]: the read-only query seam (deadline, limits, Arrow results) over the lake, a
//!   Postgres connection, or memory, for checks and reconciliation.
//! * [`demo`]: the sample shop workload and the private cluster of `walaudit demo`.
//! * [`slot_watch`]: the slot's retained WAL and `wal_status` while the engine runs.

pub mod api;
pub mod capture;
pub mod cli;
pub mod config;
pub mod decode;
pub mod demo;
pub mod lake;
pub mod lsn;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod sink;
pub mod slot_watch;
pub mod snapshot;
pub mod source;
pub mod sql;

pub use lsn::Lsn;
