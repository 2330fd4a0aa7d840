//! The transport's error type.

use std::io;

use thiserror::Error;
use ws_proto::{HandshakeError, ProtocolError, ResponseError, SendError};

use crate::message::Message;

/// What went wrong on a WebSocket. A clean close is not an error: `recv` returns `Ok(None)`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The client's request was refused; the error response was sent.
    #[error("handshake refused: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server's response to our handshake was not an acceptable 101.
    #[error("handshake failed: {0}")]
    Response(#[from] ResponseError),
    /// The request was not a WebSocket upgrade, or the application refused it with a
    /// response of its own (already sent).
    #[error("request answered with status {0}")]
    Refused(u16),
    /// The peer broke the protocol; the close frame with its code was sent.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// A command the connection cannot carry out in its state, such as sending after close.
    #[error("{0}")]
    Send(#[from] SendError),
    /// The connection is closed (our close frame was sent, or the stream failed, timed out
    /// or ended): nothing more can be sent.
    #[error("the connection is closed")]
    Closed,
    /// The peer ended the stream without a close frame (close code 1006).
    #[error("connection ended without a close frame")]
    Disconnected,
    /// A deadline passed.
    #[error("{0} timed out")]
    Timeout(Timeout),
    /// The call does not fit the configuration.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The URL is not a `ws://` or `wss://` URL this client can connect to.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// TLS failed: the server's certificate is not trusted, has expired or names another
    /// host; a record was bad; or no trusted certificates could be found (the error is then
    /// `General`). Boxed: rustls's error is larger than all the others, and every result
    /// that can carry an `Error` (each message received) would be as large.
    #[error("tls: {0}")]
    Tls(Box<rustls::Error>),
    /// The HTTP proxy did not open a tunnel: its answer, or why it could not be asked.
    #[error("proxy: {0}")]
    Proxy(String),
}

// Every result that can carry an error (each message received) is as large as it: kept to
// four words by boxing the large payloads.
const _: () = assert!(std::mem::size_of::<Error>() <= 32);

impl From<rustls::Error> for Error {
    fn from(err: rustls::Error) -> Self {
        Self::Tls(Box::new(err))
    }
}

impl Error {
    /// An I/O error as the error it carries: a TLS failure inside an I/O error from a
    /// [`TlsStream`](crate::TlsStream) becomes [`Error::Tls`].
    pub(crate) fn from_io(err: io::Error) -> Self {
        if let Some(tls) = crate::tls::tls_error(&err) {
            return tls.clone().into();
        }
        Self::Io(err)
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timeout {
    /// The opening handshake.
    Handshake,
    /// The close handshake.
    Close,
    /// A write the peer did not read.
    Write,
    /// A keepalive ping got no pong.
    Pong,
    /// Nothing was received for the idle timeout.
    Idle,
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Handshake => "opening handshake",
            Self::Close => "close handshake",
            Self::Write => "write",
            Self::Pong => "keepalive pong",
            Self::Idle => "idle connection",
        })
    }
}

/// How a session ended, as `recv` reports it: once, after which it returns `Ok(None)`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum End {
    /// The close handshake completed.
    Closed,
    /// The peer broke the protocol.
    Failed(ProtocolError),
    /// The stream ended without a close frame.
    Disconnected,
    /// Reported already.
    Reported,
}

impl End {
    /// What `recv` returns for it.
    pub(crate) fn result(self) -> Result<Option<Message>, Error> {
        match self {
            Self::Failed(err) => Err(Error::Protocol(err)),
            Self::Disconnected => Err(Error::Disconnected),
            Self::Closed | Self::Reported => Ok(None),
        }
    }
}
