//! The programs in `examples/`, built and run: the command-line client against ws-echo. (The
//! tokio echo server is run by `cargo xtask conformance --server ws-transport-tokio`.)

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use ws_tests::TestServer;

/// Builds the example `name` and returns its path.
fn example(name: &str) -> Result<std::path::PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace")?;
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args(["build", "--quiet", "-p", "ws-examples", "--example", name])
        .status()?;
    ensure!(status.success(), "building the {name} example failed");
    Ok(workspace.join("target/debug/examples").join(name))
}

#[test]
fn the_client_example_sends_its_input_and_prints_the_echoes() -> Result<()> {
    let client = example("client")?;
    let server = TestServer::start_default()?;
    let mut child = Command::new(client)
        .arg(format!("ws://{}/", server.addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all("hello\nwörld\n".as_bytes())?;
    // Its input ends: it closes with 1000, ws-echo answers, it exits.
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(output.status.success(), "client failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello\nwörld\n");
    assert!(stderr.contains(&format!("connected to ws://{}/", server.addr)), "{stderr}");
    assert!(stderr.contains("closed: 1000"), "{stderr}");
    Ok(())
}
