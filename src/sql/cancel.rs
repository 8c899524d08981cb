//! Stopping a Postgres backend: a cancel request that returns once the server has acted on it,
//! and termination as the last resort.
//!
//! ```text
//!  cancel token ─► transport::connect (same address, TLS as the connection)
//!      ─► CancelRequest (tokio-postgres' cancel_query_raw) ─► shutdown ─► wait for the server's EOF
//!  pid ─► new connection ─► SELECT pg_terminate_backend(pid)
//! ```
//!
//! The server closes a cancel connection only after it has signalled the backend, so waiting
//! for that close orders the cancel before whatever is sent to the backend next: the
//! `ROLLBACK` that follows, or a later query, is never the statement a late cancel hits.
//!
//! # Invariants
//! * Neither step carries SQL text or values; errors are reported as strings for logs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::{CancelToken, NoTls};

use crate::source::ConnParams;

/// Sends a cancel request for `cancel`'s backend and waits (at most `grace`) until the server
/// has processed it.
pub(crate) async fn send_cancel(
    params: &ConnParams,
    cancel: &CancelToken,
    grace: Duration,
) -> Result<(), String> {
    let run = async {
        let socket = crate::source::transport::connect(params)
            .await
            .map_err(|e| e.to_string())?;
        cancel
            .cancel_query_raw(AwaitClose(socket), NoTls)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(grace, run)
        .await
        .map_err(|_| format!("no answer within {}ms", grace.as_millis()))?
}

/// Terminates the backend `pid` from a new connection (a role may signal its own backends).
pub(crate) async fn terminate(
    params: &ConnParams,
    pid: i32,
    grace: Duration,
) -> Result<(), String> {
    let run = async {
        let client = params.connect_sql().await.map_err(|e| e.to_string())?;
        client
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    tokio::time::timeout(grace, run)
        .await
        .map_err(|_| format!("no answer within {}ms", grace.as_millis()))?
}

/// A stream whose shutdown also waits for the peer to close its side.
struct AwaitClose<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for AwaitClose<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for AwaitClose<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.0).poll_shutdown(cx))?;
        // The server sends nothing back to a cancel request: read until it closes. An error
        // (a reset, TLS without close_notify) is a close too.
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.0).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => continue,
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_the_peer_to_close() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut client = AwaitClose(client);
        client.write_all(b"cancel").await.unwrap();
        let shutdown = tokio::spawn(async move { client.shutdown().await });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"cancel");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!shutdown.is_finished(), "the peer has not closed yet");
        drop(server);
        shutdown.await.unwrap().unwrap();
    }
}
