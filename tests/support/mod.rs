//! Shared helpers for the integration-test binary (`tests/main.rs`).
//!
//! * [`cluster`]: a throwaway PostgreSQL cluster per test binary (or per test, when a test needs
//!   special server settings or restarts the server), torn down with the test process.
//! * [`database`]: a fresh database per test on such a cluster, cleaned up on drop.
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

// Each suite uses a different subset of the helpers; an unused one is not a defect.
#![allow(dead_code)]

pub mod cluster;
pub mod database;
pub mod s3;
mod tls;
mod util;

// The API of the harness, whichever parts the suites use at the moment.
#[allow(unused_imports)]
pub use cluster::{
    ClusterOptions, Endpoint, MD5_GROUP, PasswordEncryption, PgCluster, SUPERUSER,
    SUPERUSER_PASSWORD, StopMode, WalLevel, shared, shared_cluster,
};
#[allow(unused_imports)]
pub use database::TestDb;
#[allow(unused_imports)]
pub use util::{process_running, quote_ident, quote_literal, unique_name};
