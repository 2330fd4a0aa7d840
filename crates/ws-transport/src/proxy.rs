//! HTTP proxies for the client: which one a connection goes through (a setting of the
//! caller's, or the environment as curl reads it), and the CONNECT tunnel (RFC 9110 §9.3.6)
//! through it.

use std::net::IpAddr;

use base64::Engine as _;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::connect::{WsUrl, host_of};
use crate::error::Error;

/// The most bytes read of a proxy's answer to CONNECT.
const MAX_ANSWER: usize = 8 << 10;

/// Which HTTP proxy a client connection goes through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proxy {
    /// The one the environment names: `https_proxy` or `HTTPS_PROXY` for `wss://`,
    /// `http_proxy` or `HTTP_PROXY` for `ws://`, else `all_proxy` or `ALL_PROXY` (lowercase
    /// first; `HTTP_PROXY` is not taken when `REQUEST_METHOD` is set, under CGI, where it can
    /// come from a request header); none for hosts that `no_proxy` or `NO_PROXY` lists
    /// (comma-separated: names, which cover their subdomains, with or without a leading dot;
    /// addresses; CIDR blocks; `*` for every host). The default.
    #[default]
    Env,
    /// No proxy.
    None,
    /// This proxy, as `http://[user:password@]host[:port]` (or just `host:port`); the user and
    /// password go in `Proxy-Authorization: Basic`.
    Http(String),
}

impl Proxy {
    /// The proxy for `url`, if it goes through one.
    pub(crate) fn for_url(&self, url: &WsUrl) -> Result<Option<HttpProxy>, Error> {
        match self {
            Self::Env => from_env(url, |key| std::env::var(key).ok()),
            Self::None => Ok(None),
            Self::Http(proxy) => HttpProxy::parse(proxy).map(Some),
        }
    }
}

/// An HTTP proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpProxy {
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Proxy-Authorization` value, from the URL's user and password.
    authorization: Option<String>,
}

impl HttpProxy {
    fn parse(proxy: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::Proxy(format!("{proxy:?}: {why}"));
        if proxy.bytes().any(|b| b.is_ascii_control()) {
            return Err(invalid("control characters"));
        }
        let with_scheme =
            if proxy.contains("://") { proxy.to_string() } else { format!("http://{proxy}") };
        let url = url::Url::parse(&with_scheme).map_err(|err| invalid(&err.to_string()))?;
        if url.scheme() != "http" {
            return Err(invalid("only http:// proxies are supported"));
        }
        let host = host_of(&url).ok_or_else(|| invalid("no host"))?;
        let authorization = (!url.username().is_empty()).then(|| {
            // The url crate keeps them percent-encoded; Basic takes the bytes themselves.
            let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
            let mut credentials = decode(url.username());
            credentials.push(b':');
            credentials.extend(decode(url.password().unwrap_or("")));
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials))
        });
        Ok(Self { host, port: url.port_or_known_default().unwrap_or(80), authorization })
    }

    /// Asks the proxy for a tunnel to `url`'s host and port over `stream`, and reads its
    /// answer: any 2xx opens the tunnel.
    pub(crate) async fn tunnel<S>(&self, stream: &mut S, url: &WsUrl) -> Result<(), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let target = url.authority();
        let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(authorization) = &self.authorization {
            head.push_str(&format!("Proxy-Authorization: {authorization}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
        let mut answer = Vec::with_capacity(1024);
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(Error::Proxy("it closed the connection without answering".into()));
            }
            answer.extend_from_slice(&buf[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&answer) {
                Ok(httparse::Status::Complete(len)) => {
                    let code = response.code.unwrap_or(0);
                    if !(200..300).contains(&code) {
                        let reason = response.reason.unwrap_or("");
                        return Err(Error::Proxy(format!("CONNECT {target}: {code} {reason}")));
                    }
                    // Neither a WebSocket server nor a TLS server speaks first.
                    if len != answer.len() {
                        return Err(Error::Proxy("bytes after its answer to CONNECT".into()));
                    }
                    return Ok(());
                }
                Ok(httparse::Status::Partial) if answer.len() < MAX_ANSWER => {}
                Ok(httparse::Status::Partial) => {
                    return Err(Error::Proxy(format!("an answer over {MAX_ANSWER} bytes")));
                }
                Err(err) => return Err(Error::Proxy(format!("a bad answer to CONNECT: {err}"))),
            }
        }
    }
}

/// The proxy the environment names for `url` (through `var`, for tests).
fn from_env(url: &WsUrl, var: impl Fn(&str) -> Option<String>) -> Result<Option<HttpProxy>, Error> {
    let keys: &[&str] = if url.secure {
        &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    // Under CGI, a request's `Proxy:` header arrives as HTTP_PROXY ("httpoxy"): there the
    // uppercase name is not taken, as curl never takes it.
    let cgi = var("REQUEST_METHOD").is_some();
    let Some(proxy) = keys
        .iter()
        .filter(|key| !(cgi && **key == "HTTP_PROXY"))
        .find_map(|key| var(key).filter(|v| !v.trim().is_empty()))
    else {
        return Ok(None);
    };
    let no_proxy = var("no_proxy").or_else(|| var("NO_PROXY")).unwrap_or_default();
    if bypassed(&no_proxy, &url.host) {
        return Ok(None);
    }
    HttpProxy::parse(proxy.trim()).map(Some)
}

/// Whether the `no_proxy` list names `host` (lowercase, IPv6 without brackets).
fn bypassed(list: &str, host: &str) -> bool {
    let ip: Option<IpAddr> = host.parse().ok();
    list.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        let entry = entry.to_ascii_lowercase();
        if entry == "*" {
            return true;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            return match (ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
                (Some(ip), Ok(net), Ok(bits)) => in_block(ip, net, bits),
                _ => false,
            };
        }
        // An address, possibly in brackets or with a port; a name, possibly with a port or
        // a leading dot.
        let bare = entry.trim_start_matches('[');
        let bare = match bare.split_once(']') {
            Some((v6, _)) => v6,
            None => match bare.rsplit_once(':') {
                Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
                _ => bare,
            },
        };
        if let (Some(ip), Ok(listed)) = (ip, bare.parse::<IpAddr>()) {
            return ip == listed;
        }
        let name = bare.trim_start_matches('.');
        host == name || host.strip_suffix(name).is_some_and(|rest| rest.ends_with('.'))
    })
}

/// Whether `ip` is in the block `net/bits`.
fn in_block(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
    }

    fn url(s: &str) -> WsUrl {
        WsUrl::parse(s).unwrap()
    }

    #[test]
    fn scheme_picks_the_variable() {
        let vars = [("https_proxy", "http://tls-proxy:3128"), ("HTTP_PROXY", "plain-proxy:8080")];
        let p = from_env(&url("wss://a.example/"), env(&vars)).unwrap().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("tls-proxy", 3128));
        let p = from_env(&url("ws://a.example/"), env(&vars)).unwrap().unwrap();
        assert_eq!((p.host.as_str(), p.port), ("plain-proxy", 8080));
        // Lowercase first; ALL_PROXY as the fallback; empty values ignored.
        let vars = [("https_proxy", ""), ("HTTPS_PROXY", "upper:1"), ("https_proxy", "")];
        let p = from_env(&url("wss://a/"), env(&vars)).unwrap().unwrap();
        assert_eq!(p.host, "upper");
        let vars = [("ALL_PROXY", "all:2")];
        assert_eq!(from_env(&url("ws://a/"), env(&vars)).unwrap().unwrap().host, "all");
        // Under CGI, HTTP_PROXY may be a request's Proxy header: not taken.
        let vars = [("HTTP_PROXY", "evil:1"), ("REQUEST_METHOD", "GET")];
        assert_eq!(from_env(&url("ws://a/"), env(&vars)).unwrap(), None);
        let vars = [("http_proxy", "good:1"), ("REQUEST_METHOD", "GET")];
        assert_eq!(from_env(&url("ws://a/"), env(&vars)).unwrap().unwrap().host, "good");
        assert_eq!(from_env(&url("ws://a/"), env(&[])).unwrap(), None);
        // https:// proxies are refused with a clear error, not used as plain ones.
        let vars = [("https_proxy", "https://p:1")];
        assert!(matches!(from_env(&url("wss://a/"), env(&vars)), Err(Error::Proxy(_))));
    }

    #[test]
    fn no_proxy_lists() {
        let cases = [
            ("example.com", "example.com", true),
            ("example.com", "ws.example.com", true),
            (".example.com", "ws.example.com", true),
            ("example.com", "badexample.com", false),
            ("example.com:443", "example.com", true),
            ("a.test, example.com", "example.com", true),
            ("*", "anything", true),
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.1.2.3", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("::1", "::1", true),
            ("[::1]:8080", "::1", true),
            ("fd00::/8", "fd12::1", true),
            ("EXAMPLE.com", "example.com", true),
            ("", "example.com", false),
        ];
        for (list, host, expected) in cases {
            assert_eq!(bypassed(list, host), expected, "{list:?} {host:?}");
        }
        let vars = [("https_proxy", "p:1"), ("NO_PROXY", "localhost,.internal")];
        assert_eq!(from_env(&url("wss://ws.internal/"), env(&vars)).unwrap(), None);
        assert!(from_env(&url("wss://ws.external/"), env(&vars)).unwrap().is_some());
    }

    #[test]
    fn credentials_become_basic_auth() {
        let p = HttpProxy::parse("http://us%40er:p%3Ass@proxy:8080").unwrap();
        // base64("us@er:p:ss")
        assert_eq!(p.authorization.as_deref(), Some("Basic dXNAZXI6cDpzcw=="));
        assert_eq!((p.host.as_str(), p.port), ("proxy", 8080));
        assert_eq!(HttpProxy::parse("proxy").unwrap().port, 80);
        assert!(HttpProxy::parse("http://p:1/\r\nX: y").is_err());
    }

    #[test]
    fn tunnel_asks_and_reads_the_answer() {
        smol::block_on(async {
            let target = url("wss://[::1]:9443/");
            let proxy = HttpProxy::parse("http://u:p@proxy:3128").unwrap();
            // What the proxy answers, and whether a tunnel opens.
            let answers: [(&[u8], bool); 4] = [
                (b"HTTP/1.1 200 Connection established\r\n\r\n", true),
                (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", false),
                (b"HTTP/1.1 200 OK\r\n\r\nextra", false),
                (b"garbage\r\n\r\n", false),
            ];
            for (answer, opens) in answers {
                let mut stream = Duplex { input: answer.to_vec(), output: Vec::new() };
                let result = proxy.tunnel(&mut stream, &target).await;
                assert_eq!(result.is_ok(), opens, "{result:?}");
                assert_eq!(
                    String::from_utf8(stream.output).unwrap(),
                    "CONNECT [::1]:9443 HTTP/1.1\r\nHost: [::1]:9443\r\n\
                     Proxy-Authorization: Basic dTpw\r\n\r\n"
                );
            }
        });
    }

    /// Reads from `input`, writes to `output`.
    struct Duplex {
        input: Vec<u8>,
        output: Vec<u8>,
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            std::task::Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.output.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }
}
