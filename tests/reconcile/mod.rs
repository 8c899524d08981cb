//! Reconciliation against real servers: a Postgres source and a second Postgres database as
//! the "warehouse" copy, and the lake; count windows (equal, short, extra, in flight), and the
//! checksum bisection finding exactly the planted differences, never the ones that are only a
//! type's representation (numeric scale, timestamp type, text vs varchar).

mod keys;
mod windows;

use std::path::Path;

use walaudit::checks::command::open_targets_named;
use walaudit::config::Config;
use walaudit::reconcile::command::{load, select};
use walaudit::reconcile::{Reconciliation, RunOptions, RunReport};

use crate::support::TestDb;

/// A config with `source` and the `[connections.wh]` warehouse, the lake in `lake`.
pub fn config(source: &TestDb, warehouse: &TestDb, lake: &Path) -> Config {
    let mut c = Config::default();
    c.source.url = Some(source.url.clone());
    c.lake.url = lake.to_str().unwrap().to_owned();
    c.connections.insert(
        "wh".into(),
        walaudit::checks::config::ConnectionConfig {
            kind: "postgres".into(),
            url: warehouse.url.clone(),
            max_concurrent: 2,
        },
    );
    c
}

/// The reconciliations of the job file text `yaml`.
pub fn recs(yaml: &str, config: &Config) -> Vec<Reconciliation> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yml"), yaml).unwrap();
    select(
        load(dir.path(), config).unwrap_or_else(|e| panic!("{e}")),
        &[],
    )
    .unwrap()
}

/// Runs `rec` once with `options`.
pub async fn run(rec: &Reconciliation, config: &Config, options: RunOptions) -> RunReport {
    let names: Vec<&str> = rec.connections().to_vec();
    let targets = open_targets_named(&names, config).await.unwrap();
    walaudit::reconcile::run::run(rec, &targets, options).await
}
