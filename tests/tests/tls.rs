//! `wss://` end to end: the echo server with TLS on each engine, our client with its own
//! roots, the system's (`SSL_CERT_FILE`) and through proxies, and bad TLS input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ws_echo::Options;
use ws_tests::tls::{ConnectProxy, Issued, TestPki, Validity};
use ws_tests::{TestServer, each_engine};
use ws_transport::rustls::{self, CertificateError};
use ws_transport::ws_proto::CloseCode;
use ws_transport::{Config, Connector, Error, Message, Proxy, connect_tcp_with};

/// Echo options with TLS from `issued`.
fn tls_options(issued: &Issued) -> Result<Options> {
    let mut options = Options::default();
    options.0.tls = Some(TestPki::server_config(issued)?);
    Ok(options)
}

/// Connects to `url` trusting `pki`'s CA only, sends `messages` and checks each echo.
fn echo_over(url: &str, connector: &Connector, config: Config, messages: &[Message]) -> Result<()> {
    smol::block_on(async {
        let offered = config.compression.is_some();
        let (mut ws, accepted) = connect_tcp_with(url, config, connector).await?;
        // ws-echo accepts permessage-deflate whenever it is offered.
        let negotiated = accepted.extensions.iter().any(|e| e.name == "permessage-deflate");
        assert_eq!(negotiated, offered, "{:?}", accepted.extensions);
        let tls = ws.get_ref().tls().context("a wss:// URL gave a stream without TLS")?;
        assert_eq!(tls.alpn_protocol(), Some(&b"http/1.1"[..]));
        for message in messages {
            ws.send(message.clone()).await?;
            let echo = ws.recv().await?.context("closed before the echo")?;
            assert_eq!(echo.as_bytes(), message.as_bytes());
        }
        ws.close(CloseCode::NORMAL, "done").await?;
        assert_eq!(ws.recv().await?, None);
        assert_eq!(ws.peer_close().map(|(code, _)| code), Some(CloseCode::NORMAL));
        Ok(())
    })
}

fn messages() -> Vec<Message> {
    let large: Vec<u8> = (0..(1usize << 20) + 7).map(|i| (i * 31 % 251) as u8).collect();
    vec![
        Message::Text("hello over TLS".into()),
        Message::Binary(vec![0, 1, 2, 255]),
        Message::Binary(large),
        Message::Text("é".repeat(40_000)),
    ]
}

#[test]
fn wss_echoes_on_each_engine() -> Result<()> {
    let pki = TestPki::new()?;
    let options = tls_options(&pki.localhost()?)?;
    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    for started in each_engine(&options) {
        let (_, server) = started?;
        let port = server.addr.port();
        // By name (SNI and the name in the certificate) and by address.
        echo_over(&format!("wss://localhost:{port}/"), &connector, Config::default(), &messages())?;
        echo_over(&format!("wss://127.0.0.1:{port}/x?y"), &connector, Config::default(), &[])?;
        // With permessage-deflate.
        let mut config = Config::default();
        config.compression = Some(Default::default());
        echo_over(&format!("wss://localhost:{port}/"), &connector, config, &messages())?;
    }
    Ok(())
}

#[test]
fn wss_echoes_over_tls_1_2() -> Result<()> {
    let pki = TestPki::new()?;
    let options = tls_options(&pki.localhost()?)?;
    let connector = Connector::new().tls(pki.client_config_tls12()?).proxy(Proxy::None);
    for started in each_engine(&options) {
        let (_, server) = started?;
        let url = format!("wss://localhost:{}/", server.addr.port());
        smol::block_on(async {
            let (ws, _) = connect_tcp_with(&url, Config::default(), &connector).await?;
            let tls = ws.get_ref().tls().context("no TLS")?;
            assert_eq!(tls.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
            anyhow::Ok(())
        })?;
        echo_over(&url, &connector, Config::default(), &messages())?;
    }
    Ok(())
}

#[test]
fn wss_with_reads_smaller_than_a_record() -> Result<()> {
    // 2 KiB reads (the engine's floor) against 16 KiB TLS records: rustls holds plaintext
    // after each read, which raises no edge; the engine must read on for it.
    let pki = TestPki::new()?;
    let mut options = tls_options(&pki.localhost()?)?;
    options.transport.read_buffer_size = 1024;
    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    for started in each_engine(&options) {
        let (_, server) = started?;
        let url = format!("wss://localhost:{}/", server.addr.port());
        let mut messages = messages();
        messages.push(Message::Binary(vec![7; 16 << 10]));
        echo_over(&url, &connector, Config::default(), &messages)?;
    }
    Ok(())
}

/// Opens a TCP connection, sends `bytes` and returns what the server sends until it ends the
/// stream (or 5 s pass). A reset is an error: the server is to close cleanly.
fn send_and_read_all(
    addr: std::net::SocketAddr,
    bytes: &[u8],
    half_close: bool,
) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(bytes)?;
    if half_close {
        stream.shutdown(std::net::Shutdown::Write)?;
    }
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => Ok(answer),
        Err(err) => bail!("no clean end of stream after {answer:?}: {err}"),
    }
}

/// The content types of the TLS records in `bytes`, which must be whole records.
fn record_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 5 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        assert!(rest.len() >= 5 + len, "a record cut short in {bytes:?}");
        types.push(rest[0]);
        rest = &rest[5 + len..];
    }
    assert!(rest.is_empty(), "bytes after the last record: {rest:?}");
    types
}

/// The first flight of a TLS client: its ClientHello record.
fn client_hello(pki: &TestPki) -> Result<Vec<u8>> {
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut tls = rustls::ClientConnection::new(pki.client_config()?, name)?;
    let mut hello = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut hello)?;
    }
    Ok(hello)
}

#[test]
fn bad_tls_input_gets_a_clean_close_and_the_server_serves_on() -> Result<()> {
    let pki = TestPki::new()?;
    let options = tls_options(&pki.localhost()?)?;
    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    let hello = client_hello(&pki)?;
    for started in each_engine(&options) {
        let (_, server) = started?;
        let addr = server.addr;
        // Plain HTTP to the TLS port: a 400 that says why.
        let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        let answer = String::from_utf8(send_and_read_all(addr, request.as_bytes(), false)?)?;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("this port speaks TLS"), "{answer}");
        // Not TLS, not HTTP: a fatal alert saying why (level 2; 50 decode_error, 10
        // unexpected_message), then the end of the stream.
        let cases: [(&[u8], u8); 3] = [
            (b"\x00\x01\x02\x03 garbage\r\n\r\n", 50),
            // A handshake record longer than TLS allows.
            (b"\x16\x03\x01\xff\xff", 50),
            // Application data before any handshake.
            (b"\x17\x03\x03\x00\x05hello", 10),
        ];
        for (garbage, alert) in cases {
            let answer = send_and_read_all(addr, garbage, false)?;
            assert_eq!(answer, [21, 3, 3, 0, 2, 2, alert], "the answer to {garbage:?}");
        }
        // A ClientHello cut short, then the end of the stream: the end of ours, unanswered.
        let answer = send_and_read_all(addr, &hello[..hello.len() / 2], true)?;
        assert_eq!(answer, b"");
        // A real ClientHello with a bad record after it: the server's flight (ServerHello, 22,
        // then records under the handshake keys, 23), ending in the alert, encrypted (23).
        let mut bad = hello.clone();
        bad.extend_from_slice(b"\x16\x03\x03\x00\x02\xff\xff");
        let answer = send_and_read_all(addr, &bad, false)?;
        let types = record_types(&answer);
        assert_eq!(types.first(), Some(&22), "{types:?}");
        assert!(types.len() >= 3 && types[1..].iter().all(|&t| t == 20 || t == 23), "{types:?}");
        // Everyone else is still served.
        echo_over(
            &format!("wss://localhost:{}/", addr.port()),
            &connector,
            Config::default(),
            &messages()[..1],
        )?;
    }
    Ok(())
}

#[test]
fn a_stalled_tls_handshake_is_closed_at_the_deadline() -> Result<()> {
    let pki = TestPki::new()?;
    let mut options = tls_options(&pki.localhost()?)?;
    options.transport.handshake_timeout = Duration::from_secs(2);
    let hello = client_hello(&pki)?;
    for started in each_engine(&options) {
        let (_, server) = started?;
        // Nothing at all; half a ClientHello; a whole TLS handshake and then no HTTP request.
        for case in ["nothing", "half a ClientHello", "TLS but no request"] {
            let started = Instant::now();
            let mut stream = TcpStream::connect(server.addr)?;
            stream.set_read_timeout(Some(Duration::from_secs(8)))?;
            match case {
                "nothing" => {}
                "half a ClientHello" => stream.write_all(&hello[..hello.len() / 2])?,
                _ => {
                    let name = rustls::pki_types::ServerName::try_from("localhost")?;
                    let mut tls = rustls::ClientConnection::new(pki.client_config()?, name)?;
                    while tls.is_handshaking() {
                        tls.complete_io(&mut stream)?;
                    }
                    // Whatever the server sends after the handshake (tickets), then a clean
                    // end at the deadline: close_notify (an end of stream without it would
                    // be `UnexpectedEof`).
                    let mut plain = Vec::new();
                    let mut sock = rustls::Stream::new(&mut tls, &mut stream);
                    let read = sock.read_to_end(&mut plain);
                    let elapsed = started.elapsed();
                    assert!(read.is_ok() && plain.is_empty(), "{case}: {read:?} {plain:?}");
                    assert!(
                        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
                        "{case}: closed after {elapsed:?}"
                    );
                    continue;
                }
            }
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            let elapsed = started.elapsed();
            assert!(
                elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
                "{case}: closed after {elapsed:?}"
            );
        }
    }
    Ok(())
}

/// The `rustls::Error` a failed connect gave.
fn tls_failure(url: &str, connector: &Connector) -> rustls::Error {
    match smol::block_on(connect_tcp_with(url, Config::default(), connector)) {
        Err(Error::Tls(err)) => *err,
        Err(err) => panic!("{url}: not a TLS error: {err}"),
        Ok(_) => panic!("{url}: connected to a server it should have refused"),
    }
}

#[test]
fn bad_certificates_are_refused_with_a_clear_error() -> Result<()> {
    let pki = TestPki::new()?;
    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    let expired = pki.issue("expired", &["localhost", "127.0.0.1"], Validity::Expired)?;
    let elsewhere = pki.issue("elsewhere", &["elsewhere.example"], Validity::Current)?;
    let other_ca = TestPki::new()?;
    let stranger = other_ca.localhost()?;
    type Expected = fn(&CertificateError) -> bool;
    let cases: [(&Issued, Expected); 3] = [
        (&expired, |e| {
            matches!(e, CertificateError::Expired | CertificateError::ExpiredContext { .. })
        }),
        (&elsewhere, |e| {
            matches!(
                e,
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        }),
        (&stranger, |e| matches!(e, CertificateError::UnknownIssuer)),
    ];
    for (issued, expected) in cases {
        let server = TestServer::start(tls_options(issued)?)?;
        let url = format!("wss://localhost:{}/", server.addr.port());
        let err = tls_failure(&url, &connector);
        let message = Error::from(err.clone()).to_string();
        match &err {
            rustls::Error::InvalidCertificate(cert) if expected(cert) => {}
            other => bail!("{}: {other:?}", issued.cert.display()),
        }
        assert!(message.contains("certificate"), "{message}");
        eprintln!("{}: {message}", issued.cert.display());
        drop(server);
    }
    Ok(())
}

/// Runs the `wsclient` binary with `env`, and returns its output (stdout, or the error).
fn wsclient(url: &str, env: &[(&str, &str)], messages: &[&str]) -> Result<Result<String, String>> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsclient"));
    cmd.arg(url).args(messages);
    for key in [
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().copied());
    let output = cmd.output().context("running wsclient")?;
    Ok(if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    })
}

#[test]
fn the_default_client_trusts_ssl_cert_file() -> Result<()> {
    let pki = TestPki::new()?;
    let server = TestServer::start(tls_options(&pki.localhost()?)?)?;
    let url = format!("wss://localhost:{}/", server.addr.port());
    let ca = pki.ca_pem.to_str().context("path")?;
    let out = wsclient(&url, &[("SSL_CERT_FILE", ca)], &["one", "two"])?;
    assert_eq!(out.as_deref(), Ok("one\ntwo\nclosed\n"));
    // Another CA in SSL_CERT_FILE: this server is not trusted.
    let other = TestPki::new()?;
    let err = wsclient(&url, &[("SSL_CERT_FILE", other.ca_pem.to_str().context("path")?)], &[])?
        .expect_err("trusted a server signed by a CA not in SSL_CERT_FILE");
    assert!(err.contains("UnknownIssuer") || err.contains("unknown issuer"), "{err}");
    // SSL_CERT_DIR: a directory of PEM files with the CA in it.
    let roots = pki.dir().join("roots");
    std::fs::create_dir_all(&roots)?;
    std::fs::copy(&pki.ca_pem, roots.join("ca.pem"))?;
    let out = wsclient(&url, &[("SSL_CERT_DIR", roots.to_str().context("path")?)], &["dir"])?;
    assert_eq!(out.as_deref(), Ok("dir\nclosed\n"));
    Ok(())
}

#[test]
fn proxies_tunnel_with_connect() -> Result<()> {
    let pki = TestPki::new()?;
    let server = TestServer::start(tls_options(&pki.localhost()?)?)?;
    let port = server.addr.port();
    let url = format!("wss://localhost:{port}/");
    // An explicit proxy.
    let proxy = ConnectProxy::start(None)?;
    let via = Connector::new()
        .tls(pki.client_config()?)
        .proxy(Proxy::Http(format!("http://user:secret@{}", proxy.addr)));
    echo_over(&url, &via, Config::default(), &messages())?;
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with(&format!("CONNECT localhost:{port} HTTP/1.1\r\n")),
        "{requests:?}"
    );
    assert!(
        requests[0].contains("Proxy-Authorization: Basic dXNlcjpzZWNyZXQ=\r\n"),
        "{requests:?}"
    );
    // From the environment, in a process of its own; NO_PROXY leaves it out.
    let ca = pki.ca_pem.to_str().context("path")?;
    let proxy_url = format!("http://{}", proxy.addr);
    let env = [("SSL_CERT_FILE", ca), ("HTTPS_PROXY", proxy_url.as_str())];
    assert_eq!(wsclient(&url, &env, &["via env"])?.as_deref(), Ok("via env\nclosed\n"));
    assert_eq!(proxy.requests().len(), 2);
    let env = [
        ("SSL_CERT_FILE", ca),
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("NO_PROXY", "example.com,localhost"),
    ];
    assert_eq!(wsclient(&url, &env, &["direct"])?.as_deref(), Ok("direct\nclosed\n"));
    assert_eq!(proxy.requests().len(), 2, "NO_PROXY was not honoured");
    // A proxy that refuses: its status in the error.
    let refusing = ConnectProxy::start(Some(407))?;
    let via =
        Connector::new().tls(pki.client_config()?).proxy(Proxy::Http(refusing.addr.to_string()));
    match smol::block_on(connect_tcp_with(&url, Config::default(), &via)) {
        Err(Error::Proxy(why)) => assert!(why.contains("407"), "{why}"),
        Err(err) => bail!("not a proxy error: {err}"),
        Ok(_) => bail!("connected through a proxy that refused"),
    }
    // ws:// goes through a proxy too (HTTP_PROXY), with the same tunnel.
    let plain = TestServer::start(Options::default())?;
    let via = Connector::new().proxy(Proxy::Http(proxy.addr.to_string()));
    echo_over_plain(&format!("ws://127.0.0.1:{}/", plain.addr.port()), &via)?;
    assert_eq!(proxy.requests().len(), 3);
    Ok(())
}

fn echo_over_plain(url: &str, connector: &Connector) -> Result<()> {
    smol::block_on(async {
        let (mut ws, _) = connect_tcp_with(url, Config::default(), connector).await?;
        assert!(ws.get_ref().tls().is_none());
        ws.send("plain").await?;
        assert_eq!(ws.recv().await?.context("echo")?.as_bytes(), b"plain");
        ws.close(CloseCode::NORMAL, "").await?;
        Ok(())
    })
}

#[test]
fn the_certificate_is_read_again_without_dropping_connections() -> Result<()> {
    let pki = TestPki::new()?;
    let first = pki.localhost()?;
    let certificates = ws_echo::Certificates::load(&first.cert, &first.key)?;
    let mut options = Options::default();
    options.0.tls = Some(certificates.server_config()?);
    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    for started in each_engine(&options) {
        let (_, server) = started?;
        let url = format!("wss://localhost:{}/", server.addr.port());
        smol::block_on(async {
            let (mut open, _) = connect_tcp_with(&url, Config::default(), &connector).await?;
            let before = peer_certificate(&open);
            // A new certificate in the same files, then a reload.
            let second = pki.localhost()?;
            assert_eq!((&second.cert, &second.key), (&first.cert, &first.key));
            certificates.reload()?;
            // A client of its own: one that resumed the first one's TLS session would see the
            // certificate of that session.
            let new_client = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
            let (mut fresh, _) = connect_tcp_with(&url, Config::default(), &new_client).await?;
            assert_ne!(peer_certificate(&fresh), before, "the reload served the old certificate");
            // The connection opened before the reload still echoes.
            for ws in [&mut open, &mut fresh] {
                ws.send("still here").await?;
                assert_eq!(ws.recv().await?.context("echo")?.as_bytes(), b"still here");
                ws.close(CloseCode::NORMAL, "").await?;
            }
            // A broken file: the reload fails, and the certificate in use stays.
            let good_key = std::fs::read(&second.key)?;
            std::fs::write(&second.key, "not a key")?;
            assert!(certificates.reload().is_err());
            let new_client = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
            let (mut after, _) = connect_tcp_with(&url, Config::default(), &new_client).await?;
            assert_eq!(peer_certificate(&after), peer_certificate(&fresh));
            after.close(CloseCode::NORMAL, "").await?;
            std::fs::write(&second.key, good_key)?;
            Ok::<(), anyhow::Error>(())
        })?;
    }
    Ok(())
}

fn peer_certificate(ws: &ws_transport::WebSocket<ws_transport::ClientStream>) -> Vec<u8> {
    let tls = ws.get_ref().tls().expect("tls");
    tls.peer_certificates().and_then(|chain| chain.first()).map(|c| c.to_vec()).unwrap_or_default()
}

#[test]
fn tls_handshakes_in_progress_count_in_the_memory_budget() -> Result<()> {
    let pki = TestPki::new()?;
    let mut options = tls_options(&pki.localhost()?)?;
    // Room for 14 handshakes and a bit.
    const EACH: usize = ws_server::TLS_HANDSHAKE_MEMORY;
    options.max_memory = 14 * EACH + EACH / 4;
    for started in each_engine(&options) {
        let (_, server) = started?;
        // Handshakes that never send a ClientHello.
        let mut stalled = Vec::new();
        for _ in 0..16 {
            stalled.push(TcpStream::connect(server.addr)?);
            // One at a time, so that the server counts each before the next arrives.
            let deadline = Instant::now() + Duration::from_secs(5);
            while server.budget.used() < stalled.len().min(15) * EACH {
                if Instant::now() > deadline {
                    bail!("{} stalled handshakes count {}", stalled.len(), server.budget.used());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        assert!(server.budget.used() >= server.budget.limit(), "{}", server.budget.used());
        // With the budget spent, a newcomer to the TLS port is closed without an answer (a 503
        // would cost a TLS handshake).
        // (Closing a socket with unread input resets it.)
        let mut newcomer = TcpStream::connect(server.addr)?;
        newcomer.set_read_timeout(Some(Duration::from_secs(5)))?;
        let _ = newcomer.write_all(&client_hello(&pki)?);
        let mut answer = Vec::new();
        match newcomer.read_to_end(&mut answer) {
            Ok(_) => assert_eq!(answer, b"", "a newcomer was answered while the budget was spent"),
            Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}"),
        }
        // The stalled ones go; the budget comes back; a client is served again.
        drop(stalled);
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.budget.used() >= EACH {
            if Instant::now() > deadline {
                bail!(
                    "the budget still counts {} after the handshakes ended",
                    server.budget.used()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
        let url = format!("wss://localhost:{}/", server.addr.port());
        echo_over(&url, &connector, Config::default(), &messages()[..1])?;
    }
    Ok(())
}

#[test]
fn a_client_may_write_more_than_rustls_buffers_before_the_handshake() -> Result<()> {
    // rustls keeps at most 64 KiB of plaintext written before its handshake ends; the stream
    // then runs the handshake rather than wait for room that only the handshake makes.
    let pki = TestPki::new()?;
    let server = TestServer::start(tls_options(&pki.localhost()?)?)?;
    let config = pki.client_config()?;
    let addr = server.addr;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = smol::block_on(async {
            use smol::io::{AsyncReadExt, AsyncWriteExt};
            let tcp = smol::net::TcpStream::connect(addr).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let mut tls =
                ws_transport::TlsStream::new(tcp, rustls::ClientConnection::new(config, name)?);
            let payload = vec![0x5a; 200 << 10];
            let mut bytes = ws_tests::upgrade_request(addr).into_bytes();
            bytes.extend(ws_tests::client_frame(0x82, &payload, [1, 2, 3, 4]));
            // All of it before a byte is read: the handshake is still to come.
            tls.write_all(&bytes).await?;
            tls.flush().await?;
            let mut answer = Vec::new();
            let mut buf = vec![0u8; 64 << 10];
            // The 101 head and the echo: at least the payload's length.
            while answer.len() < payload.len() {
                let n = tls.read(&mut buf).await?;
                if n == 0 {
                    bail!("the server ended the stream after {} bytes", answer.len());
                }
                answer.extend_from_slice(&buf[..n]);
            }
            assert!(answer.starts_with(b"HTTP/1.1 101 "));
            Ok::<(), anyhow::Error>(())
        });
        let _ = done_tx.send(result);
    });
    match done_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(result) => result,
        Err(_) => bail!("writing 200 KiB before the handshake did not finish in 30 s"),
    }
}
