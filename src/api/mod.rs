//! The engine's HTTP API: audit events, row histories, validation jobs, reconciliations,
//! Prometheus metrics and health probes, behind bearer tokens with roles.
//!
//! ```text
//!  GET /healthz                    open: 200 while the process serves requests
//!  GET /readyz, /metrics           viewer (open with api.public_metrics)
//!  GET /openapi.json               viewer: the OpenAPI 3.1 document of every route
//!  GET /audit_events               viewer (row values from auditor): pages, cursors, exports
//!  GET /tables, /tables/{t}/history viewer (row values from auditor)
//!  jobs, runs, alerts, reconciliations, reports, gates: see [`manage`]
//! ```
//!
//! Every response is counted in `walaudit_http_requests_total` by route pattern and status.
//! The listener stops when its cancellation token fires; the engine ([`crate::engine`]) owns
//! the task.
//!
//! # Invariants
//! * Nothing but `/healthz` answers without a token (unless `api.public_metrics`).
//! * Plain HTTP binds only to loopback unless `api.allow_plain_http`.
//! * The API never writes the lake except through the job, reconciliation, run and alert
//!   routes, and never connects to the source.

pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod lake;
pub mod manage;
pub mod openapi;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::EngineStatus;
use crate::metrics::SharedMetrics;
use auth::Tokens;
use config::ApiConfig;
use error::ApiError;

/// The listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: is another process using it? choose another with --listen")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "refusing plain HTTP on {addr}, which is not a loopback address: set api.tls_cert and \
         api.tls_key, or api.allow_plain_http = true when a TLS proxy is in front"
    )]
    PlainHttp { addr: SocketAddr },
    #[error("TLS file {path}: {reason}; give PEM files in api.tls_cert and api.tls_key")]
    Tls { path: PathBuf, reason: String },
    #[error("cannot set up the API's lake queries: {0}; check api.query_memory")]
    Query(String),
}

/// What the routes read.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: SharedMetrics,
    pub status: watch::Receiver<EngineStatus>,
    pub api: Arc<ApiConfig>,
    pub tokens: Arc<Tokens>,
    /// The lake the event routes read (none: they answer 503).
    pub lake: Option<Arc<lake::ApiLake>>,
    /// The validation jobs and reconciliations, once their service runs (until then, or
    /// without one, their routes answer 503).
    pub manage: Arc<std::sync::OnceLock<Arc<manage::Manage>>>,
}

impl ApiState {
    /// A state without a lake or jobs behind it.
    pub fn new(
        metrics: SharedMetrics,
        status: watch::Receiver<EngineStatus>,
        api: &ApiConfig,
    ) -> ApiState {
        ApiState {
            metrics,
            status,
            api: Arc::new(api.clone()),
            tokens: Arc::new(Tokens::new(&api.tokens)),
            lake: None,
            manage: Arc::default(),
        }
    }

    /// The lake, or a 503 saying the API has none.
    pub fn lake(&self) -> Result<&Arc<lake::ApiLake>, ApiError> {
        self.lake.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "this listener has no lake behind it: run walaudit serve or walaudit run",
            )
        })
    }
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi::document))
        .route("/audit_events", get(events::audit_events))
        .route("/tables", get(events::tables))
        .route("/tables/{table}/history", get(events::history))
        .merge(manage::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route: GET /openapi.json lists them")
}

/// Counts every response by route pattern, method and status, and times it.
async fn count(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let m = &state.metrics;
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    m.http_request_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Checks that `addr` may serve as configured, then binds it; returns the bound address (port
/// 0 picks a free one), the listener and the TLS configuration, if any.
pub async fn bind(
    addr: SocketAddr,
    api: &ApiConfig,
) -> Result<(SocketAddr, TcpListener, Option<Arc<rustls::ServerConfig>>), ListenError> {
    let tls = match api.tls() {
        Some((cert, key)) => Some(tls::server_config(cert, key)?),
        None if !addr.ip().is_loopback() && !api.allow_plain_http => {
            return Err(ListenError::PlainHttp { addr });
        }
        None => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError::Bind { addr, source })?;
    Ok((bound, listener, tls))
}

/// Serves the routes on `listener` (HTTPS with `tls`) until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: ApiState,
    cancel: CancellationToken,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(listen = %bound, scheme, "serving the HTTP API");
    }
    let app = router(state);
    match tls {
        Some(config) => tls::serve(listener, app, config, cancel).await,
        None => {
            let shutdown = async move { cancel.cancelled().await };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %err, "the HTTP listener stopped");
            }
        }
    }
}

/// A viewer token, unless `api.public_metrics` opens the route.
fn operational(state: &ApiState, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if state.api.public_metrics {
        return Ok(());
    }
    state.tokens.caller(headers).map(|_| ())
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "The Prometheus text exposition", body = String, content_type = "text/plain"),
              (status = 401, description = "No token (and api.public_metrics is off)", body = error::ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn metrics_text(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    operational(&state, &headers)?;
    let content_type = [(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    )];
    Ok((content_type, state.metrics.render()).into_response())
}

/// `GET /readyz`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The engine streams or serves", body = String, content_type = "text/plain"),
              (status = 503, description = "The engine is starting, draining or failed", body = String, content_type = "text/plain"),
              (status = 401, description = "No token (and api.public_metrics is off)", body = error::ErrorBody)),
    security(("bearer" = []), ()))]
pub async fn ready(
    State(state): State<ApiState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    operational(&state, &headers)?;
    let status = state.status.borrow().clone();
    let code = if matches!(status, EngineStatus::Streaming | EngineStatus::Serving) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((code, format!("{status}\n")).into_response())
}

#[cfg(test)]
mod tests;
