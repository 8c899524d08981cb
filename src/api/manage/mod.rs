//! Management routes over the validation service and the reconciliations, backed by the same
//! code as `walaudit check` and `walaudit reconcile`.
//!
//! ```text
//!  GET    /jobs, /jobs/{name}            viewer     the jobs the service runs
//!  POST   /jobs, PUT/DELETE /jobs/{name} admin      API jobs: a version in _walaudit/jobs each
//!  POST   /jobs/{name}/run               operator   run now (202)
//!  GET    /jobs/{name}/runs, /runs/{id}  viewer     samples from auditor
//!  GET    /alerts?status=open|resolved   viewer
//!  GET    /gates/{job}                   viewer     200 {"open": true} or 423 with the failures
//!  GET    /reconciliations[/{name}]      viewer
//!  POST   /reconciliations/{name}/run    operator   runs it, records it, returns the report
//!  GET    /reconciliations/{name}/reports, /reports/{job_id}   viewer (keys from auditor)
//! ```
//!
//! # Invariants
//! * A job defined in a file is read-only here (409); an API job is checked with the same
//!   loader as files, against every other job (422 lists each problem, located).
//! * Every change to an API job is a new version in `_walaudit/jobs`, authored by the
//!   token's name, before the scheduler sees it.

mod jobs;
mod recs;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use deltalake::arrow::array::RecordBatch;
use serde_json::{Map, Value};

pub use jobs::*;
pub use recs::*;

use super::ApiState;
use super::error::ApiError;
use crate::checks::Origin;
use crate::checks::service::ChecksHandle;
use crate::config::Config;
use crate::query::{LakeOptions, LakeQuery};
use crate::reconcile::model::Reconciliation;

/// What the management routes act on.
pub struct Manage {
    config: Config,
    checks: ChecksHandle,
    /// The job files as read at start: API jobs are checked together with them.
    file_sources: Vec<(Origin, String)>,
    /// API job definitions (JSON) by name, as last written.
    api_jobs: tokio::sync::Mutex<BTreeMap<String, String>>,
    reconciliations: Vec<Reconciliation>,
}

impl Manage {
    /// Takes over the running service and restores the API jobs the lake holds.
    pub async fn start(config: Config, checks: ChecksHandle) -> Manage {
        let file_sources = match &config.checks.dir {
            Some(dir) => crate::checks::load::read_dir_sources(dir),
            None => Vec::new(),
        };
        let reconciliations = match &config.checks.dir {
            Some(dir) => crate::reconcile::command::load(dir, &config).unwrap_or_default(),
            None => Vec::new(),
        };
        let stored: BTreeMap<String, String> = checks
            .store()
            .job_states()
            .into_iter()
            .filter(|(_, s)| !s.deleted && s.origin.as_deref() == Some("api"))
            .filter_map(|(name, s)| Some((name, s.definition?)))
            .collect();
        let manage = Manage {
            config,
            checks,
            file_sources,
            api_jobs: tokio::sync::Mutex::new(BTreeMap::new()),
            reconciliations,
        };
        manage.restore(stored).await;
        manage
    }

    async fn restore(&self, stored: BTreeMap<String, String>) {
        let mut kept = BTreeMap::new();
        for (name, definition) in stored {
            if self.checks.job(&name).is_some() {
                tracing::warn!(job = %name, "a job file defines this API job's name: the file wins");
                continue;
            }
            kept.insert(name, definition);
        }
        match self.load_with(&kept) {
            Ok(all) => {
                for job in all.into_iter().filter(|j| j.origin == Origin::Api) {
                    let name = job.name.clone();
                    if let Err(e) = self.checks.upsert(job).await {
                        tracing::warn!(job = %name, error = %e, "cannot schedule an API job");
                    }
                }
                *self.api_jobs.lock().await = kept;
            }
            Err(e) => tracing::error!(
                "the API jobs stored in the lake do not load with the job files; they are not \
                 scheduled: {e}"
            ),
        }
    }

    /// Loads the job files with `api` (definitions by name).
    fn load_with(
        &self,
        api: &BTreeMap<String, String>,
    ) -> Result<Vec<crate::checks::Job>, crate::checks::LoadErrors> {
        let mut sources = self.file_sources.clone();
        for definition in api.values() {
            sources.push((Origin::Api, format!("{{\"jobs\": [{definition}]}}")));
        }
        let cx = crate::checks::Context::new(self.config.connections.keys().cloned());
        crate::checks::load_sources(&sources, &cx)
    }

    /// Runs read-only `sql` on a fresh session over the lake; the rows as JSON objects.
    async fn rows(&self, sql: &str) -> Result<Vec<Map<String, Value>>, ApiError> {
        let storage_options = crate::lake::storage::LakeLocation::s3_storage_options(
            &self.config.lake.url,
            &self.config.lake.s3,
        )
        .map_err(|e| ApiError::unavailable("cannot open the lake", &e))?;
        let lake = LakeQuery::open(
            &self.config.lake.url,
            LakeOptions {
                storage_options,
                timeout: Some(std::time::Duration::from_secs(30)),
                ..LakeOptions::default()
            },
        )
        .await
        .map_err(|e| ApiError::unavailable("cannot open the lake", &e))?;
        let batches: Vec<RecordBatch> = match lake.collect(sql).await {
            Ok(b) => b,
            // The table is created with the first run or record.
            Err(crate::query::QueryError::TableNotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(ApiError::unavailable("cannot read the lake", &e)),
        };
        let mut out = Vec::new();
        for b in &batches {
            out.extend(
                super::events::render::json_rows(b)
                    .map_err(|e| ApiError::internal("cannot render rows", &e))?,
            );
        }
        Ok(out)
    }
}

/// The service behind the routes, or 503.
fn manage(state: &ApiState) -> Result<Arc<Manage>, ApiError> {
    state.manage.get().cloned().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no validation service runs here yet: walaudit serve runs one; walaudit run runs one \
             with --checks DIR (or checks.dir)",
        )
    })
}

/// A SQL string literal of `text` (names reaching SQL are checked first; this is the second
/// guard).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Names of jobs, checks and reconciliations: letters, digits, `_`, `.`, `-`.
fn checked_name(name: &str) -> Result<&str, ApiError> {
    if crate::checks::load::valid_name(name) {
        Ok(name)
    } else {
        Err(ApiError::not_found(format!(
            "{name:?} is not a valid name (letters, digits, `_`, `.` and `-`)"
        )))
    }
}

/// The `limit` query parameter: 1 to `max`, `default` when absent; other parameters are 400.
fn limit_param(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let mut limit = default;
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if name != "limit" {
            return Err(ApiError::unknown_parameter(
                &name,
                format!("`{name}` is not a parameter here; use limit"),
            ));
        }
        limit = value
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| {
                ApiError::parameter(
                    "limit",
                    format!("{value:?}: give an integer from 1 to {max}"),
                )
            })?;
    }
    Ok(limit)
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/jobs", get(list_jobs).post(create_job))
        .route("/jobs/{name}", get(get_job).put(put_job).delete(delete_job))
        .route("/jobs/{name}/run", post(run_job))
        .route("/jobs/{name}/runs", get(job_runs))
        .route("/runs/{run_id}", get(get_run))
        .route("/alerts", get(list_alerts))
        .route("/gates/{job}", get(gate))
        .route("/reconciliations", get(list_reconciliations))
        .route("/reconciliations/{name}", get(get_reconciliation))
        .route("/reconciliations/{name}/run", post(run_reconciliation))
        .route(
            "/reconciliations/{name}/reports",
            get(reconciliation_reports),
        )
        .route("/reports/{job_id}", get(get_report))
}
