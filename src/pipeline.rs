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
//! # Invariants
//! * Only the sink's durable LSN is ever confirmed to the server (and nothing at all in
//!   read-only mode).
//! * The queue to the sink is bounded ([`SINK_QUEUE_CHUNKS`]): a slow sink blocks capture,
//!   which keeps answering the server's keepalives while it waits.
//! * Shutdown starts at one `CancellationToken`; the capture loop stops reading, the sink is
//!   flushed, the flushed position is confirmed, then the replication copy is ended.
//! * A transaction reaches the sink whole or not at all (write chunks, then commit): nothing
//!   read from the server can interrupt the hand-over, so a reconnect never leaves half of one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::Lsn;
use crate::capture::Op;
use crate::capture::assembler::DRAIN_MARKER_PREFIX;
use crate::capture::{
    Assembler, AssemblerConfig, CaptureError, CaptureStats, CapturedMessage, Change, CommittedTxn,
    Output, TxnMeta,
};
use crate::decode::{self, DecodeError, Message, PG_EPOCH_OFFSET_MICROS};
use crate::metrics::SharedMetrics;
use crate::sink::{Sink, SinkError};
use crate::source::{
    ConnParams, Frame, ReplicationClient, ReplicationStream, SnapshotAction, SourceError, setup,
};

/// Chunks of changes queued between capture and the sink.
pub const SINK_QUEUE_CHUNKS: usize = 8;

/// Transactions remembered for the end-to-end lag metric (oldest first).
const MAX_LAG_SAMPLES: usize = 100_000;
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
    #[error("the sink failed: {0}")]
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

    /// Worth a reconnect and retry (the connection dropped), as opposed to a stop.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Source(e) => e.is_transient(),
            PipelineError::Sink(e) => e.transient,
            PipelineError::StreamEnded => true,
            _ => false,
        }
    }
}

enum SinkCmd {
    Write(Arc<TxnMeta>, Vec<Change>),
    Commit(Arc<TxnMeta>, Vec<CapturedMessage>),
    Message(CapturedMessage),
    Flush(oneshot::Sender<Lsn>),
}

/// Run the pipeline until `cancel` fires, the drain target is reached, or an error.
pub async fn run<S: Sink + 'static>(
    opts: PipelineOptions,
    sink: S,
    cancel: CancellationToken,
) -> Result<RunSummary, PipelineError> {
    let result = run_once(&opts, sink, &cancel, Lsn::ZERO).await.result;
    if let Err(err) = &result {
        opts.metrics.error(err.stage(), err.is_transient());
    }
    result
}

/// How [`run_resilient`] retries transient failures (connection lost, server restarting).
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

/// Run like [`run`], reconnecting with exponential backoff after transient failures.
///
/// Source failures (connection lost, server restarting) are retried with the same sink. The
/// server resends from its confirmed position; what an earlier attempt already handed to the
/// sink is skipped here, and what the sink holds durably is skipped by the sink (its
/// contract), so nothing arrives twice. Sink failures (the sink retries transient storage
/// errors itself), permanent errors, and any error of a temporary slot (it dies with its
/// connection) end the run.
pub async fn run_resilient<S: Sink + 'static>(
    opts: PipelineOptions,
    sink: S,
    cancel: CancellationToken,
    retry: RetryPolicy,
) -> Result<RunSummary, PipelineError> {
    let resumable = !matches!(opts.slot, SlotMode::Temporary { .. });
    let (mut sink, mut skip, mut failures, mut backoff) =
        (sink, Lsn::ZERO, 0u32, retry.initial_backoff);
    loop {
        let attempt = run_once(&opts, sink, &cancel, skip).await;
        if attempt.handed_over > skip {
            // Progress was made: a later failure starts a fresh series of retries.
            (failures, backoff) = (0, retry.initial_backoff);
        }
        skip = attempt.handed_over;
        let err = match attempt.result {
            Ok(summary) => return Ok(summary),
            Err(err) => err,
        };
        opts.metrics.error(err.stage(), err.is_transient());
        // Only source failures are retried here: they never leave part of a transaction in
        // the sink. After a sink failure the sink's unflushed state is unknown; the run ends and
        // the next start recovers from what the sink holds durably.
        let retry_here = resumable && err.is_transient() && !matches!(err, PipelineError::Sink(_));
        let Some(returned) = attempt.sink.filter(|_| retry_here) else {
            return Err(err);
        };
        failures += 1;
        if cancel.is_cancelled() || retry.max_attempts.is_some_and(|max| failures >= max) {
            return Err(err);
        }
        tracing::warn!(
            error = %err,
            attempt = failures,
            retry_in_ms = backoff.as_millis() as u64,
            "transient failure: reconnecting"
        );
        tokio::select! {
            _ = cancel.cancelled() => return Err(err),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(retry.max_backoff);
        opts.metrics.reconnects.inc();
        sink = returned;
    }
}

/// One attempt: what it did, the sink (unless it panicked), and how far it handed over.
struct Attempt<S> {
    result: Result<RunSummary, PipelineError>,
    sink: Option<S>,
    handed_over: Lsn,
}

/// The connections of one attempt, checked and streaming.
struct Connected {
    sql: tokio_postgres::Client,
    stream: ReplicationStream,
    identity: crate::source::SystemIdentity,
    protocol_version: u32,
    drain_target: Option<Lsn>,
}

/// Check the source, make sure publication and slot exist, and start replication.
async fn connect(opts: &PipelineOptions) -> Result<Connected, PipelineError> {
    let sql = opts.source.connect_sql().await?;
    let server = setup::check_server(&sql).await?;
    setup::check_role_can_replicate(&sql).await?;
    setup::ensure_publication(
        &sql,
        &opts.publication,
        opts.create_publication,
        Some(&opts.publication_tables)
            .filter(|t| !t.is_empty())
            .map(Vec::as_slice),
    )
    .await?;
    let tables = setup::publication_tables(&sql, &opts.publication).await?;
    setup::check_replica_identity(&tables)?;

    let mut repl = ReplicationClient::connect(&opts.source).await?;
    let identity = repl.identify_system().await?;
    match &opts.slot {
        SlotMode::Temporary { name } => {
            repl.create_slot(name, true, SnapshotAction::NoExport)
                .await?;
        }
        SlotMode::Permanent { name, create } => {
            setup::ensure_slot(&sql, &mut repl, name, *create).await?;
        }
        SlotMode::ReadOnly { name } => {
            setup::ensure_slot(&sql, &mut repl, name, false).await?;
        }
    }
    let protocol_version = if server.version_num >= 140_000 { 2 } else { 1 };
    let mut options = vec![
        ("proto_version".to_owned(), protocol_version.to_string()),
        (
            "publication_names".to_owned(),
            quote_ident(&opts.publication),
        ),
    ];
    if protocol_version >= 2 {
        options.push(("streaming".to_owned(), "on".to_owned()));
        options.push(("messages".to_owned(), "true".to_owned()));
    }
    let drain_target = match opts.drain {
        true => Some(emit_drain_marker(&sql).await?),
        false => None,
    };
    let stream = repl
        .start_replication(opts.slot.name(), Lsn::ZERO, &options)
        .await?;
    tracing::info!(
        slot = opts.slot.name(),
        publication = %opts.publication,
        protocol_version,
        server_wal = %identity.xlogpos,
        "replication started"
    );
    Ok(Connected {
        sql,
        stream,
        identity,
        protocol_version,
        drain_target,
    })
}

/// One attempt at running the pipeline. Committed transactions ending at or before
/// `skip_through` were already handed to this sink by an earlier attempt and are skipped.
async fn run_once<S: Sink + 'static>(
    opts: &PipelineOptions,
    sink: S,
    cancel: &CancellationToken,
    skip_through: Lsn,
) -> Attempt<S> {
    let Connected {
        sql,
        stream,
        identity,
        protocol_version,
        drain_target,
    } = match connect(opts).await {
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
    let sink_task = tokio::spawn(sink_loop(sink, rx, durable.clone()));
    let mut capture = CaptureLoop {
        stream,
        sql,
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
    opts.metrics.streaming.set(1);
    let outcome = capture.run().await;
    opts.metrics.streaming.set(0);
    let (result, sink, handed_over) = capture.shutdown(outcome, sink_task).await;
    let result = result.map(|summary| RunSummary {
        start_wal_position: identity.xlogpos,
        protocol_version,
        ..summary
    });
    Attempt {
        result,
        sink,
        handed_over,
    }
}

/// Write the drain marker and return its position: everything committed before it is what
/// `--drain` captures.
///
/// The server's flush position alone is not enough: with `synchronous_commit = off`, commits
/// that already returned to their clients can lie beyond it. The marker is a transactional
/// logical message committed with `synchronous_commit = on`, which flushes all WAL before it.
/// Capture drops it (see [`DRAIN_MARKER_PREFIX`]); its transaction is empty and never reaches
/// the sink.
async fn emit_drain_marker(sql: &tokio_postgres::Client) -> Result<Lsn, SourceError> {
    let query = format!(
        "BEGIN; SET LOCAL synchronous_commit = on; \
         SELECT pg_logical_emit_message(true, '{DRAIN_MARKER_PREFIX}', '')::text; COMMIT"
    );
    let context = "writing the drain marker (pg_logical_emit_message)";
    let rows = sql
        .simple_query(&query)
        .await
        .map_err(|source| SourceError::Sql { context, source })?;
    let lsn = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    lsn.and_then(|l| l.parse().ok())
        .ok_or_else(|| SourceError::Protocol {
            context,
            detail: "no LSN returned".into(),
        })
}

fn status_interval(period: Duration) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// `"name"` with embedded quotes doubled, as `publication_names` expects.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The sink task: applies commands in order and publishes the durable LSN after each.
/// Applies commands in order and calls the sink's timer; hands the sink back when the queue
/// closes or a call fails, so a reconnect can reuse it.
async fn sink_loop<S: Sink>(
    mut sink: S,
    mut rx: mpsc::Receiver<SinkCmd>,
    durable: watch::Sender<Lsn>,
) -> (S, Result<(), SinkError>) {
    let mut tick = tokio::time::interval(SINK_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let cmd = tokio::select! {
            biased;
            // 1. The timer (at most every SINK_TICK): age flushes happen even under a
            //    sustained stream of commands, and while no data arrives.
            _ = tick.tick() => None,
            // 2. Commands, in order: they carry the data and the flush requests.
            cmd = rx.recv() => match cmd {
                Some(cmd) => Some(cmd),
                None => break,
            },
        };
        let applied = match cmd {
            None => sink.tick().await,
            Some(SinkCmd::Write(meta, changes)) => sink.write(&meta, changes).await,
            Some(SinkCmd::Commit(meta, messages)) => sink.commit(&meta, messages).await,
            Some(SinkCmd::Message(message)) => sink.message(message).await,
            Some(SinkCmd::Flush(reply)) => sink.flush().await.map(|lsn| {
                let _ = reply.send(lsn);
            }),
        };
        if let Err(err) = applied {
            return (sink, Err(err));
        }
        durable.send_if_modified(|d| {
            let new = sink.durable_lsn();
            let moved = new > *d;
            *d = (*d).max(new);
            moved
        });
    }
    (sink, Ok(()))
}

/// Why the capture loop stopped.
enum Stop {
    Cancelled,
    Drained,
}

struct CaptureLoop {
    stream: ReplicationStream,
    /// Ordinary SQL connection for type lookups.
    sql: tokio_postgres::Client,
    assembler: Assembler,
    tx: mpsc::Sender<SinkCmd>,
    durable: watch::Receiver<Lsn>,
    confirm: bool,
    /// The newest WAL position seen in a frame.
    received: Lsn,
    /// The position of the newest thing handed to the sink (transaction end or message).
    handed_over: Lsn,
    /// Things at or before this position were handed to the sink by an earlier attempt.
    skip_through: Lsn,
    /// An error met while a transaction was being handed over, reported after it.
    deferred: Option<PipelineError>,
    metrics: SharedMetrics,
    /// `changes_total` counters by (table oid, op), so the hot path does no label lookup.
    change_counters: HashMap<(u32, Op), IntCounter>,
    /// End and commit time of handed-over transactions not yet durable (for the lag metric).
    in_flight: VecDeque<(Lsn, i64)>,
    /// Capture stats already reported, to turn totals into counter increments.
    reported: CaptureStats,
    status: Interval,
    drain_target: Option<Lsn>,
    cancel: CancellationToken,
}

impl CaptureLoop {
    async fn run(&mut self) -> Result<Stop, PipelineError> {
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
                frame = self.stream.next_frame() => Some(frame?),
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
                let catalog = setup::load_type_catalog(&self.sql, &missing).await?;
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
        self.stream.send_status(write, flush, flush, false).await?;
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
        let row = self
            .sql
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await;
        let Some(server) = row
            .ok()
            .and_then(|r| r.get::<_, String>(0).parse::<Lsn>().ok())
        else {
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
    async fn shutdown<S>(
        mut self,
        outcome: Result<Stop, PipelineError>,
        sink_task: tokio::task::JoinHandle<(S, Result<(), SinkError>)>,
    ) -> (Result<RunSummary, PipelineError>, Option<S>, Lsn) {
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
                match tokio::time::timeout(SHUTDOWN_GRACE, flush).await {
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
            stream,
            tx,
            assembler,
            confirm,
            received,
            ..
        } = self;
        drop(tx);
        let (sink, sink_result) = match sink_task.await {
            Ok((sink, result)) => (Some(sink), result),
            Err(e) => {
                let err = SinkError::permanent(format!("the sink task panicked: {e}"));
                (None, Err(err))
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
            let mut stream = stream;
            if confirm && !confirmable.is_zero() {
                let write = received.max(confirmable);
                stream
                    .send_status(write, confirmable, confirmable, false)
                    .await?;
            }
            stream.finish().await?;
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

fn sink_gone() -> PipelineError {
    PipelineError::Sink(SinkError::permanent("the sink stopped"))
}
