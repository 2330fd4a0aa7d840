//! Upgrading a hyper 1.x request to a WebSocket (the `hyper` feature): [`upgrade`] validates
//! the request, negotiates the subprotocol and permessage-deflate, and returns the 101
//! response to send with an [`Upgrading`] future that yields the [`WebSocket`] once hyper
//! hands the connection over. The WebSocket runs on tokio's timers.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//!
//! async fn handle(mut request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
//!     let config = ws_transport::Config::default();
//!     match ws_transport::hyper::upgrade(&mut request, config, |_, _| Ok(None)) {
//!         Ok((response, upgrading)) => {
//!             tokio::spawn(async move {
//!                 let mut ws = upgrading.await?;
//!                 while let Some(message) = ws.recv().await? {
//!                     ws.send(message).await?;
//!                 }
//!                 Ok::<(), ws_transport::Error>(())
//!             });
//!             Ok(response)
//!         }
//!         // Not an upgrade, or a bad one: its 4xx, or serve it as plain HTTP.
//!         Err(refused) => Ok(refused.response),
//!     }
//! }
//! ```
//!
//! (The server side needs hyper's `server` and `http1` features, with upgrades:
//! `http1::Builder::new().serve_connection(io, service).with_upgrades()`.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::upgrade::{OnUpgrade, Upgraded};
use ws_proto::{Connection, HandshakeError, Request, Response, Upgrade};

use crate::config::Config;
use crate::error::Error;
use crate::http::{into_http_response, request_from_head, request_from_parts};
use crate::socket::WebSocket;
use crate::tokio::TokioIo;

/// A WebSocket over a connection hyper upgraded.
pub type HyperWebSocket = WebSocket<TokioIo<hyper_util::rt::TokioIo<Upgraded>>>;

/// A request that was not upgraded, and the response to send for it.
#[derive(Debug)]
pub struct Refused<B> {
    /// The response: the handshake's 4xx (400, 426 with `Sec-WebSocket-Version: 13`, ...),
    /// or the one the `decide` hook returned.
    pub response: http::Response<B>,
    /// Why: `Some` for a request that is not a valid upgrade
    /// ([`HandshakeError::NotWebSocket`] for one that is no upgrade at all, which a server
    /// may rather answer as plain HTTP), `None` when the hook refused it.
    pub error: Option<HandshakeError>,
}

/// The WebSocket of an accepted upgrade, once hyper has sent the 101 and handed the
/// connection over (which it does only after the response was returned to it).
#[must_use = "the WebSocket comes from awaiting this once the response is sent"]
#[derive(Debug)]
pub struct Upgrading {
    on_upgrade: OnUpgrade,
    conn: Option<Connection>,
    config: Config,
}

impl Upgrading {
    pub(crate) fn new(on_upgrade: OnUpgrade, conn: Connection, config: Config) -> Self {
        Self { on_upgrade, conn: Some(conn), config }
    }
}

impl Future for Upgrading {
    type Output = Result<HyperWebSocket, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let upgraded = ready!(Pin::new(&mut this.on_upgrade).poll(cx))
            .map_err(|err| Error::Io(io::Error::other(err)))?;
        let conn = this.conn.take().ok_or(Error::Closed)?;
        let io = TokioIo::new(hyper_util::rt::TokioIo::new(upgraded));
        // Bytes the client sent after its request are inside `upgraded`.
        Poll::Ready(Ok(WebSocket::from_parts(io, conn, this.config.clone(), &[])))
    }
}

/// Upgrades `request`: on success, the 101 response to return to hyper and the future of the
/// WebSocket. `decide` sees the request and the upgrade and picks a subprotocol
/// (`Ok(Some(..))`, one the client offered), accepts without one (`Ok(None)`), or refuses
/// with any response (`Err`, for example 403 for a foreign `Origin`). permessage-deflate is
/// negotiated when [`Config::compression`] is set and the client offers it.
pub fn upgrade<B, R, F>(
    request: &mut http::Request<B>,
    config: Config,
    decide: F,
) -> Result<(http::Response<R>, Upgrading), Refused<R>>
where
    R: From<Vec<u8>>,
    F: FnOnce(&Request, &Upgrade) -> Result<Option<String>, Response>,
{
    let head =
        request_from_head(request.method(), request.uri(), request.version(), request.headers());
    let accepted = accept(head, config, decide)?;
    let on_upgrade = hyper::upgrade::on(request);
    Ok(accepted.finish(on_upgrade))
}

/// Like [`upgrade`], on request parts (an extractor's view, as in axum): the connection is
/// taken from the parts' extensions.
pub fn upgrade_parts<R, F>(
    parts: &mut http::request::Parts,
    config: Config,
    decide: F,
) -> Result<(http::Response<R>, Upgrading), Refused<R>>
where
    R: From<Vec<u8>>,
    F: FnOnce(&Request, &Upgrade) -> Result<Option<String>, Response>,
{
    let accepted = accept(request_from_parts(parts), config, decide)?;
    let on_upgrade = parts.extensions.remove::<OnUpgrade>().ok_or_else(|| {
        // Not an HTTP/1.1 connection served with upgrades (or taken already).
        let response = Response::new(500).body(b"connection cannot be upgraded\n".to_vec());
        Refused { response: into_http_response(response), error: None }
    })?;
    Ok(accepted.finish(on_upgrade))
}

/// An upgrade accepted, waiting for hyper's side of it.
struct Accepted {
    response: Response,
    conn: Connection,
    config: Config,
}

impl Accepted {
    fn finish<R: From<Vec<u8>>>(self, on_upgrade: OnUpgrade) -> (http::Response<R>, Upgrading) {
        let upgrading = Upgrading::new(on_upgrade, self.conn, self.config);
        (into_http_response(self.response), upgrading)
    }
}

fn accept<R, F>(request: Request, config: Config, decide: F) -> Result<Accepted, Refused<R>>
where
    R: From<Vec<u8>>,
    F: FnOnce(&Request, &Upgrade) -> Result<Option<String>, Response>,
{
    let upgrade = request.websocket().map_err(refused)?;
    let protocol = decide(&request, &upgrade)
        .map_err(|response| Refused { response: into_http_response(response), error: None })?;
    // Bytes after the head are hyper's: they come with the upgraded connection.
    match upgrade.accept_connection(protocol.as_deref(), &config.setup(), &[]) {
        Ok((response, conn)) => Ok(Accepted { response, conn, config }),
        // The hook picked a subprotocol the client did not offer: a server error.
        Err(err) => {
            let response = Response::new(500).body(format!("{err}\n").into_bytes());
            Err(Refused { response: into_http_response(response), error: None })
        }
    }
}

fn refused<R: From<Vec<u8>>>(error: HandshakeError) -> Refused<R> {
    Refused { response: into_http_response(error.response()), error: Some(error) }
}
