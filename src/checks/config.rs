//! The config's `[checks]` and `[connections.NAME]` tables.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// `[checks]`: where jobs come from and the limits that protect the databases.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    /// Directory of job files (`*.yml`/`*.yaml` below it); `--checks DIR` overrides it.
    pub dir: Option<PathBuf>,
    /// Most runs at once, over all connections.
    pub max_concurrent: usize,
    /// Most runs at once on the `source` connection.
    pub source_max_concurrent: usize,
    /// The `EXPLAIN` guard: refuse a sequential scan of a table estimated above this many rows.
    pub max_scan_rows: u64,
    /// The `EXPLAIN` guard: refuse more joins than this.
    pub max_joins: usize,
}

impl Default for ChecksConfig {
    fn default() -> Self {
        ChecksConfig {
            dir: None,
            max_concurrent: 8,
            source_max_concurrent: 2,
            max_scan_rows: 1_000_000,
            max_joins: 4,
        }
    }
}

/// `[connections.NAME]`: a database jobs may read (Postgres wire protocol).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// What speaks at `url`: `postgres` (the Postgres wire protocol: Postgres, Redshift).
    #[serde(default = "default_kind")]
    pub kind: String,
    /// `postgres://user:password@host:5432/db?sslmode=require`.
    pub url: String,
    /// Most runs at once on this connection.
    #[serde(default = "default_connection_cap")]
    pub max_concurrent: usize,
}

fn default_kind() -> String {
    "postgres".into()
}

fn default_connection_cap() -> usize {
    2
}

/// The named connections.
pub type Connections = BTreeMap<String, ConnectionConfig>;
