//! What the tests of the `ws-echo` binary share: a running process and its log.

#![allow(dead_code)] // each test file uses some of it

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_ws-echo");

/// A running `ws-echo`, killed if the test ends without stopping it.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// What it printed first: `listening on ws://…` or `wss://…`.
    pub(crate) first_line: String,
    /// The rest of what it prints.
    pub(crate) stdout: BufReader<ChildStdout>,
}

impl Running {
    pub(crate) fn start(args: &[&str]) -> Result<Self> {
        Self::start_with(&["--bind", "127.0.0.1:0", "--log", "warn"], args, Stdio::inherit())
    }

    /// Started with `base` then `args`, its log going to `log`.
    pub(crate) fn start_with(base: &[&str], args: &[&str], log: impl Into<Stdio>) -> Result<Self> {
        let mut child = Command::new(BIN)
            .args(base)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting ws-echo")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let rest = line.trim().strip_prefix("listening on ");
        let addr = rest
            .and_then(|rest| rest.strip_prefix("ws://").or_else(|| rest.strip_prefix("wss://")))
            .with_context(|| format!("unexpected first line {line:?}"))?
            .parse()?;
        Ok(Self { child, addr, first_line: line.trim().to_string(), stdout })
    }

    /// The next line it prints.
    pub(crate) fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_string())
    }

    pub(crate) fn signal(&self, name: &str) -> Result<()> {
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
    pub(crate) fn wait(&mut self, limit: Duration) -> Result<i32> {
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

/// A file for a process's log, removed when dropped.
pub(crate) struct LogFile(pub std::path::PathBuf);

impl LogFile {
    pub(crate) fn new(name: &str) -> Result<(Self, std::fs::File)> {
        let path = std::env::temp_dir().join(format!("ws-echo-{}-{name}.log", std::process::id()));
        let file = std::fs::File::create(&path)?;
        Ok((Self(path), file))
    }

    /// The `ws_server::access` lines, parsed.
    pub(crate) fn access_lines(&self) -> Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(&self.0)?;
        let mut lines = Vec::new();
        for line in text.lines() {
            let value: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("not JSON: {line:?}"))?;
            if value["target"] == "ws_server::access" {
                lines.push(value);
            }
        }
        Ok(lines)
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
