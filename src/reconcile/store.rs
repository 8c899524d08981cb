//! The transfer audit records (`_walaudit/reconciliations`) and the differing keys
//! (`_walaudit/reconciliation_diffs`), append-only Delta tables of the lake; one commit per
//! table per run.

use std::sync::Arc;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::run::{RunReport, WindowStatus};
use crate::lake::LakeError;
use crate::lake::catalog::{
    ENGINE_DIR, RECONCILE_APP_ID, RECONCILIATION_DIFFS_TABLE, RECONCILIATIONS_TABLE,
};
use crate::lake::rows::{longs, texts, times, utc_micros};
use crate::lake::storage::LakeLocation;
use crate::lake::table::{LakeTable, engine_table_spec};

pub fn records_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("job_id", DataType::Utf8, false),
        Field::new("reconciliation", DataType::Utf8, false),
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("source_system", DataType::Utf8, false),
        Field::new("target_system", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("window_start", utc_micros(), true),
        Field::new("window_end", utc_micros(), true),
        Field::new("record_count_before", DataType::Int64, true),
        Field::new("record_count_after", DataType::Int64, true),
        Field::new("difference", DataType::Int64, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("error_message", DataType::Utf8, true),
        Field::new("started_at", utc_micros(), false),
        Field::new("finished_at", utc_micros(), true),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new("alert_triggered", DataType::Boolean, false),
        Field::new("retry_attempt", DataType::Int64, false),
        Field::new("missing_keys", DataType::Int64, true),
        Field::new("extra_keys", DataType::Int64, true),
        Field::new("changed_keys", DataType::Int64, true),
    ]))
}

pub fn diffs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("job_id", DataType::Utf8, false),
        Field::new("reconciliation", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("columns", DataType::Utf8, false),
    ]))
}

/// One audit record row.
struct Row<'a> {
    event: &'static str,
    window: Option<(i64, i64)>,
    counts: Option<(u64, u64)>,
    status: &'a str,
    error: Option<&'a str>,
    finished: bool,
}

/// The two tables of one lake.
pub struct ReconcileStore {
    records: tokio::sync::Mutex<LakeTable>,
    diffs: tokio::sync::Mutex<LakeTable>,
}

fn arrow(table: &str) -> impl Fn(arrow_schema::ArrowError) -> LakeError + '_ {
    move |source| LakeError::Arrow {
        table: format!("{ENGINE_DIR}/{table}"),
        source,
    }
}

impl ReconcileStore {
    /// Opens the tables, creating them when missing.
    pub async fn open(lake: &LakeLocation, attempts: u32) -> Result<ReconcileStore, LakeError> {
        let spec =
            |name: &str, schema| engine_table_spec(lake, name, schema, RECONCILE_APP_ID, attempts);
        Ok(ReconcileStore {
            records: tokio::sync::Mutex::new(
                LakeTable::open(spec(RECONCILIATIONS_TABLE, records_schema())).await?,
            ),
            diffs: tokio::sync::Mutex::new(
                LakeTable::open(spec(RECONCILIATION_DIFFS_TABLE, diffs_schema())).await?,
            ),
        })
    }

    /// Appends the run's audit records (a `start` row, then one per judged window, or one
    /// `failure` row) and its differing keys.
    pub async fn record(&self, run: &RunReport) -> Result<(), LakeError> {
        let mut rows = vec![Row {
            event: "start",
            window: None,
            counts: None,
            status: run.status.as_str(),
            error: None,
            finished: false,
        }];
        match &run.error {
            Some(e) => rows.push(Row {
                event: "failure",
                window: None,
                counts: None,
                status: "error",
                error: Some(e),
                finished: true,
            }),
            None => {
                for w in run
                    .windows
                    .iter()
                    .filter(|w| w.status != WindowStatus::InFlight)
                {
                    rows.push(Row {
                        event: "success",
                        window: w.start.zip(w.end),
                        counts: Some((w.source, w.target)),
                        status: w.status.as_str(),
                        error: None,
                        finished: true,
                    });
                }
            }
        }
        let n = rows.len();
        let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
        let same = |v: &str| texts(std::iter::repeat_n(Some(v), n));
        let diff = run.diff.as_ref();
        let keys = |f: fn(&super::bisect::DiffResult) -> u64| {
            longs(
                rows.iter()
                    .map(|r| diff.filter(|_| r.finished).map(|d| f(d) as i64)),
            )
        };
        let batch = RecordBatch::try_new(
            records_schema(),
            vec![
                same(&run.job_id),
                same(&run.reconciliation),
                same(run.pipeline.as_str()),
                same(&run.source_system),
                same(&run.target_system),
                texts(rows.iter().map(|r| Some(r.event))),
                times(rows.iter().map(|r| r.window.map(|w| w.0 * 1_000_000))),
                times(rows.iter().map(|r| r.window.map(|w| w.1 * 1_000_000))),
                longs(rows.iter().map(|r| r.counts.map(|c| c.0 as i64))),
                longs(rows.iter().map(|r| r.counts.map(|c| c.1 as i64))),
                longs(
                    rows.iter()
                        .map(|r| r.counts.map(|c| c.1 as i64 - c.0 as i64)),
                ),
                texts(rows.iter().map(|r| Some(r.status))),
                texts(rows.iter().map(|r| r.error)),
                times(rows.iter().map(|_| Some(micros(run.started_at)))),
                times(
                    rows.iter()
                        .map(|r| r.finished.then(|| micros(run.finished_at))),
                ),
                longs(rows.iter().map(|r| {
                    r.finished
                        .then(|| (run.finished_at - run.started_at).num_milliseconds())
                })),
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.finished && run.alert_triggered))
                        .collect::<BooleanArray>(),
                ),
                longs(rows.iter().map(|_| Some(0))),
                keys(|d| d.missing),
                keys(|d| d.extra),
                keys(|d| d.changed),
            ],
        )
        .map_err(arrow(RECONCILIATIONS_TABLE))?;
        self.records
            .lock()
            .await
            .append_tagged(vec![batch], None)
            .await?;
        let Some(diff) = diff.filter(|d| !d.keys.is_empty()) else {
            return Ok(());
        };
        let key_json: Vec<String> = diff
            .keys
            .iter()
            .map(|k| serde_json::to_string(&k.key).unwrap_or_default())
            .collect();
        let cols_json: Vec<String> = diff
            .keys
            .iter()
            .map(|k| serde_json::to_string(&k.columns).unwrap_or_default())
            .collect();
        let m = diff.keys.len();
        let batch = RecordBatch::try_new(
            diffs_schema(),
            vec![
                texts(std::iter::repeat_n(Some(run.job_id.as_str()), m)),
                texts(std::iter::repeat_n(Some(run.reconciliation.as_str()), m)),
                texts(key_json.iter().map(|s| Some(s.as_str()))),
                texts(diff.keys.iter().map(|k| Some(k.kind.as_str()))),
                texts(cols_json.iter().map(|s| Some(s.as_str()))),
            ],
        )
        .map_err(arrow(RECONCILIATION_DIFFS_TABLE))?;
        self.diffs
            .lock()
            .await
            .append_tagged(vec![batch], None)
            .await
    }
}
