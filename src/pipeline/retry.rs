//! Attempts and reconnects: one attempt connects, streams until it stops, and hands the sink
//! back; transient source failures are retried with backoff on the same sink.
//!
//! ```text
//!  run_resilient_with ─► run_once ─► Connector::connect ─► CaptureLoop::run ─► shutdown
//!        ▲                   │ (transient source error: the sink comes back)
//!        └── backoff ◄───────┘
//! ```
//!
//! # Invariants
//! * A retried attempt skips what an earlier one handed over (`skip_through`), so nothing
//!   reaches the sink twice; the sink skips what it holds durably.
//! * Sink failures are never retried here: the sink's unflushed state is unknown.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::capture_loop::{CaptureLoop, status_interval};
use super::session::{Connected, Connector};
use super::sink_loop::sink_loop;
use super::{PipelineError, PipelineOptions, RunSummary, SINK_QUEUE_CHUNKS, SlotMode};
use crate::Lsn;
use crate::backoff::Backoff;
use crate::capture::{Assembler, CaptureStats};
use crate::recovery::Recovery;
use crate::sink::Sink;

/// How [`run_resilient_with`] retries transient failures (connection lost, server restarting).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: None,
        }
    }
}

/// Run like [`super::run`], reconnecting with exponential backoff after transient failures.
///
/// Source failures (connection lost, server restarting) are retried with the same sink. The
/// server resends from its confirmed position; what an earlier attempt already handed to the
/// sink is skipped here, and what the sink holds durably is skipped by the sink (its
/// contract), so nothing arrives twice. Sink failures (the sink retries transient storage
/// errors itself), permanent errors, and any error of a temporary slot (it dies with its
/// connection) end the run.
pub async fn run_resilient_with<C: Connector, S: Sink + 'static>(
    connector: &C,
    opts: PipelineOptions,
    sink: S,
    cancel: CancellationToken,
    retry: RetryPolicy,
) -> Result<RunSummary, PipelineError> {
    let resumable = !matches!(opts.slot, SlotMode::Temporary { .. });
    let mut backoff = Backoff::new(retry.initial_backoff, retry.max_backoff);
    let (mut sink, mut skip, mut failures) = (sink, Lsn::ZERO, 0u32);
    loop {
        let attempt = run_once(connector, &opts, sink, &cancel, skip).await;
        if attempt.handed_over > skip {
            // Progress was made: a later failure starts a fresh series of retries.
            failures = 0;
            backoff.reset();
        }
        skip = attempt.handed_over;
        let err = match attempt.result {
            Ok(summary) => return Ok(summary),
            Err(err) => err,
        };
        opts.metrics.error(err.stage(), err.recovery());
        // Only reconnects are made here: source failures never leave part of a transaction in
        // the sink. A sink failure is never `Reconnect` (the sink retried what it could, and
        // its unflushed state is unknown): the run ends and the next start recovers from what
        // the sink holds durably.
        let retry_here = resumable && err.recovery() == Recovery::Reconnect;
        let Some(returned) = attempt.sink.filter(|_| retry_here) else {
            return Err(err);
        };
        failures += 1;
        if cancel.is_cancelled() || retry.max_attempts.is_some_and(|max| failures >= max) {
            return Err(err);
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            error = %crate::report::Chain(&err),
            attempt = failures,
            retry_in_ms = delay.as_millis() as u64,
            "transient failure: reconnecting"
        );
        tokio::select! {
            _ = cancel.cancelled() => return Err(err),
            _ = tokio::time::sleep(delay) => {}
        }
        opts.metrics.reconnects.inc();
        sink = returned;
    }
}

/// One attempt: what it did, the sink (unless it panicked), and how far it handed over.
pub(super) struct Attempt<S> {
    pub(super) result: Result<RunSummary, PipelineError>,
    pub(super) sink: Option<S>,
    pub(super) handed_over: Lsn,
}

/// One attempt at running the pipeline. Committed transactions ending at or before
/// `skip_through` were already handed to this sink by an earlier attempt and are skipped.
pub(super) async fn run_once<C: Connector, S: Sink + 'static>(
    connector: &C,
    opts: &PipelineOptions,
    sink: S,
    cancel: &CancellationToken,
    skip_through: Lsn,
) -> Attempt<S> {
    let Connected {
        session,
        start_wal_position,
        protocol_version,
        drain_target,
    } = match connector.connect(opts).await {
        Ok(connected) => connected,
        Err(err) => {
            return Attempt {
                result: Err(err),
                sink: Some(sink),
                handed_over: skip_through,
            };
        }
    };

    let durable = watch::Sender::new(sink.durable_lsn());
    let (tx, rx) = mpsc::channel(SINK_QUEUE_CHUNKS);
    let sink_task =
        tokio::spawn(sink_loop(sink, rx, durable.clone()).instrument(tracing::info_span!("sink")));
    let mut capture = CaptureLoop {
        session,
        assembler: Assembler::new(opts.assembler.clone()),
        tx,
        durable: durable.subscribe(),
        confirm: !matches!(opts.slot, SlotMode::ReadOnly { .. }),
        received: Lsn::ZERO,
        handed_over: skip_through,
        skip_through,
        deferred: None,
        metrics: Arc::clone(&opts.metrics),
        change_counters: HashMap::new(),
        in_flight: VecDeque::new(),
        reported: CaptureStats::default(),
        status: status_interval(opts.status_interval),
        drain_target,
        cancel: cancel.clone(),
    };
    let streaming = |on: bool| {
        opts.metrics.streaming.set(i64::from(on));
        if let Some(tx) = &opts.streaming {
            tx.send_replace(on);
        }
    };
    streaming(true);
    let outcome = capture.run().await;
    streaming(false);
    let (result, sink, handed_over) = capture.shutdown(outcome, sink_task).await;
    let result = result.map(|summary| RunSummary {
        start_wal_position,
        protocol_version,
        ..summary
    });
    Attempt {
        result,
        sink,
        handed_over,
    }
}
