//! Wires source → decode → capture → sink and owns shutdown.
//!
//! ```text
//!            ┌──────────────── capture task ────────────────┐        ┌─ sink task ─┐
//!  server ──►│ next_frame ─► pgoutput::parse ─► Assembler    │─cmds──►│ Sink::write │
//!     ▲      │                                   │ Committed │ (bounded)│ Sink::commit│
//!     │      └───────────────────────────────────┼───────────┘        └──────┬──────┘
//!     └──── standby status: flush = durable ◄────┴──── watch<Lsn> ◄──────────┘
//! ```
//!
//! Roles: [`session`] (the `source → capture` seam and the real server behind it),
//! [`capture_loop`] (frames to committed transactions, status updates), `sink_loop` (the sink
//! task), [`retry`] (attempts and reconnects).
//!
//! # Invariants
//! * Only the sink's durable LSN is ever confirmed to the server (and nothing at all in
//!   read-only mode).
//! * The queue to the sink is bounded ([`SINK_QUEUE_CHUNKS`]): a slow sink blocks capture,
//!   which keeps answering the server's keepalives while it waits.
//! * Shutdown starts at one `CancellationToken`; the capture loop stops reading, the sink is
//!   flushed, the flushed position is confirmed, then the replication copy is ended. A sink
//!   that does not finish within [`SHUTDOWN_GRACE`] is abandoned (its task aborted) and
//!   nothing beyond what it made durable is confirmed.
//! * A transaction reaches the sink whole or not at all (write chunks, then commit): nothing
//!   read from the server can interrupt the hand-over, so a reconnect never leaves half of one.

pub mod capture_loop;
pub mod retry;
pub mod session;
mod sink_loop;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Lsn;
use crate::capture::{AssemblerConfig, CaptureError, CaptureStats};
use crate::decode::DecodeError;
use crate::metrics::SharedMetrics;
use crate::recovery::Recovery;
use crate::sink::{Sink, SinkError};
use crate::source::{ConnParams, SourceError};

pub use retry::{RetryPolicy, run_resilient_with};
pub use session::{Connected, Connector, PgConnector, PgSession, ReplicationSession};

/// Chunks of changes queued between capture and the sink.
pub const SINK_QUEUE_CHUNKS: usize = 8;

/// Transactions remembered for the end-to-end lag metric (oldest first).
pub(crate) const MAX_LAG_SAMPLES: usize = 100_000;
/// How often the sink's timer ([`Sink::tick`]) fires.
pub const SINK_TICK: Duration = Duration::from_millis(100);

/// How long shutdown waits for the sink to flush before giving up (nothing is confirmed then).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

/// Which slot to read and whether progress is confirmed on it.
#[derive(Clone, Debug)]
pub enum SlotMode {
    /// A permanent slot: confirmed up to the durable LSN; created when missing if `create`.
    Permanent { name: String, create: bool },
    /// A temporary slot created now, dropped by the server when the connection ends.
    Temporary { name: String },
    /// An existing slot read without ever confirming progress on it.
    ReadOnly { name: String },
}

impl SlotMode {
    pub fn name(&self) -> &str {
        match self {
            SlotMode::Permanent { name, .. }
            | SlotMode::Temporary { name }
            | SlotMode::ReadOnly { name } => name,
        }
    }
}

/// Everything the pipeline needs to run.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    pub source: ConnParams,
    pub slot: SlotMode,
    pub publication: String,
    pub create_publication: bool,
    pub publication_tables: Vec<String>,
    pub status_interval: Duration,
    pub assembler: AssemblerConfig,
    /// Stop once everything up to the server's WAL position at start is captured (`--drain`).
    pub drain: bool,
    /// Where the pipeline counts what it does.
    pub metrics: SharedMetrics,
    /// Told `true` while replication streams, `false` between attempts and at the end (the
    /// engine's status follows it).
    pub streaming: Option<Arc<watch::Sender<bool>>>,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    pub capture: CaptureStats,
    /// The sink's durable LSN at the end.
    pub durable_lsn: Lsn,
    /// The server's WAL position at start (the drain target).
    pub start_wal_position: Lsn,
    pub protocol_version: u32,
}

/// The pipeline stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot decode the replication stream at {lsn}")]
    Decode {
        lsn: Lsn,
        #[source]
        source: DecodeError,
    },
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("the sink failed")]
    Sink(#[source] SinkError),
    #[error("the server ended the replication stream unexpectedly: restart to resume")]
    StreamEnded,
    #[error("the sink did not flush within {0:?} of shutdown: nothing beyond it was confirmed")]
    ShutdownTimeout(Duration),
}

impl PipelineError {
    /// The stage that failed, for the errors metric.
    pub fn stage(&self) -> &'static str {
        match self {
            PipelineError::Source(_) | PipelineError::StreamEnded => "source",
            PipelineError::Decode { .. } => "decode",
            PipelineError::Capture(_) => "capture",
            PipelineError::Sink(_) | PipelineError::ShutdownTimeout(_) => "sink",
        }
    }

    /// [`Recovery::Reconnect`] when the connection dropped (the retry loop connects again);
    /// a sink failure keeps the sink's decision ([`Recovery::Retry`] for storage trouble the
    /// sink already retried), which ends the run; anything else is [`Recovery::Fatal`].
    pub fn recovery(&self) -> Recovery {
        match self {
            PipelineError::Source(e) => e.recovery(),
            PipelineError::Sink(e) => e.recovery(),
            PipelineError::StreamEnded => Recovery::Reconnect,
            PipelineError::Decode { .. }
            | PipelineError::Capture(_)
            | PipelineError::ShutdownTimeout(_) => Recovery::Fatal,
        }
    }
}

/// Run the pipeline against the real server until `cancel` fires, the drain target is
/// reached, or an error.
pub async fn run<S: Sink + 'static>(
    opts: PipelineOptions,
    sink: S,
    cancel: CancellationToken,
) -> Result<RunSummary, PipelineError> {
    run_with(&PgConnector, opts, sink, cancel).await
}

/// [`run`] through `connector`.
pub async fn run_with<C: Connector, S: Sink + 'static>(
    connector: &C,
    opts: PipelineOptions,
    sink: S,
    cancel: CancellationToken,
) -> Result<RunSummary, PipelineError> {
    let result = retry::run_once(connector, &opts, sink, &cancel, Lsn::ZERO)
        .await
        .result;
    if let Err(err) = &result {
        opts.metrics.error(err.stage(), err.recovery());
    }
    result
}

/// [`run_resilient_with`] against the real server.
pub async fn run_resilient<S: Sink + 'static>(
    opts: PipelineOptions,
    sink: S,
    cancel: CancellationToken,
    retry: RetryPolicy,
) -> Result<RunSummary, PipelineError> {
    run_resilient_with(&PgConnector, opts, sink, cancel, retry).await
}
