//! Job, run, alert and gate routes.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::{checked_name, limit_param, manage, quote};
use crate::api::ApiState;
use crate::api::auth::{Caller, Role};
use crate::api::error::{ApiError, ErrorBody};
use crate::checks::Trigger;
use crate::checks::schedule::Triggered;
use crate::lake::catalog::{ALERT_EVENTS_TABLE, CHECK_RESULTS_TABLE, CHECK_RUNS_TABLE, ENGINE_DIR};

/// A validation job as the service runs it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobInfo {
    pub name: String,
    /// `file:<path>` or `api`.
    pub origin: String,
    /// Its version in `_walaudit/jobs`.
    pub version: Option<i64>,
    /// Who made that version (the token's name for API jobs).
    pub author: Option<String>,
    /// Whether the API may change it (API jobs only).
    pub read_only: bool,
    /// The status of its latest run, if any.
    pub last_status: Option<String>,
    /// The definition: as written for API jobs, as loaded for file jobs.
    #[schema(value_type = Object)]
    pub definition: Value,
}

async fn job_info(m: &super::Manage, job: &crate::checks::Job) -> JobInfo {
    let state = m.checks.store().job_state(&job.name);
    let api = m.api_jobs.lock().await.get(&job.name).cloned();
    let definition = match &api {
        Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        None => serde_json::to_value(job).unwrap_or(Value::Null),
    };
    JobInfo {
        name: job.name.clone(),
        origin: job.origin.label(),
        version: state.as_ref().map(|s| s.version),
        author: state.as_ref().and_then(|s| s.author.clone()),
        read_only: api.is_none(),
        last_status: state
            .and_then(|s| s.last_status)
            .map(|s| s.as_str().to_owned()),
        definition,
    }
}

fn unknown_job(name: &str) -> ApiError {
    ApiError::not_found(format!("no job named {name:?}: GET /jobs lists them"))
}

/// `GET /jobs`.
#[utoipa::path(get, path = "/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobInfo>), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_jobs(
    State(state): State<ApiState>,
    _c: Caller,
) -> Result<Json<Vec<JobInfo>>, ApiError> {
    let m = manage(&state)?;
    let mut out = Vec::new();
    for job in m.checks.jobs() {
        out.push(job_info(&m, &job).await);
    }
    Ok(Json(out))
}

/// `GET /jobs/{name}`.
#[utoipa::path(get, path = "/jobs/{name}", tag = "jobs", params(("name" = String, Path)),
    responses((status = 200, body = JobInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_job(
    State(state): State<ApiState>,
    _c: Caller,
    Path(name): Path<String>,
) -> Result<Json<JobInfo>, ApiError> {
    let m = manage(&state)?;
    let job = m.checks.job(&name).ok_or_else(|| unknown_job(&name))?;
    Ok(Json(job_info(&m, &job).await))
}

/// Checks and stores a new version of the API job `name`, then schedules it.
async fn write_job(
    state: &ApiState,
    caller: &Caller,
    name: Option<&str>,
    mut body: Value,
    create: bool,
) -> Result<(StatusCode, Json<JobInfo>), ApiError> {
    let m = manage(state)?;
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_definition",
            "the body must be one job as a JSON object: {\"name\": ..., \"connection\": ..., \
             \"dataset\": ..., \"checks\": [...]}",
        ));
    };
    if let Some(path_name) = name {
        match object.get("name") {
            None => {
                object.insert("name".into(), Value::String(path_name.to_owned()));
            }
            Some(Value::String(n)) if n == path_name => {}
            Some(_) => {
                return Err(ApiError {
                    parameter: Some("name".into()),
                    ..ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_definition",
                        format!(
                            "the body's name differs from the path's {path_name:?}: rename by DELETE and POST"
                        ),
                    )
                });
            }
        }
    }
    let job_name = object
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_definition",
                "the job needs a name",
            )
        })?;
    let mut api = m.api_jobs.lock().await;
    let exists = m.checks.job(&job_name);
    if let Some(job) = &exists
        && !api.contains_key(&job_name)
    {
        return Err(ApiError::conflict(format!(
            "the job {job_name:?} is defined in {}: change it there (jobs from files are read-only here)",
            job.origin.label()
        )));
    }
    if create && exists.is_some() {
        return Err(ApiError::conflict(format!(
            "a job named {job_name:?} exists: PUT /jobs/{job_name} changes it"
        )));
    }
    let definition = body.to_string();
    let mut next = api.clone();
    next.insert(job_name.clone(), definition.clone());
    let loaded = m.load_with(&next).map_err(|errors| {
        let problems: Vec<Value> = errors
            .0
            .iter()
            .map(|e| json!({"file": e.file, "line": e.line, "message": e.message}))
            .collect();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_definition",
            format!("the job does not validate: {errors}"),
        )
        .with_details(Value::Array(problems))
    })?;
    let job = loaded
        .into_iter()
        .find(|j| j.name == job_name && j.origin == crate::checks::Origin::Api)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_definition",
                "the job did not load",
            )
        })?;
    m.checks
        .store()
        .record_api_job(&job_name, &definition, &caller.name, false)
        .await
        .map_err(|e| ApiError::unavailable("cannot record the job in the lake", &e))?;
    *api = next;
    drop(api);
    m.checks
        .upsert(job.clone())
        .await
        .map_err(|e| ApiError::unavailable("cannot schedule the job", &e))?;
    tracing::info!(job = %job_name, author = %caller.name, "API job written");
    let status = if exists.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(job_info(&m, &job).await)))
}

/// `POST /jobs`: a new API job.
#[utoipa::path(post, path = "/jobs", tag = "jobs", request_body(content = Object, description = "One job, as in a job file's `jobs:` list"),
    responses((status = 201, body = JobInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "The name is taken", body = ErrorBody), (status = 422, description = "The definition does not validate", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_job(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let Json(body) = body.map_err(json_rejection)?;
    Ok(write_job(&state, &caller, None, body, true)
        .await?
        .into_response())
}

/// `PUT /jobs/{name}`: creates or replaces an API job.
#[utoipa::path(put, path = "/jobs/{name}", tag = "jobs", params(("name" = String, Path)), request_body(content = Object),
    responses((status = 200, body = JobInfo), (status = 201, body = JobInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "Defined in a file", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let Json(body) = body.map_err(json_rejection)?;
    Ok(write_job(&state, &caller, Some(&name), body, false)
        .await?
        .into_response())
}

pub(super) fn json_rejection(e: axum::extract::rejection::JsonRejection) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_definition",
        format!("the body is not a JSON object ({e}): send Content-Type: application/json"),
    )
}

/// `DELETE /jobs/{name}`.
#[utoipa::path(delete, path = "/jobs/{name}", tag = "jobs", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "Defined in a file", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::Admin)?;
    let m = manage(&state)?;
    let mut api = m.api_jobs.lock().await;
    let Some(job) = m.checks.job(&name) else {
        return Err(unknown_job(&name));
    };
    let Some(definition) = api.get(&name).cloned() else {
        return Err(ApiError::conflict(format!(
            "the job {name:?} is defined in {}: remove it there",
            job.origin.label()
        )));
    };
    let mut next = api.clone();
    next.remove(&name);
    if let Err(errors) = m.load_with(&next) {
        return Err(ApiError::conflict(format!(
            "other jobs need {name:?}: {errors}"
        )));
    }
    m.checks
        .store()
        .record_api_job(&name, &definition, &caller.name, true)
        .await
        .map_err(|e| ApiError::unavailable("cannot record the deletion in the lake", &e))?;
    *api = next;
    drop(api);
    m.checks
        .remove(&name)
        .await
        .map_err(|e| ApiError::unavailable("cannot unschedule the job", &e))?;
    tracing::info!(job = %name, author = %caller.name, "API job deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /jobs/{name}/run`: runs the job now, within the caps and behind its gates.
#[utoipa::path(post, path = "/jobs/{name}/run", tag = "jobs", params(("name" = String, Path)),
    responses((status = 202, description = "Queued: GET /jobs/{name}/runs shows the run", body = Object),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_job(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Operator)?;
    let m = manage(&state)?;
    if m.checks.job(&name).is_none() {
        return Err(unknown_job(&name));
    }
    let triggered = m
        .checks
        .scheduler
        .trigger_now(&name, Trigger::Api)
        .await
        .map_err(|e| ApiError::unavailable("cannot queue the run", &e))?;
    let queued = match triggered {
        Triggered::Queued => "queued",
        Triggered::AfterCurrentRun => "after_current_run",
        Triggered::AlreadyWaiting => "already_waiting",
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job": name, "queued": queued})),
    )
        .into_response())
}

/// `GET /jobs/{name}/runs?limit=`: the latest runs, newest first.
#[utoipa::path(get, path = "/jobs/{name}/runs", tag = "jobs",
    params(("name" = String, Path), ("limit" = Option<usize>, Query, description = "1 to 1000, default 20")),
    responses((status = 200, body = Vec<Object>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn job_runs(
    State(state): State<ApiState>,
    _c: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<serde_json::Map<String, Value>>>, ApiError> {
    let limit = limit_param(raw.as_deref(), 20, 1000)?;
    let m = manage(&state)?;
    let name = checked_name(&name)?;
    if m.checks.job(name).is_none() && m.checks.store().job_state(name).is_none() {
        return Err(unknown_job(name));
    }
    let rows = m
        .rows(&format!(
            "SELECT * FROM {ENGINE_DIR}.{CHECK_RUNS_TABLE} WHERE job = {} \
             ORDER BY started_at DESC LIMIT {limit}",
            quote(name)
        ))
        .await?;
    Ok(Json(rows))
}

/// `GET /runs/{run_id}`: a run with its results.
#[utoipa::path(get, path = "/runs/{run_id}", tag = "jobs", params(("run_id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(run_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = manage(&state)?;
    if !run_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(ApiError::not_found(
            "no such run: GET /jobs/{name}/runs lists them",
        ));
    }
    let runs = m
        .rows(&format!(
            "SELECT * FROM {ENGINE_DIR}.{CHECK_RUNS_TABLE} WHERE run_id = {}",
            quote(&run_id)
        ))
        .await?;
    let Some(mut run) = runs.into_iter().next() else {
        return Err(ApiError::not_found(format!(
            "no run {run_id:?} (runs reach the lake within a second of ending): GET \
             /jobs/{{name}}/runs lists them"
        )));
    };
    let mut results = m
        .rows(&format!(
            "SELECT * FROM {ENGINE_DIR}.{CHECK_RESULTS_TABLE} WHERE run_id = {} ORDER BY \"check\"",
            quote(&run_id)
        ))
        .await?;
    if !caller.role.reads_values() {
        for r in &mut results {
            r.remove("samples");
        }
    }
    run.insert(
        "results".into(),
        Value::Array(results.into_iter().map(Value::Object).collect()),
    );
    Ok(Json(Value::Object(run)))
}

/// `GET /alerts?status=open|resolved`.
#[utoipa::path(get, path = "/alerts", tag = "jobs",
    params(("status" = Option<String>, Query, description = "`open` (default) or `resolved`")),
    responses((status = 200, body = Vec<Object>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_alerts(
    State(state): State<ApiState>,
    _c: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<Value>>, ApiError> {
    let mut status = "open".to_owned();
    for (name, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match (name.as_ref(), value.as_ref()) {
            ("status", "open" | "resolved") => status = value.into_owned(),
            ("status", other) => {
                return Err(ApiError::parameter(
                    "status",
                    format!("{other:?}: use open or resolved"),
                ));
            }
            (other, _) => {
                return Err(ApiError::unknown_parameter(
                    other,
                    format!("`{other}` is not a parameter of /alerts; use status"),
                ));
            }
        }
    }
    let m = manage(&state)?;
    if status == "open" {
        return Ok(Json(
            m.checks
                .open_alerts()
                .into_iter()
                .map(|((job, check), a)| {
                    json!({"alert_id": a.alert_id, "job": job, "check": check, "status": "open",
                           "severity": a.severity.as_str(), "opened_at": a.opened_at.to_rfc3339(),
                           "message": a.message})
                })
                .collect(),
        ));
    }
    let rows = m
        .rows(&format!(
            "SELECT * FROM {ENGINE_DIR}.{ALERT_EVENTS_TABLE} WHERE event = 'resolved' \
             ORDER BY at DESC LIMIT 1000"
        ))
        .await?;
    Ok(Json(rows.into_iter().map(Value::Object).collect()))
}

/// `GET /gates/{job}`: whether downstream work may go on.
#[utoipa::path(get, path = "/gates/{job}", tag = "jobs", params(("job" = String, Path)),
    responses((status = 200, description = "The latest run passed or warned", body = Object),
              (status = 423, description = "The latest run failed, or none ran yet: the failing checks", body = Object),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn gate(
    State(state): State<ApiState>,
    _c: Caller,
    Path(job): Path<String>,
) -> Result<Response, ApiError> {
    let m = manage(&state)?;
    let job = checked_name(&job)?.to_owned();
    if m.checks.job(&job).is_none() {
        return Err(unknown_job(&job));
    }
    let status = m.checks.store().job_state(&job).and_then(|s| s.last_status);
    match status {
        Some(s) if s.lets_downstream_run() => Ok((
            StatusCode::OK,
            Json(json!({"open": true, "job": job, "status": s.as_str()})),
        )
            .into_response()),
        other => {
            let failing = m
                .rows(&format!(
                    "SELECT r.\"check\", r.status, r.value, r.threshold, r.message \
                     FROM {ENGINE_DIR}.{CHECK_RESULTS_TABLE} r WHERE r.run_id = (SELECT run_id \
                     FROM {ENGINE_DIR}.{CHECK_RUNS_TABLE} WHERE job = {q} ORDER BY scheduled_at \
                     DESC, finished_at DESC LIMIT 1) AND r.status NOT IN ('pass', 'warn')",
                    q = quote(&job)
                ))
                .await
                .unwrap_or_default();
            Ok((
                StatusCode::LOCKED,
                Json(json!({
                    "open": false, "job": job,
                    "status": other.map(|s| s.as_str()),
                    "reason": if other.is_none() { "the job has not run yet" } else { "its latest run is neither pass nor warn" },
                    "failing": failing,
                })),
            )
                .into_response())
        }
    }
}
