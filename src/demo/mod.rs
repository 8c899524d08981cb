//! Everything `walaudit demo` and `walaudit emit-sample` need: a sample "shop" workload with
//! attributed transactions ([`workload`]) and, for the demo, a private PostgreSQL cluster.
//!
//! ```text
//!  walaudit emit-sample ─► workload::create_schema, workload::run ─► any source database
//!  walaudit demo ─► cluster::DemoCluster (initdb, postgres) ─► shop schema, publication, slot
//!                   ├─ workload::run in the background (several actors)
//!                   ├─ the engine (cli::run) into the demo lake, /metrics on the listener
//!                   └─ sample audit queries over the lake (query::LakeQuery)
//! ```

pub mod cluster;
pub mod session;
pub mod workload;
