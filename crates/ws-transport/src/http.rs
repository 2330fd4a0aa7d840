//! Conversions between the `http` crate's types and the handshake's (the `http` feature), for
//! servers whose HTTP layer is not ours (hyper, axum, anything on `http` 1.x).

use ws_proto::{Header, Request, Response};

/// The request head, as the handshake validates it ([`Request::websocket`]).
///
/// The target is the URI's path and query (`/` when it has none). HTTP/1.0 is version 0 (and
/// fails validation), later versions 1. RFC 8441's extended CONNECT (WebSockets over HTTP/2)
/// is not supported: its method, `CONNECT`, fails validation.
pub fn request_from_parts(parts: &http::request::Parts) -> Request {
    request_from_head(&parts.method, &parts.uri, parts.version, &parts.headers)
}

/// [`request_from_parts`], from the head's pieces (of a whole `http::Request`, say).
pub(crate) fn request_from_head(
    method: &http::Method,
    uri: &http::Uri,
    version: http::Version,
    headers: &http::HeaderMap,
) -> Request {
    let version = match version {
        http::Version::HTTP_09 | http::Version::HTTP_10 => 0,
        _ => 1,
    };
    Request {
        method: method.as_str().to_owned(),
        path: uri.path_and_query().map_or("/", |target| target.as_str()).to_owned(),
        version,
        headers: headers
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_owned(),
                value: value.as_bytes().to_vec(),
            })
            .collect(),
    }
}

/// A handshake response (a 101, or a refusal with its body) as an `http::Response`, with the
/// body converted by `B::from` (`Full<Bytes>`, axum's `Body`, `Vec<u8>`, ...). Header
/// values that `http` refuses are left out; ours are all valid.
pub fn into_http_response<B: From<Vec<u8>>>(response: Response) -> http::Response<B> {
    let mut out = http::Response::new(B::from(response.body));
    *out.status_mut() =
        http::StatusCode::from_u16(response.status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let headers = out.headers_mut();
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::try_from(name), http::HeaderValue::try_from(value))
        {
            headers.append(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(request: http::Request<()>) -> http::request::Parts {
        request.into_parts().0
    }

    #[test]
    fn an_upgrade_request_converts_and_validates() {
        let parts = parts(
            http::Request::get("/chat?room=1")
                .header("Host", "example.com")
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("Sec-WebSocket-Version", "13")
                .header("Sec-WebSocket-Protocol", "chat, superchat")
                .body(())
                .unwrap(),
        );
        let request = request_from_parts(&parts);
        assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/chat?room=1"));
        let upgrade = request.websocket().unwrap();
        assert_eq!(upgrade.protocols, ["chat", "superchat"]);
        // RFC 6455 §1.3's example key and its accept value.
        let response = into_http_response::<Vec<u8>>(upgrade.accept(Some("chat")).unwrap());
        assert_eq!(response.status(), 101);
        assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
        assert!(response.body().is_empty());
    }

    #[test]
    fn a_refusal_keeps_its_status_headers_and_body() {
        let parts = parts(http::Request::get("/").header("Host", "x").body(()).unwrap());
        let err = request_from_parts(&parts).websocket().unwrap_err();
        let response = into_http_response::<Vec<u8>>(err.response());
        assert_eq!(response.status(), 426);
        assert_eq!(response.headers()["sec-websocket-version"], "13");
        assert!(!response.body().is_empty());
    }

    #[test]
    fn http_1_0_is_not_an_upgrade() {
        let request = |version| {
            let mut request = http::Request::get("/")
                .header("Host", "x")
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("Sec-WebSocket-Version", "13")
                .body(())
                .unwrap();
            *request.version_mut() = version;
            request_from_parts(&parts(request))
        };
        assert!(request(http::Version::HTTP_11).websocket().is_ok());
        let err = request(http::Version::HTTP_10).websocket().unwrap_err();
        assert_eq!(err.status(), 400, "{err}");
    }
}
