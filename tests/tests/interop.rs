//! Interop with clients no one here wrote: Python `websockets`, Node `ws`, and the demo page in
//! headless Chromium. `.ci/run` installs them; in CI a missing one fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use ws_tests::{TestServer, in_ci};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// Reports a missing tool: an error in CI, a loud skip elsewhere.
fn missing(what: &str) -> Result<()> {
    let hint = "run .ci/run, or see README.md (Testing) to install the interop peers";
    if in_ci() {
        bail!("{what} is missing: {hint}");
    }
    eprintln!("SKIPPED: {what} is missing ({hint})");
    Ok(())
}

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("WS_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".ci/venv/bin/python"));
    let ok = Command::new(&path)
        .args(["-c", "import websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(path)
}

fn node_modules() -> Option<PathBuf> {
    let dir = workspace().join(".ci/node_modules");
    let ok = dir.join("ws").is_dir()
        && dir.join("playwright-core").is_dir()
        && Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    ok.then_some(dir)
}

/// Runs a client script and checks that it succeeded and said "ok".
fn run_client(mut cmd: Command) -> Result<()> {
    let output = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || !stdout.starts_with("ok") {
        bail!("{cmd:?} failed ({}):\n{stdout}\n{stderr}", output.status);
    }
    eprintln!("{}", stdout.trim());
    Ok(())
}

#[test]
fn python_websockets_client() -> Result<()> {
    let Some(python) = python() else {
        return missing("the Python websockets library");
    };
    let server = TestServer::start_default()?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace().join("tests/interop/python_client.py"))
        .arg(format!("ws://{}/", server.addr));
    run_client(cmd)
}

#[test]
fn node_ws_client() -> Result<()> {
    let Some(modules) = node_modules() else {
        return missing("node with the ws package");
    };
    let server = TestServer::start_default()?;
    let mut cmd = Command::new("node");
    // ESM resolves packages from the script's directory upwards, so run a copy beside them.
    let script = modules.parent().expect("in .ci").join("node_client.mjs");
    std::fs::copy(workspace().join("tests/interop/node_client.mjs"), &script)?;
    cmd.arg(&script).arg(format!("ws://{}/", server.addr));
    run_client(cmd)
}

#[test]
fn demo_page_in_headless_chromium() -> Result<()> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        return missing("Chromium (/usr/bin/chromium)");
    }
    let Some(modules) = node_modules() else {
        return missing("node with playwright-core");
    };
    let server = TestServer::start_default()?;
    let script = modules.parent().expect("in .ci").join("browser.mjs");
    std::fs::copy(workspace().join("tests/interop/browser.mjs"), &script)?;
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(format!("http://{}/", server.addr)).arg(chromium);
    run_client(cmd)
}
