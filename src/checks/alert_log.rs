//! `_walaudit/alert_events`: every change of an alert's state, append-only; the open alerts
//! are read back from it at start so that a restart neither re-opens nor forgets an alert.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::DateTime;
use futures_util::StreamExt as _;

use super::alert::{AlertEvent, OpenAlert};
use super::model::Severity;
use crate::lake::LakeError;
use crate::lake::catalog::{ALERT_EVENTS_TABLE, CHECKS_APP_ID, ENGINE_DIR};
use crate::lake::rows::{read_micros, read_texts, texts, times, utc_micros};
use crate::lake::storage::LakeLocation;
use crate::lake::table::{LakeTable, engine_table_spec};

pub fn alert_events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("check", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("at", utc_micros(), false),
        Field::new("message", DataType::Utf8, false),
        Field::new("destinations", DataType::Utf8, false),
        Field::new("opened_at", utc_micros(), false),
    ]))
}

/// The alert event table of one lake.
pub struct AlertLog {
    table: tokio::sync::Mutex<LakeTable>,
}

impl AlertLog {
    /// Opens the table (creating it) and returns it with the alerts open in it.
    pub async fn open(
        lake: &LakeLocation,
        attempts: u32,
    ) -> Result<(AlertLog, HashMap<(String, String), OpenAlert>), LakeError> {
        let spec = engine_table_spec(
            lake,
            ALERT_EVENTS_TABLE,
            alert_events_schema(),
            CHECKS_APP_ID,
            attempts,
        );
        let table = LakeTable::open(spec).await?;
        let err = |e| LakeError::delta("read", table.name().to_owned(), e);
        let (_, mut stream) = table.delta().scan_table().await.map_err(err)?;
        // (job, check) → (at, event row) of the latest event.
        let mut latest: HashMap<(String, String), (i64, OpenAlert, String)> = HashMap::new();
        while let Some(batch) = stream.next().await {
            let b = batch.map_err(|e| err(e.into()))?;
            let s = |name: &str| read_texts(&b, name);
            let t = |name: &str| read_micros(&b, name);
            let (
                Some(id),
                Some(job),
                Some(check),
                Some(sev),
                Some(ev),
                Some(at),
                Some(msg),
                Some(opened),
            ) = (
                s("alert_id"),
                s("job"),
                s("check"),
                s("severity"),
                s("event"),
                t("at"),
                s("message"),
                t("opened_at"),
            )
            else {
                continue;
            };
            for i in 0..b.num_rows() {
                let key = (job.value(i).to_owned(), check.value(i).to_owned());
                if latest
                    .get(&key)
                    .is_some_and(|(prev, ..)| *prev > at.value(i))
                {
                    continue;
                }
                let severity = match sev.value(i) {
                    "critical" => Severity::Critical,
                    "low" => Severity::Low,
                    _ => Severity::High,
                };
                let when = |v: i64| DateTime::from_timestamp_micros(v).unwrap_or_default();
                let alert = OpenAlert {
                    alert_id: id.value(i).to_owned(),
                    severity,
                    opened_at: when(opened.value(i)),
                    last_sent: when(at.value(i)),
                    message: if msg.is_null(i) {
                        String::new()
                    } else {
                        msg.value(i).to_owned()
                    },
                };
                latest.insert(key, (at.value(i), alert, ev.value(i).to_owned()));
            }
        }
        let open = latest
            .into_iter()
            .filter(|(_, (_, _, ev))| ev != "resolved")
            .map(|(k, (_, a, _))| (k, a))
            .collect();
        Ok((
            AlertLog {
                table: tokio::sync::Mutex::new(table),
            },
            open,
        ))
    }

    /// Appends `events` in one commit.
    pub async fn record(&self, events: &[AlertEvent]) -> Result<(), LakeError> {
        if events.is_empty() {
            return Ok(());
        }
        let text = |f: &dyn Fn(&AlertEvent) -> String| {
            let values: Vec<String> = events.iter().map(f).collect();
            texts(values.iter().map(|v| Some(v.as_str())))
        };
        let time = |f: &dyn Fn(&AlertEvent) -> i64| times(events.iter().map(|e| Some(f(e))));
        let batch = RecordBatch::try_new(
            alert_events_schema(),
            vec![
                text(&|e| e.alert_id.clone()),
                text(&|e| e.job.clone()),
                text(&|e| e.check.clone()),
                text(&|e| e.severity.as_str().to_owned()),
                text(&|e| e.event.as_str().to_owned()),
                time(&|e| e.at.timestamp_micros()),
                text(&|e| e.message.clone()),
                text(&|e| e.destinations.join(",")),
                time(&|e| e.opened_at.timestamp_micros()),
            ],
        )
        .map_err(|source| LakeError::Arrow {
            table: format!("{ENGINE_DIR}/{ALERT_EVENTS_TABLE}"),
            source,
        })?;
        self.table
            .lock()
            .await
            .append_tagged(vec![batch], None)
            .await
    }
}
