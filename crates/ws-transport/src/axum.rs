//! An axum extractor for WebSocket upgrades (the `axum` feature), on the hyper glue:
//!
//! ```no_run
//! use axum::{Router, response::Response, routing::get};
//! use ws_transport::axum::WebSocketUpgrade;
//!
//! async fn echo(upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.on_upgrade(|mut ws| async move {
//!         while let Ok(Some(message)) = ws.recv().await {
//!             if ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! let app: Router = Router::new().route("/", get(echo));
//! ```
//!
//! A request that is not a valid upgrade is rejected with the handshake's 4xx (400, or 426
//! with `Sec-WebSocket-Version: 13`). As `Option<WebSocketUpgrade>`, a request that is no
//! upgrade at all (no `Upgrade: websocket`) is `None`, so that one route can serve a page to
//! a browser and a WebSocket to the page; a bad upgrade is still rejected. permessage-deflate is on by default (negotiated when
//! the client offers it); [`WebSocketUpgrade::config`] sets every limit. RFC 8441's extended
//! CONNECT (WebSockets over HTTP/2) is not supported: it is not a GET, and hyper's HTTP/2
//! server offers no upgraded stream for it through this path.

use std::future::Future;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::Response as AxumResponse;
use hyper::upgrade::OnUpgrade;
use ws_proto::{HandshakeError, Request, Response, Upgrade};

use crate::config::Config;
use crate::http::{into_http_response, request_from_parts};
use crate::hyper::{HyperWebSocket, Upgrading};

/// A WebSocket upgrade request, validated: answer it with
/// [`on_upgrade`](Self::on_upgrade).
#[derive(Debug)]
pub struct WebSocketUpgrade {
    request: Request,
    upgrade: Upgrade,
    on_upgrade: OnUpgrade,
    config: Config,
    protocol: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = AxumResponse;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Self::extract(parts) {
            Ok(Some(upgrade)) => Ok(upgrade),
            Ok(None) => Err(into_http_response(HandshakeError::NotWebSocket.response())),
            Err(refusal) => Err(into_http_response(refusal)),
        }
    }
}

/// `None` for a request that is no upgrade at all; a bad upgrade is rejected.
impl<S: Send + Sync> OptionalFromRequestParts<S> for WebSocketUpgrade {
    type Rejection = AxumResponse;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Self::extract(parts).map_err(into_http_response)
    }
}

impl WebSocketUpgrade {
    /// The upgrade in `parts`: `None` if it is no upgrade at all, the response to reject it
    /// with if it is a bad one.
    fn extract(parts: &mut http::request::Parts) -> Result<Option<Self>, Response> {
        let request = request_from_parts(parts);
        let upgrade = match request.websocket() {
            Ok(upgrade) => upgrade,
            Err(HandshakeError::NotWebSocket) => return Ok(None),
            Err(err) => return Err(err.response()),
        };
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| Response::new(500).body(b"connection cannot be upgraded\n".to_vec()))?;
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut config = Config::default();
        #[cfg(feature = "deflate")]
        {
            config.compression = Some(ws_proto::DeflateConfig::default());
        }
        Ok(Some(Self { request, upgrade, on_upgrade, config, protocol: None }))
    }

    /// The request head.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The upgrade: subprotocols and extensions offered, `Origin`.
    pub fn upgrade(&self) -> &Upgrade {
        &self.upgrade
    }

    /// Limits, timeouts and permessage-deflate for this WebSocket (default: [`Config`]'s
    /// defaults with permessage-deflate on).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Picks the first of `supported` that the client offered as its subprotocol.
    pub fn protocols<'a>(mut self, supported: impl IntoIterator<Item = &'a str>) -> Self {
        self.protocol = supported
            .into_iter()
            .find(|p| self.upgrade.protocols.iter().any(|offered| offered == p))
            .map(str::to_owned);
        self
    }

    /// The subprotocol picked, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// Accepts the upgrade: the 101 response for the handler to return, and `callback` run
    /// on a task of its own with the WebSocket once hyper hands the connection over.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> AxumResponse
    where
        F: FnOnce(HyperWebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let protocol = self.protocol.as_deref();
        match self.upgrade.accept_connection(protocol, &self.config.setup(), &[]) {
            Ok((response, conn)) => {
                let upgrading = Upgrading::new(self.on_upgrade, conn, self.config);
                tokio::spawn(async move {
                    if let Ok(ws) = upgrading.await {
                        callback(ws).await;
                    }
                });
                into_http_response(response)
            }
            // `protocols` only picks what was offered.
            Err(err) => into_http_response(Response::new(500).body(format!("{err}\n"))),
        }
    }
}
