//! What a reconciliation is, once loaded and validated.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checks::model::{Origin, Severity};

/// Default window width.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
/// Default lookback of an incremental pipeline.
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(2 * 3600);
/// Default grace: newer windows are in flight.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5 * 60);
/// Default cap on the keys a diff lists.
pub const DEFAULT_MAX_DIFF_KEYS: usize = 10_000;
/// Default deadline of one run (all its queries).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Which windows a run judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// Every window from the source's first row.
    Historical,
    /// The windows ending within `lookback` of now.
    Incremental,
}

impl Pipeline {
    pub fn as_str(self) -> &'static str {
        match self {
            Pipeline::Historical => "historical",
            Pipeline::Incremental => "incremental",
        }
    }
}

/// When a run looks for the differing keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffMode {
    /// When a judged window's counts differ beyond the tolerance.
    OnMismatch,
    /// On every run (finds changed values that counts cannot see).
    Always,
    Never,
}

/// One side of a reconciliation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    /// `source`, `lake` or a `[connections.NAME]`.
    pub connection: String,
    /// A table or view in that connection's SQL.
    pub dataset: String,
}

/// A reconciliation job.
#[derive(Clone, Debug, PartialEq)]
pub struct Reconciliation {
    pub name: String,
    pub description: Option<String>,
    pub pipeline: Pipeline,
    pub source: Side,
    pub target: Side,
    /// Key columns, by their source names.
    pub key: Vec<String>,
    /// Compared columns by their source names; `None`: every column both sides have.
    pub columns: Option<Vec<String>>,
    /// Source column → target column, where the names differ.
    pub column_map: BTreeMap<String, String>,
    /// Windows are cut on this column on both sides; `None`: one whole-table count.
    pub time_column: Option<String>,
    pub window: Duration,
    pub lookback: Duration,
    pub grace: Duration,
    /// Allowed |count difference| per window.
    pub tolerance: u64,
    pub diff: DiffMode,
    pub max_diff_keys: usize,
    pub schedule: Option<String>,
    pub timezone: String,
    pub timeout: Duration,
    pub severity: Severity,
    pub origin: Origin,
    /// Line of the definition in its file.
    pub line: u32,
}

impl Reconciliation {
    /// The target's name of source column `column`.
    pub fn target_column<'a>(&'a self, column: &'a str) -> &'a str {
        self.column_map
            .get(column)
            .map(String::as_str)
            .unwrap_or(column)
    }

    /// Connection names a run reads.
    pub fn connections(&self) -> [&str; 2] {
        [&self.source.connection, &self.target.connection]
    }
}
