//! `LakeSink`: the [`Sink`] that writes committed transactions into the Delta lake.
//!
//! ```text
//!  write(txn, changes) ──► per table: skip what the table holds ─► ChangeBatchBuilder
//!  commit(txn, msgs)   ──► _walaudit/transactions row, messages rows; durable bookkeeping
//!  flush policy: rows | bytes | age (tick) per table, memory cap across tables (largest first)
//!        └──► conform to the Delta schema ──► LakeTable::append (one commit + txn marker)
//!  durable_lsn ◄── DurableTracker (min over tables with pending rows)
//! ```
//!
//! Commits run inline on the sink task: while storage is slow, `write`/`commit` wait for it and
//! the bounded queue in front of the sink backpressures capture. Compaction (`optimize`) runs on
//! the same task between flushes, so it never races the appender.
//!
//! # Invariants
//! * Exactly once: a change `(lsn, seq)` the table's marker holds is skipped (replay after a
//!   crash); every commit moves the marker with the rows, atomically.
//! * `durable_lsn` only covers transactions whose rows are committed in every table they touched
//!   (and in `_walaudit/transactions` and `_walaudit/messages`); it never moves backward.
//! * Memory: pending rows are bounded by `max_memory` (plus one chunk) across all tables.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;

use super::catalog::{MESSAGES_TABLE, TRANSACTIONS_TABLE};
use super::durable::DurableTracker;
use super::engine::{MessageRows, TxnRows};
use super::evolve::{Diversion, conform, lake_shape};
pub use super::options::{LakeSinkOptions, LakeStats};
use super::table::{LakeTable, Marker};
pub use super::table::{change_table_spec, engine_table_spec};
use super::widen::{Widening, widen_for};
use super::{ChangeBatchBuilder, LakeError, messages_schema, transactions_schema};
use crate::Lsn;
use crate::capture::{CapturedMessage, Change, TableInfo, TxnMeta};
use crate::sink::{Sink, SinkError};

/// Prefix of the `_walaudit/messages` rows walaudit writes about schema changes.
pub const SCHEMA_MESSAGE_PREFIX: &str = "walaudit.schema";

/// A table the sink writes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Change(String, String),
    Transactions,
    Messages,
}

struct ChangeTable {
    lake: LakeTable,
    /// The source shape the builder was made for.
    source: Arc<TableInfo>,
    builder: ChangeBatchBuilder,
    /// Commit LSN of the last complete transaction among the pending rows.
    complete: Option<Lsn>,
    /// Commit LSN and last seq of the open transaction's pending rows.
    open: Option<(Lsn, u64)>,
    since: Option<Instant>,
}

struct EngineTable<R> {
    lake: LakeTable,
    rows: R,
    complete: Option<Lsn>,
    since: Option<Instant>,
}

/// The row builders of the engine's own tables.
trait EngineRows {
    fn is_empty(&self) -> bool;
    fn finish(&mut self) -> RecordBatch;
}

impl EngineRows for TxnRows {
    fn is_empty(&self) -> bool {
        TxnRows::is_empty(self)
    }
    fn finish(&mut self) -> RecordBatch {
        TxnRows::finish(self)
    }
}

impl EngineRows for MessageRows {
    fn is_empty(&self) -> bool {
        MessageRows::is_empty(self)
    }
    fn finish(&mut self) -> RecordBatch {
        MessageRows::finish(self)
    }
}

impl<R: EngineRows> EngineTable<R> {
    /// Commit the pending rows with the table's marker; false when there were none.
    async fn flush(&mut self) -> Result<bool, LakeError> {
        if self.rows.is_empty() {
            return Ok(false);
        }
        let marker = Marker {
            complete: self.complete,
            partial: None,
        };
        self.lake.append(vec![self.rows.finish()], marker).await?;
        self.complete = None;
        self.since = None;
        Ok(true)
    }
}

/// The transaction being received (between its first `write` and its `commit`).
struct OpenTxn {
    commit_lsn: Lsn,
    /// Every source table the transaction touched (also those skipped on replay).
    tables: BTreeSet<String>,
    /// Change tables it added rows to.
    keys: Vec<Key>,
}

/// Writes committed transactions to the Delta lake (see the module docs).
pub struct LakeSink {
    opts: LakeSinkOptions,
    app_id: String,
    changes: HashMap<Key, ChangeTable>,
    txns: EngineTable<TxnRows>,
    messages: EngineTable<MessageRows>,
    tracker: DurableTracker<Key>,
    open: Option<OpenTxn>,
    /// Schema-change messages of the open transaction, written with its own messages.
    schema_messages: Vec<CapturedMessage>,
    stats: LakeStats,
}

impl LakeSink {
    /// Open (or create) the engine tables; change tables are opened when first written.
    pub async fn open(opts: LakeSinkOptions) -> Result<LakeSink, LakeError> {
        let app_id = opts.app_id();
        let spec = |name: &str, schema| {
            engine_table_spec(&opts.lake, name, schema, &app_id, opts.commit_attempts)
        };
        let txns = LakeTable::open(spec(TRANSACTIONS_TABLE, transactions_schema())).await?;
        let messages = LakeTable::open(spec(MESSAGES_TABLE, messages_schema())).await?;
        tracing::info!(
            lake = %opts.lake.display(), app_id = %app_id,
            transactions_marker = ?txns.marker().complete, "lake opened"
        );
        Ok(LakeSink {
            app_id,
            changes: HashMap::new(),
            txns: EngineTable {
                lake: txns,
                rows: TxnRows::default(),
                complete: None,
                since: None,
            },
            messages: EngineTable {
                lake: messages,
                rows: MessageRows::default(),
                complete: None,
                since: None,
            },
            tracker: DurableTracker::new(Lsn::ZERO),
            open: None,
            schema_messages: Vec::new(),
            stats: LakeStats::default(),
            opts,
        })
    }

    pub fn stats(&self) -> &LakeStats {
        &self.stats
    }

    async fn table_for(&mut self, info: &Arc<TableInfo>) -> Result<Key, LakeError> {
        let key = Key::Change(info.schema.clone(), info.name.clone());
        if !self.changes.contains_key(&key) {
            let spec = change_table_spec(
                &self.opts.lake,
                info,
                &self.app_id,
                self.opts.commit_attempts,
            )?;
            let mut lake = LakeTable::open(spec).await?;
            let (builder, diversions, widened) =
                builder_for(&mut lake, info, self.opts.flush_rows).await?;
            self.record_diversions(info, diversions, widened);
            let table = ChangeTable {
                lake,
                source: Arc::clone(info),
                builder,
                complete: None,
                open: None,
                since: None,
            };
            self.changes.insert(key.clone(), table);
        }
        Ok(key)
    }

    /// Log, count and queue a `walaudit.schema` message for columns diverted to text and for
    /// columns widened in place.
    fn record_diversions(
        &mut self,
        info: &TableInfo,
        diversions: Vec<Diversion>,
        widened: Vec<Widening>,
    ) {
        let Some(open) = &self.open else { return };
        for w in widened {
            let content = serde_json::json!({
                "event": "type_widened",
                "table": info.qualified_name(),
                "column": w.column,
                "delta_type": w.from.to_string(),
                "new_type": w.to.to_string(),
            });
            self.schema_messages.push(CapturedMessage {
                lsn: open.commit_lsn,
                commit_lsn: Some(open.commit_lsn),
                xid: None,
                transactional: true,
                prefix: SCHEMA_MESSAGE_PREFIX.into(),
                content: content.to_string().into(),
            });
        }
        for d in diversions {
            self.stats.type_diversions += 1;
            tracing::warn!(
                table = %info.qualified_name(), column = %d.column, delta_type = %d.delta_type,
                new_type = %d.new_type, written_as = %d.written_as,
                "column type changed incompatibly: continuing it as text in a new column"
            );
            let content = serde_json::json!({
                "event": "type_change",
                "table": info.qualified_name(),
                "column": d.column,
                "delta_type": d.delta_type,
                "new_type": d.new_type,
                "written_as": d.written_as,
            });
            self.schema_messages.push(CapturedMessage {
                lsn: open.commit_lsn,
                commit_lsn: Some(open.commit_lsn),
                xid: None,
                transactional: true,
                prefix: SCHEMA_MESSAGE_PREFIX.into(),
                content: content.to_string().into(),
            });
        }
    }

    /// The source shape of a table changed: flush what was built for the old one, then build
    /// for the new one against the (possibly merged) Delta schema.
    async fn reshape(&mut self, key: &Key, info: &Arc<TableInfo>) -> Result<(), LakeError> {
        self.flush_table(key).await?;
        let table = self.changes.get_mut(key).expect("reshaped table is open");
        let (builder, diversions, widened) =
            builder_for(&mut table.lake, info, self.opts.flush_rows).await?;
        table.builder = builder;
        table.source = Arc::clone(info);
        tracing::info!(table = %info.qualified_name(), "source table shape changed");
        self.record_diversions(info, diversions, widened);
        Ok(())
    }

    fn pending_bytes(&self) -> usize {
        self.changes
            .values()
            .map(|t| t.builder.approx_bytes())
            .sum::<usize>()
            + self.txns.rows.approx_bytes()
            + self.messages.rows.approx_bytes()
    }

    fn table_bytes(&self, key: &Key) -> usize {
        match key {
            Key::Change(..) => self
                .changes
                .get(key)
                .map_or(0, |t| t.builder.approx_bytes()),
            Key::Transactions => self.txns.rows.approx_bytes(),
            Key::Messages => self.messages.rows.approx_bytes(),
        }
    }

    fn table_rows(&self, key: &Key) -> usize {
        match key {
            Key::Change(..) => self.changes.get(key).map_or(0, |t| t.builder.len()),
            Key::Transactions => self.txns.rows.len(),
            Key::Messages => self.messages.rows.len(),
        }
    }

    /// Flush `keys` that reached `factor` × a size threshold, then the largest tables while over
    /// the memory cap (this is where slow storage makes capture wait). Between transactions the
    /// factor is 1; inside one it is 2, so a table is written in parts only when one transaction
    /// alone is large (its marker then is partial, see `table`).
    async fn enforce_limits(&mut self, keys: &[Key], factor: usize) -> Result<(), LakeError> {
        for key in keys {
            if self.table_rows(key) >= self.opts.flush_rows.saturating_mul(factor)
                || self.table_bytes(key) >= self.opts.flush_bytes.saturating_mul(factor)
            {
                self.flush_table(key).await?;
            }
        }
        while self.pending_bytes() > self.opts.max_memory {
            let largest = self
                .tracker
                .pending_tables()
                .max_by_key(|k| self.table_bytes(k))
                .cloned();
            match largest {
                Some(key) if self.table_bytes(&key) > 0 => self.flush_table(&key).await?,
                _ => break,
            }
        }
        Ok(())
    }

    /// Commit the pending rows of one table (one Delta commit with its marker).
    async fn flush_table(&mut self, key: &Key) -> Result<(), LakeError> {
        let partial_open = match key {
            Key::Change(..) => {
                let Some(t) = self.changes.get_mut(key) else {
                    return Ok(());
                };
                if t.builder.is_empty() {
                    return Ok(());
                }
                let stored = t.lake.marker();
                let marker = Marker {
                    complete: t.complete.or(stored.complete),
                    partial: t.open,
                };
                let name = t.lake.name().to_owned();
                let batch = t.builder.finish();
                let rows = batch.num_rows();
                let schema = t.lake.arrow_schema()?;
                let batch = conform(&batch, &schema).map_err(|source| LakeError::Arrow {
                    table: name.clone(),
                    source,
                })?;
                let started = Instant::now();
                t.lake.append(vec![batch], marker).await?;
                let elapsed = started.elapsed();
                let metrics = &self.opts.metrics;
                metrics.lake_commit_seconds.observe(elapsed.as_secs_f64());
                metrics
                    .lake_rows
                    .with_label_values(&[&name])
                    .inc_by(rows as u64);
                tracing::debug!(table = %name, rows, ms = elapsed.as_millis() as u64, "flushed");
                let partial = t.open.is_some();
                t.complete = None;
                t.open = None;
                t.since = None;
                partial
            }
            Key::Transactions => {
                if !self.txns.flush().await? {
                    return Ok(());
                }
                false
            }
            Key::Messages => {
                if !self.messages.flush().await? {
                    return Ok(());
                }
                false
            }
        };
        self.stats.commits += 1;
        self.tracker.flushed(key, partial_open);
        self.maybe_optimize(key).await;
        Ok(())
    }

    /// Compact small files every `optimize_every_commits` commits of a change table. Runs on
    /// this task, between appends; a failure is logged and retried at the next interval.
    async fn maybe_optimize(&mut self, key: &Key) {
        let every = self.opts.optimize_every_commits;
        let Some(t) = self.changes.get_mut(key) else {
            return;
        };
        if every == 0 || t.lake.commits() == 0 || t.lake.commits() % every != 0 {
            return;
        }
        match super::maintenance::optimize(t.lake.delta().clone()).await {
            Ok((table, metrics)) => {
                tracing::info!(
                    table = %t.lake.name(), files_added = metrics.num_files_added,
                    files_removed = metrics.num_files_removed, "compacted small files"
                );
                t.lake.set_delta(table);
                self.stats.optimizations += 1;
            }
            Err(e) => {
                tracing::warn!(table = %t.lake.name(), error = %crate::report::Chain(&e), "compaction failed")
            }
        }
    }

    async fn flush_all(&mut self) -> Result<(), LakeError> {
        let mut keys: Vec<Key> = self.tracker.pending_tables().cloned().collect();
        keys.sort();
        for key in keys {
            self.flush_table(&key).await?;
        }
        Ok(())
    }

    async fn write_changes(
        &mut self,
        txn: &TxnMeta,
        changes: Vec<Change>,
    ) -> Result<(), LakeError> {
        if self
            .open
            .as_ref()
            .is_none_or(|o| o.commit_lsn != txn.commit_lsn)
        {
            self.open = Some(OpenTxn {
                commit_lsn: txn.commit_lsn,
                tables: BTreeSet::new(),
                keys: Vec::new(),
            });
        }
        let mut touched: Vec<Key> = Vec::new();
        for change in &changes {
            let key = self.table_for(&change.table).await?;
            if let Some(open) = self.open.as_mut() {
                open.tables.insert(change.table.qualified_name());
            }
            let table = self.changes.get_mut(&key).expect("opened above");
            if table.lake.marker().holds(txn.commit_lsn, change.seq) {
                self.stats.skipped_changes += 1;
                continue;
            }
            if !Arc::ptr_eq(&table.source, &change.table) {
                if *table.source == *change.table {
                    table.source = Arc::clone(&change.table);
                } else {
                    self.reshape(&key, &change.table).await?;
                }
            }
            let table = self.changes.get_mut(&key).expect("opened above");
            table.builder.append(txn, change);
            table.open = Some((txn.commit_lsn, change.seq));
            table.since.get_or_insert_with(Instant::now);
            self.tracker.pending(&key);
            self.stats.changes += 1;
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        if let Some(open) = self.open.as_mut() {
            for key in &touched {
                if !open.keys.contains(key) {
                    open.keys.push(key.clone());
                }
            }
        }
        self.enforce_limits(&touched, 2).await
    }

    async fn commit_txn(
        &mut self,
        txn: &TxnMeta,
        mut messages: Vec<CapturedMessage>,
    ) -> Result<(), LakeError> {
        let open = self.open.take().filter(|o| o.commit_lsn == txn.commit_lsn);
        let (tables, mut keys): (Vec<String>, Vec<Key>) = open
            .map(|o| (o.tables.into_iter().collect(), o.keys))
            .unwrap_or_default();
        for table in self.changes.values_mut() {
            // Rows of the transaction still pending, or all of them already written by a
            // partial flush: either way the table's next commit may claim it complete (the next
            // partial marker would otherwise replace the one covering it).
            let flushed_in_part = table
                .lake
                .marker()
                .partial
                .is_some_and(|(lsn, _)| lsn == txn.commit_lsn);
            if table.open.is_some_and(|(lsn, _)| lsn == txn.commit_lsn) || flushed_in_part {
                table.complete = Some(txn.commit_lsn);
                table.open = None;
            }
        }
        if !self.txns.lake.marker().holds_txn(txn.commit_lsn) {
            self.txns.rows.append(txn, &tables);
            self.txns.complete = Some(txn.commit_lsn);
            self.txns.since.get_or_insert_with(Instant::now);
            self.tracker.pending(&Key::Transactions);
            self.stats.transactions += 1;
        }
        messages.append(&mut self.schema_messages);
        if !messages.is_empty() && !self.messages.lake.marker().holds_txn(txn.commit_lsn) {
            for m in &messages {
                self.messages.rows.append(m);
            }
            self.messages.complete = Some(txn.commit_lsn);
            self.messages.since.get_or_insert_with(Instant::now);
            self.tracker.pending(&Key::Messages);
        }
        self.tracker.committed(txn.end_lsn);
        keys.extend([Key::Transactions, Key::Messages]);
        self.enforce_limits(&keys, 1).await
    }

    async fn tick_flush(&mut self) -> Result<(), LakeError> {
        // Between transactions only: an age flush mid-transaction would write it in parts.
        if self.open.is_some() {
            return Ok(());
        }
        let due =
            |since: Option<Instant>| since.is_some_and(|s| s.elapsed() >= self.opts.flush_interval);
        let mut keys: Vec<Key> = self
            .changes
            .iter()
            .filter(|(_, t)| due(t.since))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        if due(self.txns.since) {
            keys.push(Key::Transactions);
        }
        if due(self.messages.since) {
            keys.push(Key::Messages);
        }
        for key in keys {
            self.flush_table(&key).await?;
        }
        Ok(())
    }
}

/// A batch builder for `info`'s current shape fitted to the table's Delta schema, after
/// widening the columns whose new type widens theirs (a rewrite of the table, see
/// [`super::widen`]).
pub async fn builder_for(
    lake: &mut LakeTable,
    info: &Arc<TableInfo>,
    flush_rows: usize,
) -> Result<(ChangeBatchBuilder, Vec<Diversion>, Vec<Widening>), LakeError> {
    let widened = widen_for(lake, info).await?;
    let delta = lake.arrow_schema()?;
    let (shape, diversions) = lake_shape(info, &delta);
    let builder = ChangeBatchBuilder::new(shape, flush_rows.min(8192))?;
    Ok((builder, diversions, widened))
}

impl Sink for LakeSink {
    async fn write(&mut self, txn: &TxnMeta, changes: Vec<Change>) -> Result<(), SinkError> {
        Ok(self.write_changes(txn, changes).await?)
    }

    async fn commit(
        &mut self,
        txn: &TxnMeta,
        messages: Vec<CapturedMessage>,
    ) -> Result<(), SinkError> {
        Ok(self.commit_txn(txn, messages).await?)
    }

    async fn message(&mut self, message: CapturedMessage) -> Result<(), SinkError> {
        // Non-transactional: ordered with transactions by its own LSN.
        if !self.messages.lake.marker().holds_txn(message.lsn) {
            self.messages.rows.append(&message);
            self.messages.complete = Some(message.lsn);
            self.messages.since.get_or_insert_with(Instant::now);
            self.tracker.pending(&Key::Messages);
        }
        Ok(self.enforce_limits(&[Key::Messages], 1).await?)
    }

    async fn flush(&mut self) -> Result<Lsn, SinkError> {
        self.flush_all().await?;
        Ok(self.tracker.durable())
    }

    fn durable_lsn(&self) -> Lsn {
        self.tracker.durable()
    }

    async fn tick(&mut self) -> Result<(), SinkError> {
        Ok(self.tick_flush().await?)
    }
}
