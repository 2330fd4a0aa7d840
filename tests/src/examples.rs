//! The programs in `examples/`, built and started for tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, ensure};

/// Builds the example `name` (package `ws-examples`) and returns its path.
pub fn build(name: &str) -> Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace")?;
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", "ws-examples", "--example", name])
        .status()?;
    ensure!(status.success(), "building the {name} example failed");
    Ok(workspace.join("target/debug/examples").join(name))
}

/// A server example, started on `127.0.0.1:0`; ended when dropped.
pub struct ExampleServer {
    child: Child,
    /// Where it listens (from its first line, `listening on ws://ADDR`).
    pub addr: SocketAddr,
}

impl ExampleServer {
    /// Builds and starts the example `name`.
    pub fn start(name: &str) -> Result<Self> {
        let mut child =
            Command::new(build(name)?).arg("127.0.0.1:0").stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ws://")
            .with_context(|| format!("{name}: first line {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
    }
}

impl ExampleServer {
    /// The names of the server's threads (Linux: `/proc/PID/task/*/comm`).
    pub fn threads(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id()))? {
            names.push(std::fs::read_to_string(task?.path().join("comm"))?.trim().to_owned());
        }
        Ok(names)
    }
}

impl Drop for ExampleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
