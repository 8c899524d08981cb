//! Reconciliation: is the copy in the warehouse right? Record counts per time window on the
//! source and on its copy, then the exact keys that differ, by checksum bisection pushed down
//! to both systems; every run leaves a transfer audit record in the lake.
//!
//! ```text
//!  job files (reconciliations:) ─► load ─► Reconciliation
//!  run: probe both sides ─► count windows (one grouped query per side) ─► judge
//!       ─► bisect (sql: per-bucket count + checksum, level by level; rows below a threshold)
//!       ─► RunReport ─► store: _walaudit/reconciliations, _walaudit/reconciliation_diffs
//! ```
//!
//! Targets are the read-only seam's ([`crate::sql::ReadOnlySql`]): Postgres-wire databases
//! (Postgres, Redshift) and the lake. Snowflake and object-store files are not built yet.
//!
//! # Invariants
//! * Nothing is written to either side: every query goes through the read-only seam.
//! * Counting and hashing happen in the databases; only differing buckets' rows, below
//!   [`bisect::DOWNLOAD_ROWS`] rows a side, are downloaded.
//! * Equal values hash equally across systems ([`sql`] lists the normalisation).

pub mod bisect;
pub mod command;
pub mod load;
pub mod model;
pub mod run;
pub mod sql;
pub mod store;

pub use bisect::{DiffKind, DiffResult, KeyDiff};
pub use model::{DiffMode, Pipeline, Reconciliation, Side};
pub use run::{RunOptions, RunReport, RunStatus, WindowResult, WindowStatus};
