//! The `ws-echo` binary as a person runs it: flags, the listening line, signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ws_tests::RawClient;

const BIN: &str = env!("CARGO_BIN_EXE_ws-echo");

/// A running `ws-echo`, killed if the test ends without stopping it.
struct Running {
    child: Child,
    addr: SocketAddr,
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
        let addr = line
            .trim()
            .strip_prefix("listening on ws://")
            .with_context(|| format!("unexpected first line {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
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
