//! How the lake sink writes (its options, from `[lake]`), and what it did.

use std::time::Duration;

use super::LakeError;
use super::storage::LakeLocation;
use crate::config::LakeConfig;

/// How a [`LakeSink`] writes.
#[derive(Clone, Debug)]
pub struct LakeSinkOptions {
    pub lake: LakeLocation,
    /// The slot: the marker's app id is `walaudit:<slot>`.
    pub slot: String,
    pub flush_rows: usize,
    pub flush_bytes: usize,
    pub flush_interval: Duration,
    pub max_memory: usize,
    pub optimize_every_commits: u64,
    pub commit_attempts: u32,
    /// Where commits are counted (the engine's metrics).
    pub metrics: crate::metrics::SharedMetrics,
}

impl LakeSinkOptions {
    pub fn new(config: &LakeConfig, slot: &str) -> Result<Self, LakeError> {
        Ok(LakeSinkOptions {
            lake: LakeLocation::new(&config.url, &config.s3)?,
            slot: slot.to_owned(),
            flush_rows: config.flush_rows,
            flush_bytes: usize::try_from(config.flush_bytes).unwrap_or(usize::MAX),
            flush_interval: config.flush_interval,
            max_memory: usize::try_from(config.max_memory).unwrap_or(usize::MAX),
            optimize_every_commits: config.optimize_every_commits,
            commit_attempts: config.commit_attempts,
            metrics: Default::default(),
        })
    }

    pub(super) fn app_id(&self) -> String {
        super::catalog::marker_app_id(&self.slot)
    }
}

/// What a [`LakeSink`] did, for summaries and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LakeStats {
    pub transactions: u64,
    pub changes: u64,
    /// Changes skipped because their table already held them (replays).
    pub skipped_changes: u64,
    pub commits: u64,
    /// Columns continued as text after a type change.
    pub type_diversions: u64,
    pub optimizations: u64,
}
