//! ws-transport on tokio (its `tokio` feature): tokio's streams, tokio's timers and clock,
//! Stream and Sink, a hyper server upgrading with the `hyper` glue, and no async-io thread. Nothing in this test binary uses smol, so the
//! thread list is tokio's and the test harness's alone.

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use ws_transport::ws_proto::CloseCode;
use ws_transport::{Config, Error, Message};

/// The names of this process's threads.
fn threads() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task")? {
        let comm = task?.path().join("comm");
        names.push(std::fs::read_to_string(comm)?.trim().to_owned());
    }
    Ok(names)
}

#[test]
fn echo_on_tokio_streams_starts_no_async_io_thread() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            // Keepalive pings every 20 ms: the session's timers run on tokio's.
            let mut config = Config::default();
            config.ping_interval = Some(Duration::from_millis(20));
            let mut ws = ws_transport::tokio::accept(stream, config).await?;
            while let Some(message) = ws.next().await {
                SinkExt::send(&mut ws, message?).await?;
            }
            Ok::<_, Error>(ws.peer_close().map(|(code, _)| code))
        });
        let stream = TcpStream::connect(addr).await?;
        let url = format!("ws://{addr}/");
        let (mut ws, _) = ws_transport::tokio::connect(stream, &url, Config::default()).await?;
        for message in [Message::from("over tokio"), Message::Binary(vec![1; 300_000])] {
            SinkExt::send(&mut ws, message.clone()).await?;
            assert_eq!(ws.next().await.transpose()?, Some(message));
            // Time for a few of the server's pings, answered while we wait.
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        SinkExt::close(&mut ws).await?;
        assert_eq!(ws.peer_close().map(|(code, _)| code), Some(CloseCode::NORMAL));
        let closed = server.await.context("server task")??;
        assert_eq!(closed, Some(CloseCode::NORMAL));
        anyhow::Ok(())
    })?;
    let names = threads()?;
    assert!(!names.iter().any(|name| name.starts_with("async-io")), "threads: {names:?}");
    Ok(())
}

/// `ws_transport::tokio::connect_tcp`: tokio resolves `localhost` and opens the connection,
/// for `ws://` directly and for `wss://` through an HTTP proxy, and still no async-io thread
/// starts (blocking's pool neither: the trust store is not read, the test's roots are given).
#[test]
fn connect_tcp_on_tokio_opens_ws_and_wss_through_a_proxy_without_smol() -> Result<()> {
    use ws_tests::tls::{ConnectProxy, TestPki};
    use ws_transport::{Connector, Proxy, TlsStream, rustls};
    let pki = TestPki::new()?;
    let server_tls = TestPki::server_config(&pki.localhost()?)?;
    let proxy = ConnectProxy::start(None)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let port = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        // Two connections: plain, then TLS; each echoes one message.
        let server = tokio::spawn(async move {
            for tls in [false, true] {
                let (stream, _) = listener.accept().await?;
                let stream = ws_transport::tokio::TokioIo::new(stream);
                if tls {
                    let conn = rustls::ServerConnection::new(std::sync::Arc::clone(&server_tls))
                        .map_err(Error::from)?;
                    let mut ws =
                        ws_transport::accept(TlsStream::new(stream, conn), Config::default())
                            .await?;
                    let message = ws.recv().await?.context("a message")?;
                    ws.send(message).await?;
                    ws.close(CloseCode::NORMAL, "").await?;
                } else {
                    let mut ws = ws_transport::accept(stream, Config::default()).await?;
                    let message = ws.recv().await?.context("a message")?;
                    ws.send(message).await?;
                    ws.close(CloseCode::NORMAL, "").await?;
                }
            }
            anyhow::Ok(())
        });
        let direct = Connector::new().proxy(Proxy::None);
        let url = format!("ws://localhost:{port}/plain");
        let (mut ws, _) =
            ws_transport::tokio::connect_tcp_with(&url, Config::default(), &direct).await?;
        SinkExt::send(&mut ws, Message::from("plain")).await?;
        assert_eq!(ws.next().await.transpose()?, Some(Message::from("plain")));
        assert!(ws.next().await.is_none(), "the server closes");
        let through = Connector::new()
            .tls(pki.client_config()?)
            .proxy(Proxy::Http(format!("http://{}", proxy.addr)));
        let url = format!("wss://localhost:{port}/tls");
        let (mut ws, _) =
            ws_transport::tokio::connect_tcp_with(&url, Config::default(), &through).await?;
        assert!(matches!(ws.get_ref(), ws_transport::MaybeTls::Tls(_)));
        SinkExt::send(&mut ws, Message::from("over tls")).await?;
        assert_eq!(ws.next().await.transpose()?, Some(Message::from("over tls")));
        assert!(ws.next().await.is_none(), "the server closes");
        assert_eq!(ws.peer_close().map(|(code, _)| code), Some(CloseCode::NORMAL));
        server.await.context("server task")??;
        anyhow::Ok(port)
    })?;
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].starts_with(&format!("CONNECT localhost:{port} ")), "{requests:?}");
    let names = threads()?;
    assert!(
        !names.iter().any(|name| name.starts_with("async-io") || name.starts_with("blocking")),
        "threads: {names:?}"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_runs_on_tokio_time() -> Result<()> {
    // In memory, with tokio's clock paused: it moves only when every task waits, straight to
    // the next timer.
    let (client, server) = tokio::io::duplex(64 << 10);
    let server = tokio::spawn(async move {
        let mut config = Config::default();
        config.idle_timeout = Some(Duration::from_secs(60));
        let mut ws = ws_transport::tokio::accept(server, config).await?;
        let started = tokio::time::Instant::now();
        let end = ws.recv().await;
        Ok::<_, Error>((end, started.elapsed()))
    });
    let (mut ws, _) = ws_transport::tokio::connect(client, "ws://test/", Config::default()).await?;
    // We send nothing: the server closes with 1001 (Going Away) after a minute of tokio time.
    assert!(ws.next().await.is_none());
    assert_eq!(ws.peer_close().map(|(code, _)| code), Some(CloseCode::GOING_AWAY));
    let (end, waited) = server.await??;
    assert!(matches!(end, Ok(None)), "{end:?}");
    assert!(waited >= Duration::from_secs(60) && waited < Duration::from_secs(61), "{waited:?}");
    Ok(())
}

#[test]
fn a_hyper_server_upgrades_with_a_subprotocol_and_refuses_plain_gets() -> Result<()> {
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (stream, _) = listener.accept().await?;
                let service =
                    hyper::service::service_fn(|mut request: hyper::Request<Incoming>| {
                        let mut config = Config::default();
                        config.compression = Some(Default::default());
                        let upgraded = ws_transport::hyper::upgrade::<_, Full<Bytes>, _>(
                            &mut request,
                            config,
                            |_, up| Ok(up.protocols.iter().find(|p| *p == "chat").cloned()),
                        );
                        async move {
                            Ok::<_, std::convert::Infallible>(match upgraded {
                                Ok((response, upgrading)) => {
                                    tokio::spawn(async move {
                                        let mut ws = upgrading.await?;
                                        while let Some(message) = ws.recv().await? {
                                            ws.send(message).await?;
                                        }
                                        Ok::<(), Error>(())
                                    });
                                    response
                                }
                                Err(refused) => refused.response,
                            })
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .with_upgrades(),
                );
            }
            anyhow::Ok(())
        });
        // An upgrade offering two subprotocols and permessage-deflate.
        let stream = TcpStream::connect(addr).await?;
        let request = ws_transport::ws_proto::ClientRequest::new(addr.to_string(), "/")
            .protocol("superchat")
            .protocol("chat");
        let mut config = Config::default();
        config.compression = Some(Default::default());
        let (mut ws, accepted) =
            ws_transport::connect_with(ws_transport::tokio::TokioIo::new(stream), request, config)
                .await?;
        assert_eq!(accepted.protocol.as_deref(), Some("chat"));
        assert!(accepted.extensions.iter().any(|e| e.name == "permessage-deflate"));
        for message in [Message::from("through hyper"), Message::Binary(vec![9; 200_000])] {
            SinkExt::send(&mut ws, message.clone()).await?;
            assert_eq!(ws.next().await.transpose()?, Some(message));
        }
        SinkExt::close(&mut ws).await?;
        assert_eq!(ws.peer_close().map(|(code, _)| code), Some(CloseCode::NORMAL));
        // A plain GET is no upgrade: 426 with the version we speak.
        let mut plain = TcpStream::connect(addr).await?;
        plain.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
        let mut answer = Vec::new();
        plain.read_to_end(&mut answer).await?;
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 426"), "{answer}");
        assert!(answer.contains("sec-websocket-version: 13"), "{answer}");
        server.await.context("server task")??;
        anyhow::Ok(())
    })?;
    Ok(())
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct CountingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A WebSocket that gives way in the middle of a long read or write (`Runtime::yield_turn`)
/// is not woken at once on tokio, where it would be polled again before the I/O driver looks
/// for the other connections' input, but once the scheduler has run out of ready tasks and
/// polled the driver.
#[test]
fn a_turn_given_way_on_tokio_is_woken_after_the_driver_has_run() -> Result<()> {
    use ws_transport::Runtime;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let wakes = std::sync::Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(wakes.clone());
        ws_transport::Tokio.yield_turn(&mut std::task::Context::from_waker(&waker));
        let woken = || wakes.0.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(woken(), 0, "woken before the driver ran");
        // This task gives way too: the scheduler polls its driver, then wakes both.
        tokio::task::yield_now().await;
        assert_eq!(woken(), 1);
    });
    Ok(())
}

/// A WebSocket on tokio receiving a large message whose bytes are all ready gives way to the
/// other tasks on its thread between turns of 1 MiB: another task runs while it reads, not
/// only once the message is whole (the stream here is no tokio resource, so tokio's own
/// cooperative budget never makes it give way).
#[test]
fn a_large_message_on_tokio_lets_the_other_tasks_run_between_turns() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (ticks, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let other = tokio::spawn({
            let (ticks, done) = (Arc::clone(&ticks), Arc::clone(&done));
            async move {
                while !done.load(Ordering::Relaxed) {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            }
        });
        tokio::task::yield_now().await;
        // A masked binary frame (key 0) of 8 MiB.
        let len = 8usize << 20;
        let mut input = vec![0x82, 0xff];
        input.extend_from_slice(&(len as u64).to_be_bytes());
        input.extend_from_slice(&[0; 4]);
        input.extend_from_slice(&vec![7; len]);
        // All of it readable at once, every write taken: a peer as fast as this reads.
        let stream =
            ws_transport::tokio::TokioIo::new(tokio::io::join(&input[..], tokio::io::sink()));
        let conn = ws_transport::ws_proto::Connection::server(Default::default());
        let mut ws = ws_transport::WebSocket::from_parts(stream, conn, Config::default(), &[]);
        let before = ticks.load(Ordering::Relaxed);
        let message = ws.next().await.context("no message")??;
        let during = ticks.load(Ordering::Relaxed) - before;
        done.store(true, Ordering::Relaxed);
        other.await?;
        assert_eq!(message.as_bytes().len(), len);
        // Seven turns or more (see ws-transport's stream_sink tests), the other task once
        // after each.
        assert!(during >= 7, "the other task ran {during} times while 8 MiB were read");
        anyhow::Ok(())
    })
}
