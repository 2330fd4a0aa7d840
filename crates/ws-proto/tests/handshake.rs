//! The opening handshake (RFC 6455 §4), both roles.

use ws_proto::{
    ClientRequest, DeflateConfig, HandshakeError, HandshakeLimits, Request, RequestParser,
    Response, ResponseError, Setup, accept_key,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The §1.3 example request, with `extra` header lines added.
fn request_with(extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: http://example.com\r\n\
         Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn parse(raw: &str) -> Request {
    let mut parser = RequestParser::new(HandshakeLimits::default());
    parser.feed(raw.as_bytes()).expect("parses").expect("complete")
}

/// Builds a request from its lines, for the table of invalid upgrades.
fn raw(lines: &[&str]) -> String {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n\r\n");
    s
}

#[test]
fn rfc_1_3_accept_key_example() {
    assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn rfc_4_2_2_server_accepts_the_example_request() {
    let request = parse(&request_with(""));
    let upgrade = request.websocket().unwrap();
    assert_eq!(upgrade.protocols, ["chat", "superchat"]);
    assert_eq!(upgrade.origin.as_deref(), Some("http://example.com"));
    let response = upgrade.accept(Some("chat")).unwrap();
    assert_eq!(
        String::from_utf8(response.to_bytes()).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    );
}

#[test]
fn rfc_4_2_2_never_echo_a_subprotocol_that_was_not_offered() {
    let upgrade = parse(&request_with("")).websocket().unwrap();
    assert!(upgrade.accept(Some("mqtt")).is_err());
    let response = upgrade.accept(None).unwrap();
    assert!(!response.headers.iter().any(|(n, _)| n == "Sec-WebSocket-Protocol"));
}

/// Table: request lines → the error and its HTTP status.
macro_rules! rejects {
    ($($name:ident: [$($line:expr),*] => $err:expr, $status:expr;)*) => {$(
        #[test]
        fn $name() {
            let request = parse(&raw(&[$($line),*]));
            let err = request.websocket().unwrap_err();
            assert_eq!(err, $err);
            assert_eq!(err.status(), $status);
            let bytes = err.response().to_bytes();
            assert!(bytes.starts_with(format!("HTTP/1.1 {} ", $status).as_bytes()));
        }
    )*};
}

rejects! {
    rfc_4_2_1_plain_get_is_not_websocket:
        ["GET / HTTP/1.1", "Host: a"] => HandshakeError::NotWebSocket, 426;
    rfc_4_2_1_method_must_be_get:
        ["POST /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
        => HandshakeError::MethodNotGet, 400;
    rfc_4_2_1_http_1_1_or_later:
        ["GET /chat HTTP/1.0", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
        => HandshakeError::HttpVersion, 400;
    rfc_4_2_1_host_required:
        ["GET /chat HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
        => HandshakeError::MissingHost, 400;
    rfc_4_2_1_connection_must_contain_upgrade:
        ["GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: keep-alive",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
        => HandshakeError::MissingConnectionUpgrade, 400;
    rfc_4_2_1_key_required:
        ["GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Version: 13"]
        => HandshakeError::InvalidKey, 400;
    rfc_4_2_1_key_exactly_once:
        ["GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
         "Sec-WebSocket-Version: 13"]
        => HandshakeError::InvalidKey, 400;
    rfc_4_2_1_key_decodes_to_16_bytes:
        ["GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: c2hvcnQ=", "Sec-WebSocket-Version: 13"]
        => HandshakeError::InvalidKey, 400;
    rfc_4_2_1_key_must_be_base64:
        ["GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!", "Sec-WebSocket-Version: 13"]
        => HandshakeError::InvalidKey, 400;
    rfc_4_2_1_version_required:
        ["GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="]
        => HandshakeError::MissingVersion, 400;
    rfc_4_4_other_versions_get_426:
        ["GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 8"]
        => HandshakeError::UnsupportedVersion, 426;
    rfc_9_1_malformed_extensions_get_400:
        ["GET /chat HTTP/1.1", "Host: a", "Upgrade: websocket", "Connection: Upgrade",
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
         "Sec-WebSocket-Extensions: ;;"]
        => HandshakeError::InvalidExtensions, 400;
}

#[test]
fn rfc_4_4_426_names_the_supported_version() {
    let bytes = HandshakeError::UnsupportedVersion.response().to_bytes();
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
}

#[test]
fn header_tokens_are_case_insensitive_comma_lists() {
    let request = parse(&raw(&[
        "GET / HTTP/1.1",
        "host: a",
        "upgrade: WebSocket",
        "connection: keep-alive, UPGRADE",
        "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  ",
        "sec-websocket-version: 13",
        "Sec-WebSocket-Protocol: a",
        "Sec-WebSocket-Protocol: b, c",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    ]));
    let upgrade = request.websocket().unwrap();
    assert_eq!(upgrade.protocols, ["a", "b", "c"]);
    assert_eq!(upgrade.extensions[0].name, "permessage-deflate");
}

#[test]
fn any_split_of_the_request_parses_the_same_and_keeps_what_follows() {
    let mut wire = request_with("").into_bytes();
    wire.extend_from_slice(b"\x81\x80\x01\x02\x03\x04");
    let expected = parse(&request_with(""));
    for split in 1..wire.len() {
        let mut parser = RequestParser::new(HandshakeLimits::default());
        let first = parser.feed(&wire[..split]).unwrap();
        let second = parser.feed(&wire[split..]).unwrap();
        let request = match (first, second) {
            (Some(request), None) | (None, Some(request)) => request,
            other => panic!("reported {other:?}"),
        };
        assert_eq!(request, expected, "split {split}");
        assert_eq!(parser.remaining(), b"\x81\x80\x01\x02\x03\x04", "split {split}");
    }
    // One byte at a time.
    let mut parser = RequestParser::new(HandshakeLimits::default());
    let mut done = None;
    for byte in &wire {
        if let Some(request) = parser.feed(std::slice::from_ref(byte)).unwrap() {
            assert!(done.is_none());
            done = Some(request);
        }
    }
    assert_eq!(done, Some(expected));
}

#[test]
fn bare_lf_line_endings_are_accepted() {
    let wire = request_with("").replace("\r\n", "\n");
    let request = parse(&wire);
    assert!(request.websocket().is_ok());
}

#[test]
fn rfc_6585_head_over_the_limit_gets_431() {
    let mut parser = RequestParser::new(HandshakeLimits::default());
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
    let mut result = Ok(None);
    for _ in 0..20 {
        result = parser.feed(filler.as_bytes());
        if result.is_err() {
            break;
        }
    }
    let err = result.unwrap_err();
    assert_eq!(err, HandshakeError::HeadTooLarge);
    assert_eq!(err.status(), 431);
}

#[test]
fn rfc_6585_too_many_headers_gets_431() {
    let mut lines = vec!["GET / HTTP/1.1".to_string()];
    lines.extend((0..65).map(|i| format!("X-{i}: v")));
    let wire = format!("{}\r\n\r\n", lines.join("\r\n"));
    let mut parser = RequestParser::new(HandshakeLimits::default());
    let err = parser.feed(wire.as_bytes()).unwrap_err();
    assert_eq!(err, HandshakeError::TooManyHeaders);
    assert_eq!(err.status(), 431);
}

#[test]
fn malformed_http_gets_400() {
    let mut parser = RequestParser::new(HandshakeLimits::default());
    let err = parser.feed(b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n").unwrap_err();
    assert_eq!(err, HandshakeError::MalformedHttp);
    assert_eq!(err.status(), 400);
}

#[test]
fn responses_drop_headers_that_would_split_the_response() {
    let bytes = Response::new(403).header("X-Evil", "a\r\nSet-Cookie: x").body("no").to_bytes();
    assert_eq!(bytes, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno");
}

// ---- client ----------------------------------------------------------------------------------

fn server_reply(accept: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
}

/// 16 bytes that encode to the §1.3 example key.
const NONCE: [u8; 16] = *b"the sample nonce";

#[test]
fn rfc_4_1_client_request_bytes() {
    let (_, request) = ClientRequest::new("server.example.com", "/chat")
        .protocol("chat")
        .protocol("superchat")
        .header("Origin", "http://example.com")
        .start(NONCE);
    assert_eq!(
        String::from_utf8(request).unwrap(),
        "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
         Origin: http://example.com\r\n\r\n"
    );
}

#[test]
fn rfc_4_1_client_accepts_a_valid_101_and_keeps_following_bytes() {
    let (mut hs, _) = ClientRequest::new("a", "/").protocol("chat").start(NONCE);
    let mut wire = server_reply("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Protocol: chat\r\n")
        .into_bytes();
    wire.extend_from_slice(b"\x81\x02hi");
    let mut accepted = None;
    for byte in &wire {
        if let Some(a) = hs.feed(std::slice::from_ref(byte)).unwrap() {
            assert!(accepted.is_none(), "reported twice");
            accepted = Some(a);
        }
    }
    assert_eq!(accepted.unwrap().protocol.as_deref(), Some("chat"));
    assert_eq!(hs.remaining(), b"\x81\x02hi");
}

macro_rules! client_rejects {
    ($($name:ident: $reply:expr => $err:expr;)*) => {$(
        #[test]
        fn $name() {
            let (mut hs, _) = ClientRequest::new("a", "/").protocol("chat").start(NONCE);
            let reply: String = $reply;
            assert_eq!(hs.feed(reply.as_bytes()), Err($err));
        }
    )*};
}

client_rejects! {
    rfc_4_1_client_fails_on_non_101:
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_string() => ResponseError::Status(403);
    rfc_4_1_client_fails_on_wrong_accept:
        server_reply("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "") => ResponseError::InvalidAccept;
    rfc_4_1_client_fails_without_upgrade:
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_string()
        => ResponseError::MissingUpgrade;
    rfc_4_1_client_fails_on_unoffered_protocol:
        server_reply("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Protocol: mqtt\r\n") => ResponseError::InvalidProtocol;
    rfc_4_1_client_fails_on_unoffered_extension:
        server_reply("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
        => ResponseError::InvalidExtension;
    client_fails_on_garbage:
        "SSH-2.0-OpenSSH\r\n\r\n".to_string() => ResponseError::MalformedHttp;
}

#[test]
fn rfc_4_1_client_accepts_only_offered_extensions() {
    let (mut hs, request) = ClientRequest::new("a", "/")
        .extension("permessage-deflate; client_max_window_bits")
        .start(NONCE);
    let text = String::from_utf8(request).unwrap();
    assert!(
        text.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        ),
        "{text}"
    );
    let reply = server_reply(
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n",
    );
    let accepted = hs.feed(reply.as_bytes()).unwrap().unwrap();
    assert_eq!(accepted.extensions.len(), 1);
    assert_eq!(
        accepted.extensions[0].params,
        [("server_max_window_bits".to_string(), Some("12".to_string()))]
    );

    let (mut hs, _) = ClientRequest::new("a", "/").extension("permessage-deflate").start(NONCE);
    let reply =
        server_reply("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Extensions: x-other\r\n");
    assert_eq!(hs.feed(reply.as_bytes()), Err(ResponseError::InvalidExtension));
}

#[test]
fn the_server_handshake_hands_over_a_configured_connection() {
    let mut setup = Setup::default();
    setup.compression = Some(DeflateConfig::default());
    // Offered: the 101 answers it and the connection compresses.
    let request = parse(&request_with(
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    ));
    let (response, mut conn) =
        request.websocket().unwrap().accept_connection(Some("chat"), &setup, b"").unwrap();
    let head = String::from_utf8(response.to_bytes()).unwrap();
    assert!(head.contains("\r\nSec-WebSocket-Extensions: permessage-deflate"), "{head}");
    assert!(head.contains("\r\nSec-WebSocket-Protocol: chat\r\n"), "{head}");
    assert!(conn.compression());
    conn.send_text("hello").unwrap();
    assert_eq!(conn.pending_output()[0], 0xc1, "RSV1 on a compressed message");
    // Not offered: no header, no compression. Bytes after the head are the frame stream.
    let (response, mut conn) = parse(&request_with(""))
        .websocket()
        .unwrap()
        .accept_connection(None, &setup, &[0x89, 0x80, 0, 0, 0, 0])
        .unwrap();
    assert!(response.headers.iter().all(|(name, _)| name != "Sec-WebSocket-Extensions"));
    assert!(!conn.compression());
    assert!(matches!(conn.poll_event(), Some(ws_proto::Event::Ping(b""))));
    // A subprotocol the client did not offer is refused.
    let upgrade = parse(&request_with("")).websocket().unwrap();
    assert!(upgrade.accept_connection(Some("other"), &setup, b"").is_err());
}

#[test]
fn the_client_handshake_hands_over_a_configured_connection() {
    let mut setup = Setup::default();
    setup.compression = Some(DeflateConfig::default());
    let offer = DeflateConfig::default().offer();
    let (mut hs, _) = ClientRequest::new("a", "/").extension(offer.clone()).start(NONCE);
    let mut reply = server_reply(
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    )
    .into_bytes();
    reply.extend_from_slice(&[0x8a, 0x00]); // a pong right behind the head
    let accepted = hs.feed(&reply).unwrap().unwrap();
    let mut conn = hs.into_connection(&accepted, &setup, || [1, 2, 3, 4]).unwrap();
    assert!(conn.compression());
    assert!(matches!(conn.poll_event(), Some(ws_proto::Event::Pong(b""))));
    // An answer that breaks RFC 7692 (a window the client did not allow) fails it.
    let mut strict = DeflateConfig::default();
    strict.server_max_window_bits = 10;
    setup.compression = Some(strict);
    let (mut hs, _) = ClientRequest::new("a", "/").extension(strict.offer()).start(NONCE);
    let reply = server_reply(
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12\r\n",
    );
    let accepted = hs.feed(reply.as_bytes()).unwrap().unwrap();
    assert_eq!(
        hs.into_connection(&accepted, &setup, || [1, 2, 3, 4]).err(),
        Some(ResponseError::InvalidExtension)
    );
}
