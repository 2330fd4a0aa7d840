//! Interop with peers no one here wrote: Python `websockets` and Node `ws` as clients, the demo
//! page in headless Chromium, each over TCP and over TLS; and Python `websockets` as a TLS
//! server for our client. `.ci/run` installs them; in CI a missing one fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use ws_echo::Options;
use ws_tests::examples::ExampleServer;
use ws_tests::tls::{Issued, TestPki};
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

/// An echo server for a client script: plain, or TLS with a certificate for localhost from a
/// new test CA.
struct Echo {
    server: TestServer,
    tls: Option<(TestPki, Issued)>,
}

impl Echo {
    fn start(tls: bool) -> Result<Self> {
        if !tls {
            return Ok(Self { server: TestServer::start_default()?, tls: None });
        }
        let pki = TestPki::new()?;
        let issued = pki.localhost()?;
        let mut options = Options::default();
        options.0.tls = Some(TestPki::server_config(&issued)?);
        Ok(Self { server: TestServer::start(options)?, tls: Some((pki, issued)) })
    }

    /// `{plain}://127.0.0.1:PORT/`, or over TLS `{secure}://localhost:PORT/` (the name in
    /// the certificate).
    fn url(&self, plain: &str, secure: &str) -> String {
        match self.tls {
            None => format!("{plain}://{}/", self.server.addr),
            Some(_) => format!("{secure}://localhost:{}/", self.server.addr.port()),
        }
    }
}

fn python_client(tls: bool) -> Result<()> {
    let Some(python) = python() else {
        return missing("the Python websockets library");
    };
    let echo = Echo::start(tls)?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace().join("tests/interop/python_client.py")).arg(echo.url("ws", "wss"));
    if let Some((pki, _)) = &echo.tls {
        cmd.arg(&pki.ca_pem);
    }
    run_client(cmd)
}

#[test]
fn python_websockets_client() -> Result<()> {
    python_client(false)
}

#[test]
fn python_websockets_client_over_wss() -> Result<()> {
    python_client(true)
}

fn node_client(tls: bool) -> Result<()> {
    let Some(modules) = node_modules() else {
        return missing("node with the ws package");
    };
    // ESM resolves packages from the script's directory upwards, so run a copy beside them
    // (one per test: the tests run at once).
    let name = if tls { "node_client_tls.mjs" } else { "node_client.mjs" };
    let script = modules.parent().expect("in .ci").join(name);
    std::fs::copy(workspace().join("tests/interop/node_client.mjs"), &script)?;
    let echo = Echo::start(tls)?;
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(echo.url("ws", "wss"));
    if let Some((pki, _)) = &echo.tls {
        cmd.arg(&pki.ca_pem);
    }
    run_client(cmd)
}

#[test]
fn node_ws_client() -> Result<()> {
    node_client(false)
}

#[test]
fn node_ws_client_over_wss() -> Result<()> {
    node_client(true)
}

fn chromium_page(tls: bool) -> Result<()> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        return missing("Chromium (/usr/bin/chromium)");
    }
    let Some(modules) = node_modules() else {
        return missing("node with playwright-core");
    };
    let name = if tls { "browser_tls.mjs" } else { "browser.mjs" };
    let script = modules.parent().expect("in .ci").join(name);
    std::fs::copy(workspace().join("tests/interop/browser.mjs"), &script)?;
    let echo = Echo::start(tls)?;
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(echo.url("http", "https")).arg(chromium);
    if let Some((_, issued)) = &echo.tls {
        // Chromium trusts this one certificate, by the hash of its public key.
        cmd.arg(&issued.spki_sha256);
    }
    run_client(cmd)
}

#[test]
fn demo_page_in_headless_chromium() -> Result<()> {
    chromium_page(false)
}

#[test]
fn demo_page_over_https_in_headless_chromium() -> Result<()> {
    chromium_page(true)
}

#[test]
fn our_client_against_a_python_websockets_tls_server() -> Result<()> {
    use std::io::{BufRead, BufReader};
    use ws_transport::ws_proto::CloseCode;
    use ws_transport::{Config, Connector, Proxy};

    let Some(python) = python() else {
        return missing("the Python websockets library");
    };
    let pki = TestPki::new()?;
    let issued = pki.localhost()?;
    let mut child = Command::new(python)
        .arg(workspace().join("tests/interop/python_server.py"))
        .arg(&issued.cert)
        .arg(&issued.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the Python server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let port: u16 = line
        .trim()
        .strip_prefix("listening ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .parse()?;
    let connector = Connector::new().tls(pki.client_config()?).proxy(Proxy::None);
    let result = smol::block_on(async {
        for compression in [false, true] {
            let mut config = Config::default();
            config.protocol.max_message_size = 32 << 20;
            if compression {
                config.compression = Some(Default::default());
            }
            let url = format!("wss://localhost:{port}/");
            let (mut ws, accepted) =
                ws_transport::connect_tcp_with(&url, config, &connector).await?;
            let negotiated = accepted.extensions.iter().any(|e| e.name == "permessage-deflate");
            assert_eq!(negotiated, compression, "{:?}", accepted.extensions);
            let large: Vec<u8> = (0..16usize << 20).map(|i| (i % 251) as u8).collect();
            let messages = [
                ws_transport::Message::Text("hello from ws-transport".into()),
                ws_transport::Message::Binary(vec![0, 1, 2, 255]),
                ws_transport::Message::Binary(large),
            ];
            for message in messages {
                ws.send(message.clone()).await?;
                let echo = ws.recv().await?.context("closed before the echo")?;
                assert_eq!(echo.as_bytes(), message.as_bytes());
            }
            ws.close(CloseCode::NORMAL, "").await?;
            assert_eq!(ws.recv().await?, None);
        }
        Ok::<(), anyhow::Error>(())
    });
    drop(child.stdin.take());
    let status = child.wait()?;
    result?;
    assert!(status.success(), "the Python server exited with {status}");
    eprintln!("ok: our client echoed 3 messages, with and without compression, over TLS");
    Ok(())
}

// The axum example (examples/axum_chat.rs): its `/` echoes, through ws-transport's extractor,
// and serves the chat room's page to a plain GET.

#[test]
fn python_websockets_client_against_the_axum_example() -> Result<()> {
    let Some(python) = python() else {
        return missing("the Python websockets library");
    };
    let server = ExampleServer::start("axum_chat")?;
    let mut cmd = Command::new(python);
    cmd.arg(workspace().join("tests/interop/python_client.py"))
        .arg(format!("ws://{}/", server.addr));
    run_client(cmd)
}

#[test]
fn node_ws_client_against_the_axum_example() -> Result<()> {
    let Some(modules) = node_modules() else {
        return missing("node with the ws package");
    };
    let script = modules.parent().expect("in .ci").join("node_client_axum.mjs");
    std::fs::copy(workspace().join("tests/interop/node_client.mjs"), &script)?;
    let server = ExampleServer::start("axum_chat")?;
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(format!("ws://{}/", server.addr));
    run_client(cmd)
}

#[test]
fn chromium_websocket_against_the_axum_example() -> Result<()> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        return missing("Chromium (/usr/bin/chromium)");
    }
    let Some(modules) = node_modules() else {
        return missing("node with playwright-core");
    };
    let script = modules.parent().expect("in .ci").join("browser_socket.mjs");
    std::fs::copy(workspace().join("tests/interop/browser_socket.mjs"), &script)?;
    let server = ExampleServer::start("axum_chat")?;
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(format!("ws://{}/", server.addr)).arg(chromium);
    run_client(cmd)
}

#[test]
fn chromium_pages_chat_through_the_axum_example() -> Result<()> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        return missing("Chromium (/usr/bin/chromium)");
    }
    let Some(modules) = node_modules() else {
        return missing("node with playwright-core");
    };
    let script = modules.parent().expect("in .ci").join("browser_chat.mjs");
    std::fs::copy(workspace().join("tests/interop/browser_chat.mjs"), &script)?;
    let server = ExampleServer::start("axum_chat")?;
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(format!("http://{}/", server.addr)).arg(chromium);
    run_client(cmd)
}

/// ws-echo's frame inspector in Chromium: every control, the table checked row by row, and a
/// screenshot kept at `target/artefacts/inspector.png`.
#[test]
fn chromium_uses_every_control_of_the_frame_inspector() -> Result<()> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        return missing("Chromium (/usr/bin/chromium)");
    }
    let Some(modules) = node_modules() else {
        return missing("node with playwright-core");
    };
    let script = modules.parent().expect("in .ci").join("inspector.mjs");
    std::fs::copy(workspace().join("tests/interop/inspector.mjs"), &script)?;
    let artefacts = workspace().join("target/artefacts");
    std::fs::create_dir_all(&artefacts)?;
    let server = TestServer::start_default()?;
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg(format!("http://{}/inspect", server.addr))
        .arg(chromium)
        .arg(artefacts.join("inspector.png"));
    run_client(cmd)
}
