//! The test harness of walaudit's integration tests (`tests/main.rs`) and benchmarks
//! (`benches/`), behind the `test-utils` feature: the crate's own tests and benchmarks turn it
//! on (a dev-dependency of the crate on itself), a normal build does not compile it.
//!
//! * [`cluster`]: a throwaway PostgreSQL cluster per test binary (or per test, when a test needs
//!   special server settings or restarts the server), torn down with the test process; a
//!   [`crate::cluster::Cluster`] with test settings.
//! * [`database`]: a fresh database per test on such a cluster, cleaned up on drop.
//! * [`prerequisites`]: what the suites need besides Rust; a missing server or program ends the
//!   test process at once with the command that installs it (`tests/setup.sh`).
//! * [`orders`]: the benchmarks' "orders" workload.
//! * [`s3`]: an in-process S3-compatible server with fault injection.
//!
//! Typical use:
//!
//! ```ignore
//! use walaudit::testing as support;
//!
//! #[tokio::test(flavor = "multi_thread")]
//! async fn orders_are_captured() -> anyhow::Result<()> {
//!     let db = support::shared().await.fresh_db("orders_are_captured").await?;
//!     db.execute("CREATE TABLE orders (id int PRIMARY KEY)").await?;
//!     // point walaudit at db.url ...
//!     Ok(())
//! }
//! ```

pub mod cluster;
pub mod database;
pub mod orders;
pub mod prerequisites;
pub mod s3;
pub mod tls;
mod util;

pub use cluster::{
    ClusterOptions, Endpoint, MD5_GROUP, PasswordEncryption, PgCluster, SUPERUSER,
    SUPERUSER_PASSWORD, StopMode, WalLevel, shared, shared_cluster,
};
pub use database::TestDb;
pub use util::{
    metric, process_running, quote_ident, quote_literal, unique_name, wait_metric, wait_streaming,
};
