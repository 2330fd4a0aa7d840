//! WebSockets on tokio's streams (the `tokio` feature): [`accept`] and [`connect`] take any
//! `tokio::io::AsyncRead + AsyncWrite` stream (a `tokio::net::TcpStream`, a TLS stream from
//! tokio-rustls, hyper's upgraded connection through `hyper_util::rt::TokioIo`) and run the
//! WebSocket's timers on tokio's clock: no async-io thread starts. [`connect_tcp`] opens the
//! connection too (tokio's resolver and TCP, TLS for `wss://`, the proxy from the
//! environment), as [`crate::connect_tcp`] does on smol.
//!
//! ```no_run
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::{SinkExt, StreamExt};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     tokio::spawn(async move {
//!         let mut ws = ws_transport::tokio::accept(stream, Default::default()).await?;
//!         while let Some(message) = ws.next().await {
//!             ws.send(message?).await?;
//!         }
//!         Ok::<(), ws_transport::Error>(())
//!     });
//! }
//! # }
//! ```

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_lite::{AsyncRead, AsyncWrite};
use ws_proto::{Accepted, Request, Response, Upgrade};

use crate::config::Config;
use crate::connect::{Connector, Net, connect_tcp_on, first_to_answer};
use crate::error::Error;
use crate::socket::WebSocket;
use crate::tls::{MaybeTls, default_client_config};

/// A tokio stream as a futures-io one, for [`WebSocket`]. Closing it shuts its write side
/// down (`poll_shutdown`), as the close handshake needs.
#[derive(Debug)]
pub struct TokioIo<T>(T);

impl<T> TokioIo<T> {
    /// Wraps a tokio stream.
    pub fn new(stream: T) -> Self {
        Self(stream)
    }

    /// The tokio stream.
    pub fn get_ref(&self) -> &T {
        &self.0
    }

    /// The tokio stream.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: tokio::io::AsyncRead + Unpin> AsyncRead for TokioIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = tokio::io::ReadBuf::new(buf);
        ready!(Pin::new(&mut self.get_mut().0).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> AsyncWrite for TokioIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// A WebSocket over a tokio stream.
pub type TokioWebSocket<T> = WebSocket<TokioIo<T>>;

/// [`crate::accept`] on a tokio stream.
pub async fn accept<T>(stream: T, config: Config) -> Result<TokioWebSocket<T>, Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    crate::accept(TokioIo(stream), config).await
}

/// [`crate::accept_with`] on a tokio stream.
pub async fn accept_with<T, F>(
    stream: T,
    config: Config,
    decide: F,
) -> Result<TokioWebSocket<T>, Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    F: FnOnce(&Request, &Upgrade) -> Result<Option<String>, Response>,
{
    crate::accept_with(TokioIo(stream), config, decide).await
}

/// [`crate::connect`] on a tokio stream.
pub async fn connect<T>(
    stream: T,
    url: &str,
    config: Config,
) -> Result<(TokioWebSocket<T>, Accepted), Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    crate::connect(TokioIo(stream), url, config).await
}

/// The stream [`connect_tcp`] opens: tokio's TCP stream, with TLS for `wss://`.
pub type ClientStream = MaybeTls<TokioIo<tokio::net::TcpStream>, rustls::ClientConnection>;

/// [`crate::connect_tcp`] on tokio: tokio resolves the name (on its blocking pool) and opens
/// the TCP connection (with `TCP_NODELAY`); TLS for `wss://` with the system's trust store;
/// the HTTP proxy the environment names. Everything, handshake included, within
/// [`Config::handshake_timeout`] on tokio's clock.
///
/// ```no_run
/// # async fn run() -> Result<(), ws_transport::Error> {
/// let (mut ws, _) = ws_transport::tokio::connect_tcp("wss://example.com/", Default::default())
///     .await?;
/// ws.send("hello").await?;
/// let echo = ws.recv().await?;
/// ws.close(ws_transport::ws_proto::CloseCode::NORMAL, "").await?;
/// # Ok(()) }
/// ```
pub async fn connect_tcp(
    url: &str,
    config: Config,
) -> Result<(WebSocket<ClientStream>, Accepted), Error> {
    connect_tcp_with(url, config, &Connector::default()).await
}

/// [`connect_tcp`] with TLS settings or a proxy of the caller's.
pub async fn connect_tcp_with(
    url: &str,
    config: Config,
    connector: &Connector,
) -> Result<(WebSocket<ClientStream>, Accepted), Error> {
    connect_tcp_on::<TokioNet>(url, config, connector).await
}

/// tokio's resolver, TCP streams and blocking pool.
struct TokioNet;

impl Net for TokioNet {
    type Tcp = TokioIo<tokio::net::TcpStream>;

    async fn tcp(host: &str, port: u16) -> Result<Self::Tcp, Error> {
        let addrs = tokio::net::lookup_host((host, port)).await?;
        first_to_answer(addrs, |addr| async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo(stream))
        })
        .await
    }

    async fn default_tls() -> Result<std::sync::Arc<rustls::ClientConfig>, Error> {
        tokio::task::spawn_blocking(default_client_config)
            .await
            .map_err(|err| Error::Io(io::Error::other(err)))?
    }
}
