//! The opening handshake (RFC 6455 §4), sans-IO, for both roles.
//!
//! Server: feed bytes to a [`RequestParser`] until it returns a [`Request`]; classify it with
//! [`Request::websocket`]; answer with [`Upgrade::accept`] (101) or the [`HandshakeError`]'s
//! [`response`](HandshakeError::response) (400, 426, 431), or any [`Response`] of your own.
//! Bytes after the request head are kept in [`RequestParser::remaining`]: they are the start
//! of the frame stream.
//!
//! Client: [`ClientRequest`] builds the request; [`ClientHandshake::feed`] validates the 101.
//!
//! Either way the handshake hands over a ready [`Connection`]
//! ([`Upgrade::accept_connection`], [`ClientHandshake::into_connection`]): limits from a
//! [`Setup`], permessage-deflate negotiated, and the bytes read past the head fed in, so no
//! transport repeats that logic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::connection::Connection;
#[cfg(feature = "deflate")]
use crate::extensions::DeflateConfig;
use crate::extensions::{ExtensionOffer, parse_extensions};
use crate::vocab::{MaskKeySource, ProtocolConfig};

/// What the opening handshake sets up on the connection it hands over: its limits, and
/// permessage-deflate (offered by a client, accepted by a server when the client offers it).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Setup {
    /// The connection's limits and behaviour.
    pub config: ProtocolConfig,
    /// permessage-deflate (RFC 7692), when wanted. Default off.
    #[cfg(feature = "deflate")]
    pub compression: Option<DeflateConfig>,
}

/// The GUID that §1.3 appends to the key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (§4.2.2 step 5.4): the base64
/// of the SHA-1 of the key followed by the GUID.
///
/// ```
/// // RFC 6455 §1.3.
/// assert_eq!(ws_proto::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

/// Bounds on an HTTP head. A peer that exceeds them gets 431 and costs at most
/// `max_head_size` plus one read of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// The largest request or response head, request line and headers together. Default
    /// 16 KiB.
    pub max_head_size: usize,
    /// The most header lines. Default 64.
    pub max_headers: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self { max_head_size: 16 << 10, max_headers: 64 }
    }
}

/// Why a request is not an acceptable WebSocket upgrade. Each has an HTTP status to answer with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is over [`HandshakeLimits::max_head_size`] (431).
    #[error("request head too large")]
    HeadTooLarge,
    /// More header lines than [`HandshakeLimits::max_headers`] (431).
    #[error("too many headers")]
    TooManyHeaders,
    /// Not valid HTTP/1.x (400).
    #[error("malformed http request")]
    MalformedHttp,
    /// An ordinary HTTP request with no `Upgrade: websocket`. A server may serve it as plain
    /// HTTP; otherwise the answer is 426.
    #[error("not a websocket upgrade request")]
    NotWebSocket,
    /// The method is not GET (400).
    #[error("method is not GET")]
    MethodNotGet,
    /// HTTP/1.0 (400); §4.1 requires 1.1 or later.
    #[error("http version below 1.1")]
    HttpVersion,
    /// No `Host` header (400).
    #[error("missing Host header")]
    MissingHost,
    /// `Connection` does not contain the `upgrade` token (400).
    #[error("Connection header does not contain upgrade")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key`, several, or one that is not 16 bytes in base64 (400).
    #[error("missing or invalid Sec-WebSocket-Key")]
    InvalidKey,
    /// No `Sec-WebSocket-Version` (400).
    #[error("missing Sec-WebSocket-Version")]
    MissingVersion,
    /// A `Sec-WebSocket-Version` other than 13 (426, with `Sec-WebSocket-Version: 13`).
    #[error("unsupported websocket version")]
    UnsupportedVersion,
    /// A malformed `Sec-WebSocket-Extensions` header (400).
    #[error("malformed Sec-WebSocket-Extensions header")]
    InvalidExtensions,
}

impl HandshakeError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::HeadTooLarge | Self::TooManyHeaders => 431,
            Self::NotWebSocket | Self::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The complete HTTP response to send before closing the connection.
    pub fn response(&self) -> Response {
        let mut response = Response::new(self.status()).body(format!("{self}\n").into_bytes());
        if self.status() == 426 {
            // §4.2.2: "send an appropriate HTTP error code (such as 426 Upgrade Required) and a
            // |Sec-WebSocket-Version| header field indicating the version(s) the server is
            // capable of understanding."
            response =
                response.header("Sec-WebSocket-Version", "13").header("Upgrade", "websocket");
        }
        response.header("Connection", "close")
    }
}

/// One header line. Names keep the case the peer sent; look them up with
/// [`Request::header`], which ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name.
    pub name: String,
    /// The raw field value.
    pub value: Vec<u8>,
}

/// Accumulates an HTTP head within limits, scanning each byte once for its end.
#[derive(Debug)]
struct HeadBuffer {
    buf: Vec<u8>,
    scanned: usize,
    limits: HandshakeLimits,
    /// Length of the head once its end is found; bytes after it are the caller's.
    head_len: Option<usize>,
}

impl HeadBuffer {
    fn new(limits: HandshakeLimits) -> Self {
        Self { buf: Vec::new(), scanned: 0, limits, head_len: None }
    }

    /// Adds bytes; returns the head length once the blank line that ends it is seen.
    /// Once the head is complete, later bytes are appended to [`remaining`](Self::remaining)
    /// and `None` is returned, so each head is reported once.
    fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, HandshakeError> {
        if self.head_len.is_some() {
            self.buf.extend_from_slice(data);
            return Ok(None);
        }
        self.buf.extend_from_slice(data);
        // Resume two bytes back so that a terminator split across feeds is seen.
        let mut i = self.scanned.saturating_sub(2);
        while let Some(pos) = self.buf[i..].iter().position(|&b| b == b'\n') {
            let lf = i + pos;
            // RFC 9112 §2.2 lets a recipient accept a bare LF as a line terminator.
            let end = match (self.buf.get(lf + 1), self.buf.get(lf + 2)) {
                (Some(b'\n'), _) => Some(lf + 2),
                (Some(b'\r'), Some(b'\n')) => Some(lf + 3),
                (None, _) | (Some(b'\r'), None) => None,
                _ => None,
            };
            if let Some(end) = end {
                if end > self.limits.max_head_size {
                    return Err(HandshakeError::HeadTooLarge);
                }
                self.head_len = Some(end);
                return Ok(Some(end));
            }
            i = lf + 1;
        }
        self.scanned = self.buf.len();
        if self.buf.len() > self.limits.max_head_size {
            return Err(HandshakeError::HeadTooLarge);
        }
        Ok(None)
    }

    fn remaining(&self) -> &[u8] {
        self.head_len.map_or(&[][..], |len| &self.buf[len..])
    }
}

fn collect_headers(raw: &[httparse::Header<'_>]) -> Vec<Header> {
    raw.iter().map(|h| Header { name: h.name.to_string(), value: h.value.to_vec() }).collect()
}

fn map_httparse(err: httparse::Error) -> HandshakeError {
    match err {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        _ => HandshakeError::MalformedHttp,
    }
}

/// Reads an HTTP request head from bytes that arrive in pieces.
///
/// ```
/// use ws_proto::{HandshakeLimits, RequestParser};
///
/// let mut parser = RequestParser::new(HandshakeLimits::default());
/// assert!(parser.feed(b"GET /chat HTTP/1.1\r\nHost: example.com\r\n")?.is_none());
/// let request = parser.feed(b"\r\n\x81\x80")?.expect("complete");
/// assert_eq!(request.path, "/chat");
/// assert_eq!(parser.remaining(), b"\x81\x80"); // the first frame, kept
/// # Ok::<(), ws_proto::HandshakeError>(())
/// ```
#[derive(Debug)]
pub struct RequestParser {
    head: HeadBuffer,
}

impl RequestParser {
    /// A parser with the given limits.
    pub fn new(limits: HandshakeLimits) -> Self {
        Self { head: HeadBuffer::new(limits) }
    }

    /// Adds bytes read from the peer. Returns the request once, when its head is complete;
    /// bytes fed after that are appended to [`remaining`](Self::remaining).
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Request>, HandshakeError> {
        let Some(len) = self.head.feed(data)? else {
            return Ok(None);
        };
        let mut headers = vec![httparse::EMPTY_HEADER; self.head.limits.max_headers];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&self.head.buf[..len]).map_err(map_httparse)? {
            httparse::Status::Complete(_) => {}
            httparse::Status::Partial => return Err(HandshakeError::MalformedHttp),
        }
        Ok(Some(Request {
            method: req.method.unwrap_or_default().to_string(),
            path: req.path.unwrap_or_default().to_string(),
            version: req.version.unwrap_or_default(),
            headers: collect_headers(req.headers),
        }))
    }

    /// Bytes received after the request head: the start of the frame stream.
    pub fn remaining(&self) -> &[u8] {
        self.head.remaining()
    }
}

/// An HTTP request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target, e.g. `/chat?room=1`.
    pub path: String,
    /// The minor version: 1 for HTTP/1.1.
    pub version: u8,
    /// The headers in order.
    pub headers: Vec<Header>,
}

/// Iterates the comma-separated, trimmed, non-empty elements of header values.
fn list_items<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|item| item.trim_ascii())
        .filter(|i| !i.is_empty())
}

fn headers_named<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
}

fn has_token(headers: &[Header], name: &str, token: &str) -> bool {
    list_items(headers_named(headers, name)).any(|item| item.eq_ignore_ascii_case(token.as_bytes()))
}

impl Request {
    /// The first value of the header `name`, compared without case.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_slice())
    }

    /// Every value of the header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        headers_named(&self.headers, name)
    }

    /// Validates the request as a WebSocket upgrade (§4.2.1).
    ///
    /// Returns [`HandshakeError::NotWebSocket`] for a request without `Upgrade: websocket`, so
    /// that a server can answer it as ordinary HTTP.
    pub fn websocket(&self) -> Result<Upgrade, HandshakeError> {
        // §4.2.1 item 3: "An |Upgrade| header field containing the value "websocket""
        if !has_token(&self.headers, "upgrade", "websocket") {
            return Err(HandshakeError::NotWebSocket);
        }
        // Item 1: "An HTTP/1.1 or higher GET request".
        if self.method != "GET" {
            return Err(HandshakeError::MethodNotGet);
        }
        if self.version < 1 {
            return Err(HandshakeError::HttpVersion);
        }
        // Item 2: "A |Host| header field".
        if self.header("host").is_none() {
            return Err(HandshakeError::MissingHost);
        }
        // Item 4: "A |Connection| header field that includes the token "Upgrade"".
        if !has_token(&self.headers, "connection", "upgrade") {
            return Err(HandshakeError::MissingConnectionUpgrade);
        }
        // Item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded value that, when
        // decoded, is 16 bytes in length." Exactly one.
        let mut keys = self.headers_named("sec-websocket-key");
        let key = match (keys.next(), keys.next()) {
            (Some(key), None) => key.trim_ascii(),
            _ => return Err(HandshakeError::InvalidKey),
        };
        match BASE64.decode(key) {
            Ok(decoded) if decoded.len() == 16 => {}
            _ => return Err(HandshakeError::InvalidKey),
        }
        // Item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
        let mut versions = self.headers_named("sec-websocket-version");
        match (versions.next(), versions.next()) {
            (None, _) => return Err(HandshakeError::MissingVersion),
            (Some(v), None) if v.trim_ascii() == b"13" => {}
            _ => return Err(HandshakeError::UnsupportedVersion),
        }
        let protocols = list_items(self.headers_named("sec-websocket-protocol"))
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let mut extensions = Vec::new();
        for value in self.headers_named("sec-websocket-extensions") {
            let value =
                std::str::from_utf8(value).map_err(|_| HandshakeError::InvalidExtensions)?;
            extensions
                .extend(parse_extensions(value).map_err(|_| HandshakeError::InvalidExtensions)?);
        }
        Ok(Upgrade {
            key: String::from_utf8_lossy(key).into_owned(),
            protocols,
            extensions,
            origin: self.header("origin").map(|o| String::from_utf8_lossy(o).into_owned()),
        })
    }
}

/// A valid WebSocket upgrade request: what the server may decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Key` value.
    pub key: String,
    /// Subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// Extensions the client offered, in its order of preference.
    pub extensions: Vec<ExtensionOffer>,
    /// The `Origin` header, sent by browsers (§10.2): check it to refuse cross-site pages.
    pub origin: Option<String>,
}

/// The server chose a subprotocol the client did not offer (§4.2.2: the server MUST select
/// one of the values the client sent, or none).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("subprotocol {0:?} was not offered by the client")]
pub struct ProtocolNotOffered(pub String);

impl Upgrade {
    /// The 101 response accepting the upgrade, with `protocol` (one the client offered) echoed
    /// in `Sec-WebSocket-Protocol`. Add headers to it with [`Response::header`].
    pub fn accept(&self, protocol: Option<&str>) -> Result<Response, ProtocolNotOffered> {
        let mut response = Response::new(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", accept_key(self.key.as_bytes()));
        if let Some(protocol) = protocol {
            if !self.protocols.iter().any(|p| p == protocol) {
                return Err(ProtocolNotOffered(protocol.to_string()));
            }
            response = response.header("Sec-WebSocket-Protocol", protocol);
        }
        Ok(response)
    }

    /// Accepts the upgrade and hands over the connection: the 101 response (with `protocol`,
    /// one the client offered, and permessage-deflate when `setup` wants it and the client
    /// offered it) and a server [`Connection`] configured to match, with `already_read` (the
    /// bytes after the request head, [`RequestParser::remaining`]) fed in.
    ///
    /// ```
    /// use ws_proto::{Event, HandshakeLimits, MessageRef, RequestParser, Setup};
    ///
    /// let mut parser = RequestParser::new(HandshakeLimits::default());
    /// let mut input = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    ///     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    /// // A masked "Hello" (RFC 6455 §5.7) arrived with the head.
    /// input.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    /// let request = parser.feed(&input)?.expect("a whole head");
    /// let upgrade = request.websocket()?;
    /// let (response, mut conn) =
    ///     upgrade.accept_connection(None, &Setup::default(), parser.remaining())?;
    /// assert_eq!(response.status, 101);
    /// assert_eq!(conn.poll_event(), Some(Event::Message(MessageRef::Text("Hello"))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept_connection(
        &self,
        protocol: Option<&str>,
        setup: &Setup,
        already_read: &[u8],
    ) -> Result<(Response, Connection), ProtocolNotOffered> {
        #[allow(unused_mut)]
        let mut response = self.accept(protocol)?;
        #[allow(unused_mut)]
        let mut conn = Connection::server(setup.config.clone());
        #[cfg(feature = "deflate")]
        if let Some(deflate) = setup.compression {
            if let Some((params, header)) = deflate.negotiate(&self.extensions) {
                response = response.header("Sec-WebSocket-Extensions", header);
                conn.set_deflate(&params, deflate.level);
            }
        }
        conn.receive_data(already_read);
        Ok((response, conn))
    }
}

/// An HTTP response to write to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers in order. `Content-Length` is added for a body when encoding.
    pub headers: Vec<(String, String)>,
    /// The body; empty for 101.
    pub body: Vec<u8>,
}

/// The standard reason phrase for the statuses a WebSocket server commonly sends.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

impl Response {
    /// A response with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The response on the wire. Header values must not contain CR or LF; such headers are
    /// left out rather than allowing response splitting.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(
            format!("HTTP/1.1 {} {}\r\n", self.status, reason_phrase(self.status)).as_bytes(),
        );
        for (name, value) in &self.headers {
            if name.bytes().chain(value.bytes()).any(|b| b == b'\r' || b == b'\n') {
                continue;
            }
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if self.status != 101
            && !self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

// ---- client --------------------------------------------------------------------------------

/// What a client asks for in its opening handshake (§4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// The `Host` header: host, and port when not the default.
    pub host: String,
    /// The request target, e.g. `/chat`.
    pub path: String,
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra headers, e.g. `Origin` or `Authorization`.
    pub headers: Vec<(String, String)>,
    /// Extension offers, each a `Sec-WebSocket-Extensions` element such as
    /// `permessage-deflate; client_max_window_bits`.
    pub extensions: Vec<String>,
}

impl ClientRequest {
    /// A request for `path` on `host`.
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            path: path.into(),
            protocols: Vec::new(),
            headers: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// Offers a subprotocol.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Offers an extension (one `Sec-WebSocket-Extensions` element).
    pub fn extension(mut self, offer: impl Into<String>) -> Self {
        self.extensions.push(offer.into());
        self
    }

    /// Starts the handshake with a key made from 16 random bytes (§4.1: "randomly selected"),
    /// which the caller supplies. Returns the request bytes to send and the state that checks
    /// the answer.
    ///
    /// ```
    /// use ws_proto::{ClientRequest, HandshakeLimits};
    ///
    /// let (mut handshake, request) = ClientRequest::new("example.com", "/chat").start([0; 16]);
    /// assert!(request.starts_with(b"GET /chat HTTP/1.1\r\n"));
    /// let reply = format!(
    ///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    ///      Sec-WebSocket-Accept: {}\r\n\r\n",
    ///     ws_proto::accept_key(b"AAAAAAAAAAAAAAAAAAAAAA=="),
    /// );
    /// let accepted = handshake.feed(reply.as_bytes())?.expect("complete");
    /// assert_eq!(accepted.protocol, None);
    /// # Ok::<(), ws_proto::ResponseError>(())
    /// ```
    pub fn start(self, key: [u8; 16]) -> (ClientHandshake, Vec<u8>) {
        self.start_with_limits(key, HandshakeLimits::default())
    }

    /// [`start`](Self::start) with explicit limits on the response head.
    pub fn start_with_limits(
        self,
        key: [u8; 16],
        limits: HandshakeLimits,
    ) -> (ClientHandshake, Vec<u8>) {
        let key = BASE64.encode(key);
        let mut out = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host
        );
        if !self.protocols.is_empty() {
            out.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", self.protocols.join(", ")));
        }
        let offered: Vec<String> = self
            .extensions
            .iter()
            .filter(|e| !e.bytes().any(|b| b == b'\r' || b == b'\n'))
            .cloned()
            .collect();
        if !offered.is_empty() {
            out.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", offered.join(", ")));
        }
        for (name, value) in &self.headers {
            if name.bytes().chain(value.bytes()).any(|b| b == b'\r' || b == b'\n') {
                continue;
            }
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let extension_names = offered
            .iter()
            .filter_map(|o| parse_extensions(o).ok())
            .flatten()
            .map(|offer| offer.name)
            .collect();
        let handshake = ClientHandshake {
            expected_accept: accept_key(key.as_bytes()),
            protocols: self.protocols,
            extension_names,
            head: HeadBuffer::new(limits),
        };
        (handshake, out.into_bytes())
    }
}

/// Why a server's answer to our handshake is not an acceptable 101.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The head is over the limit, or has too many headers.
    #[error("response head too large")]
    HeadTooLarge,
    /// Not valid HTTP/1.x.
    #[error("malformed http response")]
    MalformedHttp,
    /// A status other than 101; the server refused the upgrade.
    #[error("server answered with status {0}")]
    Status(u16),
    /// `Upgrade: websocket` or `Connection: Upgrade` missing.
    #[error("response lacks Upgrade: websocket or Connection: upgrade")]
    MissingUpgrade,
    /// `Sec-WebSocket-Accept` missing or wrong.
    #[error("wrong Sec-WebSocket-Accept")]
    InvalidAccept,
    /// The server picked a subprotocol we did not offer, or several.
    #[error("server selected a subprotocol that was not offered")]
    InvalidProtocol,
    /// The server accepted an extension we did not offer (§4.1: the client MUST fail).
    #[error("server selected an extension that was not offered")]
    InvalidExtension,
}

/// The server's accepted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The subprotocol the server chose, one of those offered.
    pub protocol: Option<String>,
    /// The extensions the server accepted, with their parameters (names among those offered;
    /// the parameters are for the extension to check, e.g.
    /// [`DeflateConfig::accept_response`](crate::DeflateConfig::accept_response)).
    pub extensions: Vec<ExtensionOffer>,
    /// The response headers, for inspection.
    pub headers: Vec<Header>,
}

/// A client handshake in progress: checks the server's response.
#[derive(Debug)]
pub struct ClientHandshake {
    expected_accept: String,
    protocols: Vec<String>,
    extension_names: Vec<String>,
    head: HeadBuffer,
}

impl ClientHandshake {
    /// Adds bytes read from the server. Returns the accepted response once, when its head is
    /// complete and valid (bytes fed after that are appended to
    /// [`remaining`](Self::remaining)) (§4.1, "the client MUST _Fail the WebSocket Connection_" otherwise).
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<Accepted>, ResponseError> {
        let len = match self.head.feed(data) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(_) => return Err(ResponseError::HeadTooLarge),
        };
        let mut headers = vec![httparse::EMPTY_HEADER; self.head.limits.max_headers];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(&self.head.buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(ResponseError::MalformedHttp),
            Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::HeadTooLarge),
            Err(_) => return Err(ResponseError::MalformedHttp),
        }
        let status = res.code.unwrap_or_default();
        let headers = collect_headers(res.headers);
        if status != 101 {
            return Err(ResponseError::Status(status));
        }
        if !has_token(&headers, "upgrade", "websocket")
            || !has_token(&headers, "connection", "upgrade")
        {
            return Err(ResponseError::MissingUpgrade);
        }
        {
            let mut accepts = headers_named(&headers, "sec-websocket-accept");
            match (accepts.next(), accepts.next()) {
                (Some(accept), None) if accept.trim_ascii() == self.expected_accept.as_bytes() => {}
                _ => return Err(ResponseError::InvalidAccept),
            }
        }
        let chosen: Vec<&[u8]> =
            list_items(headers_named(&headers, "sec-websocket-protocol")).collect();
        let protocol = match chosen.as_slice() {
            [] => None,
            [one] => {
                let one = String::from_utf8_lossy(one).into_owned();
                if !self.protocols.contains(&one) {
                    return Err(ResponseError::InvalidProtocol);
                }
                Some(one)
            }
            _ => return Err(ResponseError::InvalidProtocol),
        };
        // §4.1: "the use of an extension not present in the client's handshake ... MUST
        // _Fail the WebSocket Connection_".
        let mut extensions = Vec::new();
        for value in headers_named(&headers, "sec-websocket-extensions") {
            let value = std::str::from_utf8(value).map_err(|_| ResponseError::InvalidExtension)?;
            extensions
                .extend(parse_extensions(value).map_err(|_| ResponseError::InvalidExtension)?);
        }
        if extensions
            .iter()
            .any(|e| !self.extension_names.iter().any(|n| n.eq_ignore_ascii_case(&e.name)))
        {
            return Err(ResponseError::InvalidExtension);
        }
        Ok(Some(Accepted { protocol, extensions, headers }))
    }

    /// Bytes received after the response head: the start of the frame stream.
    pub fn remaining(&self) -> &[u8] {
        self.head.remaining()
    }

    /// Hands over the connection once [`feed`](Self::feed) returned `accepted`: a client
    /// [`Connection`] masking with `keys`, with permessage-deflate as the server accepted it
    /// (when `setup` offered it) and the bytes received after the head fed in. A deflate
    /// answer that breaks RFC 7692's rules is [`ResponseError::InvalidExtension`] (§4.1: the
    /// client fails the connection).
    pub fn into_connection(
        self,
        accepted: &Accepted,
        setup: &Setup,
        keys: impl MaskKeySource + 'static,
    ) -> Result<Connection, ResponseError> {
        #[allow(unused_mut)]
        let mut conn = Connection::client(setup.config.clone(), keys);
        #[cfg(feature = "deflate")]
        if let Some(deflate) = setup.compression {
            match deflate.accept_response(&accepted.extensions) {
                Ok(Some(params)) => conn.set_deflate(&params, deflate.level),
                Ok(None) => {}
                Err(_) => return Err(ResponseError::InvalidExtension),
            }
        }
        #[cfg(not(feature = "deflate"))]
        let _ = accepted;
        conn.receive_data(self.remaining());
        Ok(conn)
    }
}
