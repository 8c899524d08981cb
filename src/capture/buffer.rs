//! The changes of one open transaction: in memory up to the assembler's budget, then on disk.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::capture::spill::{SpillReader, SpillWriter};
use crate::capture::{AuditContext, CaptureError, CapturedMessage, Change, TxnMeta};

/// What one buffered change costs in memory: the change itself, its cells and their bytes.
pub fn change_size(change: &Change) -> usize {
    let cells = |row: &[crate::decode::Cell]| {
        row.iter()
            .map(|c| match c {
                crate::decode::Cell::Text(v) | crate::decode::Cell::Binary(v) => v.len(),
                _ => 0,
            })
            .sum::<usize>()
            + std::mem::size_of_val(row)
    };
    std::mem::size_of::<(u32, Change)>()
        + cells(&change.row)
        + change.before.as_ref().map_or(0, |b| cells(&b.row))
        + 2 * (change.unavailable.len() + change.changed.as_ref().map_or(0, Vec::len))
}

/// One open transaction. Changes are tagged with the (sub)transaction that made them so a
/// rolled-back subtransaction of a streamed transaction can be dropped.
#[derive(Debug)]
pub struct TxnBuffer {
    pub xid: u32,
    pub streamed: bool,
    pub origin: Option<String>,
    memory: Vec<(u32, Change)>,
    mem_bytes: usize,
    spill: Option<SpillWriter>,
    aborted: HashSet<u32>,
    counts: HashMap<u32, u64>,
    contexts: Vec<(u32, AuditContext)>,
    messages: Vec<(u32, CapturedMessage)>,
}

impl TxnBuffer {
    pub fn new(xid: u32, streamed: bool) -> TxnBuffer {
        TxnBuffer {
            xid,
            streamed,
            origin: None,
            memory: Vec::new(),
            mem_bytes: 0,
            spill: None,
            aborted: HashSet::new(),
            counts: HashMap::new(),
            contexts: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Bytes of changes held in memory.
    pub fn mem_bytes(&self) -> usize {
        self.mem_bytes
    }

    /// Add a change; returns the memory it takes.
    pub fn push(&mut self, subxid: u32, change: Change) -> usize {
        let size = change_size(&change);
        *self.counts.entry(subxid).or_default() += 1;
        self.memory.push((subxid, change));
        self.mem_bytes += size;
        size
    }

    pub fn set_context(&mut self, subxid: u32, context: AuditContext) {
        self.contexts.push((subxid, context));
    }

    pub fn push_message(&mut self, subxid: u32, message: CapturedMessage) {
        self.messages.push((subxid, message));
    }

    /// Write every in-memory change to the spill file; returns `(bytes freed, bytes written)`.
    pub fn spill(&mut self, dir: Option<&Path>) -> Result<(usize, u64), CaptureError> {
        let writer = match &mut self.spill {
            Some(writer) => writer,
            None => self
                .spill
                .insert(SpillWriter::create(dir).map_err(CaptureError::Spill)?),
        };
        let mut written = 0u64;
        for (subxid, change) in self.memory.drain(..) {
            written += writer
                .append(subxid, &change)
                .map_err(CaptureError::Spill)? as u64;
        }
        Ok((std::mem::take(&mut self.mem_bytes), written))
    }

    /// Roll back subtransaction `subxid`; returns the memory freed.
    pub fn abort_subxact(&mut self, subxid: u32) -> usize {
        self.aborted.insert(subxid);
        self.counts.remove(&subxid);
        self.contexts.retain(|(x, _)| *x != subxid);
        self.messages.retain(|(x, _)| *x != subxid);
        let before = self.mem_bytes;
        let mut freed = 0;
        self.memory.retain(|(x, c)| {
            let keep = *x != subxid;
            if !keep {
                freed += change_size(c);
            }
            keep
        });
        self.mem_bytes = before - freed;
        freed
    }

    /// The transaction committed: hand out its changes with `seq` assigned.
    pub fn commit(self, mut meta: TxnMeta, chunk: usize) -> Result<CommittedTxn, CaptureError> {
        meta.change_count = self.counts.values().sum();
        meta.origin = self.origin;
        meta.streamed = self.streamed;
        meta.context = self.contexts.into_iter().last().map(|(_, c)| c);
        let commit_lsn = meta.commit_lsn;
        let spill = self.spill.map(SpillWriter::into_reader).transpose();
        Ok(CommittedTxn {
            meta,
            messages: self
                .messages
                .into_iter()
                .map(|(_, m)| CapturedMessage {
                    commit_lsn: Some(commit_lsn),
                    ..m
                })
                .collect(),
            changes: ChangeChunks {
                spill: spill.map_err(CaptureError::Spill)?,
                memory: self.memory.into_iter(),
                aborted: self.aborted,
                next_seq: 0,
                chunk: chunk.max(1),
            },
        })
    }
}

/// A committed transaction on its way to the sink.
#[derive(Debug)]
pub struct CommittedTxn {
    pub meta: TxnMeta,
    /// Logical messages of the transaction other than its audit context.
    pub messages: Vec<CapturedMessage>,
    pub changes: ChangeChunks,
}

/// The changes of a committed transaction in `seq` order, a bounded chunk at a time.
#[derive(Debug)]
pub struct ChangeChunks {
    spill: Option<SpillReader>,
    memory: std::vec::IntoIter<(u32, Change)>,
    aborted: HashSet<u32>,
    next_seq: u64,
    chunk: usize,
}

impl ChangeChunks {
    /// The next chunk of at most `chunk` changes; `None` when all were handed out.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<Change>>, CaptureError> {
        let mut out = Vec::with_capacity(self.chunk.min(self.memory.len() + 1024));
        while out.len() < self.chunk {
            let next = match &mut self.spill {
                Some(reader) => match reader.next_record().map_err(CaptureError::Spill)? {
                    Some(record) => Some(record),
                    None => {
                        self.spill = None;
                        continue;
                    }
                },
                None => self.memory.next(),
            };
            let Some((subxid, mut change)) = next else {
                break;
            };
            if self.aborted.contains(&subxid) {
                continue;
            }
            change.seq = self.next_seq;
            self.next_seq += 1;
            out.push(change);
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}
