//! The echo server behind the `ws-echo` binary, as a library so that tests can run it in
//! process on `127.0.0.1:0`: an application on the [`ws_server`] engine.
//!
//! Plain HTTP gets the demo page, the frame inspector (`/inspect`), `/healthz`, `/metrics`
//! (with [`EchoApp::metrics`]) or a 404; bad upgrades get their 4xx; an
//! accepted WebSocket echoes every message as it streams in, so a message of any size costs
//! a bounded amount of memory. The engine runs it on epoll threads on Linux
//! (or, with [`Engine::Async`], as tasks on ws-transport and smol).

use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use smol::{Async, Executor};
use ws_proto::{Delivery, Event, Forwarder, Request, Response, Upgrade};
use ws_server::{Accept, App, Handler, Reply};

pub use inspect::{FEED_BUDGET, FEED_PATH, INSPECT_PAGE, LOG_CAPACITY, MAX_FEEDS};
pub use tls::Certificates;
pub use ws_server::{Engine, Stats, Summary};

mod inspect;
mod tls;

/// The demo page served at `/`.
pub const PAGE: &str = include_str!("page.html");

/// The engine's settings ([`ws_server::Options`], reached through `Deref`) with the echo's
/// defaults: chunk delivery (a message of any size streams through), 256 KiB reads, and
/// permessage-deflate without context takeover.
#[derive(Debug, Clone)]
pub struct Options(pub ws_server::Options);

impl Default for Options {
    fn default() -> Self {
        let mut options = ws_server::Options::default();
        let transport = &mut options.transport;
        // Echo as messages stream in: memory per connection stays bounded whatever the
        // message size.
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
        // Dead peers are found: a ping after 30 s of silence, answered within 20 s or the
        // connection is dropped (docs/limits.md compares the peers' defaults).
        transport.ping_interval = Some(std::time::Duration::from_secs(30));
        transport.pong_timeout = std::time::Duration::from_secs(20);
        Self(options)
    }
}

impl Deref for Options {
    type Target = ws_server::Options;

    fn deref(&self) -> &ws_server::Options {
        &self.0
    }
}

impl DerefMut for Options {
    fn deref_mut(&mut self) -> &mut ws_server::Options {
        &mut self.0
    }
}

/// A bound echo server.
#[derive(Debug)]
pub struct Server(ws_server::Server<EchoApp>);

impl Server {
    /// Binds the listening socket and starts the engine threads, if the engine has them
    /// (their epoll sets are created here, so running out of descriptors is an error at
    /// start, not later).
    pub fn bind(addr: SocketAddr, options: Options) -> io::Result<Self> {
        Self::bind_app(addr, options, EchoApp::default())
    }

    /// [`bind`](Self::bind) with routes of the caller's ([`EchoApp::path`]).
    pub fn bind_app(addr: SocketAddr, options: Options, mut app: EchoApp) -> io::Result<Self> {
        // The inspector shows the 101 the server sends: built with the server's settings.
        app.setup = options.transport.setup();
        Ok(Self(ws_server::Server::bind(addr, options.0, app)?))
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// The server-wide memory budget and what all connections hold of it.
    pub fn budget(&self) -> std::sync::Arc<ws_server::Budget> {
        self.0.budget()
    }

    /// Serves until `shutdown` completes, then stops accepting, sends close 1001 to every open
    /// connection, and waits up to the close timeout (plus a second) for them to finish.
    pub async fn run(
        self,
        ex: Arc<Executor<'static>>,
        shutdown: impl Future<Output = ()>,
    ) -> Summary {
        self.0.run(ex, shutdown).await
    }
}

/// The echo application: routes plain HTTP, accepts every valid upgrade (or only those to
/// one path, see [`path`](Self::path)) with an [`Echo`].
#[derive(Debug, Clone)]
pub struct EchoApp {
    path: Option<String>,
    page: String,
    inspect_page: String,
    metrics: Option<Arc<Stats>>,
    feeds: Arc<inspect::Feeds>,
    setup: ws_proto::Setup,
}

impl Default for EchoApp {
    fn default() -> Self {
        Self {
            path: None,
            page: PAGE.to_owned(),
            inspect_page: INSPECT_PAGE.to_owned(),
            metrics: None,
            feeds: Arc::default(),
            setup: Options::default().transport.setup(),
        }
    }
}

impl EchoApp {
    /// Serves `stats` at `/metrics`, in Prometheus's text format (OpenMetrics).
    pub fn metrics(mut self, stats: Arc<Stats>) -> Self {
        self.metrics = Some(stats);
        self
    }

    /// Upgrades only requests for `path` (the query aside); others get 404. The demo page
    /// connects to it. A path starts with `/` and holds visible ASCII other than `"`, `\`,
    /// `<`, `>`, `?` and `#`.
    pub fn path(mut self, path: &str) -> Result<Self, String> {
        let allowed = |b: u8| b.is_ascii_graphic() && !b"\"\\<>?#".contains(&b);
        if !path.starts_with('/') || !path.bytes().all(allowed) {
            return Err(format!("{path:?}: a path is / then visible ASCII without \"\\<>?#"));
        }
        let line = format!("const WS_PATH = \"{path}\";");
        self.page = PAGE.replace(PAGE_PATH, &line);
        self.inspect_page = INSPECT_PAGE.replace(PAGE_PATH, &line);
        self.path = Some(path.to_owned());
        Ok(self)
    }
}

/// The line of the demo page that names the path its WebSocket connects to.
const PAGE_PATH: &str = "const WS_PATH = \"/\";";

impl App for EchoApp {
    type Handler = Echo;

    fn http(&self, request: &Request, _: SocketAddr) -> Response {
        let path = request.path.split('?').next().unwrap_or("");
        match &self.metrics {
            Some(stats) if path == "/metrics" => with_method(request, metrics_response(stats)),
            _ if path == "/inspect" => with_method(request, html(&self.inspect_page)),
            _ => route(request, &self.page),
        }
    }

    fn upgrade(
        &self,
        request: &Request,
        upgrade: &Upgrade,
        _: SocketAddr,
    ) -> Result<Accept<Echo>, Response> {
        let path = request.path.split('?').next().unwrap_or("");
        if path == FEED_PATH {
            return self.feeds.open();
        }
        if self.path.as_deref().is_some_and(|only| only != path) {
            return Err(not_found());
        }
        match inspect::query_value(&request.path, "inspect") {
            Some(token) => {
                self.feeds.inspect(token, request, upgrade, &self.setup).ok_or_else(|| {
                    Response::new(404)
                        .header("Content-Type", "text/plain")
                        .body("no such inspector\n")
                })
            }
            None => Ok(Accept::new(Echo::default())),
        }
    }
}

/// Echoes each message as it streams in, through ws-proto's [`Forwarder`]: binary frames
/// frame for frame as they arrive; a text frame once whole, or past 64 KiB in validated
/// fragments (late invalid UTF-8 still gets 1007); a compressed message in re-compressed
/// fragments as it inflates. Messages delivered whole (not in chunks) are echoed as they are.
///
/// On the inspector's connections (`/inspect`) it also reports frames or takes commands: see
/// the `inspect` module.
#[derive(Debug, Default)]
pub struct Echo {
    forwarder: Forwarder,
    /// The inspector's part, on its two connections (8 bytes on the others).
    role: Option<Box<inspect::Inspector>>,
}

impl Handler for Echo {
    fn on_open(&mut self, handle: &ws_server::ConnHandle) {
        if let Some(inspector) = self.role.as_mut() {
            inspector.on_open(handle);
        }
    }

    fn on_event(&mut self, event: Event<'_>, reply: &mut Reply<'_>) {
        // Send errors mean a close frame was already sent: nothing more goes out.
        match event {
            Event::Chunk(chunk) => {
                if let Some(inspector) = self.role.as_mut() {
                    if inspector.on_chunk(&chunk, reply) {
                        return;
                    }
                }
                let _ = reply.forward(&mut self.forwarder, &chunk);
            }
            Event::Message(message) => {
                let _ = reply.send_message(message.kind(), message.as_bytes());
            }
            _ => {}
        }
    }

    fn on_frames(&mut self, frames: ws_proto::Frames) {
        if let Some(inspector) = self.role.as_mut() {
            inspector.on_frames(frames);
        }
    }

    fn on_close(&mut self, end: &ws_server::End) {
        if let Some(inspector) = self.role.as_mut() {
            inspector.on_close(end);
        }
    }

    fn memory(&self) -> usize {
        self.forwarder.memory()
    }
}

fn not_found() -> Response {
    Response::new(404).header("Content-Type", "text/plain").body("not found\n")
}

/// A page of ours.
fn html(page: &str) -> Response {
    Response::new(200)
        .header("Content-Type", "text/html; charset=utf-8")
        .header("Cache-Control", "no-cache")
        .body(page)
}

/// `stats` as the answer to a scrape.
fn metrics_response(stats: &Arc<Stats>) -> Response {
    Response::new(200)
        .header("Content-Type", METRICS_TYPE)
        .header("Cache-Control", "no-store")
        .body(stats.encode_openmetrics())
}

/// The content type of `/metrics`: OpenMetrics text, which Prometheus reads.
pub const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `response` as the answer to `request`'s method: 405 unless GET or HEAD, no body for HEAD;
/// the connection closes after it.
fn with_method(request: &Request, response: Response) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::new(405).header("Allow", "GET, HEAD").body("method not allowed\n");
    }
    let response = response.header("Connection", "close");
    if request.method == "HEAD" {
        let len = response.body.len().to_string();
        return response.header("Content-Length", len).body(Vec::new());
    }
    response
}

/// The response to a plain HTTP request; `page` is the demo page.
fn route(request: &Request, page: &str) -> Response {
    let path = request.path.split('?').next().unwrap_or("");
    let response = match path {
        "/" | "/index.html" => html(page),
        "/healthz" => Response::new(200).header("Content-Type", "text/plain").body("ok\n"),
        _ => not_found(),
    };
    with_method(request, response)
}

/// Serves `/metrics` (and `/healthz`) on an address of its own, apart from the WebSockets
/// (`ws-echo --metrics-bind`): plain HTTP/1.1, one request per connection, at most
/// [`METRICS_CONNECTIONS`] at once (more are closed unanswered), each within 10 s.
#[derive(Debug)]
pub struct MetricsServer {
    listener: Async<std::net::TcpListener>,
    stats: Arc<Stats>,
}

/// Connections [`MetricsServer`] serves at once.
pub const METRICS_CONNECTIONS: usize = 32;

impl MetricsServer {
    /// Binds the metrics listener.
    pub fn bind(addr: SocketAddr, stats: Arc<Stats>) -> io::Result<Self> {
        Ok(Self { listener: Async::<std::net::TcpListener>::bind(addr)?, stats })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// Answers scrapes until dropped; each connection is a task on `ex`.
    pub async fn run(self, ex: Arc<Executor<'static>>) {
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                // Out of descriptors and the like: back off instead of spinning.
                smol::Timer::after(std::time::Duration::from_millis(50)).await;
                continue;
            };
            use std::sync::atomic::Ordering::AcqRel;
            if busy.fetch_add(1, AcqRel) >= METRICS_CONNECTIONS {
                busy.fetch_sub(1, AcqRel);
                continue;
            }
            let (stats, busy) = (Arc::clone(&self.stats), Arc::clone(&busy));
            ex.spawn(async move {
                let _ = answer_scrape(stream, &stats).await;
                busy.fetch_sub(1, AcqRel);
            })
            .detach();
        }
    }
}

/// Reads one request head (within ws-transport's handshake limits) and answers it.
async fn answer_scrape(
    stream: Async<std::net::TcpStream>,
    stats: &Arc<Stats>,
) -> Result<(), ws_transport::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let config = ws_transport::Config::default();
    let request = ws_transport::ServerHandshake::read_by(stream, config, deadline).await?;
    let response = match request.request().path.split('?').next().unwrap_or("") {
        "/metrics" => metrics_response(stats),
        "/healthz" => Response::new(200).header("Content-Type", "text/plain").body("ok\n"),
        _ => not_found(),
    };
    let response = with_method(request.request(), response);
    request.respond(response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, method: &str) -> Request {
        Request { method: method.into(), path: path.into(), version: 1, headers: vec![] }
    }

    fn route_default(request: &Request) -> Response {
        route(request, PAGE)
    }

    #[test]
    fn routes() {
        let page = route_default(&get("/", "GET"));
        assert_eq!(page.status, 200);
        assert!(String::from_utf8_lossy(&page.body).contains("new WebSocket"));
        assert_eq!(route_default(&get("/healthz", "GET")).status, 200);
        assert_eq!(route_default(&get("/nope", "GET")).status, 404);
        assert_eq!(route_default(&get("/", "POST")).status, 405);
        let head = route_default(&get("/healthz", "HEAD"));
        assert!(head.body.is_empty());
    }

    #[test]
    fn a_path_is_checked_and_the_page_connects_to_it() {
        assert!(PAGE.contains(PAGE_PATH));
        assert!(INSPECT_PAGE.contains(PAGE_PATH));
        let app = EchoApp::default().path("/ws/echo").unwrap();
        for page in [&app.page, &app.inspect_page] {
            assert!(page.contains("const WS_PATH = \"/ws/echo\";"));
            assert!(!page.contains(PAGE_PATH));
        }
        for bad in ["ws", "/a b", "/\"x", "/a?b", "/<script>", "/é", ""] {
            assert!(EchoApp::default().path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_page_is_self_contained() {
        // No external scripts, styles or fonts.
        for needle in ["src=\"http", "href=\"http", "@import", "//cdn", "<script src"] {
            assert!(!PAGE.contains(needle), "{needle}");
            assert!(!INSPECT_PAGE.contains(needle), "{needle}");
        }
    }
}
