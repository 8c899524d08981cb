//! The byte stream to the server: TCP, Unix socket, or TLS over TCP, negotiated per `sslmode`.
//!
//! ```text
//!  resolve host ─► TCP connect (each address in turn) ─► SSLRequest ─┬─ 'S' ─► rustls handshake
//!                                                                     └─ 'N' ─► plain (prefer) or error
//!  socket dir  ─► Unix connect (never TLS, as in libpq)
//! ```
//!
//! Both the replication connection and the ordinary SQL connections use this, so errors and
//! TLS behaviour are the same everywhere.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::SourceError;
use super::params::{ConnParams, Host, SslMode};
use super::tls;

/// A connected stream to the server.
#[derive(Debug)]
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Socket {
    pub fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }
}

/// Opens the stream, doing the TLS negotiation `params.sslmode` asks for. With `prefer`, a
/// failed handshake falls back to a fresh plain connection, as libpq does.
pub(crate) async fn connect(params: &ConnParams) -> Result<Socket, SourceError> {
    let config = tls::client_config(params)?;
    let Host::Tcp(host) = &params.host else {
        let path = params.socket_path().unwrap_or_default();
        return UnixStream::connect(&path)
            .await
            .map(Socket::Unix)
            .map_err(|source| SourceError::Unreachable {
                addr: path.display().to_string(),
                source,
            });
    };
    let tcp = connect_tcp(host, params.port).await?;
    let Some(config) = config else {
        return Ok(Socket::Tcp(tcp));
    };
    match negotiate_tls(tcp, host, params, config).await {
        Err(SourceError::Tls { source, .. }) if params.sslmode == SslMode::Prefer => {
            tracing::info!(address = %params.address(), error = %source,
                "tls handshake failed, retrying without tls (sslmode=prefer)");
            Ok(Socket::Tcp(connect_tcp(host, params.port).await?))
        }
        other => other,
    }
}

async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, SourceError> {
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let unreachable = |source| SourceError::Unreachable {
        addr: addr.clone(),
        source,
    };
    let mut last_err = None;
    for sock_addr in tokio::net::lookup_host((host, port))
        .await
        .map_err(unreachable)?
    {
        match TcpStream::connect(sock_addr).await {
            Ok(tcp) => {
                // Small messages (status updates) must not wait for Nagle.
                tcp.set_nodelay(true).map_err(unreachable)?;
                return Ok(tcp);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(unreachable(last_err.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "the host name resolved to no address",
        )
    })))
}

async fn negotiate_tls(
    mut tcp: TcpStream,
    host: &str,
    params: &ConnParams,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<Socket, SourceError> {
    let io_err = |source| SourceError::Io {
        context: "negotiating TLS",
        source,
    };
    let mut req = bytes::BytesMut::with_capacity(8);
    postgres_protocol::message::frontend::ssl_request(&mut req);
    tcp.write_all(&req).await.map_err(io_err)?;
    // Exactly one byte: anything the server sent after it must come through TLS.
    let answer = match tcp.read_u8().await {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(SourceError::Closed {
                context: "negotiating TLS",
            });
        }
        Err(e) => return Err(io_err(e)),
    };
    match answer {
        b'S' => {
            let name = tls::server_name(host)?;
            let tls = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|source| SourceError::Tls {
                    addr: params.address(),
                    mode: params.sslmode,
                    hint: tls::handshake_hint(&source, params.sslmode),
                    source,
                })?;
            Ok(Socket::Tls(Box::new(tls)))
        }
        b'N' if params.sslmode.requires_tls() => Err(SourceError::TlsRefused {
            addr: params.address(),
            mode: params.sslmode,
        }),
        b'N' => Ok(Socket::Tcp(tcp)),
        other => Err(SourceError::protocol(
            "negotiating TLS",
            format!(
                "answer {:?} to SSLRequest, expected 'S' or 'N'",
                other as char
            ),
        )),
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_port_is_unreachable_and_transient() {
        // Bind then drop to find a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let params =
            ConnParams::parse_with_env(&format!("postgres://u@127.0.0.1:{port}/db"), |_| None)
                .unwrap();
        let err = connect(&params).await.unwrap_err();
        assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
        assert_eq!(err.recovery(), crate::recovery::Recovery::Reconnect);
        assert_eq!(
            err.to_string(),
            format!(
                "cannot reach 127.0.0.1:{port}: is the server running and is the address right?"
            )
        );
    }

    #[tokio::test]
    async fn require_refused_by_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 8];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(req, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], "SSLRequest");
            s.write_all(b"N").await.unwrap();
        });
        let url = format!("postgres://u@127.0.0.1:{port}/db?sslmode=require");
        let params = ConnParams::parse_with_env(&url, |_| None).unwrap();
        let err = connect(&params).await.unwrap_err();
        assert!(matches!(err, SourceError::TlsRefused { .. }), "{err:?}");
        assert!(err.to_string().contains("enable ssl = on"));
        server.await.unwrap();
    }
}
