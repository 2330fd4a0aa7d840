//! [`Server`]: the listener, the opening handshake and its routing, and the engines that run
//! the accepted connections.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, future};
use smol::Executor;
use tracing::{debug, info, warn};
use ws_proto::{HandshakeError, Request, Response, Upgrade};
use ws_transport::rustls::ServerConfig;
use ws_transport::{Error, ServerHandshake, WebSocket};

use crate::tls::{Tls, TlsStream};

use crate::budget::{Budget, Held};
use crate::handler::Handler;
use crate::options::{Engine, LiveGuard, Options};
use crate::stats::Refusal;

/// How the opening handshake of an upgrade request is answered.
#[derive(Debug)]
#[non_exhaustive]
pub struct Accept<H> {
    /// The connection's handler.
    pub handler: H,
    /// The subprotocol to answer with: one the client offered, or `None`.
    pub protocol: Option<String>,
    /// Negotiate permessage-deflate, when it is configured and the client offers it.
    /// Default true.
    pub compression: bool,
    /// Log the connection's frames for [`Handler::on_frames`](crate::Handler::on_frames):
    /// at most this many between two calls (see
    /// [`Connection::inspect_frames`](ws_proto::Connection::inspect_frames)). Default none.
    pub inspect: Option<usize>,
}

impl<H> Accept<H> {
    /// Accepts with `handler`, no subprotocol, compression as configured.
    pub fn new(handler: H) -> Self {
        Self { handler, protocol: None, compression: true, inspect: None }
    }

    /// Answers with subprotocol `protocol` (one the client offered).
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocol = Some(protocol.to_owned());
        self
    }

    /// Does not negotiate permessage-deflate with this client.
    pub fn without_compression(mut self) -> Self {
        self.compression = false;
        self
    }

    /// Logs the connection's frames for [`Handler::on_frames`](crate::Handler::on_frames), at
    /// most `capacity` between two calls.
    pub fn inspect(mut self, capacity: usize) -> Self {
        self.inspect = Some(capacity);
        self
    }
}

/// An application: answers plain HTTP, and accepts WebSocket upgrades with a [`Handler`] each
/// (or refuses them). Called on the executor's threads, for each request.
pub trait App: Send + Sync + 'static {
    /// The handler each accepted connection gets.
    type Handler: Handler;

    /// The response to a request that is not a WebSocket upgrade. Default: 404.
    fn http(&self, request: &Request, peer: SocketAddr) -> Response {
        let _ = (request, peer);
        Response::new(404).header("Content-Type", "text/plain").body("not found\n")
    }

    /// A valid upgrade request: accept it with a handler, or refuse it with any response
    /// (403 for a foreign `Origin`, 404 for a path without WebSockets, …).
    fn upgrade(
        &self,
        request: &Request,
        upgrade: &Upgrade,
        peer: SocketAddr,
    ) -> Result<Accept<Self::Handler>, Response>;
}

/// What a finished server run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Connections accepted over the run (including those refused with 503).
    pub accepted: usize,
    /// Connections still open when the drain deadline passed (0 after a clean drain).
    pub abandoned: usize,
}

/// A bound server for application `A`.
pub struct Server<A: App> {
    listener: Async<TcpListener>,
    options: Arc<Options>,
    app: Arc<A>,
    engines: Engines<A::Handler>,
    budget: Arc<Budget>,
}

impl<A: App> std::fmt::Debug for Server<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("options", &self.options).finish_non_exhaustive()
    }
}

impl<A: App> Server<A> {
    /// Binds the listening socket and starts the engine threads, if the engine has them
    /// (their epoll sets are created here, so running out of descriptors is an error at
    /// start, not later).
    pub fn bind(addr: SocketAddr, options: Options, app: A) -> io::Result<Self> {
        let listener = Async::new(listen(addr, options.reuse_port)?)?;
        let budget = Arc::new(Budget::new(options.max_memory));
        if let Some(stats) = &options.stats {
            stats.set_budget(&budget);
        }
        let engines = Engines::start(&options, &budget)?;
        Ok(Self { listener, options: Arc::new(options), app: Arc::new(app), engines, budget })
    }

    /// The server-wide memory budget: what all connections hold, against
    /// [`Options::max_memory`].
    pub fn budget(&self) -> Arc<Budget> {
        Arc::clone(&self.budget)
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, sends close 1001 to every
    /// open connection, and waits up to the close timeout (plus a second) for them to
    /// finish. Handshakes (and, with [`Engine::Async`], connections) run as tasks on `ex`.
    pub async fn run(
        self,
        ex: Arc<Executor<'static>>,
        shutdown: impl Future<Output = ()>,
    ) -> Summary {
        let live = Arc::new(AtomicUsize::new(0));
        let refusing = Arc::new(AtomicUsize::new(0));
        // Closing this channel (dropping the sender) tells every task to shut down.
        let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
        let engines = Arc::new(self.engines);
        let mut accepted = 0;
        let accept_loop = async {
            loop {
                match self.listener.accept().await {
                    Ok((stream, peer)) => {
                        accepted += 1;
                        let stats = self.options.stats.as_deref();
                        if let Some(stats) = stats {
                            stats.accepted();
                        }
                        let full = live.load(Ordering::Acquire) >= self.options.max_connections;
                        if full || self.budget.exhausted() {
                            let why = if full { Refusal::Capacity } else { Refusal::Memory };
                            if refusing.fetch_add(1, Ordering::AcqRel)
                                < self.options.max_connections
                            {
                                let guard = LiveGuard(Arc::clone(&refusing));
                                let tls = self.options.tls.clone();
                                if tls.is_some() && self.budget.exhausted() {
                                    // Over TLS a 503 costs a TLS handshake: not while the
                                    // memory budget is spent. The connection just closes.
                                    drop((stream, guard));
                                    debug!(%peer, "memory budget spent: closed (TLS port)");
                                    if let Some(stats) = stats {
                                        stats.refused(why, None);
                                    }
                                    continue;
                                }
                                if let Some(stats) = stats {
                                    stats.refused(why, Some(503));
                                }
                                ex.spawn(async move {
                                    refuse(stream, tls).await;
                                    drop(guard);
                                })
                                .detach();
                            } else {
                                refusing.fetch_sub(1, Ordering::AcqRel);
                                if let Some(stats) = stats {
                                    stats.refused(why, None);
                                }
                            }
                            debug!(%peer, full, "at capacity or memory budget: refused with 503");
                            continue;
                        }
                        live.fetch_add(1, Ordering::AcqRel);
                        let guard = LiveGuard(Arc::clone(&live));
                        let options = Arc::clone(&self.options);
                        let app = Arc::clone(&self.app);
                        let stop = stop_rx.clone();
                        let engines = Arc::clone(&engines);
                        let budget = Arc::clone(&self.budget);
                        ex.spawn(async move {
                            let context = Context { options: &options, budget: &budget, stop };
                            serve(stream, peer, context, &*app, &engines, guard).await;
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
        // The memory budget is looked at for pressure while the server accepts.
        let watch = self.budget.watch(self.options.budget_timeout);
        accept_loop.or(shutdown).or(watch).await;
        drop(self.listener);
        let open = live.load(Ordering::Acquire);
        info!(open, "shutting down: closing open connections with 1001");
        drop(stop_tx);
        engines.stop();
        let deadline =
            Instant::now() + self.options.transport.close_timeout + Duration::from_secs(1);
        while live.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            Timer::after(Duration::from_millis(10)).await;
            // Pressure follows the budget through the drain too.
            self.budget.look(Instant::now(), self.options.budget_timeout);
        }
        let abandoned = live.load(Ordering::Acquire);
        // Handshakes still in flight hold clones; the last one ends with them.
        if let Ok(engines) = Arc::try_unwrap(engines) {
            engines.join();
        }
        Summary { accepted, abandoned }
    }
}

/// Answers 503 to a connection over the limit (over TLS on a TLS port), then ends it within
/// three seconds.
async fn refuse(stream: Async<TcpStream>, tls: Option<Arc<ServerConfig>>) {
    let response = Response::new(503)
        .header("Retry-After", "1")
        .header("Connection", "close")
        .body("server at capacity\n");
    let stream = match tls {
        None => Stream::Plain(stream),
        Some(config) => match Tls::new(config) {
            Ok(tls) => Stream::Tls(Box::new(TlsStream::new(stream, tls))),
            Err(_) => return,
        },
    };
    answer_and_close(stream, response).await;
}

/// Writes `response`, ends the stream (after a TLS handshake and with `close_notify`, for
/// TLS), and reads what the client sends until it closes, all within three seconds.
async fn answer_and_close(mut stream: Stream, response: Response) {
    let response = response.to_bytes();
    let send = async {
        if let Stream::Tls(tls) = &mut stream {
            tls.handshake().await?;
        }
        stream.write_all(&response).await?;
        stream.close().await?;
        stream.get_ref().get_ref().shutdown(std::net::Shutdown::Write)?;
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

/// What a TLS handshake in progress counts in the memory budget (then the request head's
/// buffer follows, counted on its own): the TLS bytes held for rustls (a handshake message of
/// up to 64 KiB and a record behind it) and a read of up to a record; rustls's own copies of
/// a handshake message that long (parsed, and kept for the transcript until the hash is
/// chosen); the server's flight and rustls's state (16 KiB, for a certificate chain of a few
/// KiB). 240 KiB: a 512 MiB budget has room for over 2,000 at once.
pub const TLS_HANDSHAKE_MEMORY: usize =
    crate::tls::INPUT_MAX + crate::tls::RECORD_MAX + 2 * (64 << 10) + (16 << 10);

/// A connection's stream during the opening handshake: TCP on smol's reactor, with TLS on a
/// TLS port.
pub(crate) type Stream = crate::tls::Stream<Async<TcpStream>>;

/// Serves a connection: TLS on a TLS port, the opening handshake (or plain HTTP), then the
/// session.
///
/// The two phases are separate allocations, one after the other: a future keeps the size of
/// its largest state for its whole life, and an idle connection should cost only what its
/// session needs, not what its handshake needed.
async fn serve<A: App>(
    stream: Async<TcpStream>,
    peer: SocketAddr,
    context: Context<'_>,
    app: &A,
    engines: &Engines<A::Handler>,
    guard: LiveGuard,
) {
    let _ = stream.get_ref().set_nodelay(true);
    // TLS and HTTP together get the handshake timeout.
    let accepted = Instant::now();
    let deadline = accepted + context.options.transport.handshake_timeout;
    let stats = context.options.stats.as_deref();
    // A TLS handshake counts in the memory budget for what rustls may buffer meanwhile.
    let mut handshake = Held::default();
    let stream = match &context.options.tls {
        None => Stream::Plain(stream),
        Some(config) => {
            handshake.update(context.budget, TLS_HANDSHAKE_MEMORY);
            match Box::pin(start_tls(stream, config, peer, deadline)).await {
                Ok(stream) => stream,
                Err((why, status)) => {
                    handshake.release(context.budget);
                    if let Some(stats) = stats {
                        stats.refused(why, status);
                    }
                    return;
                }
            }
        }
    };
    let opened = Box::pin(open(stream, peer, context.options, app, deadline)).await;
    handshake.release(context.budget);
    let (ws, handler) = match opened {
        Opened::WebSocket(ws, handler) => {
            if let Some(stats) = stats {
                stats.handshake(accepted.elapsed());
            }
            (ws, handler)
        }
        Opened::Http(status) => {
            if let Some(stats) = stats {
                stats.http(status);
            }
            return;
        }
        Opened::Refused(why, status) => {
            if let Some(stats) = stats {
                stats.refused(why, status);
            }
            return;
        }
    };
    match engines {
        Engines::Async => {
            let ws = crate::portable::adopt(ws);
            Box::pin(crate::portable::run(
                ws,
                crate::portable::Contained::new(handler, peer),
                context,
            ))
            .await;
            drop(guard);
        }
        #[cfg(target_os = "linux")]
        Engines::Epoll(pool) => {
            if let Err(err) = pool.adopt(ws, handler, peer, guard) {
                warn!(%peer, "cannot hand the connection to an engine: {err}");
            }
        }
    }
}

/// What a connection's task shares with the server.
pub(crate) struct Context<'a> {
    pub(crate) options: &'a Options,
    pub(crate) budget: &'a Budget,
    /// Closed when the server shuts down.
    pub(crate) stop: async_channel::Receiver<()>,
}

/// Why a connection ended before it became a WebSocket, and the status it was answered with.
type Refused = (Refusal, Option<u16>);

/// The start of a connection to a TLS port: TLS if the client's first byte could begin it;
/// plain HTTP gets a 400 that says to use TLS. `Err` when the connection is done with.
async fn start_tls(
    stream: Async<TcpStream>,
    config: &Arc<ServerConfig>,
    peer: SocketAddr,
    deadline: Instant,
) -> Result<Stream, Refused> {
    let mut first = [0u8; 1];
    let peek = async { Some(stream.peek(&mut first).await) };
    let timeout = async {
        Timer::at(deadline).await;
        None
    };
    match peek.or(timeout).await {
        Some(Ok(1)) => {}
        Some(_) => return Err((Refusal::Closed, None)),
        None => {
            debug!(%peer, "no TLS handshake before the handshake timeout");
            return Err((Refusal::Timeout, None));
        }
    }
    // A TLS record starts with its type (22 for a handshake); an HTTP request with its
    // method, in capitals.
    if first[0].is_ascii_uppercase() {
        debug!(%peer, "plain HTTP on the TLS port: 400");
        let response = Response::new(400)
            .header("Content-Type", "text/plain")
            .header("Connection", "close")
            .body("this port speaks TLS: use https:// or wss://\n");
        answer_and_close(Stream::Plain(stream), response).await;
        return Err((Refusal::Tls, Some(400)));
    }
    match Tls::new(Arc::clone(config)) {
        Ok(tls) => Ok(Stream::Tls(Box::new(TlsStream::new(stream, tls)))),
        Err(err) => {
            warn!(%peer, "cannot start TLS: {err}");
            Err((Refusal::Tls, None))
        }
    }
}

/// How the opening handshake ended. Returned once and taken apart at once: boxing the
/// WebSocket variant would add an allocation and save nothing.
#[allow(clippy::large_enum_variant)]
enum Opened<H> {
    /// Accepted: the WebSocket and its handler.
    WebSocket(WebSocket<Stream>, H),
    /// A plain HTTP request, answered with this status.
    Http(u16),
    /// No WebSocket, and why.
    Refused(Refusal, Option<u16>),
}

/// Reads the request; answers plain HTTP and refused upgrades; returns an accepted
/// WebSocket with its handler.
async fn open<A: App>(
    stream: Stream,
    peer: SocketAddr,
    options: &Options,
    app: &A,
    deadline: Instant,
) -> Opened<A::Handler> {
    // Over TLS, the TLS handshake runs as the request is read: its failures (rustls's errors
    // come as InvalidData) are TLS refusals.
    let tls = matches!(stream, Stream::Tls(_));
    let handshake =
        match ServerHandshake::read_by(stream, options.transport.clone(), deadline).await {
            Ok(handshake) => handshake,
            Err(Error::Handshake(err)) => {
                debug!(%peer, status = err.status(), "bad request head: {err}");
                return Opened::Refused(Refusal::BadRequest, Some(err.status()));
            }
            Err(Error::Timeout(_)) => {
                debug!(%peer, "no request before the handshake timeout");
                return Opened::Refused(Refusal::Timeout, None);
            }
            Err(Error::Io(err)) if tls && err.kind() == io::ErrorKind::InvalidData => {
                debug!(%peer, "TLS failed: {err}");
                return Opened::Refused(Refusal::Tls, None);
            }
            Err(err) => {
                debug!(%peer, "no request: {err}");
                return Opened::Refused(Refusal::Closed, None);
            }
        };
    let upgrade = match handshake.upgrade() {
        Ok(upgrade) => upgrade,
        Err(HandshakeError::NotWebSocket) => {
            let response = app.http(handshake.request(), peer);
            let status = response.status;
            debug!(%peer, path = %handshake.request().path, status, "http");
            let _ = handshake.respond(response).await;
            return Opened::Http(status);
        }
        Err(err) => {
            debug!(%peer, status = err.status(), "refused upgrade: {err}");
            let _ = handshake.respond(err.response()).await;
            return Opened::Refused(Refusal::BadRequest, Some(err.status()));
        }
    };
    let mut handshake = handshake;
    match app.upgrade(handshake.request(), &upgrade, peer) {
        Ok(accept) => {
            if !accept.compression {
                handshake.config_mut().compression = None;
            }
            match handshake.accept(accept.protocol.as_deref()).await {
                Ok(mut ws) => {
                    if let Some(capacity) = accept.inspect {
                        ws.connection_mut().inspect_frames(capacity);
                    }
                    Opened::WebSocket(ws, accept.handler)
                }
                Err(err) => {
                    debug!(%peer, "handshake failed: {err}");
                    Opened::Refused(Refusal::Closed, None)
                }
            }
        }
        Err(response) => {
            let status = response.status;
            debug!(%peer, status, "upgrade refused by the application");
            let _ = handshake.respond(response).await;
            Opened::Refused(Refusal::Application, Some(status))
        }
    }
}

/// The running engines of a server.
enum Engines<H: Handler> {
    Async,
    #[cfg(target_os = "linux")]
    Epoll(crate::epoll::Pool<H>),
    #[cfg(not(target_os = "linux"))]
    #[allow(dead_code)]
    Never(std::marker::PhantomData<H>),
}

impl<H: Handler> Engines<H> {
    fn start(options: &Options, budget: &Arc<Budget>) -> io::Result<Self> {
        Ok(match options.engine {
            Engine::Async => Self::Async,
            #[cfg(target_os = "linux")]
            Engine::Epoll | Engine::Uring => {
                Self::Epoll(crate::epoll::Pool::start(options, budget)?)
            }
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

/// A listening socket on `addr`; with `reuse_port`, `SO_REUSEPORT` (and `SO_REUSEADDR`) set
/// before it binds.
fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    if !reuse_port {
        return TcpListener::bind(addr);
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, sockopt};
        let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
        let socket =
            rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
        sockopt::set_socket_reuseaddr(&socket, true)?;
        sockopt::set_socket_reuseport(&socket, true)?;
        rustix::net::bind(&socket, &addr)?;
        // The kernel caps it at net.core.somaxconn.
        rustix::net::listen(&socket, 4096)?;
        Ok(TcpListener::from(socket))
    }
    #[cfg(not(target_os = "linux"))]
    Err(io::Error::new(io::ErrorKind::Unsupported, "reuse_port is supported on Linux only"))
}
