//! The processes and peers a run needs: ws-echo (or another server of ours) started for server mode, the client under test for client mode, and both ends of the opening handshake, written by the suite itself.

use super::*;

/// A `ws-echo` started for the run; stopped when dropped.
pub(super) struct EchoServer {
    child: Child,
    pub(super) addr: SocketAddr,
}

impl EchoServer {
    /// Starts `target`; with `tls`, serving TLS with that certificate (ws-echo only).
    pub(super) fn start(target: Target, tls: Option<&ws_tests::tls::Issued>) -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let (build, binary, args): (&[&str], &str, &[&str]) = match target {
            Target::Echo => (
                &["-p", "ws-echo"],
                "target/debug/ws-echo",
                &["--bind", "127.0.0.1:0", "--log", "error"],
            ),
            Target::EchoAsync => (
                &["-p", "ws-echo"],
                "target/debug/ws-echo",
                &["--bind", "127.0.0.1:0", "--log", "error", "--engine", "async"],
            ),
            Target::EchoUring => (
                &["-p", "ws-echo"],
                "target/debug/ws-echo",
                &["--bind", "127.0.0.1:0", "--log", "error", "--engine", "uring"],
            ),
            Target::Transport => (
                &["-p", "ws-transport", "--example", "echo_server"],
                "target/debug/examples/echo_server",
                &["127.0.0.1:0"],
            ),
            Target::TransportTokio => (
                &["-p", "ws-examples", "--example", "tokio_echo"],
                "target/debug/examples/tokio_echo",
                &["127.0.0.1:0"],
            ),
            Target::TransportAxum => (
                &["-p", "ws-examples", "--example", "axum_chat"],
                "target/debug/examples/axum_chat",
                &["127.0.0.1:0"],
            ),
        };
        let status = Command::new(&cargo)
            .current_dir(workspace())
            .args(["build", "--quiet"])
            .args(build)
            .status()?;
        if !status.success() {
            bail!("building {binary} failed");
        }
        let mut command = Command::new(workspace().join(binary));
        command.args(args);
        if let Some(issued) = tls {
            if matches!(target, Target::Transport | Target::TransportTokio | Target::TransportAxum)
            {
                bail!("--tls: the ws-transport examples serve plain TCP only");
            }
            command.arg("--tls-cert").arg(&issued.cert).arg("--tls-key").arg(&issued.key);
        }
        let mut child =
            command.stdout(Stdio::piped()).spawn().with_context(|| format!("starting {binary}"))?;
        let addr = crate::process::listening_addr(&mut child, binary)?;
        Ok(Self { child, addr })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens a connection and performs a client handshake built here.
pub(super) async fn client_connect(
    addr: SocketAddr,
    host: &str,
    offer: Option<&str>,
) -> Result<(Async<TcpStream>, Option<deflate::Codec>)> {
    let mut stream = Async::<TcpStream>::connect(addr).await?;
    stream.get_ref().set_nodelay(true)?;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let extensions =
        offer.map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n")).unwrap_or_default();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let head = read_head(&mut stream).await?;
    let text = String::from_utf8_lossy(&head);
    if !text.starts_with("HTTP/1.1 101") {
        bail!("expected 101, got {:?}", text.lines().next().unwrap_or(""));
    }
    let accept = wire::accept_key(key);
    if !text.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("sec-websocket-accept:")
            && l.trim_end().ends_with(&accept)
    }) {
        bail!("wrong or missing Sec-WebSocket-Accept");
    }
    let accepted: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
        })
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    let codec = match (offer, accepted.as_slice()) {
        (None, []) => None,
        (None, _) => bail!("the server accepted an extension that was not offered"),
        (Some(_), [one]) => {
            let params = deflate::parse(one)
                .context("the server answered with something other than permessage-deflate")?;
            Some(deflate::Codec::new(params, true))
        }
        (Some(_), _) => {
            bail!("permessage-deflate was offered and not accepted exactly once: {accepted:?}")
        }
    };
    Ok((stream, codec))
}

/// Reads an HTTP head byte by byte (so nothing after it is consumed).
pub(crate) async fn read_head<S: futures_lite::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            bail!("connection closed during the handshake");
        }
        head.push(byte[0]);
        if head.len() > 16 << 10 {
            bail!("head over 16 KiB");
        }
    }
    Ok(head)
}

/// Answers the client's opening handshake with a 101 built here; checks the case number.
pub(super) async fn server_handshake(
    stream: &mut Async<TcpStream>,
    case_number: usize,
    response_params: Option<&str>,
) -> Result<Option<deflate::Codec>> {
    stream.get_ref().set_nodelay(true)?;
    let head = read_head(stream).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let request_line = text.lines().next().unwrap_or("");
    if !request_line.starts_with(&format!("GET /runCase?case={case_number}&")) {
        bail!("unexpected request line {request_line:?}");
    }
    let key = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
                .map(|(_, v)| v.trim().to_string())
        })
        .context("no Sec-WebSocket-Key")?;
    let offered = text.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("sec-websocket-extensions") && v.contains("permessage-deflate")
        })
    });
    let (extensions, codec) = match response_params {
        Some(params) if offered => {
            let parsed = deflate::parse(params).context("a case's parameters")?;
            (
                format!("Sec-WebSocket-Extensions: {params}\r\n"),
                Some(deflate::Codec::new(parsed, false)),
            )
        }
        Some(_) => bail!("the client did not offer permessage-deflate"),
        None => (String::new(), None),
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extensions}\r\n",
        wire::accept_key(&key)
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(codec)
}

/// The testee's configuration: defaults, offering permessage-deflate (sections 12 and 13).
fn testee_config() -> ws_transport::Config {
    let mut config = ws_transport::Config::default();
    config.compression = Some(ws_proto::DeflateConfig::default());
    config
}

/// How the client under test reaches the suite at `addr`: no proxy, and with `tls`, TLS
/// trusting those settings' roots; and the URL's start.
fn testee_target(
    addr: SocketAddr,
    tls: Option<std::sync::Arc<ws_transport::rustls::ClientConfig>>,
) -> (ws_transport::Connector, String) {
    let connector = ws_transport::Connector::new().proxy(ws_transport::Proxy::None);
    match tls {
        Some(config) => (connector.tls(config), format!("wss://localhost:{}", addr.port())),
        None => (connector, format!("ws://{addr}")),
    }
}

/// The client under test: connects once per case and echoes every message until closed,
/// through the whole `WebSocket` or, with `split`, its reader and writer halves. With `tls`,
/// it connects to `wss://localhost:PORT/` trusting those settings' roots.
pub(super) fn testee_client(
    addr: SocketAddr,
    count: usize,
    split: bool,
    tls: Option<std::sync::Arc<ws_transport::rustls::ClientConfig>>,
) -> Result<()> {
    let (connector, base) = testee_target(addr, tls);
    smol::block_on(async {
        for case in 1..=count {
            let url = format!("{base}/runCase?case={case}&agent=ws-transport");
            let connect = ws_transport::connect_tcp_with(&url, testee_config(), &connector);
            let (mut ws, _) = match connect.await {
                Ok(connected) => connected,
                Err(err) => {
                    println!("  testee: case {case}: connect failed: {err}");
                    continue;
                }
            };
            if split {
                let (mut reader, writer) = ws.split();
                while let Ok(Some(message)) = reader.recv().await {
                    if writer.send(message).await.is_err() {
                        break;
                    }
                }
                continue;
            }
            while let Ok(Some(message)) = ws.recv().await {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    })
}

/// [`testee_client`] on tokio: `ws_transport::tokio::connect_tcp_with` (tokio's resolver and
/// TCP, tokio's timers), and the echo through futures' traits: `StreamExt::next` and
/// `SinkExt::send` on the whole WebSocket, or, with `split`, `forward` from ws-transport's
/// reader half (a `Stream`) to its writer half (a `Sink`).
pub(super) fn testee_client_tokio(
    addr: SocketAddr,
    count: usize,
    split: bool,
    tls: Option<std::sync::Arc<ws_transport::rustls::ClientConfig>>,
) -> Result<()> {
    use futures_util::{SinkExt, StreamExt};
    let (connector, base) = testee_target(addr, tls);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        for case in 1..=count {
            let url = format!("{base}/runCase?case={case}&agent=ws-transport-tokio");
            let connect = ws_transport::tokio::connect_tcp_with(&url, testee_config(), &connector);
            let mut ws = match connect.await {
                Ok((ws, _)) => ws,
                Err(err) => {
                    println!("  testee: case {case}: connect failed: {err}");
                    continue;
                }
            };
            if split {
                // Ends at the end of the stream (the close handshake) by closing the writer,
                // or at the first error.
                let (reader, writer) = ws.split();
                let _ = reader.forward(writer).await;
                continue;
            }
            while let Some(Ok(message)) = ws.next().await {
                if SinkExt::send(&mut ws, message).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    })
}
