//! The echo server behind the `ws-echo` binary, as a library so that tests can run it in
//! process on `127.0.0.1:0`.
//!
//! Every connection starts as a task on one multi-threaded executor: it reads the request head,
//! serves the demo page, `/healthz` or a 404 to plain HTTP, and refuses bad upgrades with their
//! 4xx. An accepted WebSocket then echoes every message frame by frame as it streams in, so a
//! message of any size costs a bounded amount of memory — on Linux in an engine thread of its
//! own (edge-triggered epoll, see `engine.rs`), elsewhere (or with [`Engine::Async`]) in the
//! same task through [`ws_transport::WebSocket`].

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, future};
use smol::Executor;
use tracing::{debug, info, warn};
use ws_proto::{CloseCode, Delivery, HandshakeError, Request, Response};
use ws_server::{End, LiveGuard, echo_events, log_end};
use ws_transport::{Error, ServerHandshake, WebSocket};

/// The demo page served at `/`.
pub const PAGE: &str = include_str!("page.html");

/// What runs the echo once the opening handshake is done (`--engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[non_exhaustive]
pub enum Engine {
    /// Each connection stays a task on the executor and echoes through
    /// [`ws_transport::WebSocket`] (smol's reactor). Portable.
    #[value(help = "each connection a task on the executor, through ws-transport (portable)")]
    Async,
    /// Connections are handed to [`Options::echo_threads`] engine threads, each with an
    /// edge-triggered epoll set driving `ws_proto::Connection`s directly: fewer system calls
    /// per message. Linux only; the default there.
    #[cfg(target_os = "linux")]
    #[value(help = "engine threads with edge-triggered epoll (Linux)")]
    Epoll,
}

impl Default for Engine {
    fn default() -> Self {
        #[cfg(target_os = "linux")]
        return Self::Epoll;
        #[cfg(not(target_os = "linux"))]
        return Self::Async;
    }
}

/// Server settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Connections served at once; more get HTTP 503. Default 10,000.
    pub max_connections: usize,
    /// Limits and timeouts of each connection.
    pub transport: ws_transport::Config,
    /// What runs the echo phase. Default [`Engine::Epoll`] on Linux, else [`Engine::Async`].
    pub engine: Engine,
    /// Engine threads for [`Engine::Epoll`]. Default 1.
    pub echo_threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        let mut transport = ws_transport::Config::default();
        // Echo frame by frame: memory per connection stays bounded whatever the message size.
        transport.protocol.delivery = Delivery::Chunks;
        // Large reads while a big message streams: a 16 MiB echo takes 64 reads instead of
        // 256 (measured: 5.8 ms of server CPU per 16 MiB message instead of 8.6). Idle
        // connections hold no read buffer, so this costs memory only while reading.
        transport.read_buffer_size = 256 << 10;
        // permessage-deflate when the client offers it (browsers always do), without context
        // takeover: zlib state is freed between messages, so idle connections stay small.
        let mut deflate = ws_proto::DeflateConfig::default();
        deflate.server_no_context_takeover = true;
        deflate.client_no_context_takeover = true;
        transport.compression = Some(deflate);
        Self { max_connections: 10_000, transport, engine: Engine::default(), echo_threads: 1 }
    }
}

/// What a finished server run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted over the run (including those refused with 503).
    pub accepted: usize,
    /// Connections still open when the drain deadline passed (0 after a clean drain).
    pub abandoned: usize,
}

/// A bound echo server.
#[derive(Debug)]
pub struct Server {
    listener: Async<TcpListener>,
    options: Arc<Options>,
    echo: EchoPhase,
}

impl Server {
    /// Binds the listening socket.
    /// Binds the listening socket and starts the echo engine threads, if the engine has
    /// them (their epoll sets are created here, so running out of descriptors is an error
    /// at start, not later).
    pub fn bind(addr: SocketAddr, options: Options) -> io::Result<Self> {
        let listener = Async::<TcpListener>::bind(addr)?;
        let echo = EchoPhase::start(&options)?;
        Ok(Self { listener, options: Arc::new(options), echo })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, sends close 1001 to every open
    /// connection, and waits up to the close timeout (plus a second) for them to finish.
    pub async fn run(
        self,
        ex: Arc<Executor<'static>>,
        shutdown: impl Future<Output = ()>,
    ) -> Summary {
        let live = Arc::new(AtomicUsize::new(0));
        let refusing = Arc::new(AtomicUsize::new(0));
        // Closing this channel (dropping the sender) tells every connection to shut down.
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let echo = Arc::new(self.echo);
        let mut accepted = 0;
        let accept_loop = async {
            loop {
                match self.listener.accept().await {
                    Ok((stream, peer)) => {
                        accepted += 1;
                        if live.load(Ordering::Acquire) >= self.options.max_connections {
                            if refusing.fetch_add(1, Ordering::AcqRel)
                                < self.options.max_connections
                            {
                                let guard = LiveGuard(Arc::clone(&refusing));
                                ex.spawn(async move {
                                    refuse(stream).await;
                                    drop(guard);
                                })
                                .detach();
                            } else {
                                refusing.fetch_sub(1, Ordering::AcqRel);
                            }
                            debug!(%peer, "at capacity: refused with 503");
                            continue;
                        }
                        live.fetch_add(1, Ordering::AcqRel);
                        let guard = LiveGuard(Arc::clone(&live));
                        let options = Arc::clone(&self.options);
                        let stop = stop_rx.clone();
                        let echo = Arc::clone(&echo);
                        ex.spawn(async move {
                            handle(stream, peer, &options, stop, &echo, guard).await;
                        })
                        .detach();
                    }
                    Err(err) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!("accept failed: {err}");
                        Timer::after(Duration::from_millis(50)).await;
                    }
                }
            }
        };
        accept_loop.or(shutdown).await;
        drop(self.listener);
        let open = live.load(Ordering::Acquire);
        info!(open, "shutting down: closing open connections with 1001");
        drop(stop_tx);
        echo.stop();
        let deadline =
            Instant::now() + self.options.transport.close_timeout + Duration::from_secs(1);
        while live.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(10)).await;
        }
        let abandoned = live.load(Ordering::Acquire);
        // Handshakes still in flight hold clones; the last one ends with them.
        if let Ok(echo) = Arc::try_unwrap(echo) {
            echo.join();
        }
        Summary { accepted, abandoned }
    }
}

/// Answers 503 to a connection over the limit, then ends it within three seconds.
async fn refuse(mut stream: Async<TcpStream>) {
    let response = Response::new(503)
        .header("Retry-After", "1")
        .header("Connection", "close")
        .body("server at capacity\n")
        .to_bytes();
    let send = async {
        stream.write_all(&response).await?;
        stream.flush().await?;
        stream.get_ref().shutdown(std::net::Shutdown::Write)?;
        // Read what the client sent, so that closing does not reset the connection before
        // it reads the response.
        let mut scratch = [0u8; 1024];
        while stream.read(&mut scratch).await? > 0 {}
        Ok::<(), io::Error>(())
    };
    let _ = future::or(send, async {
        Timer::after(Duration::from_secs(3)).await;
        Ok(())
    })
    .await;
}

/// The response to a plain HTTP request.
fn route(request: &Request) -> Response {
    let path = request.path.split('?').next().unwrap_or("");
    if request.method != "GET" && request.method != "HEAD" {
        return Response::new(405).header("Allow", "GET, HEAD").body("method not allowed\n");
    }
    let response = match path {
        "/" | "/index.html" => Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .header("Cache-Control", "no-cache")
            .body(PAGE),
        "/healthz" => Response::new(200).header("Content-Type", "text/plain").body("ok\n"),
        _ => Response::new(404).header("Content-Type", "text/plain").body("not found\n"),
    };
    let response = response.header("Connection", "close");
    if request.method == "HEAD" {
        let len = response.body.len().to_string();
        return response.header("Content-Length", len).body(Vec::new());
    }
    response
}

/// Serves a connection: the opening handshake (or plain HTTP), then the echo.
///
/// The two phases are separate allocations, one after the other: a future keeps the size of
/// its largest state for its whole life, and an idle connection should cost only what its
/// echo needs, not what its handshake needed.
async fn handle(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    options: &Options,
    stop: async_channel::Receiver<()>,
    phase: &EchoPhase,
    guard: LiveGuard,
) {
    let Some(ws) = Box::pin(open(stream, peer, options)).await else { return };
    match phase {
        EchoPhase::Async => Box::pin(echo(ws, peer, stop)).await,
        #[cfg(target_os = "linux")]
        EchoPhase::Epoll(pool) => {
            if let Err(err) = pool.adopt(ws, peer, guard) {
                warn!(%peer, "cannot hand the connection to an engine: {err}");
            }
            return;
        }
    }
    drop(guard);
}

/// The running echo phase of a server.
#[derive(Debug)]
enum EchoPhase {
    Async,
    #[cfg(target_os = "linux")]
    Epoll(ws_server::epoll::Pool),
}

impl EchoPhase {
    fn start(options: &Options) -> io::Result<Self> {
        Ok(match options.engine {
            Engine::Async => Self::Async,
            #[cfg(target_os = "linux")]
            Engine::Epoll => Self::Epoll(ws_server::epoll::Pool::start(
                options.echo_threads,
                &options.transport,
            )?),
        })
    }

    /// Shuts the engines' connections down with 1001 (tasks hear it through their channel).
    fn stop(&self) {
        #[cfg(target_os = "linux")]
        if let Self::Epoll(pool) = self {
            pool.stop();
        }
    }

    fn join(self) {
        #[cfg(target_os = "linux")]
        if let Self::Epoll(pool) = self {
            pool.join();
        }
    }
}

/// Reads the request; answers plain HTTP and bad upgrades; returns an accepted WebSocket.
async fn open(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    options: &Options,
) -> Option<WebSocket<Async<TcpStream>>> {
    let _ = stream.get_ref().set_nodelay(true);
    let handshake = match ServerHandshake::read(stream, options.transport.clone()).await {
        Ok(handshake) => handshake,
        Err(Error::Handshake(err)) => {
            debug!(%peer, status = err.status(), "bad request head: {err}");
            return None;
        }
        Err(err) => {
            debug!(%peer, "no request: {err}");
            return None;
        }
    };
    match handshake.upgrade() {
        Err(HandshakeError::NotWebSocket) => {
            let response = route(handshake.request());
            debug!(%peer, path = %handshake.request().path, status = response.status, "http");
            let _ = handshake.respond(response).await;
            None
        }
        Err(err) => {
            debug!(%peer, status = err.status(), "refused upgrade: {err}");
            let _ = handshake.respond(err.response()).await;
            None
        }
        Ok(_) => match handshake.accept(None).await {
            Ok(ws) => Some(ws),
            Err(err) => {
                debug!(%peer, "handshake failed: {err}");
                None
            }
        },
    }
}

/// Echoes until the peer closes, breaks the protocol, or the server shuts down.
async fn echo(
    mut ws: WebSocket<Async<TcpStream>>,
    peer: SocketAddr,
    stop: async_channel::Receiver<()>,
) {
    debug!(%peer, "open");
    let result = echo_loop(&mut ws, &stop).await;
    let (read, written) = ws.byte_counts();
    log_end(peer, result.as_ref().map_err(|err| err as &dyn std::fmt::Display), read, written);
}

async fn echo_loop(
    ws: &mut WebSocket<Async<TcpStream>>,
    stop: &async_channel::Receiver<()>,
) -> Result<End, Error> {
    let high_water = ws.config().write_buffer_size;
    let text_frame = &mut Vec::new();
    // One wait for shutdown for the connection's life, not a new one per read.
    let mut stopping = std::pin::pin!(stop.recv());
    loop {
        let pass = echo_events(
            ws.connection_mut(),
            text_frame,
            high_water,
            None::<fn(&[u8], &[u8]) -> usize>,
        );
        // Backpressure: nothing more is read until what we owe the peer is written.
        ws.flush().await?;
        if let Some(end) = pass.end {
            if !matches!(end, End::Disconnected) {
                // Sends what is queued and ends the stream (the server closes first).
                Box::pin(ws.close(CloseCode::NORMAL, "")).await.or_else(ignore_after_close)?;
            }
            return Ok(end);
        }
        if pass.more {
            continue;
        }
        let read = async { ws.read_more().await.map(Some) };
        let stopped = async {
            let _ = (&mut stopping).await;
            Ok(None)
        };
        if read.or(stopped).await?.is_none() {
            Box::pin(ws.close(CloseCode::GOING_AWAY, "server shutting down")).await?;
            return Ok(End::Closed(CloseCode::GOING_AWAY));
        }
    }
}

/// After the close handshake, errors from closing again are not failures.
fn ignore_after_close(err: Error) -> Result<(), Error> {
    match err {
        Error::Send(_) | Error::Closed | Error::Disconnected | Error::Timeout(_) => Ok(()),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, method: &str) -> Request {
        Request { method: method.into(), path: path.into(), version: 1, headers: vec![] }
    }

    #[test]
    fn routes() {
        let page = route(&get("/", "GET"));
        assert_eq!(page.status, 200);
        assert!(String::from_utf8_lossy(&page.body).contains("new WebSocket"));
        assert_eq!(route(&get("/healthz", "GET")).status, 200);
        assert_eq!(route(&get("/nope", "GET")).status, 404);
        assert_eq!(route(&get("/", "POST")).status, 405);
        let head = route(&get("/healthz", "HEAD"));
        assert!(head.body.is_empty());
    }

    #[test]
    fn the_page_is_self_contained() {
        // No external scripts, styles or fonts.
        for needle in ["src=\"http", "href=\"http", "@import", "//cdn"] {
            assert!(!PAGE.contains(needle), "{needle}");
        }
    }
}
