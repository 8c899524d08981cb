//! The `capture → lake` seam: where committed transactions go, and how durability comes back.
//!
//! # Contract
//! * **Ordering**: transactions arrive in commit order. Each arrives as zero or more
//!   [`Sink::write`] calls (its changes in `seq` order, possibly in several chunks so memory
//!   stays bounded for huge transactions) followed by exactly one [`Sink::commit`].
//! * **Whole transactions**: the writes and the commit of one transaction arrive without
//!   anything in between: the pipeline reads nothing from the server while it hands one over,
//!   so a reconnect never leaves part of a transaction in the sink. A sink never sees a
//!   transaction start again.
//! * **Durability**: [`Sink::durable_lsn`] is the WAL position up to which everything handed
//!   over is durably stored: the `end_lsn` of transactions, the `lsn` of non-transactional
//!   messages. It never moves backward. A sink opened over storage an earlier run wrote may
//!   report less than that storage holds until replays reach it (never more). The engine confirms this position to Postgres and
//!   nothing beyond it, except when nothing is in flight at all: then positions the server
//!   reports past it hold nothing captured and are confirmed too (idle slots keep advancing).
//! * **Idempotency on replay**: after a restart Postgres resends every transaction after the
//!   confirmed position, which may include transactions the sink already holds (it stored them
//!   but the confirmation was lost). The sink skips a transaction whose `end_lsn` is at or below
//!   what it durably holds.
//! * **Shutdown**: [`Sink::flush`] makes everything received so far durable and returns the new
//!   durable LSN; the engine calls it before a clean exit. Dropping a sink without flushing
//!   loses only what was never confirmed.
//! * **Concurrency**: one task owns the sink; methods are never called concurrently.
//! * Every clause is tested against both implementations (`tests/lake/contract.rs`).
//! * **Timer**: [`Sink::tick`] is called periodically (about every 100 ms) between commands,
//!   also while no data arrives, so a sink can flush on age. It may be called between the
//!   `write`s and the `commit` of one transaction; the default does nothing.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use crate::Lsn;
use crate::capture::{CapturedMessage, Change, TxnMeta};
use crate::recovery::Recovery;

/// A sink failed. The sink retries what it can itself (a Delta commit, `lake.commit_attempts`
/// times); the error it returns ends the run, and [`SinkError::recovery`] says whether the
/// failure was expected to pass (the errors metric's kind).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    pub message: String,
    /// The decision of the error the sink met ([`crate::lake::LakeError::recovery`]).
    pub recovery: Recovery,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SinkError {
    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError {
            message: message.into(),
            recovery: Recovery::Fatal,
            source: None,
        }
    }

    /// What can be done about the failure (see the field).
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }
}

/// Receives committed transactions in commit order and reports what is durable.
pub trait Sink: Send {
    /// A chunk of the changes of the committed transaction `txn`, in `seq` order.
    fn write(
        &mut self,
        txn: &TxnMeta,
        changes: Vec<Change>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The end of transaction `txn`, with its logical messages that are not audit context.
    fn commit(
        &mut self,
        txn: &TxnMeta,
        messages: Vec<CapturedMessage>,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// A non-transactional logical message (it has no transaction to wait for).
    fn message(
        &mut self,
        message: CapturedMessage,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Make everything received durable; returns the durable LSN.
    fn flush(&mut self) -> impl Future<Output = Result<Lsn, SinkError>> + Send;

    /// The `end_lsn` up to which everything is durable (see the contract above).
    fn durable_lsn(&self) -> Lsn;

    /// Periodic timer (see the contract above): flush what is due by age.
    fn tick(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

/// What a [`MemorySink`] stored for one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredTxn {
    pub meta: TxnMeta,
    pub changes: Vec<Change>,
    pub messages: Vec<CapturedMessage>,
}

/// State shared by [`MemorySink`]s over restarts: what is "on disk".
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Committed transactions, durable ones first.
    pub txns: Vec<StoredTxn>,
    /// Non-transactional messages.
    pub messages: Vec<CapturedMessage>,
    /// How many of `txns` are durable.
    pub durable_count: usize,
    /// How many of `messages` are durable.
    pub durable_messages: usize,
    /// When true, `flush` and `commit` do not make anything durable (tests of restarts).
    pub hold_acks: bool,
}

impl MemoryStore {
    pub fn durable_lsn(&self) -> Lsn {
        let txns = self.txns[..self.durable_count]
            .last()
            .map(|t| t.meta.end_lsn);
        let messages = self.messages[..self.durable_messages].last().map(|m| m.lsn);
        txns.max(messages).unwrap_or(Lsn::ZERO)
    }

    /// Forget everything not durable, as a crash would.
    pub fn crash(&mut self) {
        self.txns.truncate(self.durable_count);
        self.messages.truncate(self.durable_messages);
    }

    /// Make everything stored durable.
    pub fn make_durable(&mut self) {
        self.durable_count = self.txns.len();
        self.durable_messages = self.messages.len();
    }
}

/// An in-memory sink for tests: every commit is durable at once unless `hold_acks` is set.
#[derive(Clone, Debug, Default)]
pub struct MemorySink {
    store: Arc<Mutex<MemoryStore>>,
    open: Option<StoredTxn>,
}

impl MemorySink {
    /// A sink over `store`; what the store holds beyond its durable part is dropped first.
    pub fn new(store: Arc<Mutex<MemoryStore>>) -> Self {
        store.lock().unwrap_or_else(PoisonError::into_inner).crash();
        MemorySink { store, open: None }
    }

    pub fn store(&self) -> Arc<Mutex<MemoryStore>> {
        Arc::clone(&self.store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryStore> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn holds(&self, txn: &TxnMeta) -> bool {
        self.lock()
            .txns
            .last()
            .is_some_and(|t| t.meta.end_lsn >= txn.end_lsn)
    }
}

impl Sink for MemorySink {
    async fn write(&mut self, txn: &TxnMeta, changes: Vec<Change>) -> Result<(), SinkError> {
        if self.holds(txn) {
            return Ok(());
        }
        let open = self.open.get_or_insert_with(|| StoredTxn {
            meta: txn.clone(),
            changes: Vec::new(),
            messages: Vec::new(),
        });
        open.changes.extend(changes);
        Ok(())
    }

    async fn commit(
        &mut self,
        txn: &TxnMeta,
        messages: Vec<CapturedMessage>,
    ) -> Result<(), SinkError> {
        let open = self.open.take();
        if self.holds(txn) {
            return Ok(());
        }
        let mut stored = open.unwrap_or_else(|| StoredTxn {
            meta: txn.clone(),
            changes: Vec::new(),
            messages: Vec::new(),
        });
        stored.meta = txn.clone();
        stored.messages = messages;
        let mut store = self.lock();
        store.txns.push(stored);
        if !store.hold_acks {
            store.make_durable();
        }
        Ok(())
    }

    async fn message(&mut self, message: CapturedMessage) -> Result<(), SinkError> {
        let mut store = self.lock();
        if store.messages.last().is_some_and(|m| m.lsn >= message.lsn) {
            return Ok(()); // already held: a replay
        }
        store.messages.push(message);
        if !store.hold_acks {
            store.make_durable();
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<Lsn, SinkError> {
        let mut store = self.lock();
        if !store.hold_acks {
            store.make_durable();
        }
        Ok(store.durable_lsn())
    }

    fn durable_lsn(&self) -> Lsn {
        self.lock().durable_lsn()
    }
}
