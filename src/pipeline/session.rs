//! The `source → capture` seam: one replication session, and how to open one.
//!
//! ```text
//!  Connector::connect(opts) ──► checks, publication, slot, START_REPLICATION ──► Connected
//!  ReplicationSession: next_frame ─► frames (XLogData, keepalive)
//!                      send_status ◄─ write / flush positions
//!                      load_types, server_position (the session's ordinary SQL connection)
//! ```
//!
//! # Contract
//! * **Ordering**: frames arrive in WAL order as the server sends them; after a reconnect the
//!   server starts again at the slot's confirmed position, so frames already seen may come
//!   again (the capture loop skips what it handed over).
//! * **Durability**: a position passed as `flush` to [`ReplicationSession::send_status`] may be
//!   forgotten by the server (the slot's WAL before it recycled): only durable positions are
//!   ever passed.
//! * **Errors**: a lost connection is a transient [`SourceError`]; the session is then dropped
//!   and a new one connected.
//! * **Shutdown**: [`ReplicationSession::finish`] ends the replication copy cleanly; dropping a
//!   session without it is allowed (the server sees a closed connection).
//!
//! [`PgConnector`] is the real implementation; the pipeline's unit tests use a fake walsender
//! built on the pgoutput encoder.

use std::future::Future;

use crate::Lsn;
use crate::capture::assembler::DRAIN_MARKER_PREFIX;
use crate::decode::pgtype::TypeCatalog;
use crate::source::{
    Frame, ReplicationClient, ReplicationStream, SnapshotAction, SourceError, publication_names,
    setup,
};

use super::{PipelineError, PipelineOptions, SlotMode};

/// One streaming replication session.
pub trait ReplicationSession: Send {
    /// The next frame; `None` when the server ended the copy.
    fn next_frame(&mut self) -> impl Future<Output = Result<Option<Frame>, SourceError>> + Send;

    /// A standby status update.
    fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Ends the replication copy.
    fn finish(self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// The catalog entries of the types `oids` (for columns of non-builtin types).
    fn load_types(
        &mut self,
        oids: &[u32],
    ) -> impl Future<Output = Result<TypeCatalog, SourceError>> + Send;

    /// The server's current WAL position, best effort (for the server lag gauge).
    fn server_position(&mut self) -> impl Future<Output = Option<Lsn>> + Send;
}

/// A session that streams, with what the pipeline learned while connecting.
pub struct Connected<R> {
    pub session: R,
    /// The server's WAL position when the session started.
    pub start_wal_position: Lsn,
    pub protocol_version: u32,
    /// With `drain`: the position up to which everything committed is captured.
    pub drain_target: Option<Lsn>,
}

/// Opens replication sessions.
pub trait Connector: Send + Sync {
    type Session: ReplicationSession + 'static;

    fn connect(
        &self,
        opts: &PipelineOptions,
    ) -> impl Future<Output = Result<Connected<Self::Session>, PipelineError>> + Send;
}

/// Sessions on a real server: the replication connection and an ordinary SQL connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct PgConnector;

/// A session of [`PgConnector`].
pub struct PgSession {
    stream: ReplicationStream,
    sql: tokio_postgres::Client,
}

impl Connector for PgConnector {
    type Session = PgSession;

    /// Check the source, make sure publication and slot exist, and start replication.
    async fn connect(&self, opts: &PipelineOptions) -> Result<Connected<PgSession>, PipelineError> {
        let sql = opts.source.connect_sql().await?;
        let server = setup::prepare_source(
            &sql,
            &opts.publication,
            opts.create_publication,
            &opts.publication_tables,
        )
        .await?;

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
        let options = pgoutput_options(&opts.publication, protocol_version);
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
            session: PgSession { stream, sql },
            start_wal_position: identity.xlogpos,
            protocol_version,
            drain_target,
        })
    }
}

impl ReplicationSession for PgSession {
    async fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        self.stream.next_frame().await
    }

    async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), SourceError> {
        self.stream
            .send_status(write, flush, apply, reply_requested)
            .await
    }

    async fn finish(self) -> Result<(), SourceError> {
        self.stream.finish().await
    }

    async fn load_types(&mut self, oids: &[u32]) -> Result<TypeCatalog, SourceError> {
        setup::load_type_catalog(&self.sql, oids).await
    }

    async fn server_position(&mut self) -> Option<Lsn> {
        let row = self
            .sql
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .ok()?;
        row.get::<_, String>(0).parse::<Lsn>().ok()
    }
}

/// The pgoutput options for `publication`: protocol v2 streams large transactions and sends
/// logical messages.
pub fn pgoutput_options(publication: &str, protocol_version: u32) -> Vec<(String, String)> {
    let mut options = vec![
        ("proto_version".to_owned(), protocol_version.to_string()),
        (
            "publication_names".to_owned(),
            publication_names(&[publication]),
        ),
    ];
    if protocol_version >= 2 {
        options.push(("streaming".to_owned(), "on".to_owned()));
        options.push(("messages".to_owned(), "true".to_owned()));
    }
    options
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
