//! The `ws-echo` binary as a person runs it: flags, the listening line, signals.

use std::process::Command;
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use ws_tests::RawClient;
use ws_tests::tls::TestPki;
use ws_transport::rustls;
use ws_transport::ws_proto::CloseCode;
use ws_transport::{Connector, Proxy, connect_tcp_with};

mod common;

use common::{BIN, LogFile, Running};

#[test]
fn help_explains_every_flag() -> Result<()> {
    let output = Command::new(BIN).arg("--help").output()?;
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout)?;
    for flag in [
        "--bind",
        "--threads",
        "--max-message-size",
        "--max-frame-size",
        "--max-connections",
        "--max-memory",
        "--handshake-timeout",
        "--close-timeout",
        "--ping-interval",
        "--pong-timeout",
        "--idle-timeout",
        "--no-compression",
        "--context-takeover",
        "--server-max-window-bits",
        "--client-max-window-bits",
        "--engine",
        "--tls-cert",
        "--tls-key",
        "--path",
        "--reuse-port",
        "--metrics-bind",
        "--log",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
    Ok(())
}

#[test]
fn bad_flags_get_a_message_and_a_non_zero_exit() -> Result<()> {
    for args in [
        &["--bind", "not-an-address"][..],
        &["--threads", "0"],
        &["--max-message-size", "-5"],
        &["--handshake-timeout", "0"],
        &["--pong-timeout", "0"],
        &["--max-memory", "1000"],
        &["--no-such-flag"],
        &["--log", "[[["],
        &["--tls-cert", "cert.pem"],
        &["--tls-key", "key.pem"],
        &["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
        &["--path", "no-slash"],
        &["--path", "/a\"b"],
        &["--log-format", "xml"],
    ] {
        let output = Command::new(BIN).args(args).output()?;
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("error") || stderr.contains("invalid"), "{args:?}: {stderr}");
    }
    Ok(())
}

#[test]
fn sigterm_closes_connections_with_1001_and_exits_0() -> Result<()> {
    let mut server = Running::start(&["--threads", "2"])?;
    let mut client = RawClient::connect(server.addr)?;
    client.send(0x81, b"before shutdown")?;
    assert_eq!(client.read_message()?, (1, b"before shutdown".to_vec()));
    server.signal("TERM")?;
    let (code, tcp_closed) = client.expect_close()?;
    assert_eq!(code, 1001);
    assert!(tcp_closed);
    assert_eq!(server.wait(Duration::from_secs(10))?, 0);
    Ok(())
}

#[test]
fn sigint_with_no_connections_exits_0() -> Result<()> {
    let mut server = Running::start(&[])?;
    // Serves first.
    let mut client = RawClient::connect(server.addr)?;
    client.send(0x82, b"x")?;
    assert_eq!(client.read_message()?, (2, b"x".to_vec()));
    client.send(0x88, &1000u16.to_be_bytes())?;
    client.expect_close()?;
    server.signal("INT")?;
    assert_eq!(server.wait(Duration::from_secs(10))?, 0);
    Ok(())
}

#[test]
fn binding_a_used_port_fails_clearly() -> Result<()> {
    let server = Running::start(&[])?;
    let output = Command::new(BIN).args(["--bind", &server.addr.to_string()]).output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("binding"), "{stderr}");
    Ok(())
}

/// The certificate a fresh client (no TLS session to resume) gets from `url`.
fn served_certificate(url: &str, pki: &TestPki) -> Result<Vec<u8>> {
    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    smol::block_on(async {
        let (mut ws, _) = connect_tcp_with(url, Default::default(), &connector).await?;
        let chain = ws.get_ref().tls().and_then(|tls| tls.peer_certificates());
        let cert = chain.and_then(|chain| chain.first()).context("no certificate")?.to_vec();
        ws.close(CloseCode::NORMAL, "").await?;
        Ok(cert)
    })
}

#[test]
fn tls_flags_serve_wss_and_https_and_sighup_reads_the_certificate_again() -> Result<()> {
    let pki = TestPki::new()?;
    let issued = pki.localhost()?;
    let (cert, key) = (issued.cert.to_str().context("path")?, issued.key.to_str().context("path")?);
    let mut server = Running::start(&["--tls-cert", cert, "--tls-key", key])?;
    assert_eq!(server.first_line, format!("listening on wss://{}", server.addr));
    let url = format!("wss://localhost:{}/", server.addr.port());
    // https:// for the page and /healthz on the same port.
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut tls = rustls::ClientConnection::new(pki.client_config()?, name)?;
    let mut tcp = std::net::TcpStream::connect(server.addr)?;
    let mut https = rustls::Stream::new(&mut tls, &mut tcp);
    https.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut answer = Vec::new();
    let _ = https.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("ok\n"), "{answer}");
    // A connection opened before the reload.
    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    let (mut open, _) = smol::block_on(connect_tcp_with(&url, Default::default(), &connector))?;
    let before = served_certificate(&url, &pki)?;
    // A new certificate in the same files; SIGHUP.
    pki.localhost()?;
    server.signal("HUP")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_certificate(&url, &pki)? == before {
        if Instant::now() > deadline {
            bail!("SIGHUP did not bring in the new certificate");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The connection from before still echoes.
    smol::block_on(async {
        open.send("after the reload").await?;
        let echo = open.recv().await?.context("closed")?;
        assert_eq!(echo.as_bytes(), b"after the reload");
        open.close(CloseCode::NORMAL, "").await?;
        Ok::<(), anyhow::Error>(())
    })?;
    server.signal("TERM")?;
    assert_eq!(server.wait(Duration::from_secs(10))?, 0);
    Ok(())
}

/// `--log-format json`: one JSON object per line, and one access line per connection with
/// exact counts. `--path`: only that path upgrades.
#[test]
fn the_access_log_has_one_json_line_per_connection_and_path_restricts_upgrades() -> Result<()> {
    let (log, file) = LogFile::new("access")?;
    let base = ["--bind", "127.0.0.1:0", "--log", "info", "--log-format", "json"];
    let mut server = Running::start_with(&base, &["--path", "/ws"], file)?;
    let no_proxy = Connector::new().proxy(Proxy::None);
    smol::block_on(async {
        let url = format!("ws://{}/ws?room=1", server.addr);
        let (mut ws, _) = connect_tcp_with(&url, Default::default(), &no_proxy).await?;
        for text in ["one", "two", "six"] {
            ws.send(text).await?;
            assert_eq!(ws.recv().await?, Some(text.into()));
        }
        ws.close(CloseCode::NORMAL, "").await?;
        // Another path is not upgraded.
        let url = format!("ws://{}/elsewhere", server.addr);
        match connect_tcp_with(&url, Default::default(), &no_proxy).await {
            Err(ws_transport::Error::Response(err)) => assert!(err.to_string().contains("404")),
            other => bail!("upgraded /elsewhere: {:?}", other.map(|_| ())),
        }
        anyhow::Ok(())
    })?;
    // A client that breaks the protocol: the server closes, with 1002.
    let mut raw = RawClient::connect_tcp(server.addr)?;
    let request = ws_tests::upgrade_request(server.addr).replacen("GET / ", "GET /ws ", 1);
    raw.stream.write_all(request.as_bytes())?;
    assert!(raw.read_head()?.starts_with("HTTP/1.1 101 "));
    raw.send_raw(&ws_tests::unmasked_frame(0x81, b"hi"))?;
    raw.read_to_end()?;
    server.signal("TERM")?;
    assert_eq!(server.wait(Duration::from_secs(10))?, 0);
    let lines = log.access_lines()?;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let fields = |i: usize, names: &[&str]| -> Vec<serde_json::Value> {
        names.iter().map(|name| lines[i]["fields"][name].clone()).collect()
    };
    let counts = ["messages_in", "messages_out", "bytes_in", "bytes_out", "code", "closed_by"];
    // Three masked 3-byte texts (9 bytes each) and a masked close (8) in; three unmasked
    // echoes (5 each) and the close (4) out.
    assert_eq!(
        fields(0, &counts),
        serde_json::json!([3, 3, 35, 19, 1000, "client"]).as_array().unwrap()[..]
    );
    assert_eq!(lines[0]["level"], "INFO");
    // The unmasked 4-byte frame in, the close with 1002 out.
    assert_eq!(
        fields(1, &counts),
        serde_json::json!([0, 0, 4, 4, 1002, "server"]).as_array().unwrap()[..]
    );
    assert_eq!(lines[1]["level"], "WARN");
    for line in &lines {
        assert!(line["fields"]["peer"].as_str().is_some_and(|peer| peer.starts_with("127.0.0.1:")));
        assert!(line["fields"]["duration_ms"].as_u64().is_some(), "{line}");
    }
    Ok(())
}

/// `--reuse-port`: a second process listens on the same port, and the kernel gives each some
/// of the connections (without the flag the second bind fails: see above).
#[test]
fn reuse_port_lets_two_processes_share_a_port() -> Result<()> {
    let (log_a, file_a) = LogFile::new("reuse-a")?;
    let (log_b, file_b) = LogFile::new("reuse-b")?;
    let flags = ["--log", "info", "--log-format", "json", "--reuse-port"];
    let mut first = Running::start_with(&["--bind", "127.0.0.1:0"], &flags, file_a)?;
    let addr = first.addr.to_string();
    let mut second = Running::start_with(&["--bind", &addr], &flags, file_b)?;
    assert_eq!(second.addr, first.addr);
    // 32 connections from different ports: all in one process has odds of 2 in 2^32.
    for _ in 0..32 {
        let mut client = RawClient::connect(first.addr)?;
        client.send(0x81, b"hello")?;
        assert_eq!(client.read_message()?, (0x1, b"hello".to_vec()));
        client.send(0x88, &1000u16.to_be_bytes())?;
        client.read_to_end()?;
    }
    for server in [&first, &second] {
        server.signal("TERM")?;
    }
    assert_eq!(first.wait(Duration::from_secs(10))?, 0);
    assert_eq!(second.wait(Duration::from_secs(10))?, 0);
    let (a, b) = (log_a.access_lines()?.len(), log_b.access_lines()?.len());
    assert_eq!(a + b, 32);
    assert!(a > 0 && b > 0, "one process served all: {a} and {b}");
    Ok(())
}
