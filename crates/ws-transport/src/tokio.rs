//! WebSockets on tokio's streams (the `tokio` feature): [`accept`] and [`connect`] take any
//! `tokio::io::AsyncRead + AsyncWrite` stream (a `tokio::net::TcpStream`, a TLS stream from
//! tokio-rustls, hyper's upgraded connection through `hyper_util::rt::TokioIo`) and run the
//! WebSocket's timers on tokio's clock: no async-io thread starts.
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
use crate::error::Error;
use crate::socket::WebSocket;

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
