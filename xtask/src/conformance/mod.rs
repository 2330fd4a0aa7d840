//! `cargo xtask conformance`: an Autobahn-style conformance suite.
//!
//! Server mode (default) starts one of our servers from this workspace (`--server ws-echo`,
//! `ws-echo-async` or `ws-transport`; or targets `--url`) and plays the fuzzing client
//! against it. Client mode (`--client`, `--split` for the halves, `--tokio` for the client on
//! tokio as a `Stream` and `Sink`) plays the fuzzing server against a small echo client built
//! on `ws-transport`. Frames on the wire are built and checked by the
//! suite itself ([`wire`]), never by the code under test.
//!
//! Here: the CLI, the run loops and the expected-results diff; `cases` is the catalogue,
//! `peers` starts the servers and the client under test and speaks both handshakes,
//! `execute` plays a case and records what it observed, `judge` turns that into a verdict,
//! `report` writes JSON and HTML.

mod cases;
pub(crate) mod deflate;
mod execute;
mod judge;
mod peers;
mod relay;
mod report;
pub(crate) mod wire;

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};

use cases::{Case, Expected, Outcome, Step};
use execute::execute;
use judge::judge;
pub(crate) use peers::read_head;
use peers::{EchoServer, client_connect, server_handshake, testee_client, testee_client_tokio};
use wire::{BINARY, CLOSE, CONT, Frame, PING, PONG, TEXT};

/// A verdict, as Autobahn gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    Ok,
    NonStrict,
    Informational,
    Unimplemented,
    Failed,
}

impl Verdict {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::NonStrict => "NON-STRICT",
            Self::Informational => "INFORMATIONAL",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Failed => "FAILED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Ok, Self::NonStrict, Self::Informational, Self::Unimplemented, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Which side the suite plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The suite is the client; the peer under test is a server.
    Server,
    /// The suite is the server; the peer under test is a client.
    Client,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// What one case did and how it was judged.
#[derive(Debug, Clone)]
pub(crate) struct CaseResult {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) verdict: Verdict,
    pub(crate) reason: String,
    pub(crate) expected: String,
    pub(crate) observed: String,
    /// The close code the peer sent: `Some(None)` for an empty close frame.
    pub(crate) peer_close: Option<Option<u16>>,
    pub(crate) suite_close: Option<u16>,
    pub(crate) closed_by: &'static str,
    pub(crate) duration: Duration,
    pub(crate) wire_log: String,
}

/// What the suite saw on one connection.
#[derive(Debug, Default)]
struct Observed {
    messages: Vec<Expected>,
    peer_close: Option<Option<u16>>,
    /// The peer's close frame arrived before the suite started its last write.
    close_before_final_write: bool,
    final_write_started: bool,
    suite_close: Option<u16>,
    /// The peer ended TCP with FIN (a read returned 0).
    peer_ended_tcp: bool,
    /// The peer reset TCP (or the read failed): never a clean close.
    peer_reset: Option<String>,
    suite_ended_tcp: bool,
    violation: Option<String>,
    timed_out: bool,
    log: String,
    logged: usize,
}

const LOG_LIMIT: usize = 4096;

impl Observed {
    fn log(&mut self, direction: &str, bytes: &[u8]) {
        if self.logged >= LOG_LIMIT {
            return;
        }
        let shown = &bytes[..bytes.len().min(LOG_LIMIT - self.logged)];
        self.logged += shown.len();
        let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
        let more = if shown.len() < bytes.len() {
            format!(" … ({} bytes)", bytes.len())
        } else {
            String::new()
        };
        self.log.push_str(&format!("{direction} {}{more}\n", hex.join(" ")));
    }
}

/// Options of a run.
#[derive(Debug)]
struct Options {
    mode: Mode,
    url: Option<String>,
    filter: Option<String>,
    bless: bool,
    /// Server mode: which of our servers to start (unless `--url` names one).
    server: Target,
    /// Client mode: drive the client through its split halves.
    split: bool,
    /// Client mode: the client on tokio, as a `Stream` and `Sink`.
    tokio: bool,
    /// Run over TLS, through [`relay`].
    tls: bool,
}

/// The server paths the suite can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// ws-echo on its default engine (epoll on Linux).
    Echo,
    /// ws-echo with `--engine async`: the engine's portable path, on ws-transport.
    EchoAsync,
    /// ws-echo with `--engine uring`: the engine threads with their I/O on io_uring.
    EchoUring,
    /// The README's `recv`/`send` loop on ws-transport (its `echo_server` example).
    Transport,
    /// ws-transport on tokio's streams and timers, as a Stream and a Sink
    /// (`examples/tokio_echo.rs`).
    TransportTokio,
    /// ws-transport's axum extractor (`examples/axum_chat.rs`, its `/` route).
    TransportAxum,
}

impl Target {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ws-echo" => Self::Echo,
            "ws-echo-async" => Self::EchoAsync,
            "ws-echo-uring" => Self::EchoUring,
            "ws-transport" => Self::Transport,
            "ws-transport-tokio" => Self::TransportTokio,
            "ws-transport-axum" => Self::TransportAxum,
            _ => return None,
        })
    }

    /// The report's folder under `target/conformance/`.
    fn report_name(self) -> &'static str {
        match self {
            Self::Echo => "server",
            Self::EchoAsync => "server-async",
            Self::EchoUring => "server-uring",
            Self::Transport => "server-transport",
            Self::TransportTokio => "server-transport-tokio",
            Self::TransportAxum => "server-transport-axum",
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is in the workspace").to_path_buf()
}

/// Entry point: `cargo xtask conformance [--client] [--url ws://HOST:PORT/] [--cases PREFIX] [--bless]`.
pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut options = Options {
        mode: Mode::Server,
        url: None,
        filter: None,
        bless: false,
        server: Target::Echo,
        split: false,
        tokio: false,
        tls: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--client" => options.mode = Mode::Client,
            "--url" => options.url = Some(args.next().context("--url needs a value")?.clone()),
            "--cases" => {
                options.filter = Some(args.next().context("--cases needs a value")?.clone())
            }
            "--bless" => options.bless = true,
            "--split" => options.split = true,
            "--tokio" => options.tokio = true,
            "--tls" => options.tls = true,
            "--server" => {
                let name = args.next().context("--server needs a value")?;
                options.server = Target::parse(name).with_context(|| {
                    format!(
                        "--server {name:?}: one of ws-echo, ws-echo-async, ws-transport, \
                         ws-transport-tokio, ws-transport-axum"
                    )
                })?;
            }
            other => bail!("unknown conformance option {other:?}"),
        }
    }
    let mut catalogue = cases::catalogue();
    if let Some(prefix) = &options.filter {
        catalogue.retain(|c| {
            c.id == *prefix
                || c.id.starts_with(&format!("{prefix}."))
                || prefix.ends_with('.') && c.id.starts_with(prefix.as_str())
        });
    }
    if catalogue.is_empty() {
        bail!("no case matches {:?}", options.filter);
    }
    let started = Instant::now();
    let results = match options.mode {
        Mode::Server => run_against_server(&options, &catalogue)?,
        Mode::Client => run_against_client(&catalogue, &options)?,
    };
    let elapsed = started.elapsed();
    let report = match options.mode {
        Mode::Server => options.server.report_name(),
        Mode::Client => match (options.tokio, options.split) {
            (false, false) => "client",
            (false, true) => "client-split",
            (true, false) => "client-tokio",
            (true, true) => "client-tokio-split",
        },
    };
    let report = if options.tls { format!("{report}-tls") } else { report.to_string() };
    let out_dir = workspace().join("target/conformance").join(report);
    report::write(&out_dir, options.mode, &results, elapsed)?;
    println!("{}", report::summary_markdown(options.mode, &results, elapsed));
    println!("report: {}", out_dir.join("index.html").display());

    let expected_path =
        workspace().join("xtask/conformance").join(format!("expected-{}.txt", options.mode.name()));
    if options.bless {
        report::write_expected(&expected_path, &results)?;
        println!("wrote {}", expected_path.display());
    }
    let differences = if options.filter.is_none() && !options.bless {
        compare_expected(&expected_path, &results)?
    } else {
        Vec::new()
    };
    for line in &differences {
        println!("differs from {}: {line}", expected_path.display());
    }
    let failed = results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Failed | Verdict::Unimplemented))
        .count();
    let passed = results.len() - failed;
    println!("{passed} passed, {failed} failed");
    if failed > 0 || !differences.is_empty() {
        bail!("{failed} cases failed, {} differ from the expected results", differences.len());
    }
    Ok(())
}

fn compare_expected(path: &Path, results: &[CaseResult]) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut expected = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (id, verdict) =
            line.split_once(' ').with_context(|| format!("malformed line {line:?}"))?;
        expected.insert(
            id.to_string(),
            Verdict::parse(verdict.trim())
                .with_context(|| format!("unknown verdict in {line:?}"))?,
        );
    }
    let mut differences = Vec::new();
    for result in results {
        match expected.remove(&result.id) {
            Some(v) if v == result.verdict => {}
            Some(v) => differences.push(format!(
                "{} was {} and is now {}",
                result.id,
                v.as_str(),
                result.verdict.as_str()
            )),
            None => differences.push(format!("{} is new ({})", result.id, result.verdict.as_str())),
        }
    }
    let mut gone: Vec<String> = expected.into_keys().collect();
    gone.sort();
    differences.extend(gone.into_iter().map(|id| format!("{id} is no longer run")));
    Ok(differences)
}

fn case_deadline(case: &Case) -> Duration {
    if case.id.starts_with("9.") { Duration::from_secs(120) } else { Duration::from_secs(15) }
}

fn run_against_server(options: &Options, catalogue: &[Case]) -> Result<Vec<CaseResult>> {
    let pki = ws_tests::tls::TestPki::new()?;
    let (addr, host, _server) = match &options.url {
        Some(_) if options.tls => bail!("--tls starts its own server: leave out --url"),
        Some(url) => {
            let rest = url.strip_prefix("ws://").context("--url must be ws://HOST:PORT/")?;
            let authority = rest.split('/').next().unwrap_or(rest);
            let addr =
                authority.to_socket_addrs()?.next().context("--url resolves to no address")?;
            (addr, authority.to_string(), None)
        }
        None if options.tls => {
            let issued = pki.localhost()?;
            let server = EchoServer::start(options.server, Some(&issued))?;
            let relay = relay::start(relay::Facing::Server(server.addr, pki.client_config()?))?;
            (relay, format!("localhost:{}", server.addr.port()), Some(server))
        }
        None => {
            let server = EchoServer::start(options.server, None)?;
            (server.addr, server.addr.to_string(), Some(server))
        }
    };
    let scheme = if options.tls { "wss" } else { "ws" };
    println!("conformance (server mode): {} cases against {scheme}://{host}/", catalogue.len());
    let mut results = Vec::new();
    for case in catalogue {
        let result = smol::block_on(async {
            let started = Instant::now();
            let observed = match client_connect(addr, &host, case.deflate).await {
                Ok((stream, codec)) => {
                    execute(&stream, case, Mode::Server, Vec::new(), codec).await
                }
                Err(err) => Observed {
                    violation: Some(format!("handshake: {err:#}")),
                    ..Observed::default()
                },
            };
            judge(case, Mode::Server, observed, started.elapsed())
        });
        print_progress(&result);
        results.push(result);
    }
    Ok(results)
}

fn print_progress(result: &CaseResult) {
    if result.verdict != Verdict::Ok {
        println!("  {} {} — {}", result.id, result.verdict.as_str(), result.reason);
    }
}

fn run_against_client(catalogue: &[Case], options: &Options) -> Result<Vec<CaseResult>> {
    let (split, tls, on_tokio) = (options.split, options.tls, options.tokio);
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    let halves = if split { " (split halves)" } else { "" };
    let over = if tls { " over TLS" } else { "" };
    let runtime = if on_tokio { " on tokio (Stream + Sink)" } else { "" };
    println!(
        "conformance (client mode): {} cases against the ws-transport client{runtime}{halves}{over}",
        catalogue.len()
    );
    let count = catalogue.len();
    // Over TLS the client connects to the relay, which passes the plaintext on to the suite.
    let pki = ws_tests::tls::TestPki::new()?;
    let (connect_to, client_tls) = if tls {
        let config = ws_tests::tls::TestPki::server_config(&pki.localhost()?)?;
        (relay::start(relay::Facing::Client(addr, config))?, Some(pki.client_config()?))
    } else {
        (addr, None)
    };
    let testee = std::thread::spawn(move || {
        if on_tokio {
            testee_client_tokio(connect_to, count, split, client_tls)
        } else {
            testee_client(connect_to, count, split, client_tls)
        }
    });
    let mut results = Vec::new();
    for (i, case) in catalogue.iter().enumerate() {
        let result = smol::block_on(async {
            let started = Instant::now();
            let accepted = future::or(async { Some(listener.accept().await) }, async {
                Timer::after(Duration::from_secs(30)).await;
                None
            })
            .await;
            let observed = match accepted {
                None => Observed {
                    violation: Some("the client did not connect".into()),
                    ..Observed::default()
                },
                Some(Err(err)) => {
                    Observed { violation: Some(format!("accept: {err}")), ..Observed::default() }
                }
                Some(Ok((mut stream, _))) => {
                    match server_handshake(&mut stream, i + 1, case.deflate).await {
                        Ok(codec) => execute(&stream, case, Mode::Client, Vec::new(), codec).await,
                        Err(err) => Observed {
                            violation: Some(format!("handshake: {err:#}")),
                            ..Observed::default()
                        },
                    }
                }
            };
            judge(case, Mode::Client, observed, started.elapsed())
        });
        print_progress(&result);
        results.push(result);
    }
    match testee.join() {
        Ok(Ok(())) => {}
        Ok(Err(err)) => println!("testee client: {err:#}"),
        Err(_) => bail!("the testee client panicked"),
    }
    Ok(results)
}
