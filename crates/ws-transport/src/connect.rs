//! The client side of the opening handshake over a stream.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ws_proto::{Accepted, ClientRequest};

use crate::config::Config;
use crate::error::{Error, Timeout};
use crate::proxy::Proxy;
use crate::socket::WebSocket;
#[cfg(feature = "smol")]
use crate::tls::default_client_config;
use crate::tls::{MaybeTls, TlsStream};
use crate::util::{RandomKeys, random_bytes, with_deadline};

/// The parts of a `ws://` or `wss://` URL a client needs, parsed by the `url` crate (WHATWG
/// rules: host names lowercased and IDNA-encoded, paths percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`: TLS.
    pub secure: bool,
    /// Host name or address, without brackets for IPv6.
    pub host: String,
    /// Port: 80 for `ws://` and 443 for `wss://` when not given.
    pub port: u16,
    /// Path and query, `/` when not given.
    pub path: String,
}

impl WsUrl {
    /// Parses `ws://host[:port][/path][?query]` or the same with `wss://`. Refused: other
    /// schemes, user names or passwords, fragments (§3: they "MUST NOT be used" on WebSocket
    /// URIs), and control characters anywhere, which could otherwise end a header line.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::InvalidUrl(format!("{url:?}: {why}"));
        // The url crate drops tabs and newlines silently; a URL that holds them is refused
        // instead, as one that tries to add header lines.
        if url.bytes().any(|b| b.is_ascii_control()) {
            return Err(invalid("control characters"));
        }
        let parsed = url::Url::parse(url).map_err(|err| invalid(&err.to_string()))?;
        let secure = match parsed.scheme() {
            "ws" => false,
            "wss" => true,
            _ => return Err(invalid("not a ws:// or wss:// URL")),
        };
        if parsed.fragment().is_some() {
            return Err(invalid("a fragment (#...) has no meaning in a WebSocket URL"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("credentials in the URL are not sent"));
        }
        let host = host_of(&parsed).ok_or_else(|| invalid("no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(if secure { 443 } else { 80 });
        let path = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
        let path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
        // The request line and Host header are written from these: only visible ASCII
        // (the url crate has encoded everything else).
        let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if host.is_empty() || !visible(&host) || !visible(&path) {
            return Err(invalid("a character that cannot go in a request head"));
        }
        Ok(Self { secure, host, port, path })
    }

    /// The port used when the URL gives none: 443 for `wss://`, 80 for `ws://`.
    pub fn default_port(&self) -> u16 {
        if self.secure { 443 } else { 80 }
    }

    /// The `Host` header value: the port only when it is not the default (RFC 6455 §4.1).
    pub fn host_header(&self) -> String {
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == self.default_port() { host } else { format!("{host}:{}", self.port) }
    }

    /// `host:port` as a CONNECT request names it, IPv6 addresses in brackets.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A URL's host as a client connects to it: a name, or an address without brackets.
pub(crate) fn host_of(url: &url::Url) -> Option<String> {
    Some(match url.host()? {
        url::Host::Domain(name) => name.to_string(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => ip.to_string(),
    })
}

/// Runs the client handshake for `url` over a stream the caller opened (TLS, if the URL is
/// `wss://`, is the caller's to set up: see [`TlsStream`](crate::TlsStream)).
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
    stream: S,
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket<S>, Accepted), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = config.runtime_or_default().now() + config.handshake_timeout;
    handshake(stream, request, config, deadline).await
}

/// The opening handshake, to be done by `deadline`.
async fn handshake<S>(
    mut stream: S,
    request: ClientRequest,
    config: Config,
    deadline: Instant,
) -> Result<(WebSocket<S>, Accepted), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    #[cfg(feature = "deflate")]
    let request = match config.compression {
        Some(deflate) => request.extension(deflate.offer()),
        None => request,
    };
    let mut key = [0u8; 16];
    random_bytes(&mut key);
    let (mut handshake, bytes) = request.start_with_limits(key, config.handshake);
    let exchange = async {
        stream.write_all(&bytes).await.map_err(Error::from_io)?;
        stream.flush().await.map_err(Error::from_io)?;
        // On the heap, not in the future: a task keeps its largest state for its whole life.
        let mut buf = vec![0u8; 2048];
        loop {
            let n = stream.read(&mut buf).await.map_err(Error::from_io)?;
            if n == 0 {
                return Err(Error::Io(io::Error::from(io::ErrorKind::UnexpectedEof)));
            }
            if let Some(accepted) = handshake.feed(&buf[..n])? {
                return Ok(accepted);
            }
        }
    };
    let accepted = with_deadline(&*config.runtime_or_default(), deadline, exchange)
        .await
        .ok_or(Error::Timeout(Timeout::Handshake))??;
    // §4.1: a response that breaks the extension's rules fails the connection.
    let conn = handshake.into_connection(&accepted, &config.setup(), RandomKeys::new())?;
    let ws = WebSocket::from_parts(stream, conn, config, &[]);
    Ok((ws, accepted))
}

/// The stream [`connect_tcp`] opens: async-net's TCP stream (whose close ends the write
/// side), with TLS for `wss://`.
#[cfg(feature = "smol")]
pub type ClientStream = MaybeTls<async_net::TcpStream, rustls::ClientConnection>;

/// How [`connect_tcp_with`] reaches a server: the TLS settings for `wss://` and the HTTP
/// proxy. The default trusts the system's certificates (see [`default_client_config`]) and
/// takes the proxy from the environment ([`Proxy::Env`]).
#[derive(Debug, Clone, Default)]
pub struct Connector {
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: Proxy,
}

impl Connector {
    /// The default: system trust store, proxy from the environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// TLS with these settings instead of the default (your own roots or verifier, client
    /// certificates). Set `alpn_protocols` to `http/1.1` in them, as a WebSocket client
    /// should; [`client_config_builder`](crate::client_config_builder) starts one with this
    /// crate's crypto provider.
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Which HTTP proxy to go through.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxy = proxy;
        self
    }
}

/// What opening a connection needs from a runtime: a TCP stream to a host and port (names
/// resolved off the executor), and the system's trust store read off the executor.
pub(crate) trait Net {
    /// A TCP stream whose close ends the write side (FIN), as the close handshake needs.
    type Tcp: AsyncRead + AsyncWrite + Unpin;

    /// Resolves `host`, then connects to its addresses in turn, with `TCP_NODELAY`.
    async fn tcp(host: &str, port: u16) -> Result<Self::Tcp, Error>;

    /// [`default_client_config`], run where blocking is allowed.
    async fn default_tls() -> Result<Arc<rustls::ClientConfig>, Error>;
}

/// Tries `addrs` in turn with `connect`; the last error when none answers.
pub(crate) async fn first_to_answer<A, T, F>(
    addrs: impl IntoIterator<Item = A>,
    mut connect: impl FnMut(A) -> F,
) -> Result<T, Error>
where
    F: std::future::Future<Output = io::Result<T>>,
{
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in addrs {
        match connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last_err = err,
        }
    }
    Err(Error::Io(last_err))
}

/// [`connect_tcp_with`] on the runtime `N`: the proxy tunnel, TLS for `wss://` and the
/// handshake, all within [`Config::handshake_timeout`].
pub(crate) async fn connect_tcp_on<N: Net>(
    url: &str,
    config: Config,
    connector: &Connector,
) -> Result<(WebSocket<MaybeTls<N::Tcp, rustls::ClientConnection>>, Accepted), Error> {
    let url = WsUrl::parse(url)?;
    let runtime = config.runtime_or_default();
    let deadline = runtime.now() + config.handshake_timeout;
    let request = ClientRequest::new(url.host_header(), url.path.clone());
    let open = async {
        let proxy = connector.proxy.for_url(&url)?;
        let stream = match &proxy {
            Some(proxy) => {
                let mut stream = N::tcp(&proxy.host, proxy.port).await?;
                proxy.tunnel(&mut stream, &url).await?;
                stream
            }
            None => N::tcp(&url.host, url.port).await?,
        };
        if !url.secure {
            return Ok::<_, Error>(MaybeTls::Plain(stream));
        }
        let tls = match &connector.tls {
            Some(config) => Arc::clone(config),
            None => N::default_tls().await?,
        };
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|err| Error::InvalidUrl(format!("{}: {err}", url.host)))?;
        let tls = rustls::ClientConnection::new(tls, name)?;
        Ok(MaybeTls::Tls(Box::new(TlsStream::new(stream, tls))))
    };
    let stream = with_deadline(&*runtime, deadline, open)
        .await
        .ok_or(Error::Timeout(Timeout::Handshake))??;
    handshake(stream, request, config, deadline).await
}

/// Opens a TCP connection (with `TCP_NODELAY`) to a `ws://` or `wss://` URL, with TLS for
/// `wss://` (SNI, ALPN `http/1.1`, the system's trust store), and runs the handshake, all
/// within [`Config::handshake_timeout`]. Host names are resolved on a thread pool, not on the
/// executor; an HTTP proxy named by the environment is used (see [`Proxy::Env`]). The
/// stream is async-net's (smol's), whose close ends the write side; on tokio, use
/// `ws_transport::tokio::connect_tcp`.
///
/// ```no_run
/// # smol::block_on(async {
/// let (mut ws, _) = ws_transport::connect_tcp("wss://example.com/", Default::default()).await?;
/// ws.send("hello").await?;
/// let echo = ws.recv().await?;
/// ws.close(ws_proto::CloseCode::NORMAL, "").await?;
/// # Ok::<(), ws_transport::Error>(()) });
/// ```
#[cfg(feature = "smol")]
pub async fn connect_tcp(
    url: &str,
    config: Config,
) -> Result<(WebSocket<ClientStream>, Accepted), Error> {
    connect_tcp_with(url, config, &Connector::default()).await
}

/// [`connect_tcp`] with TLS settings or a proxy of the caller's.
#[cfg(feature = "smol")]
pub async fn connect_tcp_with(
    url: &str,
    config: Config,
    connector: &Connector,
) -> Result<(WebSocket<ClientStream>, Accepted), Error> {
    connect_tcp_on::<SmolNet>(url, config, connector).await
}

/// smol's TCP streams, names resolved and the trust store read on blocking's thread pool.
#[cfg(feature = "smol")]
struct SmolNet;

#[cfg(feature = "smol")]
impl Net for SmolNet {
    type Tcp = async_net::TcpStream;

    async fn tcp(host: &str, port: u16) -> Result<async_net::TcpStream, Error> {
        let addrs = async_net::resolve((host, port)).await?;
        first_to_answer(addrs, |addr| async move {
            let stream = async_io::Async::<std::net::TcpStream>::connect(addr).await?;
            stream.get_ref().set_nodelay(true)?;
            // async-net's stream ends its write side on close (FIN), as the close
            // handshake needs; async-io's only flushes.
            Ok(async_net::TcpStream::from(stream))
        })
        .await
    }

    async fn default_tls() -> Result<Arc<rustls::ClientConfig>, Error> {
        blocking::unblock(default_client_config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = WsUrl::parse("ws://example.com/chat?x=1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("example.com", 80, "/chat?x=1"));
        assert_eq!(u.host_header(), "example.com");
        assert!(!u.secure);
        let u = WsUrl::parse("ws://127.0.0.1:9001").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (9001, "/", "127.0.0.1:9001")
        );
        let u = WsUrl::parse("ws://[::1]:8080/a").unwrap();
        assert_eq!(
            (u.host.as_str(), u.path.as_str(), u.host_header().as_str(), u.authority().as_str()),
            ("::1", "/a", "[::1]:8080", "[::1]:8080")
        );
        let u = WsUrl::parse("ws://h?q").unwrap();
        assert_eq!(u.path, "/?q");
        // The default port is the scheme's, and left out of Host.
        let u = WsUrl::parse("wss://Example.COM/x").unwrap();
        assert_eq!((u.secure, u.host.as_str(), u.port), (true, "example.com", 443));
        assert_eq!(
            (u.host_header().as_str(), u.authority().as_str()),
            ("example.com", "example.com:443")
        );
        let u = WsUrl::parse("wss://example.com:80/").unwrap();
        assert_eq!(u.host_header(), "example.com:80");
        let u = WsUrl::parse("ws://example.com:80/").unwrap();
        assert_eq!(u.host_header(), "example.com");
        // Spaces and non-ASCII are percent-encoded; an IDN host becomes its ASCII form.
        let u = WsUrl::parse("ws://bücher.example/a b/é").unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str()), ("xn--bcher-kva.example", "/a%20b/%C3%A9"));
        for bad in [
            "http://a/",
            "ws://",
            "ws://a:notaport/",
            "ws://u@a/",
            "ws://u:p@a/",
            "ws://[::1/",
            "ws://a/#frag",
            // Header injection, in the path and in the host.
            "ws://a/x\r\nX-Evil: 1",
            "ws://a\r\nX-Evil: 1/",
            "ws://a/\n",
            "ws://a/\t",
        ] {
            assert!(matches!(WsUrl::parse(bad), Err(Error::InvalidUrl(_))), "{bad}");
        }
    }
}
