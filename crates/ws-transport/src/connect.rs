//! The client side of the opening handshake over a stream.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Instant;

use async_io::Async;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ws_proto::{Accepted, ClientRequest};

use crate::config::Config;
use crate::error::{Error, Timeout};
use crate::socket::WebSocket;
use crate::util::{RandomKeys, random_bytes, with_deadline};

/// The parts of a `ws://` URL a client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// Host name or address, without brackets for IPv6.
    pub host: String,
    /// Port, 80 when not given.
    pub port: u16,
    /// Path and query, `/` when not given.
    pub path: String,
}

impl WsUrl {
    /// Parses `ws://host[:port][/path]`. `wss://` is refused until TLS is supported.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidUrl(url.to_string());
        let rest = url.strip_prefix("ws://").ok_or_else(|| {
            if url.starts_with("wss://") {
                Error::Unsupported("wss:// needs TLS, which this build does not support yet")
            } else {
                invalid()
            }
        })?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err(invalid());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(invalid)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| invalid())?,
                None if after.is_empty() => 80,
                None => return Err(invalid()),
            };
            (host.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), port.parse().map_err(|_| invalid())?),
                None => (authority.to_string(), 80),
            }
        };
        if host.is_empty() || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(invalid());
        }
        Ok(Self { host, port, path })
    }

    /// The `Host` header value: the port only when it is not 80 (RFC 6455 §4.1).
    pub fn host_header(&self) -> String {
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == 80 { host } else { format!("{host}:{}", self.port) }
    }
}

/// Runs the client handshake for `url` over a stream the caller opened.
pub async fn connect<S>(
    stream: S,
    url: &str,
    config: Config,
) -> Result<(WebSocket<S>, Accepted), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let url = WsUrl::parse(url)?;
    connect_with(stream, ClientRequest::new(url.host_header(), url.path), config).await
}

/// Runs the client handshake with a request built by the caller (subprotocols, headers).
pub async fn connect_with<S>(
    mut stream: S,
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket<S>, Accepted), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    #[cfg(feature = "deflate")]
    let request = match config.compression {
        Some(deflate) => request.extension(deflate.offer()),
        None => request,
    };
    let deadline = Instant::now() + config.handshake_timeout;
    let mut key = [0u8; 16];
    random_bytes(&mut key);
    let (mut handshake, bytes) = request.start_with_limits(key, config.handshake);
    let exchange = async {
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        // On the heap, not in the future: a task keeps its largest state for its whole life.
        let mut buf = vec![0u8; 2048];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(Error::Io(io::Error::from(io::ErrorKind::UnexpectedEof)));
            }
            if let Some(accepted) = handshake.feed(&buf[..n])? {
                return Ok(accepted);
            }
        }
    };
    let accepted =
        with_deadline(deadline, exchange).await.ok_or(Error::Timeout(Timeout::Handshake))??;
    // §4.1: a response that breaks the extension's rules fails the connection.
    let conn = handshake.into_connection(&accepted, &config.setup(), RandomKeys::new())?;
    let ws = WebSocket::from_parts(stream, conn, config, &[]);
    Ok((ws, accepted))
}

/// Opens a TCP connection (with `TCP_NODELAY`) to a `ws://` URL and runs the handshake, all
/// within [`Config::handshake_timeout`]. The stream is async-net's (smol's), whose close
/// ends the write side. Host names are resolved with the system resolver.
///
/// ```no_run
/// # smol::block_on(async {
/// let (mut ws, _) = ws_transport::connect_tcp("ws://127.0.0.1:8080/", Default::default()).await?;
/// ws.send("hello").await?;
/// let echo = ws.recv().await?;
/// ws.close(ws_proto::CloseCode::NORMAL, "").await?;
/// # Ok::<(), ws_transport::Error>(()) });
/// ```
pub async fn connect_tcp(
    url: &str,
    config: Config,
) -> Result<(WebSocket<async_net::TcpStream>, Accepted), Error> {
    let parsed = WsUrl::parse(url)?;
    let addrs: Vec<SocketAddr> = (parsed.host.as_str(), parsed.port).to_socket_addrs()?.collect();
    let deadline = Instant::now() + config.handshake_timeout;
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in addrs {
        match with_deadline(deadline, Async::<TcpStream>::connect(addr)).await {
            None => return Err(Error::Timeout(Timeout::Handshake)),
            Some(Ok(stream)) => {
                stream.get_ref().set_nodelay(true)?;
                // async-net's stream ends its write side on close (FIN), as the close
                // handshake needs; async-io's only flushes.
                return connect_with(
                    async_net::TcpStream::from(stream),
                    ClientRequest::new(parsed.host_header(), parsed.path),
                    config,
                )
                .await;
            }
            Some(Err(err)) => last_err = err,
        }
    }
    Err(Error::Io(last_err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = WsUrl::parse("ws://example.com/chat?x=1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("example.com", 80, "/chat?x=1"));
        assert_eq!(u.host_header(), "example.com");
        let u = WsUrl::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (9001, "/", "127.0.0.1:9001")
        );
        let u = WsUrl::parse("ws://[::1]:8080/a#frag").unwrap();
        assert_eq!(
            (u.host.as_str(), u.path.as_str(), u.host_header().as_str()),
            ("::1", "/a", "[::1]:8080")
        );
        let u = WsUrl::parse("ws://h?q").unwrap();
        assert_eq!(u.path, "/?q");
        for bad in
            ["http://a/", "ws://", "ws://a:notaport/", "ws://u@a/", "ws://a/ b", "ws://[::1/"]
        {
            assert!(WsUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(WsUrl::parse("wss://a/"), Err(Error::Unsupported(_))));
    }
}
