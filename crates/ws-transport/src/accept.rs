//! The server side of the opening handshake over a stream.

use std::io;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ws_proto::{Connection, Request, RequestParser, Response, Upgrade};

use crate::config::Config;
use crate::error::{Error, Timeout};
use crate::runtime::Runtime;
use crate::socket::WebSocket;
use crate::util::{close_by, with_deadline};

/// How long a connection whose request did not come in time is given to end cleanly (its
/// close_notify over TLS, then its end of stream) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A request head read from a client, not yet answered.
///
/// Use it to route: answer plain HTTP with [`respond`](Self::respond), inspect a WebSocket
/// upgrade with [`upgrade`](Self::upgrade), then [`accept`](Self::accept) it or refuse it
/// with any [`Response`].
#[derive(Debug)]
pub struct ServerHandshake<S> {
    stream: S,
    request: Request,
    /// Bytes after the request head: the start of the frame stream.
    leftover: Vec<u8>,
    config: Config,
    deadline: Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ServerHandshake<S> {
    /// Reads a request head within [`Config::handshake_timeout`]. A request over the limits or
    /// not HTTP gets its 4xx response (431 or 400) before the error is returned.
    pub async fn read(stream: S, config: Config) -> Result<Self, Error> {
        let deadline = config.runtime_or_default().now() + config.handshake_timeout;
        Self::read_by(stream, config, deadline).await
    }

    /// [`read`](Self::read), with the handshake to be done by `deadline` (for a caller that
    /// spent some of the handshake's time already, on TLS for instance); the accept or
    /// response that follows has the same deadline.
    pub async fn read_by(mut stream: S, config: Config, deadline: Instant) -> Result<Self, Error> {
        let mut parser = RequestParser::new(config.handshake);
        // On the heap, not in the future: a task keeps its largest state for its whole life.
        let mut buf = vec![0u8; 2048];
        let read = async {
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
                }
                match parser.feed(&buf[..n]) {
                    Ok(Some(request)) => return Ok(Ok(request)),
                    Ok(None) => {}
                    Err(err) => return Ok(Err(err)),
                }
            }
        };
        let runtime = config.runtime_or_default();
        match with_deadline(&*runtime, deadline, read).await {
            None => {
                // No request in time: the stream is still ended cleanly (over TLS, with
                // close_notify once its handshake is done), within a moment more.
                close_by(&mut stream, &*runtime, runtime.now() + CLOSE_GRACE).await;
                Err(Error::Timeout(Timeout::Handshake))
            }
            Some(Err(err)) => Err(Error::Io(err)),
            Some(Ok(Err(err))) => {
                let bytes = err.response().to_bytes();
                write_within(&mut stream, &bytes, &*runtime, deadline).await?;
                close_by(&mut stream, &*runtime, deadline).await;
                Err(Error::Handshake(err))
            }
            Some(Ok(Ok(request))) => {
                let leftover = parser.remaining().to_vec();
                Ok(Self { stream, request, leftover, config, deadline })
            }
        }
    }

    /// The request head.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The settings this connection is accepted with, to change for it alone before
    /// [`accept`](Self::accept) (say, `compression = None` to not negotiate
    /// permessage-deflate with this client).
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The request as a WebSocket upgrade, or why it is not one.
    pub fn upgrade(&self) -> Result<Upgrade, ws_proto::HandshakeError> {
        self.request.websocket()
    }

    /// Accepts the upgrade, echoing `protocol` (one the client offered), and returns the
    /// WebSocket. An invalid upgrade gets its 400/426 response and an error instead.
    pub async fn accept(mut self, protocol: Option<&str>) -> Result<WebSocket<S>, Error> {
        let upgrade = match self.upgrade() {
            Ok(upgrade) => upgrade,
            Err(err) => {
                self.respond(err.response()).await?;
                return Err(Error::Handshake(err));
            }
        };
        // The connection comes from the handshake ready: permessage-deflate negotiated when
        // configured and offered, the bytes after the head fed in.
        match upgrade.accept_connection(protocol, &self.config.setup(), &self.leftover) {
            Ok((response, conn)) => {
                self.write_head(&response).await?;
                Ok(WebSocket::from_parts(self.stream, conn, self.config, &[]))
            }
            Err(_) => {
                self.respond(Response::new(500)).await?;
                Err(Error::Unsupported("the chosen subprotocol was not offered by the client"))
            }
        }
    }

    /// Accepts with a 101 response built by [`Upgrade::accept`], with headers added.
    pub async fn accept_with_response(mut self, response: Response) -> Result<WebSocket<S>, Error> {
        self.write_head(&response).await?;
        let conn = Connection::server(self.config.protocol.clone());
        Ok(WebSocket::from_parts(self.stream, conn, self.config, &self.leftover))
    }

    /// Answers with `response` (plain HTTP, or a refusal) and ends the stream.
    pub async fn respond(mut self, response: Response) -> Result<(), Error> {
        self.write_head(&response).await?;
        close_by(&mut self.stream, &*self.config.runtime_or_default(), self.deadline).await;
        Ok(())
    }

    /// Writes `response` within the handshake's deadline.
    async fn write_head(&mut self, response: &Response) -> Result<(), Error> {
        let runtime = self.config.runtime_or_default();
        write_within(&mut self.stream, &response.to_bytes(), &*runtime, self.deadline).await
    }
}

async fn write_within<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    runtime: &dyn Runtime,
    deadline: Instant,
) -> Result<(), Error> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match with_deadline(runtime, deadline, write).await {
        None => Err(Error::Timeout(Timeout::Handshake)),
        Some(result) => Ok(result?),
    }
}

/// Runs the server handshake on `stream` and returns the WebSocket. Requests that are not a
/// valid upgrade get the right 4xx response and an error.
///
/// ```no_run
/// # smol::block_on(async {
/// let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
/// let (stream, _) = listener.accept().await?;
/// let mut ws = ws_transport::accept(stream, ws_transport::Config::default()).await?;
/// while let Some(message) = ws.recv().await? {
///     ws.send(message).await?;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(()) });
/// ```
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: Config,
) -> Result<WebSocket<S>, Error> {
    accept_with(stream, config, |_, _| Ok(None)).await
}

/// Like [`accept`], with a hook that sees the request and the parsed upgrade and either picks
/// a subprotocol (`Ok(Some(..))`, one of [`Upgrade::protocols`]), accepts without one
/// (`Ok(None)`), or refuses with any response (`Err`), for example 403 for a foreign `Origin`.
pub async fn accept_with<S, F>(stream: S, config: Config, decide: F) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request, &Upgrade) -> Result<Option<String>, Response>,
{
    let handshake = ServerHandshake::read(stream, config).await?;
    let upgrade = match handshake.upgrade() {
        Ok(upgrade) => upgrade,
        Err(err) => {
            handshake.respond(err.response()).await?;
            return Err(Error::Handshake(err));
        }
    };
    match decide(handshake.request(), &upgrade) {
        Ok(protocol) => handshake.accept(protocol.as_deref()).await,
        Err(response) => {
            let status = response.status;
            handshake.respond(response).await?;
            Err(Error::Refused(status))
        }
    }
}
