//! The engine's lifecycle, as its handle publishes it.

use std::fmt;
use std::sync::Arc;

/// Where the engine is. Published on a `watch` channel by the engine handle; `/readyz`, the
/// demo and the tests read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineStatus {
    /// Connecting, checking the source, opening the lake.
    Starting,
    /// A historical load runs and the stream has not started (a fresh engine deciding its
    /// initial load, or `snapshot.mode = "only"`).
    Loading,
    /// Replication streams into the lake.
    Streaming,
    /// `walaudit serve`: the schedulers and the HTTP listener run over the lake, no capture.
    Serving,
    /// Shutting down or finishing a drain: flushing, confirming, stopping tasks.
    Draining,
    /// Stopped cleanly.
    Stopped,
    /// Stopped with this error.
    Failed(Arc<str>),
}

impl EngineStatus {
    /// Stopped or failed: the status will not change again.
    pub fn is_final(&self) -> bool {
        matches!(self, EngineStatus::Stopped | EngineStatus::Failed(_))
    }
}

impl fmt::Display for EngineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineStatus::Starting => f.write_str("starting"),
            EngineStatus::Loading => f.write_str("loading"),
            EngineStatus::Streaming => f.write_str("streaming"),
            EngineStatus::Serving => f.write_str("serving"),
            EngineStatus::Draining => f.write_str("draining"),
            EngineStatus::Stopped => f.write_str("stopped"),
            EngineStatus::Failed(error) => write!(f, "failed: {error}"),
        }
    }
}
