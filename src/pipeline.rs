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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::Lsn;
use crate::capture::assembler::DRAIN_MARKER_PREFIX;
use crate::capture::{
    Assembler, AssemblerConfig, CaptureError, CaptureStats, CapturedMessage, Change, CommittedTxn,
    Output, TxnMeta,
};
use crate::decode::{self, DecodeError, Message};
use crate::sink::{Sink, SinkError};
use crate::source::{
    ConnParams, Frame, ReplicationClient, ReplicationStream, SnapshotAction, SourceError, setup,
};

/// Chunks of changes queued between capture and the sink.
pub const SINK_QUEUE_CHUNKS: usize = 8;

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
        status: status_interval(opts.status_interval),
        drain_target,
        cancel,
    };
    let outcome = capture.run().await;
    let summary = capture.shutdown(outcome, sink_task).await?;
    Ok(RunSummary {
        start_wal_position: identity.xlogpos,
        protocol_version,
        ..summary
    })
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
async fn sink_loop<S: Sink>(
    mut sink: S,
    mut rx: mpsc::Receiver<SinkCmd>,
    durable: watch::Sender<Lsn>,
) -> Result<(), SinkError> {
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
        match cmd {
            None => sink.tick().await?,
            Some(SinkCmd::Write(meta, changes)) => sink.write(&meta, changes).await?,
            Some(SinkCmd::Commit(meta, messages)) => sink.commit(&meta, messages).await?,
            Some(SinkCmd::Message(message)) => sink.message(message).await?,
            Some(SinkCmd::Flush(reply)) => {
                let lsn = sink.flush().await?;
                let _ = reply.send(lsn);
            }
        }
        durable.send_if_modified(|d| {
            let new = sink.durable_lsn();
            let moved = new > *d;
            *d = (*d).max(new);
            moved
        });
    }
    Ok(())
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
                None => self.send_status().await?,
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
            Some(Output::Message(message)) => self.send(SinkCmd::Message(message)).await?,
            Some(Output::Committed(txn)) => {
                let CommittedTxn {
                    meta,
                    messages,
                    mut changes,
                } = *txn;
                let meta = Arc::new(meta);
                while let Some(chunk) = changes.next_chunk()? {
                    self.send(SinkCmd::Write(Arc::clone(&meta), chunk)).await?;
                }
                self.send(SinkCmd::Commit(Arc::clone(&meta), messages))
                    .await?;
                self.received = self.received.max(meta.end_lsn);
            }
        }
        Ok(())
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
            if status_due {
                self.send_status().await?;
            }
        }
    }

    async fn send_status(&mut self) -> Result<(), PipelineError> {
        let flush = if self.confirm {
            *self.durable.borrow()
        } else {
            Lsn::ZERO
        };
        let write = if self.confirm {
            self.received
        } else {
            Lsn::ZERO
        };
        self.stream.send_status(write, flush, flush, false).await?;
        Ok(())
    }

    /// Flush the sink, confirm what it holds, end the copy, and collect the sink's result.
    async fn shutdown(
        mut self,
        outcome: Result<Stop, PipelineError>,
        sink_task: tokio::task::JoinHandle<Result<(), SinkError>>,
    ) -> Result<RunSummary, PipelineError> {
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
        let CaptureLoop {
            mut stream,
            tx,
            assembler,
            confirm,
            received,
            ..
        } = self;
        drop(tx);
        let sink_result = sink_task.await.map_err(|e| {
            PipelineError::Sink(SinkError::permanent(format!("the sink task panicked: {e}")))
        })?;
        // The sink's own error explains a closed queue better than "sink gone".
        sink_result.map_err(PipelineError::Sink)?;
        let durable = match flushed {
            Some(result) => result?,
            None => Lsn::ZERO,
        };
        outcome?;
        if confirm && !durable.is_zero() {
            stream
                .send_status(received.max(durable), durable, durable, false)
                .await?;
        }
        stream.finish().await?;
        tracing::info!(durable = %durable, "replication stopped");
        Ok(RunSummary {
            capture: assembler.stats().clone(),
            durable_lsn: durable,
            ..RunSummary::default()
        })
    }
}

fn sink_gone() -> PipelineError {
    PipelineError::Sink(SinkError::permanent("the sink stopped"))
}
