use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::metrics::Metrics;

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
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

fn config(public_metrics: bool) -> (ApiConfig, String) {
    let (token, sha256) = auth::new_token().unwrap();
    let api = ApiConfig {
        public_metrics,
        tokens: vec![config::TokenConfig {
            name: "ops".into(),
            role: auth::Role::Viewer,
            sha256,
        }],
        ..ApiConfig::default()
    };
    (api, token)
}

#[tokio::test]
async fn metrics_health_and_readiness() {
    let metrics = Arc::new(Metrics::new());
    let (status, rx) = watch::channel(EngineStatus::Starting);
    let cancel = CancellationToken::new();
    let (api, token) = config(false);
    let (addr, listener, tls) = bind("127.0.0.1:0".parse().unwrap(), &api).await.unwrap();
    let state = ApiState::new(Arc::clone(&metrics), rx, &api);
    let task = tokio::spawn(serve(listener, tls, state, cancel.clone()));
    metrics.transactions.inc_by(7);
    let t = Some(token.as_str());
    let (code, body) = get(addr, "/metrics", t).await;
    assert_eq!(code, 200);
    assert!(body.contains("walaudit_transactions_total 7"), "{body}");
    // Only /healthz is open.
    assert_eq!(get(addr, "/healthz", None).await.0, 200);
    assert_eq!(get(addr, "/metrics", None).await.0, 401);
    assert_eq!(get(addr, "/readyz", None).await.0, 401);
    assert_eq!(get(addr, "/metrics", Some("wa_wrong")).await.0, 401);
    assert_eq!(
        get(addr, "/readyz", t).await,
        (503, "starting\n".to_owned())
    );
    status.send_replace(EngineStatus::Streaming);
    assert_eq!(
        get(addr, "/readyz", t).await,
        (200, "streaming\n".to_owned())
    );
    status.send_replace(EngineStatus::Draining);
    assert_eq!(get(addr, "/readyz", t).await.0, 503);
    let (code, body) = get(addr, "/no/such/route", t).await;
    assert_eq!(code, 404);
    assert!(body.contains("openapi.json"), "{body}");
    // The earlier requests are counted by route pattern and status.
    let (_, body) = get(addr, "/metrics", t).await;
    assert!(
        body.contains(
            r#"walaudit_http_requests_total{method="GET",route="/metrics",status="401"} 2"#
        ),
        "{body}"
    );
    assert!(body.contains(r#"route="unmatched",status="404""#), "{body}");
    cancel.cancel();
    task.await.unwrap();
    // A taken port is a clear error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = bind(taken.local_addr().unwrap(), &api).await.unwrap_err();
    assert!(
        err.to_string().contains("choose another with --listen"),
        "{err}"
    );
}

#[tokio::test]
async fn public_metrics_and_plain_http_off_loopback() {
    let (api, _) = config(true);
    let (status, rx) = watch::channel(EngineStatus::Serving);
    let (addr, listener, tls) = bind("127.0.0.1:0".parse().unwrap(), &api).await.unwrap();
    let cancel = CancellationToken::new();
    let state = ApiState::new(Arc::new(Metrics::new()), rx, &api);
    let task = tokio::spawn(serve(listener, tls, state, cancel.clone()));
    assert_eq!(get(addr, "/metrics", None).await.0, 200);
    assert_eq!(get(addr, "/readyz", None).await.0, 200);
    // The API itself still needs a token.
    assert_eq!(get(addr, "/audit_events", None).await.0, 401);
    cancel.cancel();
    task.await.unwrap();
    drop(status);
    let err = bind("0.0.0.0:0".parse().unwrap(), &api).await.unwrap_err();
    assert!(err.to_string().contains("refusing plain HTTP"), "{err}");
    let allowed = ApiConfig {
        allow_plain_http: true,
        ..api
    };
    assert!(bind("0.0.0.0:0".parse().unwrap(), &allowed).await.is_ok());
}
