//! The run history in the lake: `_walaudit/jobs`, `_walaudit/check_runs` and
//! `_walaudit/check_results`, append-only Delta tables that `walaudit query` reads.
//!
//! ```text
//!  record(runs) ─► one commit to check_runs + one to check_results for the whole batch
//!  record_jobs   ─► a row per job whose definition changed (version + 1), or was deleted
//!  open          ─► one scan of each table ─► the in-memory index History answers from
//! ```
//!
//! # Invariants
//! * Rows are only appended; a batch of runs is one commit per table, never one per check.
//! * A job's version rises by one with each changed definition; an unchanged file adds no row.
//! * The index holds the last result of each (job, check) and the values within
//!   [`KEEP_HISTORY`], so anomaly checks and `fail_on_change` never rescan the tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::{Array, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;

use super::model::{Job, Status};
use super::run::{History, RunOutcome};
use crate::lake::LakeError;
use crate::lake::rows::{
    column_as, longs, read_longs, read_micros, read_texts, texts, times, utc_micros,
};
use crate::lake::storage::LakeLocation;
use crate::lake::table::{LakeTable, engine_table_spec};

pub use crate::lake::catalog::{
    CHECK_RESULTS_TABLE as RESULTS_TABLE, CHECK_RUNS_TABLE as RUNS_TABLE, JOBS_TABLE,
};
/// How far back the index keeps values for anomaly checks.
pub const KEEP_HISTORY: Duration = Duration::from_secs(90 * 86_400);
use crate::lake::catalog::CHECKS_APP_ID as APP_ID;

pub fn jobs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("origin", DataType::Utf8, false),
        Field::new("author", DataType::Utf8, true),
        Field::new("changed_at", utc_micros(), false),
        Field::new("deleted", DataType::Boolean, false),
    ]))
}

pub fn runs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("job_version", DataType::Int64, true),
        Field::new("scheduled_at", utc_micros(), false),
        Field::new("started_at", utc_micros(), false),
        Field::new("finished_at", utc_micros(), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, true),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("lsn_high", DataType::Int64, true),
        Field::new("statements", DataType::Int64, false),
    ]))
}

pub fn results_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("check", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("threshold", DataType::Utf8, false),
        Field::new("samples", DataType::Utf8, true),
        Field::new("measured_at", utc_micros(), false),
        Field::new("message", DataType::Utf8, true),
    ]))
}

/// What the store remembers about one job.
#[derive(Clone, Debug, Default)]
pub struct JobState {
    pub version: i64,
    pub definition: Option<String>,
    /// `file:<path>` or `api`, of the latest version.
    pub origin: Option<String>,
    /// Who made the latest version (the token's name for API jobs).
    pub author: Option<String>,
    /// When the latest version was made, µs since the epoch.
    pub changed_at: Option<i64>,
    pub deleted: bool,
    pub last_scheduled: Option<DateTime<Utc>>,
    pub last_status: Option<Status>,
    pub last_lsn: Option<i64>,
}

#[derive(Default)]
struct Index {
    jobs: HashMap<String, JobState>,
    /// (job, check) → (measured_at µs, value), oldest first.
    values: HashMap<(String, String), Vec<(i64, f64)>>,
    samples: HashMap<(String, String), serde_json::Value>,
}

impl Index {
    fn remember(&mut self, run: &RunOutcome) {
        let state = self.jobs.entry(run.job.clone()).or_default();
        if Some(run.scheduled_at) >= state.last_scheduled {
            state.last_scheduled = Some(run.scheduled_at);
            state.last_status = Some(run.status);
        }
        if let Some(l) = run.lsn_high {
            state.last_lsn = Some(state.last_lsn.unwrap_or(l).max(l));
        }
        for c in &run.results {
            let key = (run.job.clone(), c.check.clone());
            if let Some(v) = c.value {
                self.values
                    .entry(key.clone())
                    .or_default()
                    .push((c.measured_at.timestamp_micros(), v));
            }
            if let Some(s) = &c.samples {
                self.samples.insert(key, s.clone());
            }
        }
    }

    fn values(&self, job: &str, check: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<f64> {
        let (from, to) = (from.timestamp_micros(), to.timestamp_micros());
        self.values
            .get(&(job.to_owned(), check.to_owned()))
            .map(|v| {
                v.iter()
                    .filter(|(at, _)| *at >= from && *at < to)
                    .map(|(_, x)| *x)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn last_samples(&self, job: &str, check: &str) -> Option<serde_json::Value> {
        self.samples
            .get(&(job.to_owned(), check.to_owned()))
            .cloned()
    }

    fn last_lsn(&self, job: &str) -> Option<i64> {
        self.jobs.get(job).and_then(|s| s.last_lsn)
    }
}

/// The history tables of one lake, with their index.
pub struct RunStore {
    jobs: tokio::sync::Mutex<LakeTable>,
    runs: tokio::sync::Mutex<LakeTable>,
    results: tokio::sync::Mutex<LakeTable>,
    history: MemoryHistory,
}

impl RunStore {
    /// Opens (creating when missing) the tables under `lake` and reads them into the index.
    pub async fn open(lake: &LakeLocation, attempts: u32) -> Result<RunStore, LakeError> {
        let spec = |name: &str, schema| engine_table_spec(lake, name, schema, APP_ID, attempts);
        let jobs = LakeTable::open(spec(JOBS_TABLE, jobs_schema())).await?;
        let runs = LakeTable::open(spec(RUNS_TABLE, runs_schema())).await?;
        let results = LakeTable::open(spec(RESULTS_TABLE, results_schema())).await?;
        let mut index = Index::default();
        for b in scan(&jobs).await? {
            index_jobs(&mut index, &b);
        }
        for b in scan(&runs).await? {
            index_runs(&mut index, &b);
        }
        let keep_from = Utc::now().timestamp_micros() - KEEP_HISTORY.as_micros() as i64;
        for b in scan(&results).await? {
            index_results(&mut index, &b, keep_from);
        }
        for v in index.values.values_mut() {
            v.sort_by_key(|(at, _)| *at);
        }
        Ok(RunStore {
            jobs: tokio::sync::Mutex::new(jobs),
            runs: tokio::sync::Mutex::new(runs),
            results: tokio::sync::Mutex::new(results),
            history: MemoryHistory {
                inner: Mutex::new(index),
            },
        })
    }

    /// The index of the history, what runs read ([`History`]).
    pub fn history(&self) -> &MemoryHistory {
        &self.history
    }

    /// What the store knows of `job`.
    pub fn job_state(&self, job: &str) -> Option<JobState> {
        self.history
            .inner
            .lock()
            .expect("index lock")
            .jobs
            .get(job)
            .cloned()
    }

    /// Every job's state, by name.
    pub fn job_states(&self) -> BTreeMap<String, JobState> {
        let index = self.history.inner.lock().expect("index lock");
        index
            .jobs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Records the definitions of `jobs` (a new version for each one that changed) and marks
    /// stored jobs of the same origins that are gone as deleted. One commit. Returns the
    /// number of rows written.
    pub async fn record_jobs(
        &self,
        jobs: &[Job],
        author: Option<&str>,
    ) -> Result<usize, LakeError> {
        let now = Utc::now().timestamp_micros();
        let mut rows: Vec<(String, i64, String, String, bool)> = Vec::new();
        {
            let index = self.history.inner.lock().expect("index lock");
            for job in jobs {
                let definition = serde_json::to_string(job).unwrap_or_default();
                let state = index.jobs.get(&job.name);
                if state.is_some_and(|s| !s.deleted && s.definition.as_deref() == Some(&definition))
                {
                    continue;
                }
                let version = state.map_or(1, |s| s.version + 1);
                rows.push((
                    job.name.clone(),
                    version,
                    definition,
                    job.origin.label(),
                    false,
                ));
            }
        }
        self.write_job_rows(rows, author, now).await
    }

    /// Records a version of the API job `name`: its definition as given (JSON), or its
    /// deletion. Returns the new version.
    pub async fn record_api_job(
        &self,
        name: &str,
        definition: &str,
        author: &str,
        deleted: bool,
    ) -> Result<i64, LakeError> {
        let now = Utc::now().timestamp_micros();
        let version = self.job_state(name).map_or(1, |s| s.version + 1);
        let row = (
            name.to_owned(),
            version,
            definition.to_owned(),
            super::model::Origin::Api.label(),
            deleted,
        );
        self.write_job_rows(vec![row], Some(author), now).await?;
        Ok(version)
    }

    async fn write_job_rows(
        &self,
        rows: Vec<(String, i64, String, String, bool)>,
        author: Option<&str>,
        now: i64,
    ) -> Result<usize, LakeError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        let batch = RecordBatch::try_new(
            jobs_schema(),
            vec![
                texts(rows.iter().map(|r| Some(r.0.as_str()))),
                longs(rows.iter().map(|r| Some(r.1))),
                texts(rows.iter().map(|r| Some(r.2.as_str()))),
                texts(rows.iter().map(|r| Some(r.3.as_str()))),
                texts(rows.iter().map(|_| author)),
                times(rows.iter().map(|_| Some(now))),
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.4))
                        .collect::<arrow_array::BooleanArray>(),
                ),
            ],
        )
        .map_err(arrow(JOBS_TABLE))?;
        self.jobs
            .lock()
            .await
            .append_tagged(vec![batch.clone()], None)
            .await?;
        index_jobs(&mut self.history.inner.lock().expect("index lock"), &batch);
        Ok(n)
    }

    /// Appends `runs` and their results (one commit per table for the whole batch) and adds
    /// them to the index.
    pub async fn record(&self, runs: &[RunOutcome]) -> Result<(), LakeError> {
        self.write(runs).await?;
        for run in runs {
            self.remember(run);
        }
        Ok(())
    }

    /// Adds `run` to the index (what [`History`] answers from), before it is written.
    pub fn remember(&self, run: &RunOutcome) {
        self.history.inner.lock().expect("index lock").remember(run);
    }

    /// Appends `runs` and their results: one commit per table for the whole batch. The
    /// index is not touched (see [`RunStore::remember`]).
    pub async fn write(&self, runs: &[RunOutcome]) -> Result<(), LakeError> {
        if runs.is_empty() {
            return Ok(());
        }
        let versions: Vec<Option<i64>> = {
            let index = self.history.inner.lock().expect("index lock");
            runs.iter()
                .map(|r| index.jobs.get(&r.job).map(|s| s.version))
                .collect()
        };
        let micros = |t: DateTime<Utc>| t.timestamp_micros();
        let runs_batch = RecordBatch::try_new(
            runs_schema(),
            vec![
                texts(runs.iter().map(|r| Some(r.run_id.as_str()))),
                texts(runs.iter().map(|r| Some(r.job.as_str()))),
                longs(versions.iter().copied()),
                times(runs.iter().map(|r| Some(micros(r.scheduled_at)))),
                times(runs.iter().map(|r| Some(micros(r.started_at)))),
                times(runs.iter().map(|r| Some(micros(r.finished_at)))),
                longs(
                    runs.iter()
                        .map(|r| Some((r.finished_at - r.started_at).num_milliseconds())),
                ),
                texts(runs.iter().map(|r| Some(r.status.as_str()))),
                texts(runs.iter().map(|r| r.error.as_deref())),
                texts(runs.iter().map(|r| Some(r.trigger.as_str()))),
                longs(runs.iter().map(|r| r.lsn_high)),
                longs(runs.iter().map(|r| Some(r.statements as i64))),
            ],
        )
        .map_err(arrow(RUNS_TABLE))?;
        let results: Vec<(&RunOutcome, &super::run::CheckResult)> = runs
            .iter()
            .flat_map(|r| r.results.iter().map(move |c| (r, c)))
            .collect();
        let samples: Vec<Option<String>> = results
            .iter()
            .map(|(_, c)| c.samples.as_ref().map(|s| s.to_string()))
            .collect();
        let results_batch = RecordBatch::try_new(
            results_schema(),
            vec![
                texts(results.iter().map(|(r, _)| Some(r.run_id.as_str()))),
                texts(results.iter().map(|(r, _)| Some(r.job.as_str()))),
                texts(results.iter().map(|(_, c)| Some(c.check.as_str()))),
                texts(results.iter().map(|(_, c)| Some(c.type_name))),
                texts(results.iter().map(|(_, c)| Some(c.status.as_str()))),
                Arc::new(
                    results
                        .iter()
                        .map(|(_, c)| c.value)
                        .collect::<Float64Array>(),
                ),
                texts(results.iter().map(|(_, c)| Some(c.threshold.as_str()))),
                texts(samples.iter().map(|s| s.as_deref())),
                times(results.iter().map(|(_, c)| Some(micros(c.measured_at)))),
                texts(results.iter().map(|(_, c)| c.message.as_deref())),
            ],
        )
        .map_err(arrow(RESULTS_TABLE))?;
        self.runs
            .lock()
            .await
            .append_tagged(vec![runs_batch.clone()], None)
            .await?;
        if results_batch.num_rows() > 0 {
            self.results
                .lock()
                .await
                .append_tagged(vec![results_batch.clone()], None)
                .await?;
        }
        Ok(())
    }
}

async fn scan(table: &LakeTable) -> Result<Vec<RecordBatch>, LakeError> {
    let err = |e| LakeError::delta("read", table.name().to_owned(), e);
    let (_, mut stream) = table.delta().scan_table().await.map_err(err)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.map_err(|e| err(e.into()))?);
    }
    Ok(batches)
}

fn arrow(table: &'static str) -> impl Fn(arrow_schema::ArrowError) -> LakeError {
    move |source| LakeError::Arrow {
        table: format!("{}/{table}", crate::lake::catalog::ENGINE_DIR),
        source,
    }
}

fn str_at(a: Option<&StringArray>, i: usize) -> Option<String> {
    a.filter(|a| !a.is_null(i)).map(|a| a.value(i).to_owned())
}

fn index_jobs(index: &mut Index, b: &RecordBatch) {
    let def = read_texts(b, "definition");
    let origin = read_texts(b, "origin");
    let author = read_texts(b, "author");
    let changed = read_micros(b, "changed_at");
    let deleted = column_as(b, "deleted", &DataType::Boolean).and_then(|c| {
        c.as_any()
            .downcast_ref::<arrow_array::BooleanArray>()
            .cloned()
    });
    let (Some(name), Some(version)) = (read_texts(b, "name"), read_longs(b, "version")) else {
        return;
    };
    for i in 0..b.num_rows() {
        let state = index.jobs.entry(name.value(i).to_owned()).or_default();
        if version.value(i) >= state.version {
            state.version = version.value(i);
            state.definition = str_at(def.as_ref(), i);
            state.origin = str_at(origin.as_ref(), i);
            state.author = str_at(author.as_ref(), i);
            state.changed_at = changed.as_ref().map(|c| c.value(i));
            state.deleted = deleted.as_ref().is_some_and(|d| d.value(i));
        }
    }
}

fn index_runs(index: &mut Index, b: &RecordBatch) {
    let status = read_texts(b, "status");
    let lsn = read_longs(b, "lsn_high");
    let (Some(job), Some(scheduled)) = (read_texts(b, "job"), read_micros(b, "scheduled_at"))
    else {
        return;
    };
    for i in 0..b.num_rows() {
        let state = index.jobs.entry(job.value(i).to_owned()).or_default();
        let at = DateTime::from_timestamp_micros(scheduled.value(i));
        if at >= state.last_scheduled {
            state.last_scheduled = at;
            state.last_status = str_at(status.as_ref(), i).and_then(|s| Status::parse(&s));
        }
        if let Some(l) = lsn.as_ref().filter(|l| !l.is_null(i)).map(|l| l.value(i)) {
            state.last_lsn = Some(state.last_lsn.unwrap_or(l).max(l));
        }
    }
}

fn index_results(index: &mut Index, b: &RecordBatch, keep_from: i64) {
    let samples = read_texts(b, "samples");
    let value = column_as(b, "value", &DataType::Float64)
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
    let (Some(job), Some(check), Some(value), Some(at)) = (
        read_texts(b, "job"),
        read_texts(b, "check"),
        value,
        read_micros(b, "measured_at"),
    ) else {
        return;
    };
    for i in 0..b.num_rows() {
        let key = (job.value(i).to_owned(), check.value(i).to_owned());
        if !value.is_null(i) && at.value(i) >= keep_from {
            index
                .values
                .entry(key.clone())
                .or_default()
                .push((at.value(i), value.value(i)));
        }
        if let Some(s) = str_at(samples.as_ref(), i).and_then(|s| serde_json::from_str(&s).ok()) {
            index.samples.insert(key, s);
        }
    }
}

/// The history index as a [`History`]: alone for tests and runs without a lake, or filled from
/// the lake's tables by [`RunStore`] ([`RunStore::history`]).
#[derive(Default)]
pub struct MemoryHistory {
    inner: Mutex<Index>,
}

impl MemoryHistory {
    /// Remembers what `run` measured, as the lake store would.
    pub fn remember(&self, run: &RunOutcome) {
        self.inner.lock().expect("index lock").remember(run);
    }

    /// Adds a value of `(job, check)` measured `at` (for synthetic histories).
    pub fn push(&self, job: &str, check: &str, at: DateTime<Utc>, value: f64) {
        let mut index = self.inner.lock().expect("index lock");
        let series = index
            .values
            .entry((job.to_owned(), check.to_owned()))
            .or_default();
        series.push((at.timestamp_micros(), value));
        series.sort_by_key(|(t, _)| *t);
    }
}

#[async_trait]
impl History for MemoryHistory {
    async fn values(
        &self,
        job: &str,
        check: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<f64>, String> {
        Ok(self
            .inner
            .lock()
            .expect("index lock")
            .values(job, check, from, to))
    }

    async fn last_samples(
        &self,
        job: &str,
        check: &str,
    ) -> Result<Option<serde_json::Value>, String> {
        Ok(self
            .inner
            .lock()
            .expect("index lock")
            .last_samples(job, check))
    }

    async fn last_lsn(&self, job: &str) -> Result<Option<i64>, String> {
        Ok(self.inner.lock().expect("index lock").last_lsn(job))
    }
}
