//! The `ws-echo` binary as a person runs it: flags, the listening line, signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};
use ws_tests::RawClient;
use ws_tests::tls::TestPki;
use ws_transport::rustls;
use ws_transport::ws_proto::CloseCode;
use ws_transport::{Connector, Proxy, connect_tcp_with};

const BIN: &str = env!("CARGO_BIN_EXE_ws-echo");

/// A running `ws-echo`, killed if the test ends without stopping it.
struct Running {
    child: Child,
    addr: SocketAddr,
    /// What it printed first: `listening on ws://…` or `wss://…`.
    first_line: String,
}

impl Running {
    fn start(args: &[&str]) -> Result<Self> {
        let mut child = Command::new(BIN)
            .args(["--bind", "127.0.0.1:0", "--log", "warn"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting ws-echo")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let rest = line.trim().strip_prefix("listening on ");
        let addr = rest
            .and_then(|rest| rest.strip_prefix("ws://").or_else(|| rest.strip_prefix("wss://")))
            .with_context(|| format!("unexpected first line {line:?}"))?
            .parse()?;
        Ok(Self { child, addr, first_line: line.trim().to_string() })
    }

    fn signal(&self, name: &str) -> Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{name} failed");
        }
        Ok(())
    }

    /// Waits up to `limit` for the process to exit and returns its exit code.
    fn wait(&mut self, limit: Duration) -> Result<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return status.code().context("killed by a signal");
            }
            if Instant::now() > deadline {
                bail!("ws-echo did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

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
        "--log",
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
