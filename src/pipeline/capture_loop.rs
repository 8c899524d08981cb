//! The capture loop: frames from the replication session, decoded and assembled into
//! committed transactions, handed to the sink task whole; status updates confirm only what
//! the sink holds durably.
//!
//! ```text
//!  session.next_frame ─► pgoutput::parse ─► Assembler ─► SinkCmd (bounded) ─► sink task
//!        ▲                                                                        │
//!        └──── send_status(write = received, flush = confirmable(durable)) ◄──────┘
//! ```
//!
//! # Invariants
//! * Only the sink's durable LSN is ever confirmed (nothing at all in read-only mode), except
//!   when nothing is in flight: then the server's reported position is ([`CaptureLoop::confirmable`]).
//! * A transaction reaches the sink whole or not at all: a status error met while handing one
//!   over is deferred until it is handed over whole.
//! * Things at or before `skip_through` were handed to the sink by an earlier attempt and are
//!   skipped.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::session::ReplicationSession;
use super::sink_loop::SinkCmd;
use super::{MAX_LAG_SAMPLES, PipelineError, RunSummary, SHUTDOWN_GRACE, SINK_QUEUE_CHUNKS};
use crate::Lsn;
use crate::capture::{Assembler, CaptureStats, Change, CommittedTxn, Op, Output};
use crate::decode::{self, Message, PG_EPOCH_OFFSET_MICROS};
use crate::metrics::SharedMetrics;
use crate::sink::SinkError;
use crate::source::Frame;

/// Why the capture loop stopped.
pub(super) enum Stop {
    Cancelled,
    Drained,
}

pub(super) struct CaptureLoop<R> {
    /// The replication session (and its SQL connection, for type lookups).
    pub(super) session: R,
    pub(super) assembler: Assembler,
    pub(super) tx: mpsc::Sender<SinkCmd>,
    pub(super) durable: watch::Receiver<Lsn>,
    pub(super) confirm: bool,
    /// The newest WAL position seen in a frame.
    pub(super) received: Lsn,
    /// The position of the newest thing handed to the sink (transaction end or message).
    pub(super) handed_over: Lsn,
    /// Things at or before this position were handed to the sink by an earlier attempt.
    pub(super) skip_through: Lsn,
    /// An error met while a transaction was being handed over, reported after it.
    pub(super) deferred: Option<PipelineError>,
    pub(super) metrics: SharedMetrics,
    /// `changes_total` counters by (table oid, op), so the hot path does no label lookup.
    pub(super) change_counters: HashMap<(u32, Op), IntCounter>,
    /// End and commit time of handed-over transactions not yet durable (for the lag metric).
    pub(super) in_flight: VecDeque<(Lsn, i64)>,
    /// Capture stats already reported, to turn totals into counter increments.
    pub(super) reported: CaptureStats,
    pub(super) status: Interval,
    pub(super) drain_target: Option<Lsn>,
    pub(super) cancel: CancellationToken,
}

impl<R: ReplicationSession> CaptureLoop<R> {
    pub(super) async fn run(&mut self) -> Result<Stop, PipelineError> {
        loop {
            if self.drained() {
                return Ok(Stop::Drained);
            }
            let event = tokio::select! {
                biased;
                // 1. A shutdown request wins: stop reading; what was received is flushed.
                _ = self.cancel.cancelled() => return Ok(Stop::Cancelled),
                // 2. Report progress on time so the server neither times out nor keeps WAL.
                _ = self.status.tick() => None,
                // 3. The next frame from the server.
                frame = self.session.next_frame() => Some(frame?),
            };
            match event {
                None => {
                    self.refresh_server_position().await;
                    self.send_status().await?;
                }
                Some(None) => return Err(PipelineError::StreamEnded),
                Some(Some(Frame::Keepalive {
                    wal_end,
                    reply_requested,
                    ..
                })) => {
                    self.received = self.received.max(wal_end);
                    if reply_requested {
                        self.send_status().await?;
                    }
                }
                Some(Some(Frame::XLogData {
                    wal_start,
                    wal_end,
                    data,
                    ..
                })) => {
                    self.received = self.received.max(wal_end);
                    self.metrics.received_bytes.inc_by(data.len() as u64);
                    let msg = decode::pgoutput::parse(data, self.assembler.in_stream()).map_err(
                        |source| PipelineError::Decode {
                            lsn: wal_start,
                            source,
                        },
                    )?;
                    self.handle(msg).await?;
                }
            }
        }
    }

    /// In drain mode: everything committed up to the target has been handed to the sink.
    fn drained(&self) -> bool {
        let Some(target) = self.drain_target else {
            return false;
        };
        // Open streamed transactions commit after the target (or never): they are not
        // confirmed, so the server sends them again on the next run.
        self.received >= target && !self.assembler.has_open_txn_outside_streams()
    }

    async fn handle(&mut self, msg: Message) -> Result<(), PipelineError> {
        if let Message::Relation(rel) = &msg {
            let missing = self.assembler.relations().missing_types(rel);
            if !missing.is_empty() {
                let catalog = self.session.load_types(&missing).await?;
                self.assembler.relations_mut().add_types(catalog);
            }
        }
        match self.assembler.handle(msg)? {
            None => {}
            Some(Output::Message(message)) if message.lsn <= self.skip_through => {}
            Some(Output::Committed(txn)) if txn.meta.end_lsn <= self.skip_through => {
                self.received = self.received.max(txn.meta.end_lsn);
            }
            Some(Output::Message(message)) => {
                self.handed_over = self.handed_over.max(message.lsn);
                self.send(SinkCmd::Message(message)).await?;
            }
            Some(Output::Committed(txn)) => {
                let CommittedTxn {
                    meta,
                    messages,
                    mut changes,
                } = *txn;
                let meta = Arc::new(meta);
                while let Some(chunk) = changes.next_chunk()? {
                    self.count_changes(&chunk);
                    self.send(SinkCmd::Write(Arc::clone(&meta), chunk)).await?;
                }
                self.send(SinkCmd::Commit(Arc::clone(&meta), messages))
                    .await?;
                self.received = self.received.max(meta.end_lsn);
                self.handed_over = self.handed_over.max(meta.end_lsn);
                self.metrics.transactions.inc();
                if self.in_flight.len() < MAX_LAG_SAMPLES {
                    self.in_flight
                        .push_back((meta.end_lsn, meta.commit_ts_micros));
                }
            }
        }
        self.report_capture_stats();
        self.deferred.take().map_or(Ok(()), Err)
    }

    /// Queue a command for the sink; while the queue is full, keep reporting status.
    async fn send(&mut self, cmd: SinkCmd) -> Result<(), PipelineError> {
        loop {
            // The select only decides; acting after it ends releases its borrows.
            let status_due = tokio::select! {
                biased;
                permit = self.tx.reserve() => {
                    permit.map_err(|_| sink_gone())?.send(cmd);
                    return Ok(());
                }
                _ = self.status.tick() => true,
            };
            // A failed status update must not cut a transaction in half: the sink would hold
            // part of it. Report the error once the transaction is handed over whole.
            if status_due
                && self.deferred.is_none()
                && let Err(err) = self.send_status().await
            {
                self.deferred = Some(err);
            }
        }
    }

    async fn send_status(&mut self) -> Result<(), PipelineError> {
        let durable = *self.durable.borrow();
        let (write, flush) = match self.confirm {
            true => (self.received, self.confirmable(durable)),
            false => (Lsn::ZERO, Lsn::ZERO),
        };
        self.session.send_status(write, flush, flush, false).await?;
        self.report_progress(durable, flush);
        Ok(())
    }

    /// Lag and position gauges after a status update.
    fn report_progress(&mut self, durable: Lsn, confirmed: Lsn) {
        let m = &self.metrics;
        let confirmed = if self.confirm { confirmed } else { durable };
        let position = |kind: &str, lsn: Lsn| {
            m.wal_position.with_label_values(&[kind]).set(lsn.0 as i64);
        };
        position("received", self.received);
        position("confirmed", confirmed);
        let lag = self.received.0.saturating_sub(confirmed.0);
        m.lag_bytes.with_label_values(&["received"]).set(lag as i64);
        while self
            .in_flight
            .front()
            .is_some_and(|(end, _)| *end <= durable)
        {
            self.in_flight.pop_front();
        }
        let lag_seconds = self.in_flight.front().map_or(0.0, |(_, commit_ts)| {
            (crate::source::stream::pg_now_micros() + PG_EPOCH_OFFSET_MICROS - commit_ts).max(0)
                as f64
                / 1e6
        });
        m.lag_seconds.set(lag_seconds);
        m.sink_queue_depth
            .set((SINK_QUEUE_CHUNKS - self.tx.capacity()) as i64);
    }

    /// Ask the server for its WAL position (for the server lag gauge); best effort.
    async fn refresh_server_position(&mut self) {
        let Some(server) = self.session.server_position().await else {
            return;
        };
        let confirmed = self
            .metrics
            .wal_position
            .with_label_values(&["confirmed"])
            .get();
        self.metrics
            .wal_position
            .with_label_values(&["server"])
            .set(server.0 as i64);
        let lag = (server.0 as i64).saturating_sub(confirmed).max(0);
        self.metrics
            .lag_bytes
            .with_label_values(&["server"])
            .set(lag);
    }

    /// Count a chunk's changes by table and op.
    fn count_changes(&mut self, chunk: &[Change]) {
        for change in chunk {
            let key = (change.table.oid, change.op);
            let counter = self.change_counters.entry(key).or_insert_with(|| {
                let table = change.table.qualified_name();
                self.metrics
                    .changes
                    .with_label_values(&[&table, change.op.code()])
            });
            counter.inc();
        }
    }

    /// Turn the assembler's running totals into counter increments and gauges.
    fn report_capture_stats(&mut self) {
        let stats = self.assembler.stats();
        let m = &self.metrics;
        m.spill_bytes
            .inc_by(stats.spilled_bytes - self.reported.spilled_bytes);
        m.malformed_contexts
            .inc_by(stats.malformed_contexts - self.reported.malformed_contexts);
        m.capture_memory.set(self.assembler.memory() as i64);
        self.reported = stats.clone();
    }

    /// The position that may be confirmed to the server given the sink's durable LSN.
    ///
    /// Normally that is the durable LSN itself. When nothing is in flight (no transaction
    /// open, everything handed to the sink durable) it is the newest position the server
    /// reported: the WAL in between holds nothing we capture, and confirming it lets the server
    /// recycle WAL while the captured tables are idle and others are busy.
    fn confirmable(&self, durable: Lsn) -> Lsn {
        if !self.assembler.has_open_txn() && durable >= self.handed_over {
            self.received.max(durable)
        } else {
            durable
        }
    }

    /// Flush the sink, confirm what it holds, end the copy; hands back the sink (unless its
    /// task panicked) and how far this attempt handed things to it.
    pub(super) async fn shutdown<S>(
        mut self,
        outcome: Result<Stop, PipelineError>,
        mut sink_task: tokio::task::JoinHandle<(S, Result<(), SinkError>)>,
    ) -> (Result<RunSummary, PipelineError>, Option<S>, Lsn) {
        // One deadline for the flush and for the sink task to end: a sink that never returns
        // (a hung object store) cannot hang shutdown. Nothing it did not commit is confirmed.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let flushed = match &outcome {
            Ok(stop) => {
                if matches!(stop, Stop::Cancelled) {
                    tracing::info!("shutdown requested: flushing the sink");
                }
                let (reply, done) = oneshot::channel();
                let flush = async {
                    self.send(SinkCmd::Flush(reply)).await?;
                    done.await.map_err(|_| sink_gone())
                };
                match tokio::time::timeout_at(deadline, flush).await {
                    Ok(result) => Some(result),
                    Err(_) => Some(Err(PipelineError::ShutdownTimeout(SHUTDOWN_GRACE))),
                }
            }
            Err(_) => None,
        };
        let confirmable = match &flushed {
            Some(Ok(durable)) => self.confirmable(*durable),
            _ => Lsn::ZERO,
        };
        let handed_over = self.handed_over;
        let CaptureLoop {
            session,
            tx,
            assembler,
            confirm,
            received,
            ..
        } = self;
        drop(tx);
        let (sink, sink_result) = match tokio::time::timeout_at(deadline, &mut sink_task).await {
            Ok(Ok((sink, result))) => (Some(sink), result),
            Ok(Err(e)) => {
                let err = SinkError::permanent(format!("the sink task panicked: {e}"));
                (None, Err(err))
            }
            Err(_) => {
                sink_task.abort();
                tracing::error!(
                    grace_s = SHUTDOWN_GRACE.as_secs(),
                    "the sink did not stop within the grace period: abandoned"
                );
                return (
                    Err(PipelineError::ShutdownTimeout(SHUTDOWN_GRACE)),
                    None,
                    handed_over,
                );
            }
        };
        let finish = async {
            // The sink's own error explains a closed queue better than "sink gone".
            sink_result.map_err(PipelineError::Sink)?;
            let durable = match flushed {
                Some(result) => result?,
                None => Lsn::ZERO,
            };
            outcome?;
            let mut session = session;
            if confirm && !confirmable.is_zero() {
                let write = received.max(confirmable);
                session
                    .send_status(write, confirmable, confirmable, false)
                    .await?;
            }
            session.finish().await?;
            tracing::info!(durable = %durable, "replication stopped");
            Ok(RunSummary {
                capture: assembler.stats().clone(),
                durable_lsn: durable,
                ..RunSummary::default()
            })
        };
        (finish.await, sink, handed_over)
    }
}

pub(super) fn sink_gone() -> PipelineError {
    PipelineError::Sink(SinkError::permanent("the sink stopped"))
}

pub(super) fn status_interval(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}
