//! A fake walsender for the pipeline's unit tests: committed transactions encoded with the
//! pgoutput encoder, served the way a server serves a slot.
//!
//! ```text
//!  FakeServer (shared state) ── connect ──► FakeSession: every transaction whose end is past
//!                                             the slot's confirmed position, then a keepalive
//!  send_status(flush) ──► the slot's confirmed position (never backward)
//! ```
//!
//! Failures are scripted: refuse the next connects, or drop a session after some frames.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};

use super::session::{Connected, Connector, ReplicationSession};
use super::{PipelineError, PipelineOptions};
use crate::Lsn;
use crate::decode::encode::encode;
use crate::decode::pgtype::TypeCatalog;
use crate::decode::{
    Begin, Cell, Commit, Insert, Message, Relation, RelationColumn, ReplicaIdentity,
};
use crate::source::{Frame, SourceError};

/// A committed transaction as the server sends it.
#[derive(Clone, Debug)]
pub struct FakeTxn {
    pub end_lsn: Lsn,
    messages: Vec<Bytes>,
}

/// A transaction inserting `ids` into `public.t (id int8, v text)`, committed at `lsn` (its
/// end is `lsn + 8`).
pub fn txn(xid: u32, lsn: u64, ids: &[u64]) -> FakeTxn {
    let mut msgs = vec![
        Message::Begin(Begin {
            final_lsn: Lsn(lsn),
            commit_ts: 0,
            xid,
        }),
        Message::Relation(Relation {
            xid: None,
            oid: 100,
            namespace: "public".into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: vec![
                RelationColumn {
                    is_key: true,
                    name: "id".into(),
                    type_oid: 20,
                    type_modifier: -1,
                },
                RelationColumn {
                    is_key: false,
                    name: "v".into(),
                    type_oid: 25,
                    type_modifier: -1,
                },
            ],
        }),
    ];
    for id in ids {
        msgs.push(Message::Insert(Insert {
            xid: None,
            relation_oid: 100,
            new: vec![
                Cell::Text(Bytes::from(id.to_string())),
                Cell::Text(Bytes::from(format!("value {id}"))),
            ],
        }));
    }
    msgs.push(Message::Commit(Commit {
        flags: 0,
        commit_lsn: Lsn(lsn),
        end_lsn: Lsn(lsn + 8),
        commit_ts: 0,
    }));
    let messages = msgs
        .iter()
        .map(|m| {
            let mut out = BytesMut::new();
            encode(m, &mut out);
            out.freeze()
        })
        .collect();
    FakeTxn {
        end_lsn: Lsn(lsn + 8),
        messages,
    }
}

/// What the fake server holds and saw.
#[derive(Debug, Default)]
pub struct FakeState {
    pub txns: Vec<FakeTxn>,
    /// The slot's confirmed flush position.
    pub confirmed: Lsn,
    /// Every status update: (write, flush).
    pub statuses: Vec<(Lsn, Lsn)>,
    /// Sessions started.
    pub connects: u32,
    /// Refuse this many of the next connects (transient error).
    pub refuse_connects: u32,
    /// The next session fails after sending this many frames.
    pub drop_after: Option<usize>,
    /// Sessions ended cleanly.
    pub finished: u32,
    /// Keepalives report the WAL end this far past the last transaction (WAL of other tables).
    pub idle_wal: u64,
    /// Status updates after this many fail (the connection dropped while capture waited).
    pub fail_status_after: Option<usize>,
}

impl FakeState {
    fn wal_end(&self) -> Lsn {
        let last = self.txns.last().map_or(Lsn::ZERO, |t| t.end_lsn);
        Lsn(last.0 + self.idle_wal)
    }
}

/// The server; clones share its state.
#[derive(Clone, Debug, Default)]
pub struct FakeServer {
    state: Arc<Mutex<FakeState>>,
}

impl FakeServer {
    pub fn new(txns: Vec<FakeTxn>) -> FakeServer {
        let server = FakeServer::default();
        server.state().txns = txns;
        server
    }

    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One session of a [`FakeServer`].
pub struct FakeSession {
    server: FakeServer,
    frames: VecDeque<Frame>,
    /// Frames left before the session fails.
    fail_in: Option<usize>,
}

impl Connector for FakeServer {
    type Session = FakeSession;

    async fn connect(
        &self,
        opts: &PipelineOptions,
    ) -> Result<Connected<FakeSession>, PipelineError> {
        let mut state = self.state();
        if state.refuse_connects > 0 {
            state.refuse_connects -= 1;
            return Err(SourceError::Closed {
                context: "connecting to the fake server",
            }
            .into());
        }
        state.connects += 1;
        let wal_end = state.wal_end();
        let mut frames: VecDeque<Frame> = state
            .txns
            .iter()
            .filter(|t| t.end_lsn > state.confirmed)
            .flat_map(|t| {
                t.messages.iter().map(move |data| Frame::XLogData {
                    wal_start: t.end_lsn,
                    wal_end: t.end_lsn,
                    server_time: 0,
                    data: data.clone(),
                })
            })
            .collect();
        frames.push_back(Frame::Keepalive {
            wal_end,
            server_time: 0,
            reply_requested: false,
        });
        let fail_in = state.drop_after.take();
        drop(state);
        Ok(Connected {
            session: FakeSession {
                server: self.clone(),
                frames,
                fail_in,
            },
            start_wal_position: wal_end,
            protocol_version: 2,
            drain_target: opts.drain.then_some(wal_end),
        })
    }
}

impl ReplicationSession for FakeSession {
    async fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if let Some(left) = &mut self.fail_in {
            if *left == 0 {
                return Err(SourceError::Closed {
                    context: "reading from the fake server",
                });
            }
            *left -= 1;
        }
        match self.frames.pop_front() {
            Some(frame) => Ok(Some(frame)),
            // Nothing more: a quiet server (the status timer keeps the loop going).
            None => std::future::pending().await,
        }
    }

    async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        _apply: Lsn,
        _reply_requested: bool,
    ) -> Result<(), SourceError> {
        let mut state = self.server.state();
        if state
            .fail_status_after
            .is_some_and(|after| state.statuses.len() >= after)
        {
            return Err(SourceError::Closed {
                context: "sending a status update to the fake server",
            });
        }
        state.statuses.push((write, flush));
        state.confirmed = state.confirmed.max(flush);
        Ok(())
    }

    async fn finish(self) -> Result<(), SourceError> {
        self.server.state().finished += 1;
        Ok(())
    }

    async fn load_types(&mut self, _oids: &[u32]) -> Result<TypeCatalog, SourceError> {
        Ok(TypeCatalog::new())
    }

    async fn server_position(&mut self) -> Option<Lsn> {
        Some(self.server.state().wal_end())
    }
}
