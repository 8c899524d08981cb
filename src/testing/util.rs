//! Small helpers of the test support code: SQL quoting, unique names, process liveness,
//! reading a metric.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use crate::cluster::process_running;
pub use crate::source::quote::{quote_ident, quote_literal};

/// A name unique in this process and across concurrently running test processes, made of
/// `[a-z0-9_]` only and at most 63 bytes (a Postgres identifier): `<hint>_<pid>_<counter>`.
pub fn unique_name(hint: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut clean: String = hint
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .take(40)
        .collect();
    if !clean.starts_with(|c: char| c.is_ascii_lowercase()) {
        clean.insert_str(0, "t_");
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{clean}_{}_{n}", std::process::id())
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for URL user info).
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte))
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Waits until `series` on the engine's /metrics equals `want`; panics naming `what` after
/// `within`.
pub async fn wait_metric(port: u16, series: &str, want: f64, within: Duration, what: &str) {
    let deadline = std::time::Instant::now() + within;
    while metric(port, series).await != Some(want) {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to a minute) until the engine on `port` streams from its slot.
pub async fn wait_streaming(port: u16) {
    let within = Duration::from_secs(60);
    wait_metric(
        port,
        "walaudit_streaming",
        1.0,
        within,
        "the engine did not start streaming",
    )
    .await;
}

/// The value of `series` (name with its labels, as exposed) on the engine's /metrics.
pub async fn metric(port: u16, series: &str) -> Option<f64> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut body = String::new();
    conn.read_to_string(&mut body).await.ok()?;
    let line = body
        .lines()
        .find(|l| l.starts_with(&format!("{series} ")))?;
    line[series.len()..].trim().parse().ok()
}
