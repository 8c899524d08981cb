//! The engine's HTTP listener: Prometheus metrics and health probes.
//!
//! ```text
//!  GET /metrics  the Prometheus text exposition of the engine's metrics
//!  GET /healthz  200 while the process serves requests (liveness)
//!  GET /readyz   200 while replication is streaming, 503 otherwise (readiness)
//! ```
//!
//! The listener stops when the engine's cancellation token fires.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::SharedMetrics;

/// The listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: is another process using it? choose another with --listen")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The routes, over the engine's metrics.
pub fn router(metrics: SharedMetrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(metrics)
}

/// Bind `addr`; returns the bound address (port 0 picks a free one) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    metrics: SharedMetrics,
    cancel: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError { addr, source })?;
    tracing::info!(listen = %bound, "serving /metrics, /healthz, /readyz");
    let task = tokio::spawn(async move {
        let app = router(metrics);
        let shutdown = async move { cancel.cancelled().await };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %err, "the HTTP listener stopped");
        }
    });
    Ok((bound, task))
}

async fn metrics_text(State(metrics): State<SharedMetrics>) -> impl IntoResponse {
    let content_type = [(
        header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    )];
    (content_type, metrics.render())
}

async fn ready(State(metrics): State<SharedMetrics>) -> impl IntoResponse {
    if metrics.streaming.get() == 1 {
        (StatusCode::OK, "streaming\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not streaming\n")
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
        let cancel = CancellationToken::new();
        let any_port = "127.0.0.1:0".parse().unwrap();
        let (addr, task) = serve(any_port, Arc::clone(&metrics), cancel.clone())
            .await
            .unwrap();
        metrics.transactions.inc_by(7);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("walaudit_transactions_total 7"), "{body}");
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        metrics.streaming.set(1);
        assert_eq!(get(addr, "/readyz").await, (200, "streaming\n".to_owned()));
        cancel.cancel();
        task.await.unwrap();
        // A taken port is a clear error.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = serve(
            taken.local_addr().unwrap(),
            metrics,
            CancellationToken::new(),
        )
        .await;
        assert!(err.unwrap_err().to_string().contains("--listen"));
    }
}
