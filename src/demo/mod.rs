//! Everything `walaudit demo` and `walaudit emit-sample` need: a sample "shop" workload with
//! attributed transactions ([`workload`]) and, for the demo, a private PostgreSQL cluster
//! ([`crate::cluster`], set up by [`cluster_config`]).
//!
//! ```text
//!  walaudit emit-sample ─► workload::create_schema, workload::run ─► any source database
//!  walaudit demo ─► crate::cluster::Cluster (initdb, postgres) ─► shop schema, publication, slot
//!                   ├─ workload::run in the background (several actors)
//!                   ├─ the engine (cli::run) into the demo lake, /metrics on the listener
//!                   ├─ validation jobs on the scheduler, a burst for the anomaly (checks)
//!                   └─ sample audit queries and the jobs' results over the lake
//! ```

pub mod checks;
pub mod run;
pub mod session;
pub mod workload;

use crate::cluster::{ClusterConfig, Listen, WalLevel};

/// The demo's private cluster: `wal_level = logical`, a Unix socket in its own directory and no
/// TCP listener (so it collides with nothing), small and not durable.
pub fn cluster_config() -> ClusterConfig {
    ClusterConfig {
        dir_prefix: "walaudit-demo-".into(),
        listen: Listen::Unix,
        wal_level: WalLevel::Logical,
        ..ClusterConfig::default()
    }
}
