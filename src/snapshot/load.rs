//! The coordinator of historical loads: decides what to load, plans or resumes, exports the
//! snapshot, runs the workers, reports progress and writes the audit records.
//!
//! ```text
//!  pass(targets) ─► publication tables + _walaudit/snapshots ─► work (new loads, resumed loads)
//!     ─► plan (new) | stored plan (resumed) ─► skip chunks the change table holds
//!     ─► export ─► workers ─► events ─► progress, metrics, chunk records, audit records
//!  watch(poll) ─► pass(Unloaded) at start, then again every poll (tables added later)
//! ```

use crate::report::Chain;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::SnapshotError;
use super::catalog::{SourceTable, describe};
use super::plan::{Chunk, plan};
use super::progress::{Display, Progress};
use super::record::{ChunkRecord, LoadKind, LoadLog, LoadRecord, now_micros};
use super::worker::{self, Context, Event, Job};
use crate::config::CopyFormat;
use crate::lake::catalog::{chunk_app_id, marker_app_id};
use crate::lake::sink::{change_table_spec, engine_table_spec};
use crate::lake::storage::LakeLocation;
use crate::lake::table::LakeTable;
use crate::metrics::SharedMetrics;
use crate::source::{ConnParams, setup};

/// Chunk records are committed to the log at most this often (they are informational; the
/// change table decides what is done).
const CHUNK_LOG_EVERY: Duration = Duration::from_secs(2);

/// How loads run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub source: ConnParams,
    pub publication: String,
    /// The engine's slot: it must exist before a load starts (see the module docs of
    /// [`super`]); loads are recorded under it.
    pub slot: String,
    pub lake: LakeLocation,
    pub workers: usize,
    pub chunk_rows: u64,
    pub copy_format: CopyFormat,
    pub commit_attempts: u32,
    pub metrics: SharedMetrics,
    pub display: Display,
}

/// What a pass loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// What `run` loads: its unfinished loads (not `requested` ones); and every published table when the engine has
    /// neither loaded nor streamed anything for its slot yet (the initial load, like
    /// Debezium's "no offsets yet"); once loads are recorded, tables without one (tables added
    /// to the publication later). A slot that streamed without loads (`mode = never` before)
    /// gets no load: `walaudit snapshot` loads its tables on request.
    Auto,
    /// Every published table without a finished load, and every unfinished load.
    Unloaded,
    /// These tables (`schema.table`), loaded again, or their unfinished load resumed.
    Tables(Vec<String>),
}

/// The audit records of the tables a pass worked on, as they ended.
#[derive(Clone, Debug, Default)]
pub struct LoadSummary {
    pub records: Vec<LoadRecord>,
    /// The pass was cancelled before it finished.
    pub interrupted: bool,
}

impl LoadSummary {
    pub fn failed(&self) -> bool {
        self.records.iter().any(|r| r.status == "failed")
    }
}

/// One table's load in a pass.
struct Work {
    record: LoadRecord,
    table: SourceTable,
    chunks: Vec<Chunk>,
    remaining: usize,
    expected_rows: u64,
    counted: Option<u64>,
    wait_count: bool,
}

/// Runs load passes against one source and lake.
pub struct Loader {
    opts: LoadOptions,
    sql: Client,
    log: LoadLog,
}

impl Loader {
    pub async fn open(opts: LoadOptions) -> Result<Loader, SnapshotError> {
        let sql = opts.source.connect_sql().await?;
        let log = LoadLog::open(&opts.lake, opts.commit_attempts).await?;
        Ok(Loader { opts, sql, log })
    }

    /// Loads `Targets::Auto` now and again every `poll` (tables added to the publication)
    /// until cancelled; with `once`, returns after the first pass. A failed pass is logged and
    /// retried at the next poll (the stream goes on meanwhile).
    pub async fn watch(
        mut self,
        poll: Duration,
        once: bool,
        cancel: CancellationToken,
    ) -> Result<LoadSummary, SnapshotError> {
        loop {
            let result = self.pass(&Targets::Auto, &cancel).await;
            match result {
                Ok(summary) if once || summary.interrupted => return Ok(summary),
                Err(e) if once => return Err(e),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "historical load failed; retrying at the next poll");
                    self.opts
                        .metrics
                        .error("snapshot", crate::recovery::Recovery::Retry);
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(LoadSummary { interrupted: true, ..Default::default() }),
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Decides and records (plans, `running` records) the loads `run` owes, without copying:
    /// call it before the stream starts, so that whether this is a fresh engine is decided
    /// before the stream commits anything, and a crash after it resumes the recorded loads.
    pub async fn plan_pending(&mut self) -> Result<usize, SnapshotError> {
        Ok(self.collect_work(&Targets::Auto).await?.len())
    }

    /// One pass: resume unfinished loads and start new ones for `targets`.
    pub async fn pass(
        &mut self,
        targets: &Targets,
        cancel: &CancellationToken,
    ) -> Result<LoadSummary, SnapshotError> {
        let mut works = self.collect_work(targets).await?;
        if works.is_empty() {
            return Ok(LoadSummary::default());
        }
        let result = self.execute(&mut works, cancel).await;
        let metrics = &self.opts.metrics;
        metrics.snapshot_tables_running.set(0);
        for w in &works {
            metrics
                .snapshot_rows_expected
                .with_label_values(&[&w.record.table])
                .set(0);
        }
        let interrupted = match result {
            Ok(interrupted) => interrupted,
            Err(e) => {
                let now = now_micros();
                let failed: Vec<LoadRecord> = works
                    .iter_mut()
                    .filter(|w| !w.record.finished())
                    .map(|w| {
                        w.record.status = "failed".into();
                        w.record.error = Some(e.to_string());
                        w.record.recorded_at = now;
                        w.record.clone()
                    })
                    .collect();
                if let Err(log_err) = self.log.record_loads(&failed).await {
                    tracing::warn!(error = %Chain(&log_err), "could not record the failed load");
                }
                return Err(e);
            }
        };
        Ok(LoadSummary {
            records: works.into_iter().map(|w| w.record).collect(),
            interrupted,
        })
    }

    /// Decides the tables of this pass and prepares their plans.
    async fn collect_work(&mut self, targets: &Targets) -> Result<Vec<Work>, SnapshotError> {
        let published: Vec<String> = setup::publication_tables(&self.sql, &self.opts.publication)
            .await?
            .into_iter()
            .map(|t| format!("{}.{}", t.schema, t.table))
            .collect();
        let records: Vec<LoadRecord> = self
            .log
            .loads()
            .await?
            .into_iter()
            .filter(|r| r.slot == self.opts.slot)
            .collect();
        let wanted = |table: &str| match targets {
            Targets::Auto | Targets::Unloaded => true,
            Targets::Tables(t) => t.iter().any(|x| x == table),
        };
        // Auto: new loads only on a fresh engine or once the engine manages loads.
        let new_loads = match targets {
            Targets::Auto if records.is_empty() => {
                let streamed = stream_started(&self.opts).await?;
                if streamed {
                    tracing::info!(slot = %self.opts.slot,
                        "the slot has streamed into the lake without a historical load: existing \
                         rows are not loaded (run `walaudit snapshot` to load them)");
                }
                !streamed
            }
            _ => true,
        };
        if let Targets::Tables(tables) = targets
            && let Some(missing) = tables.iter().find(|t| !published.contains(t))
        {
            return Err(SnapshotError::NotPublished {
                table: missing.clone(),
                publication: self.opts.publication.clone(),
            });
        }
        let mut chosen: Vec<(LoadRecord, bool)> = Vec::new();
        let mut covered: HashSet<String> = HashSet::new();
        // `run` resumes its own loads (initial, added); a requested load belongs to the
        // `walaudit snapshot` that asked for it (which may be running right now) and is resumed
        // by running that command again.
        let resumable = |r: &LoadRecord| match targets {
            Targets::Auto => r.kind != LoadKind::Requested.as_str(),
            _ => true,
        };
        for r in records
            .iter()
            .filter(|r| !r.finished() && wanted(&r.table) && resumable(r))
        {
            if !published.contains(&r.table) {
                tracing::warn!(table = %r.table, load = %r.load_id,
                    "unfinished load of a table no longer published: not resumed");
                continue;
            }
            if covered.insert(r.table.clone()) {
                chosen.push((r.clone(), true));
            }
        }
        let load_id = format!("{}-{}", now_micros(), std::process::id());
        let kind = match targets {
            Targets::Tables(_) => LoadKind::Requested,
            Targets::Auto | Targets::Unloaded if records.is_empty() => LoadKind::Initial,
            Targets::Auto | Targets::Unloaded => LoadKind::Added,
        };
        for table in published
            .iter()
            .filter(|t| wanted(t) && !covered.contains(*t))
        {
            let skip = match targets {
                Targets::Auto => !new_loads || records.iter().any(|r| &r.table == table),
                Targets::Unloaded => records.iter().any(|r| &r.table == table && r.finished()),
                Targets::Tables(_) => false,
            };
            if skip {
                continue;
            }
            chosen.push((
                LoadRecord {
                    load_id: load_id.clone(),
                    slot: self.opts.slot.clone(),
                    table: table.clone(),
                    kind: kind.as_str().into(),
                    status: "running".into(),
                    snapshot_lsn: None,
                    source_rows: None,
                    rows_written: 0,
                    chunks: 0,
                    chunks_skipped: 0,
                    started_at: now_micros(),
                    finished_at: None,
                    duration_ms: None,
                    error: None,
                    recorded_at: 0,
                },
                false,
            ));
        }

        let mut works = Vec::with_capacity(chosen.len());
        let mut planned: Vec<ChunkRecord> = Vec::new();
        for (mut record, resumed) in chosen {
            let (schema, name) = record
                .table
                .split_once('.')
                .unwrap_or(("public", &record.table));
            let table = describe(&self.sql, &self.opts.publication, schema, name).await?;
            let (chunks, expected_rows) = if resumed {
                let chunks = self
                    .log
                    .planned_chunks(&record.load_id, &record.table)
                    .await?;
                let expected = table.estimated_rows.unwrap_or(0);
                (chunks, expected)
            } else {
                plan(&self.sql, &table, self.opts.chunk_rows).await?
            };
            if !resumed {
                planned.extend(chunks.iter().map(|c| ChunkRecord {
                    load_id: record.load_id.clone(),
                    table: record.table.clone(),
                    chunk: c.clone(),
                    status: "planned".into(),
                    rows: None,
                    snapshot_lsn: None,
                    recorded_at: now_micros(),
                }));
            }
            record.chunks = chunks.len() as i64;
            // Whether a filter applies, never its text (its literals may be data).
            tracing::info!(
                table = %record.table, load = %record.load_id, resumed,
                chunks = chunks.len(), expected_rows, partitioned = table.partitioned,
                row_filter = table.row_filter.is_some(), "historical load planned"
            );
            works.push(Work {
                record,
                table,
                remaining: chunks.len(),
                chunks,
                expected_rows,
                counted: None,
                wait_count: false,
            });
        }
        // The plan first, then the load records: a load record always has its plan.
        self.log.record_chunks(&planned).await?;
        let now = now_micros();
        let started: Vec<LoadRecord> = works
            .iter_mut()
            .map(|w| {
                w.record.recorded_at = now;
                w.record.clone()
            })
            .collect();
        self.log.record_loads(&started).await?;
        Ok(works)
    }

    /// Copies what the works lack. Ok(true) when cancelled.
    async fn execute(
        &mut self,
        works: &mut [Work],
        cancel: &CancellationToken,
    ) -> Result<bool, SnapshotError> {
        let app_id = marker_app_id(&self.opts.slot);
        let metrics = Arc::clone(&self.opts.metrics);
        let mut jobs: VecDeque<Job> = VecDeque::new();
        let mut counts: Vec<Job> = Vec::new();
        let mut bars = Vec::with_capacity(works.len());
        for (i, w) in works.iter_mut().enumerate() {
            // Open (and create) the change table here, once, before workers write to it.
            let spec = change_table_spec(
                &self.opts.lake,
                &w.table.info,
                &app_id,
                self.opts.commit_attempts,
            )?;
            let lake = LakeTable::open(spec).await?;
            let mut skipped_rows = 0u64;
            let mut skipped = 0u64;
            for chunk in &w.chunks {
                match lake
                    .app_version(&chunk_app_id(&w.record.load_id, chunk.index))
                    .await?
                {
                    Some(rows) => {
                        skipped += 1;
                        skipped_rows += u64::try_from(rows).unwrap_or(0);
                    }
                    None => jobs.push_back(Job::Chunk {
                        table: i,
                        chunk: chunk.clone(),
                    }),
                }
            }
            if skipped > 0 {
                tracing::info!(
                    table = %w.record.table, load = %w.record.load_id, skipped,
                    of = w.chunks.len(), "resuming load: chunks already in the lake are not copied again"
                );
                metrics
                    .snapshot_chunks
                    .with_label_values(&[&w.record.table, "skipped"])
                    .inc_by(skipped);
            }
            w.remaining = w.chunks.len() - skipped as usize;
            w.record.chunks_skipped = skipped as i64;
            w.record.rows_written = skipped_rows as i64;
            w.record.status = "running".into();
            w.record.recorded_at = now_micros();
            w.expected_rows = w.expected_rows.max(skipped_rows);
            if w.remaining > 0 {
                counts.push(Job::Count { table: i });
                w.wait_count = true;
            }
            metrics
                .snapshot_rows_expected
                .with_label_values(&[&w.record.table])
                .set(i64::try_from(w.expected_rows).unwrap_or(i64::MAX));
            bars.push((
                w.record.table.clone(),
                w.expected_rows,
                w.chunks.len() as u64,
                skipped_rows,
                skipped,
            ));
        }
        let records: Vec<LoadRecord> = works.iter().map(|w| w.record.clone()).collect();
        self.log.record_loads(&records).await?;
        metrics.snapshot_tables_running.set(works.len() as i64);
        let mut progress = Progress::new(self.opts.display, &bars);
        // Counts first: one worker counts while the others copy.
        for job in counts.into_iter().rev() {
            jobs.push_front(job);
        }

        let mut finished = Vec::new();
        if !jobs.is_empty() {
            let exported = worker::export(
                &self.opts.source,
                &self.opts.slot,
                self.opts.workers.min(jobs.len()).max(1),
            )
            .await?;
            for w in works.iter_mut() {
                w.record.snapshot_lsn =
                    Some(i64::try_from(exported.consistent_point.0).unwrap_or(i64::MAX));
                w.record.recorded_at = now_micros();
            }
            // The consistent point is recorded before any chunk lands: the views replace a
            // table's earlier rows by a finished load's rows from its first consistent point
            // on (the stream's changes before it are in the snapshot too).
            let started: Vec<LoadRecord> = works.iter().map(|w| w.record.clone()).collect();
            self.log.record_loads(&started).await?;
            let ctx = Arc::new(Context {
                tables: works.iter().map(|w| w.table.clone()).collect(),
                load_ids: works.iter().map(|w| w.record.load_id.clone()).collect(),
                lake: self.opts.lake.clone(),
                app_id,
                commit_attempts: self.opts.commit_attempts,
                copy_format: self.opts.copy_format,
                metrics: Arc::clone(&metrics),
                consistent_point: exported.consistent_point,
                taken_at_micros: exported.taken_at_micros,
            });
            let queue = Arc::new(Mutex::new(jobs));
            let (tx, mut rx) = mpsc::channel::<Event>(1024);
            let mut set = JoinSet::new();
            for client in exported.workers {
                set.spawn(worker::run(
                    client,
                    Arc::clone(&queue),
                    Arc::clone(&ctx),
                    tx.clone(),
                ));
            }
            drop(tx);
            let mut chunk_log: Vec<ChunkRecord> = Vec::new();
            let mut last_log = std::time::Instant::now();
            let lsn = i64::try_from(exported.consistent_point.0).ok();
            loop {
                tokio::select! {
                    () = cancel.cancelled() => {
                        set.abort_all();
                        progress.finish();
                        self.log.record_chunks(&chunk_log).await.ok();
                        let now = now_micros();
                        let stopped: Vec<LoadRecord> = works.iter_mut()
                            .filter(|w| !w.record.finished())
                            .map(|w| { w.record.status = "interrupted".into(); w.record.recorded_at = now; w.record.clone() })
                            .collect();
                        self.log.record_loads(&stopped).await.ok();
                        tracing::info!("historical load interrupted; it resumes at the next start");
                        return Ok(true);
                    }
                    joined = set.join_next(), if !set.is_empty() => {
                        match joined {
                            Some(Ok(Ok(()))) | None => {}
                            Some(Ok(Err(e))) => { set.abort_all(); return Err(e); }
                            Some(Err(e)) => { set.abort_all(); return Err(SnapshotError::Worker(e.to_string())); }
                        }
                    }
                    event = rx.recv() => {
                        let Some(event) = event else { break };
                        match event {
                            Event::Rows { table, rows } => progress.rows(table, rows),
                            Event::Counted { table, rows } => {
                                works[table].counted = Some(rows);
                                works[table].wait_count = false;
                            }
                            Event::ChunkDone { table, chunk, rows } => {
                                progress.chunk_done(table);
                                let w = &mut works[table];
                                w.remaining -= 1;
                                w.record.rows_written += rows as i64;
                                metrics.snapshot_chunks.with_label_values(&[&w.record.table, "copied"]).inc();
                                chunk_log.push(ChunkRecord {
                                    load_id: w.record.load_id.clone(),
                                    table: w.record.table.clone(),
                                    chunk,
                                    status: "done".into(),
                                    rows: Some(rows as i64),
                                    snapshot_lsn: lsn,
                                    recorded_at: now_micros(),
                                });
                            }
                        }
                        for (i, w) in works.iter_mut().enumerate() {
                            if w.remaining == 0 && !w.wait_count && !w.record.finished() && !finished.contains(&i) {
                                finished.push(i);
                                progress.table_done(i);
                            }
                        }
                        let mut ready: Vec<LoadRecord> = Vec::new();
                        for &i in &finished {
                            if !works[i].record.finished() {
                                ready.push(done_record(&mut works[i]));
                            }
                        }
                        if !ready.is_empty() || last_log.elapsed() >= CHUNK_LOG_EVERY {
                            self.log.record_chunks(&chunk_log).await?;
                            chunk_log.clear();
                            last_log = std::time::Instant::now();
                            self.log.record_loads(&ready).await?;
                        }
                    }
                }
            }
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(SnapshotError::Worker(e.to_string())),
                }
            }
            self.log.record_chunks(&chunk_log).await?;
        }
        // Tables with nothing left to copy (all chunks were already in the lake).
        let rest: Vec<LoadRecord> = works
            .iter_mut()
            .enumerate()
            .filter(|(i, w)| !w.record.finished() && !finished.contains(i))
            .map(|(i, w)| {
                progress.table_done(i);
                done_record(w)
            })
            .collect();
        self.log.record_loads(&rest).await?;
        progress.finish();
        Ok(false)
    }
}

/// Whether the engine's stream has committed anything to the lake for `opts.slot` (its marker
/// in `_walaudit/transactions`): a fresh engine decides its initial load before streaming.
pub async fn stream_started(opts: &LoadOptions) -> Result<bool, SnapshotError> {
    let spec = engine_table_spec(
        &opts.lake,
        crate::lake::catalog::TRANSACTIONS_TABLE,
        crate::lake::transactions_schema(),
        &marker_app_id(&opts.slot),
        opts.commit_attempts,
    );
    let marker = LakeTable::open(spec).await?.marker();
    Ok(marker.complete.is_some() || marker.partial.is_some())
}

fn done_record(w: &mut Work) -> LoadRecord {
    let now = now_micros();
    let r = &mut w.record;
    r.status = "done".into();
    r.source_rows = w.counted.map(|c| c as i64);
    r.finished_at = Some(now);
    r.duration_ms = Some((now - r.started_at) / 1000);
    r.recorded_at = now;
    r.clone()
}
