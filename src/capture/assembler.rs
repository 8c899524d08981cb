//! The assembler: a state machine over pgoutput messages that releases committed transactions.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::Lsn;
use crate::capture::buffer::{CommittedTxn, TxnBuffer, change_size};
use crate::capture::context::parse_context;
use crate::capture::relations::RelationCache;
use crate::capture::{CaptureError, CapturedMessage, Change, TxnMeta, rows};
use crate::config::CaptureConfig;
use crate::decode::{Message, PG_EPOCH_OFFSET_MICROS};

/// Prefix of the marker message `--drain` writes to find "now"; capture drops such messages.
pub const DRAIN_MARKER_PREFIX: &str = "walaudit.drain";

/// Assembler settings (from `[capture]` and `[source]`).
#[derive(Clone, Debug)]
pub struct AssemblerConfig {
    /// Budget for changes of open transactions; past it the largest one spills.
    pub max_memory: usize,
    pub spill_dir: Option<PathBuf>,
    pub chunk_changes: usize,
    /// Prefix of the audit-context messages.
    pub context_prefix: String,
}

impl AssemblerConfig {
    pub fn new(capture: &CaptureConfig, context_prefix: &str) -> Self {
        AssemblerConfig {
            max_memory: usize::try_from(capture.max_memory).unwrap_or(usize::MAX),
            spill_dir: capture.spill_dir.clone(),
            chunk_changes: capture.chunk_changes,
            context_prefix: context_prefix.to_owned(),
        }
    }
}

/// Counters of the assembler's work, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub txns_committed: u64,
    pub txns_aborted: u64,
    /// Committed transactions with nothing to write (not released).
    pub txns_empty: u64,
    pub subxacts_aborted: u64,
    pub changes: u64,
    /// Highest memory held by open transactions at any time.
    pub peak_memory: usize,
    pub spill_events: u64,
    pub spilled_bytes: u64,
    pub malformed_contexts: u64,
}

/// What a message released.
#[derive(Debug)]
pub enum Output {
    /// A transaction committed: hand its changes to the sink in order.
    Committed(Box<CommittedTxn>),
    /// A non-transactional logical message.
    Message(CapturedMessage),
}

/// Turns pgoutput messages into committed transactions in commit order.
#[derive(Debug)]
pub struct Assembler {
    cfg: AssemblerConfig,
    relations: RelationCache,
    /// The transaction between Begin and Commit (not streamed).
    current: Option<(TxnBuffer, Lsn)>,
    /// Streamed transactions by top-level xid.
    streams: HashMap<u32, TxnBuffer>,
    /// The xid of the open stream block, between Stream Start and Stream Stop.
    in_stream: Option<u32>,
    memory: usize,
    stats: CaptureStats,
}

impl Assembler {
    pub fn new(cfg: AssemblerConfig) -> Self {
        Assembler {
            cfg,
            relations: RelationCache::default(),
            current: None,
            streams: HashMap::new(),
            in_stream: None,
            memory: 0,
            stats: CaptureStats::default(),
        }
    }

    pub fn relations(&self) -> &RelationCache {
        &self.relations
    }

    pub fn relations_mut(&mut self) -> &mut RelationCache {
        &mut self.relations
    }

    /// True between Stream Start and Stream Stop: the decoder must expect xids in messages.
    pub fn in_stream(&self) -> bool {
        self.in_stream.is_some()
    }

    /// True while any transaction is open (its changes are not all released yet).
    pub fn has_open_txn(&self) -> bool {
        self.current.is_some() || !self.streams.is_empty()
    }

    /// True while a non-streamed transaction or a stream block is open: messages of it are
    /// still to come before anything else can be released.
    pub fn has_open_txn_outside_streams(&self) -> bool {
        self.current.is_some() || self.in_stream.is_some()
    }

    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }

    /// Memory held by open transactions now.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Handle one message; returns what it released, if anything.
    pub fn handle(&mut self, msg: Message) -> Result<Option<Output>, CaptureError> {
        match msg {
            Message::Begin(b) => {
                if self.current.is_some() || self.in_stream.is_some() {
                    return Err(CaptureError::protocol("Begin inside an open transaction"));
                }
                self.current = Some((TxnBuffer::new(b.xid, false), b.final_lsn));
            }
            Message::Commit(c) => {
                let (buffer, final_lsn) = self
                    .current
                    .take()
                    .ok_or_else(|| CaptureError::protocol("Commit without Begin"))?;
                if final_lsn != c.commit_lsn {
                    return Err(CaptureError::protocol("Commit LSN differs from Begin's"));
                }
                let meta = meta(buffer.xid, c.commit_lsn, c.end_lsn, c.commit_ts);
                return self.release(buffer, meta);
            }
            Message::Origin(o) => {
                if let Some((buffer, _)) = &mut self.current {
                    buffer.origin = Some(o.name);
                }
            }
            Message::Relation(rel) => {
                self.relations.update(&rel);
            }
            Message::Type(_) => {}
            Message::Insert(m) => {
                let table = self.relations.get(m.relation_oid)?;
                let change = rows::insert(table, m.new)?;
                self.push(m.xid, change)?;
            }
            Message::Update(m) => {
                let table = self.relations.get(m.relation_oid)?;
                let change = rows::update(table, m.old, m.new)?;
                self.push(m.xid, change)?;
            }
            Message::Delete(m) => {
                let table = self.relations.get(m.relation_oid)?;
                let change = rows::delete(table, m.old)?;
                self.push(m.xid, change)?;
            }
            Message::Truncate(m) => {
                for oid in &m.relation_oids {
                    let change = rows::truncate(self.relations.get(*oid)?, m.options);
                    self.push(m.xid, change)?;
                }
            }
            Message::Message(m) => {
                if !m.transactional {
                    return Ok(Some(Output::Message(CapturedMessage {
                        lsn: m.lsn,
                        commit_lsn: None,
                        xid: None,
                        transactional: false,
                        prefix: m.prefix,
                        content: m.content,
                    })));
                }
                if m.prefix == DRAIN_MARKER_PREFIX {
                    // Drain markers only tell the engine where to stop.
                } else if m.prefix == self.cfg.context_prefix {
                    let context = parse_context(&m.content);
                    if !context.well_formed {
                        self.stats.malformed_contexts += 1;
                        tracing::warn!(
                            lsn = %m.lsn,
                            "malformed audit context message: changes are kept with the raw \
                             text as _context and no _actor"
                        );
                    }
                    let (buffer, subxid) = self.open_txn(m.xid)?;
                    buffer.set_context(subxid, context);
                } else {
                    let (buffer, subxid) = self.open_txn(m.xid)?;
                    let message = CapturedMessage {
                        lsn: m.lsn,
                        commit_lsn: None,
                        xid: Some(buffer.xid),
                        transactional: true,
                        prefix: m.prefix,
                        content: m.content,
                    };
                    buffer.push_message(subxid, message);
                }
            }
            Message::StreamStart(s) => {
                if self.in_stream.is_some() || self.current.is_some() {
                    return Err(CaptureError::protocol("Stream Start inside an open block"));
                }
                self.in_stream = Some(s.xid);
                self.streams
                    .entry(s.xid)
                    .or_insert_with(|| TxnBuffer::new(s.xid, true));
            }
            Message::StreamStop => {
                if self.in_stream.take().is_none() {
                    return Err(CaptureError::protocol("Stream Stop without Stream Start"));
                }
            }
            Message::StreamCommit(c) => {
                let buffer = self.streams.remove(&c.xid).ok_or_else(|| {
                    CaptureError::protocol("Stream Commit of an unknown transaction")
                })?;
                let meta = meta(c.xid, c.commit_lsn, c.end_lsn, c.commit_ts);
                return self.release(buffer, meta);
            }
            Message::StreamAbort(a) => {
                if a.xid == a.subxid {
                    if let Some(buffer) = self.streams.remove(&a.xid) {
                        self.memory -= buffer.mem_bytes();
                        self.stats.txns_aborted += 1;
                    }
                } else if let Some(buffer) = self.streams.get_mut(&a.xid) {
                    self.memory -= buffer.abort_subxact(a.subxid);
                    self.stats.subxacts_aborted += 1;
                }
            }
        }
        Ok(None)
    }

    /// The open transaction a change belongs to, and the subtransaction that made it.
    fn open_txn(&mut self, xid: Option<u32>) -> Result<(&mut TxnBuffer, u32), CaptureError> {
        match (self.in_stream, xid) {
            (Some(top), Some(subxid)) => {
                let buffer = self
                    .streams
                    .get_mut(&top)
                    .ok_or_else(|| CaptureError::protocol("change in an unknown stream"))?;
                Ok((buffer, subxid))
            }
            (None, None) => match &mut self.current {
                Some((buffer, _)) => {
                    let xid = buffer.xid;
                    Ok((buffer, xid))
                }
                None => Err(CaptureError::protocol("change outside a transaction")),
            },
            _ => Err(CaptureError::protocol(
                "xid presence does not match the stream state",
            )),
        }
    }

    fn push(&mut self, xid: Option<u32>, change: Change) -> Result<(), CaptureError> {
        // Make room first, so memory stays within the budget (a single change larger than
        // the whole budget is spilled right after it arrives).
        let size = change_size(&change);
        while self.memory + size > self.cfg.max_memory && self.spill_largest()? {}
        let (buffer, subxid) = self.open_txn(xid)?;
        self.memory += buffer.push(subxid, change);
        self.stats.peak_memory = self.stats.peak_memory.max(self.memory);
        if self.memory > self.cfg.max_memory {
            self.spill_largest()?;
        }
        Ok(())
    }

    /// Spill the open transaction holding the most memory; false if none holds any.
    fn spill_largest(&mut self) -> Result<bool, CaptureError> {
        let dir = self.cfg.spill_dir.as_deref();
        let largest = self
            .current
            .as_mut()
            .map(|(b, _)| b)
            .into_iter()
            .chain(self.streams.values_mut())
            .max_by_key(|b| b.mem_bytes())
            .filter(|b| b.mem_bytes() > 0);
        let Some(buffer) = largest else {
            return Ok(false);
        };
        let (freed, written) = buffer.spill(dir)?;
        tracing::debug!(
            xid = buffer.xid,
            bytes = written,
            "spilled open transaction to disk"
        );
        self.memory -= freed;
        self.stats.spill_events += 1;
        self.stats.spilled_bytes += written;
        Ok(true)
    }

    /// A committed transaction leaves, unless it holds nothing to write (no change of a
    /// published table and no message): servers before 15 send such empty transactions.
    fn release(
        &mut self,
        buffer: TxnBuffer,
        meta: TxnMeta,
    ) -> Result<Option<Output>, CaptureError> {
        self.memory -= buffer.mem_bytes();
        let committed = buffer.commit(meta, self.cfg.chunk_changes)?;
        if committed.meta.change_count == 0 && committed.messages.is_empty() {
            self.stats.txns_empty += 1;
            return Ok(None);
        }
        self.stats.txns_committed += 1;
        self.stats.changes += committed.meta.change_count;
        Ok(Some(Output::Committed(Box::new(committed))))
    }
}

fn meta(xid: u32, commit_lsn: Lsn, end_lsn: Lsn, commit_ts: i64) -> TxnMeta {
    TxnMeta {
        xid,
        commit_lsn,
        end_lsn,
        commit_ts_micros: commit_ts.saturating_add(PG_EPOCH_OFFSET_MICROS),
        origin: None,
        context: None,
        change_count: 0,
        streamed: false,
    }
}
