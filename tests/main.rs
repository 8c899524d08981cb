//! The integration-test binary: every suite against a real PostgreSQL, in one process, so that
//! all suites share one throwaway cluster (`support::shared`) with a fresh database per test.
//!
//! Run with `cargo test` (all targets) or `cargo test --test main [filter]`. The server
//! binaries come from `$WALAUDIT_PG_BIN`, `/usr/lib/postgresql/{17,16,15,14}/bin` or
//! `pg_config --bindir`. A missing server (or program) ends the test process at once with one
//! message and the command that installs it, `tests/setup.sh` (see tests/README.md).
//!
//! A suite lives in `tests/<suite>/mod.rs` (a directory), never in `tests/<suite>.rs`: Cargo
//! builds every `tests/*.rs` file as a separate test binary of its own.

// The harness: `walaudit::testing` (feature `test-utils`, which the crate's dev-dependency on
// itself turns on for its tests), reached by the suites as `crate::support`.
use walaudit::testing as support;

mod api;
mod capture;
mod checks;
mod crash;
mod demo;
mod doctor;
mod fidelity;
mod harness;
mod lake;
mod lake_s3;
mod ops;
mod query;
mod reconcile;
mod slot_safety;
mod snapshot;
