//! Audit events: `GET /audit_events` (pages, cursors, exports), `GET /tables` and
//! `GET /tables/{table}/history`.
//!
//! ```text
//!  query ─► params::parse (400s) ─► view: latest, or the cursor's pinned versions
//!        ─► select (predicates per table) ─► count + page of positions (one view)
//!        ─► fetch the page's rows per table ─► render by role ─► {data, meta}
//! ```

pub mod cursor;
pub mod export;
pub mod params;
pub mod render;
pub mod select;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::FunctionRegistry;
use deltalake::datafusion::logical_expr::ScalarUDF;
use deltalake::datafusion::prelude::SessionContext;
use serde::Serialize;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::lake::{CONTEXT_FIELD, LakeView, ViewError};
use cursor::{Cursor, Position};
use render::{AuditEvent, Rendered};
use select::Selected;

/// A page of events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub data: Vec<AuditEvent>,
    pub meta: PageMeta,
}

/// Where a page is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageMeta {
    pub current_page: u64,
    pub total_pages: u64,
    pub per_page: u64,
    pub total_count: u64,
    /// Pass as `cursor` for the next page (same filters); null on the last page.
    pub next_cursor: Option<String>,
}

pub(super) fn view_error(e: ViewError) -> ApiError {
    match e {
        ViewError::Expired(e) => ApiError {
            code: "cursor_expired",
            ..ApiError::parameter(
                "cursor",
                format!("{e}: start again from the first page (no cursor)"),
            )
        },
        other => ApiError::unavailable("cannot open the lake", &other),
    }
}

fn query_error(e: DataFusionError) -> ApiError {
    match e {
        DataFusionError::ResourcesExhausted(_) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the API's query memory (api.query_memory) is in use: retry, or narrow the filters",
        ),
        other => ApiError::unavailable("cannot read the lake", &other),
    }
}

async fn timed<T>(
    state: &ApiState,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let limit = state.api.query_timeout;
    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the lake did not answer within api.query_timeout ({limit:?}): narrow the filters \
                 (a time range, a table) or raise the limit"
            ),
        ))
    })
}

fn udf(ctx: &SessionContext) -> Arc<ScalarUDF> {
    ctx.udf(CONTEXT_FIELD)
        .expect("the API session registers the context function")
}

/// `GET /audit_events`.
#[utoipa::path(
    get,
    path = "/audit_events",
    tag = "events",
    params(params::EventParams),
    responses(
        (status = 200, description = "A page of events, newest first (or, with `Accept: application/x-ndjson` or `text/csv`, every matching event)", body = EventPage,
         content((EventPage = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
        (status = 400, description = "A parameter is invalid (named in the error)", body = super::error::ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = super::error::ErrorBody),
        (status = 503, description = "The lake cannot be read now", body = super::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn audit_events(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = params::parse(raw.as_deref())?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, &q.filter))
        .transpose()?;
    let lake = state.lake()?;
    let view = match &cursor {
        Some(c) => lake.pinned(&c.versions).await,
        None => lake.latest().await,
    }
    .map_err(view_error)?;
    let ctx = lake.session();
    let selected = select::select(&view, &q.filter, &udf(&ctx))?;
    let values = caller.role.reads_values();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if let Some(format) = export::Format::from_accept(accept) {
        let body = export::body(
            ctx,
            selected,
            values,
            state.api.company_field.clone(),
            format,
        );
        return Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response());
    }
    let page_no = cursor.as_ref().map_or(q.page.unwrap_or(1), |c| c.page);
    let per_page = q.per_page;
    let page = timed(&state, async {
        let total = select::count(&ctx, &selected).await.map_err(query_error)?;
        let offset = match &cursor {
            Some(_) => 0,
            None => ((page_no - 1).saturating_mul(per_page)) as usize,
        };
        let positions = select::page(
            &ctx,
            &selected,
            cursor.as_ref().map(|c| &c.after),
            offset,
            per_page as usize,
        )
        .await
        .map_err(query_error)?;
        let events = events_at(
            &ctx,
            &selected,
            &positions,
            values,
            &state.api.company_field,
        )
        .await?;
        let seen = (page_no - 1) * per_page + events.len() as u64;
        let next_cursor = match positions.last() {
            Some(last) if seen < total && events.len() as u64 == per_page => Some(
                Cursor {
                    versions: view.versions(),
                    after: *last,
                    page: page_no + 1,
                    filters: cursor::fingerprint(&q.filter),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(EventPage {
            data: events,
            meta: PageMeta {
                current_page: page_no,
                total_pages: total.div_ceil(per_page),
                per_page,
                total_count: total,
                next_cursor,
            },
        })
    })
    .await?;
    Ok(Json(page).into_response())
}

/// The events at `positions`, in that order.
async fn events_at(
    ctx: &SessionContext,
    selected: &[Selected],
    positions: &[Position],
    values: bool,
    company_field: &str,
) -> Result<Vec<AuditEvent>, ApiError> {
    let mut found: HashMap<(u32, i64, i64), AuditEvent> = HashMap::new();
    for s in selected {
        let mine: Vec<Position> = positions
            .iter()
            .filter(|p| p.table == s.index)
            .copied()
            .collect();
        if mine.is_empty() {
            continue;
        }
        for batch in select::fetch(ctx, s, &mine, values)
            .await
            .map_err(query_error)?
        {
            let rendered = render::render(&s.table, s.index, &batch, values, company_field)
                .map_err(|e| ApiError::internal("cannot render events", &e))?;
            for Rendered { position, event } in rendered {
                found.insert((position.table, position.lsn, position.seq), event);
            }
        }
    }
    Ok(positions
        .iter()
        .filter_map(|p| found.remove(&(p.table, p.lsn, p.seq)))
        .collect())
}

/// A table of the lake.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TableInfo {
    /// `schema.table`.
    pub name: String,
    /// The key columns in key order; empty when the lake has no key for the table.
    pub key_columns: Vec<String>,
    /// The source columns, in table order.
    pub columns: Vec<String>,
    /// The Delta version read.
    pub version: i64,
}

/// `GET /tables`.
#[utoipa::path(
    get,
    path = "/tables",
    tag = "events",
    responses(
        (status = 200, description = "The change tables of the lake", body = Vec<TableInfo>),
        (status = 401, description = "No token, or an unknown one", body = super::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn tables(
    State(state): State<ApiState>,
    _caller: Caller,
) -> Result<Json<Vec<TableInfo>>, ApiError> {
    let view = state.lake()?.latest().await.map_err(view_error)?;
    Ok(Json(
        view.tables
            .iter()
            .map(|t| TableInfo {
                name: t.qualified_name(),
                key_columns: t.key_columns.clone(),
                columns: t.source_columns.clone(),
                version: t.version,
            })
            .collect(),
    ))
}

/// A row's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct History {
    /// `schema.table`.
    pub table: String,
    pub key: String,
    /// Every change of the row, oldest first.
    pub data: Vec<AuditEvent>,
}

/// The parameters of a row's history.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct HistoryParams {
    /// The key value; a compound key as `a,b` in key order.
    key: String,
}

/// `GET /tables/{table}/history?key=…`.
#[utoipa::path(
    get,
    path = "/tables/{table}/history",
    tag = "events",
    params(("table" = String, Path, description = "`schema.table`, or `table` for public"), HistoryParams),
    responses(
        (status = 200, description = "Every change of the row, oldest first", body = History),
        (status = 400, description = "The key is missing or does not fit the table's key", body = super::error::ErrorBody),
        (status = 401, description = "No token, or an unknown one", body = super::error::ErrorBody),
        (status = 404, description = "The lake has no such table", body = super::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    State(state): State<ApiState>,
    caller: Caller,
    Path(table): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<History>, ApiError> {
    let mut key = None;
    for (name, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "key" if key.is_none() => key = Some(value.into_owned()),
            "key" => {
                return Err(ApiError::parameter(
                    "key",
                    "`key` is given twice: give it once",
                ));
            }
            other => {
                return Err(ApiError::unknown_parameter(
                    other,
                    format!("`{other}` is not a parameter of a row's history; use key"),
                ));
            }
        }
    }
    let key = key.ok_or_else(|| {
        ApiError::parameter(
            "key",
            "give the row's key: ?key=42 (a compound key as key=a,b)",
        )
    })?;
    let lake = state.lake()?;
    let view = lake.latest().await.map_err(view_error)?;
    let data = timed(
        &state,
        row_history(&state, &view, &table, &key, caller.role.reads_values()),
    )
    .await?;
    Ok(Json(History {
        table: view
            .find(&table)
            .map_or(table.clone(), |t| t.qualified_name()),
        key,
        data,
    }))
}

async fn row_history(
    state: &ApiState,
    view: &LakeView,
    name: &str,
    key: &str,
    values: bool,
) -> Result<Vec<AuditEvent>, ApiError> {
    let lake = state.lake()?;
    let index = view.position(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "the lake has no table {name:?}: GET /tables lists them (schema.table)"
        ))
    })?;
    let table = &view.tables[index];
    if table.key_columns.is_empty() {
        return Err(ApiError::parameter(
            "key",
            format!(
                "the lake holds no key for {} (no primary key, or REPLICA IDENTITY FULL): query \
                 its rows with walaudit query instead",
                table.qualified_name()
            ),
        ));
    }
    let predicate = select::key_predicate(table, key).ok_or_else(|| {
        ApiError::parameter(
            "key",
            format!(
                "{key:?} does not fit the key of {} ({}): give one value per key column, \
                 separated by commas, each of the column's type",
                table.qualified_name(),
                table.key_columns.join(", ")
            ),
        )
    })?;
    let ctx = lake.session();
    let s = Selected {
        index: index as u32,
        table: table.clone(),
        filter: predicate,
    };
    let mut events: Vec<Rendered> = Vec::new();
    let batches = ctx
        .read_table(s.table.provider.clone())
        .and_then(|df| df.filter(s.filter.clone()))
        .and_then(|df| df.select(select::columns(&s.table, true)))
        .map_err(query_error)?
        .collect()
        .await
        .map_err(query_error)?;
    for batch in &batches {
        events.extend(
            render::render(table, s.index, batch, true, &state.api.company_field)
                .map_err(|e| ApiError::internal("cannot render events", &e))?,
        );
    }
    events.sort_by_key(|r| (r.position.lsn, r.position.seq));
    Ok(chain_images(events, values))
}

/// Fills in what a change's own row cannot say from the one before it: the old values of an
/// update without a before image, the whole row a delete removed. Row values go only to roles
/// that read them.
fn chain_images(events: Vec<Rendered>, values: bool) -> Vec<AuditEvent> {
    use params::EventType;
    use serde_json::Value;
    let mut previous = Value::Null;
    let mut out = Vec::with_capacity(events.len());
    for Rendered { mut event, .. } in events {
        if let Some(v) = event.values.as_mut() {
            match event.event_type {
                EventType::Update if v.before.is_null() && !previous.is_null() => {
                    v.before = previous.clone();
                    v.changes = render::diff(&v.before, &v.after, None);
                }
                EventType::Delete if !previous.is_null() => {
                    v.before = previous.clone();
                    v.changes = render::diff(&v.before, &Value::Null, None);
                }
                EventType::Snapshot if !previous.is_null() => {
                    v.before = previous.clone();
                    v.changes = render::diff(&v.before, &v.after, None);
                }
                _ => {}
            }
            previous = match event.event_type {
                EventType::Delete | EventType::Truncate => Value::Null,
                _ => v.after.clone(),
            };
        }
        if !values {
            event.values = None;
        }
        out.push(event);
    }
    out
}
