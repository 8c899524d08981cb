//! Reconciliation and report routes.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::Serialize;
use serde_json::Value;

use super::{checked_name, limit_param, manage, quote};
use crate::api::ApiState;
use crate::api::auth::{Caller, Role};
use crate::api::error::{ApiError, ErrorBody};
use crate::lake::catalog::{ENGINE_DIR, RECONCILIATION_DIFFS_TABLE, RECONCILIATIONS_TABLE};
use crate::reconcile::model::Reconciliation;

/// A reconciliation as loaded from its file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReconciliationInfo {
    pub name: String,
    pub description: Option<String>,
    /// `file:<path>`.
    pub origin: String,
    /// `connection/dataset` of each side.
    pub source: String,
    pub target: String,
    pub key: Vec<String>,
    pub time_column: Option<String>,
    /// Window length, seconds.
    pub window_seconds: u64,
    pub schedule: Option<String>,
}

fn info(r: &Reconciliation) -> ReconciliationInfo {
    ReconciliationInfo {
        name: r.name.clone(),
        description: r.description.clone(),
        origin: r.origin.label(),
        source: format!("{}/{}", r.source.connection, r.source.dataset),
        target: format!("{}/{}", r.target.connection, r.target.dataset),
        key: r.key.clone(),
        time_column: r.time_column.clone(),
        window_seconds: r.window.as_secs(),
        schedule: r.schedule.clone(),
    }
}

fn find<'a>(m: &'a super::Manage, name: &str) -> Result<&'a Reconciliation, ApiError> {
    m.reconciliations
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no reconciliation named {name:?}: GET /reconciliations lists them"
            ))
        })
}

/// `GET /reconciliations`.
#[utoipa::path(get, path = "/reconciliations", tag = "reconciliations",
    responses((status = 200, body = Vec<ReconciliationInfo>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_reconciliations(
    State(state): State<ApiState>,
    _c: Caller,
) -> Result<Json<Vec<ReconciliationInfo>>, ApiError> {
    let m = manage(&state)?;
    Ok(Json(m.reconciliations.iter().map(info).collect()))
}

/// `GET /reconciliations/{name}`.
#[utoipa::path(get, path = "/reconciliations/{name}", tag = "reconciliations", params(("name" = String, Path)),
    responses((status = 200, body = ReconciliationInfo), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_reconciliation(
    State(state): State<ApiState>,
    _c: Caller,
    Path(name): Path<String>,
) -> Result<Json<ReconciliationInfo>, ApiError> {
    let m = manage(&state)?;
    Ok(Json(info(find(&m, &name)?)))
}

/// `POST /reconciliations/{name}/run`: runs it now, records it in the lake, returns the
/// report.
#[utoipa::path(post, path = "/reconciliations/{name}/run", tag = "reconciliations", params(("name" = String, Path)),
    responses((status = 200, description = "The transfer audit report", body = Object),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_reconciliation(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Operator)?;
    let m = manage(&state)?;
    let rec = find(&m, &name)?.clone();
    let recs = [rec];
    let targets = crate::reconcile::command::open(&recs, &m.config)
        .await
        .map_err(|e| ApiError::unavailable("cannot open the reconciliation's connections", &e))?;
    let store = crate::reconcile::command::open_store(&m.config)
        .await
        .map_err(|e| ApiError::unavailable("cannot open the lake", &e))?;
    let reports = crate::reconcile::command::run_all(
        &recs,
        &targets,
        Some(&store),
        crate::reconcile::run::RunOptions::default(),
    )
    .await
    .map_err(|e| ApiError::unavailable("cannot record the report in the lake", &e))?;
    let text = crate::reconcile::command::render_json(&reports);
    let mut report: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    if !caller.role.reads_values()
        && let Some(diff) = report.get_mut("diff").and_then(Value::as_object_mut)
    {
        diff.remove("keys");
    }
    Ok(Json(report))
}

/// `GET /reconciliations/{name}/reports?limit=`: the latest audit records, newest first.
#[utoipa::path(get, path = "/reconciliations/{name}/reports", tag = "reconciliations",
    params(("name" = String, Path), ("limit" = Option<usize>, Query, description = "1 to 1000, default 20")),
    responses((status = 200, body = Vec<Object>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reconciliation_reports(
    State(state): State<ApiState>,
    _c: Caller,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<Value>>, ApiError> {
    let limit = limit_param(raw.as_deref(), 20, 1000)?;
    let m = manage(&state)?;
    let name = checked_name(&name)?;
    find(&m, name)?;
    let rows = m
        .rows(&format!(
            "SELECT * FROM {ENGINE_DIR}.{RECONCILIATIONS_TABLE} WHERE reconciliation = {} \
             ORDER BY started_at DESC, window_start LIMIT {limit}",
            quote(name)
        ))
        .await?;
    Ok(Json(rows.into_iter().map(Value::Object).collect()))
}

/// `GET /reports/{job_id}`: one run's audit records (windows) and differing keys.
#[utoipa::path(get, path = "/reports/{job_id}", tag = "reconciliations", params(("job_id" = String, Path)),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_report(
    State(state): State<ApiState>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = manage(&state)?;
    if !job_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        return Err(ApiError::not_found("no such report"));
    }
    let records = m
        .rows(&format!(
            "SELECT * FROM {ENGINE_DIR}.{RECONCILIATIONS_TABLE} WHERE job_id = {} ORDER BY \
             window_start",
            quote(&job_id)
        ))
        .await?;
    if records.is_empty() {
        return Err(ApiError::not_found(format!(
            "no report {job_id:?}: GET /reconciliations/{{name}}/reports lists them"
        )));
    }
    let mut report = serde_json::Map::new();
    report.insert("job_id".into(), Value::String(job_id.clone()));
    report.insert(
        "records".into(),
        Value::Array(records.into_iter().map(Value::Object).collect()),
    );
    if caller.role.reads_values() {
        let keys = m
            .rows(&format!(
                "SELECT key, kind, columns FROM {ENGINE_DIR}.{RECONCILIATION_DIFFS_TABLE} WHERE \
                 job_id = {} ORDER BY key",
                quote(&job_id)
            ))
            .await?;
        report.insert(
            "keys".into(),
            Value::Array(keys.into_iter().map(Value::Object).collect()),
        );
    }
    Ok(Json(Value::Object(report)))
}
