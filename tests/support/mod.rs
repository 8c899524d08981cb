//! Shared helpers for the integration-test binary (`tests/main.rs`).
//!
//! * [`cluster`]: a throwaway PostgreSQL cluster per test binary (or per test, when a test needs
//!   special server settings or restarts the server), torn down with the test process.
//! * [`database`]: a fresh database per test on such a cluster, cleaned up on drop.
//! * [`prerequisites`]: what the suites need besides Rust; a missing server or program ends the
//!   test process at once with the command that installs it (`tests/setup.sh`).
//!
//! Typical use:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn orders_are_captured() -> anyhow::Result<()> {
//!     let db = support::shared().await.fresh_db("orders_are_captured").await?;
//!     db.execute("CREATE TABLE orders (id int PRIMARY KEY)").await?;
//!     // point walaudit at db.url ...
//!     Ok(())
//! }
//! ```
//!
//! Include it as `#[allow(dead_code, unused_imports)] mod support;`: each suite (or bench) uses
//! a different part, and a helper nobody uses yet is not a defect.

pub mod cluster;
pub mod database;
pub mod orders;
pub mod prerequisites;
pub mod s3;
mod tls;
mod util;

pub use cluster::{
    ClusterOptions, Endpoint, MD5_GROUP, PasswordEncryption, PgCluster, SUPERUSER,
    SUPERUSER_PASSWORD, StopMode, WalLevel, shared, shared_cluster,
};
pub use database::TestDb;
pub use util::{
    metric, process_running, quote_ident, quote_literal, unique_name, wait_metric, wait_streaming,
};
