//! The engine's HTTP listener: Prometheus metrics and health probes.
//!
//! ```text
//!  GET /metrics  the Prometheus text exposition of the engine's metrics
//!  GET /healthz  200 while the process serves requests (liveness)
//!  GET /readyz   200 while the engine streams (its status), 503 otherwise (readiness)
//! ```
//!
//! The listener stops when the engine's cancellation token fires. It is spawned by the
//! engine ([`crate::engine`]), which owns the task.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::engine::EngineStatus;
use crate::metrics::SharedMetrics;

/// The listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: is another process using it? choose another with --listen")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// What the routes read: the metrics and the engine's status.
#[derive(Clone)]
pub struct ApiState {
    pub metrics: SharedMetrics,
    pub status: watch::Receiver<EngineStatus>,
}

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

/// Binds `addr`; returns the bound address (port 0 picks a free one) and the listener.
pub async fn bind(addr: SocketAddr) -> Result<(SocketAddr, TcpListener), ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError { addr, source })?;
    Ok((bound, listener))
}

/// Serves the routes on `listener` until `cancel` fires.
pub async fn serve(listener: TcpListener, state: ApiState, cancel: CancellationToken) {
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(listen = %bound, "serving /metrics, /healthz, /readyz");
    }
    let shutdown = async move { cancel.cancelled().await };
    if let Err(err) = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %err, "the HTTP listener stopped");
    }
}

async fn metrics_text(State(state): State<ApiState>) -> impl IntoResponse {
    let content_type = [(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    )];
    (content_type, state.metrics.render())
}

async fn ready(State(state): State<ApiState>) -> impl IntoResponse {
    let status = state.status.borrow().clone();
    if matches!(status, EngineStatus::Streaming | EngineStatus::Serving) {
        (StatusCode::OK, format!("{status}\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{status}\n"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::metrics::Metrics;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    #[tokio::test]
    async fn metrics_health_and_readiness() {
        let metrics = Arc::new(Metrics::new());
        let (status, rx) = watch::channel(EngineStatus::Starting);
        let cancel = CancellationToken::new();
        let (addr, listener) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let state = ApiState {
            metrics: Arc::clone(&metrics),
            status: rx,
        };
        let task = tokio::spawn(serve(listener, state, cancel.clone()));
        metrics.transactions.inc_by(7);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("walaudit_transactions_total 7"), "{body}");
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await, (503, "starting\n".to_owned()));
        status.send_replace(EngineStatus::Streaming);
        assert_eq!(get(addr, "/readyz").await, (200, "streaming\n".to_owned()));
        status.send_replace(EngineStatus::Draining);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        cancel.cancel();
        task.await.unwrap();
        // A taken port is a clear error.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(taken.local_addr().unwrap()).await.unwrap_err();
        assert!(
            err.to_string().contains("choose another with --listen"),
            "{err}"
        );
    }
}
