//! `cargo xtask conformance`: an Autobahn-style conformance suite.
//!
//! Server mode (default) starts `ws-echo` from this workspace (or targets `--url`) and plays
//! the fuzzing client against it. Client mode (`--client`) plays the fuzzing server against a
//! small echo client built on `ws-transport`. Frames on the wire are built and checked by the
//! suite itself ([`wire`]), never by the code under test.

mod cases;
pub(crate) mod deflate;
mod report;
pub(crate) mod wire;

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};

use cases::{Case, Expected, Outcome, Step};
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
}

/// The server paths the suite can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// ws-echo on its default engine (epoll on Linux).
    Echo,
    /// ws-echo with `--engine async`: the engine's portable path, on ws-transport.
    EchoAsync,
    /// The README's `recv`/`send` loop on ws-transport (its `echo_server` example).
    Transport,
}

impl Target {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ws-echo" => Self::Echo,
            "ws-echo-async" => Self::EchoAsync,
            "ws-transport" => Self::Transport,
            _ => return None,
        })
    }

    /// The report's folder under `target/conformance/`.
    fn report_name(self) -> &'static str {
        match self {
            Self::Echo => "server",
            Self::EchoAsync => "server-async",
            Self::Transport => "server-transport",
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
            "--server" => {
                let name = args.next().context("--server needs a value")?;
                options.server = Target::parse(name).with_context(|| {
                    format!("--server {name:?}: one of ws-echo, ws-echo-async, ws-transport")
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
        Mode::Client => run_against_client(&catalogue, options.split)?,
    };
    let elapsed = started.elapsed();
    let report = match options.mode {
        Mode::Server => options.server.report_name(),
        Mode::Client if options.split => "client-split",
        Mode::Client => "client",
    };
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

/// A `ws-echo` started for the run; stopped when dropped.
struct EchoServer {
    child: Child,
    addr: SocketAddr,
}

impl EchoServer {
    fn start(target: Target) -> Result<Self> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let (build, binary, args): (&[&str], &str, &[&str]) = match target {
            Target::Echo => (
                &["-p", "ws-echo"],
                "target/debug/ws-echo",
                &["--bind", "127.0.0.1:0", "--log", "error"],
            ),
            Target::EchoAsync => (
                &["-p", "ws-echo"],
                "target/debug/ws-echo",
                &["--bind", "127.0.0.1:0", "--log", "error", "--engine", "async"],
            ),
            Target::Transport => (
                &["-p", "ws-transport", "--example", "echo_server"],
                "target/debug/examples/echo_server",
                &["127.0.0.1:0"],
            ),
        };
        let status = Command::new(&cargo)
            .current_dir(workspace())
            .args(["build", "--quiet"])
            .args(build)
            .status()?;
        if !status.success() {
            bail!("building {binary} failed");
        }
        let mut child = Command::new(workspace().join(binary))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("ws-echo stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ws://")
            .with_context(|| format!("unexpected line {line:?}"))?
            .parse()?;
        Ok(Self { child, addr })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn case_deadline(case: &Case) -> Duration {
    if case.id.starts_with("9.") { Duration::from_secs(120) } else { Duration::from_secs(15) }
}

fn run_against_server(options: &Options, catalogue: &[Case]) -> Result<Vec<CaseResult>> {
    let (addr, host, _server) = match &options.url {
        Some(url) => {
            let rest = url.strip_prefix("ws://").context("--url must be ws://HOST:PORT/")?;
            let authority = rest.split('/').next().unwrap_or(rest);
            let addr =
                authority.to_socket_addrs()?.next().context("--url resolves to no address")?;
            (addr, authority.to_string(), None)
        }
        None => {
            let server = EchoServer::start(options.server)?;
            (server.addr, server.addr.to_string(), Some(server))
        }
    };
    println!("conformance (server mode): {} cases against ws://{host}/", catalogue.len());
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

/// Opens a connection and performs a client handshake built here.
async fn client_connect(
    addr: SocketAddr,
    host: &str,
    offer: Option<&str>,
) -> Result<(Async<TcpStream>, Option<deflate::Codec>)> {
    let mut stream = Async::<TcpStream>::connect(addr).await?;
    stream.get_ref().set_nodelay(true)?;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let extensions =
        offer.map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n")).unwrap_or_default();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let head = read_head(&mut stream).await?;
    let text = String::from_utf8_lossy(&head);
    if !text.starts_with("HTTP/1.1 101") {
        bail!("expected 101, got {:?}", text.lines().next().unwrap_or(""));
    }
    let accept = wire::accept_key(key);
    if !text.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("sec-websocket-accept:")
            && l.trim_end().ends_with(&accept)
    }) {
        bail!("wrong or missing Sec-WebSocket-Accept");
    }
    let accepted: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
        })
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    let codec = match (offer, accepted.as_slice()) {
        (None, []) => None,
        (None, _) => bail!("the server accepted an extension that was not offered"),
        (Some(_), [one]) => {
            let params = deflate::parse(one)
                .context("the server answered with something other than permessage-deflate")?;
            Some(deflate::Codec::new(params, true))
        }
        (Some(_), _) => {
            bail!("permessage-deflate was offered and not accepted exactly once: {accepted:?}")
        }
    };
    Ok((stream, codec))
}

/// Reads an HTTP head byte by byte (so nothing after it is consumed).
pub(crate) async fn read_head(stream: &mut Async<TcpStream>) -> Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            bail!("connection closed during the handshake");
        }
        head.push(byte[0]);
        if head.len() > 16 << 10 {
            bail!("head over 16 KiB");
        }
    }
    Ok(head)
}

fn run_against_client(catalogue: &[Case], split: bool) -> Result<Vec<CaseResult>> {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
    let addr = listener.get_ref().local_addr()?;
    let halves = if split { " (split halves)" } else { "" };
    println!(
        "conformance (client mode): {} cases against the ws-transport client{halves}",
        catalogue.len()
    );
    let count = catalogue.len();
    let testee = std::thread::spawn(move || testee_client(addr, count, split));
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

/// Answers the client's opening handshake with a 101 built here; checks the case number.
async fn server_handshake(
    stream: &mut Async<TcpStream>,
    case_number: usize,
    response_params: Option<&str>,
) -> Result<Option<deflate::Codec>> {
    stream.get_ref().set_nodelay(true)?;
    let head = read_head(stream).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let request_line = text.lines().next().unwrap_or("");
    if !request_line.starts_with(&format!("GET /runCase?case={case_number}&")) {
        bail!("unexpected request line {request_line:?}");
    }
    let key = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-key"))
                .map(|(_, v)| v.trim().to_string())
        })
        .context("no Sec-WebSocket-Key")?;
    let offered = text.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.eq_ignore_ascii_case("sec-websocket-extensions") && v.contains("permessage-deflate")
        })
    });
    let (extensions, codec) = match response_params {
        Some(params) if offered => {
            let parsed = deflate::parse(params).context("a case's parameters")?;
            (
                format!("Sec-WebSocket-Extensions: {params}\r\n"),
                Some(deflate::Codec::new(parsed, false)),
            )
        }
        Some(_) => bail!("the client did not offer permessage-deflate"),
        None => (String::new(), None),
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extensions}\r\n",
        wire::accept_key(&key)
    );
    stream.write_all(response.as_bytes()).await?;
    Ok(codec)
}

/// The testee's configuration: defaults, offering permessage-deflate (sections 12 and 13).
fn testee_config() -> ws_transport::Config {
    let mut config = ws_transport::Config::default();
    config.compression = Some(ws_proto::DeflateConfig::default());
    config
}

/// The client under test: connects once per case and echoes every message until closed,
/// through the whole `WebSocket` or, with `split`, its reader and writer halves.
fn testee_client(addr: SocketAddr, count: usize, split: bool) -> Result<()> {
    smol::block_on(async {
        for case in 1..=count {
            let url = format!("ws://{addr}/runCase?case={case}&agent=ws-transport");
            let (mut ws, _) = match ws_transport::connect_tcp(&url, testee_config()).await {
                Ok(connected) => connected,
                Err(err) => {
                    println!("  testee: case {case}: connect failed: {err}");
                    continue;
                }
            };
            if split {
                let (mut reader, writer) = ws.split();
                while let Ok(Some(message)) = reader.recv().await {
                    if writer.send(message).await.is_err() {
                        break;
                    }
                }
                continue;
            }
            while let Ok(Some(message)) = ws.recv().await {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
        }
        Ok(())
    })
}

/// Runs a case's steps on an open connection while reading what the peer sends.
async fn execute(
    stream: &Async<TcpStream>,
    case: &Case,
    mode: Mode,
    leftover: Vec<u8>,
    codec: Option<deflate::Codec>,
) -> Observed {
    let state = Rc::new(RefCell::new(Observed::default()));
    let negotiated = codec.is_some();
    let codec = Rc::new(RefCell::new(codec));
    let deadline = Instant::now() + case_deadline(case);
    let mask = |n: u32| -> Option<[u8; 4]> {
        (mode == Mode::Server).then(|| (n.wrapping_mul(0x9e37_79b9) ^ 0x5a5a_1234).to_be_bytes())
    };
    let writer = {
        let state = Rc::clone(&state);
        let codec_w = Rc::clone(&codec);
        async move {
            let mut keys = 0u32;
            let total_writes = case
                .steps
                .iter()
                .filter(|s| {
                    matches!(
                        s,
                        Step::Send { .. } | Step::SendParts { .. } | Step::SendCompressed { .. }
                    )
                })
                .count();
            let mut writes = 0;
            let mut w = stream;
            for step in &case.steps {
                if state.borrow().peer_close.is_some() || Instant::now() > deadline {
                    break;
                }
                match step {
                    Step::Send { frame, chop } => {
                        writes += 1;
                        keys += 1;
                        if writes == total_writes {
                            mark_final_write(&state);
                        }
                        let bytes = frame.encode(mask(keys));
                        state.borrow_mut().log("→", &bytes);
                        let size = chop.unwrap_or(bytes.len()).max(1);
                        for piece in bytes.chunks(size) {
                            if w.write_all(piece).await.is_err() {
                                return;
                            }
                        }
                    }
                    Step::SendParts { frame, payload_cuts, pause } => {
                        writes += 1;
                        keys += 1;
                        let bytes = frame.encode(mask(keys));
                        state.borrow_mut().log("→", &bytes);
                        let header = bytes.len() - frame.payload.len();
                        let mut start = 0;
                        let mut ends: Vec<usize> =
                            payload_cuts.iter().map(|c| header + c).collect();
                        ends.push(bytes.len());
                        for (i, end) in ends.iter().enumerate() {
                            if i > 0 {
                                Timer::after(*pause).await;
                            }
                            if writes == total_writes && i + 1 == ends.len() {
                                mark_final_write(&state);
                            }
                            if state.borrow().peer_close.is_some()
                                || w.write_all(&bytes[start..*end]).await.is_err()
                            {
                                return;
                            }
                            start = *end;
                        }
                    }
                    Step::SendCompressed { opcode, payload, fragment } => {
                        writes += 1;
                        if writes == total_writes {
                            mark_final_write(&state);
                        }
                        let Some(compressed) =
                            codec_w.borrow_mut().as_mut().map(|c| c.compress(payload))
                        else {
                            state.borrow_mut().violation =
                                Some("permessage-deflate was not negotiated".into());
                            return;
                        };
                        let size = fragment.unwrap_or(compressed.len()).max(1);
                        let parts: Vec<&[u8]> = if compressed.is_empty() {
                            vec![&compressed[..]]
                        } else {
                            compressed.chunks(size).collect()
                        };
                        let mut bytes = Vec::with_capacity(compressed.len() + 14 * parts.len());
                        for (j, part) in parts.iter().enumerate() {
                            keys += 1;
                            let (op, rsv) = if j == 0 { (*opcode, 0b100) } else { (CONT, 0) };
                            let frame =
                                Frame::new(op, part.to_vec()).fin(j + 1 == parts.len()).rsv(rsv);
                            bytes.extend(frame.encode(mask(keys)));
                        }
                        state.borrow_mut().log("→", &bytes);
                        if w.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Step::Delay(d) => {
                        Timer::after(*d).await;
                    }
                    Step::Await(n) => {
                        wait_for(&state, deadline, |o| {
                            o.messages.len() >= *n || o.peer_close.is_some()
                        })
                        .await
                    }
                }
            }
            if case.outcome == Outcome::Echo {
                let want = case.expect.len();
                wait_for(&state, deadline, |o| o.messages.len() >= want || o.peer_close.is_some())
                    .await;
                let send_close = {
                    let o = state.borrow();
                    o.peer_close.is_none() && o.suite_close.is_none()
                };
                if send_close {
                    keys += 1;
                    let bytes = Frame::new(CLOSE, wire::close_body(1000, b"")).encode(mask(keys));
                    state.borrow_mut().suite_close = Some(1000);
                    state.borrow_mut().log("→", &bytes);
                    let _ = w.write_all(&bytes).await;
                }
            }
        }
    };
    let reader = {
        let state = Rc::clone(&state);
        let codec_r = Rc::clone(&codec);
        async move {
            let mut buf = leftover;
            let mut chunk = vec![0u8; 64 << 10];
            let mut message: Option<(u8, Vec<u8>, bool)> = None;
            let mut r = stream;
            loop {
                // Parse what has arrived.
                loop {
                    let parsed = match wire::parse(&buf, 64 << 20) {
                        Ok(Some(parsed)) => parsed,
                        Ok(None) => break,
                        Err(err) => {
                            state.borrow_mut().violation = Some(err);
                            return;
                        }
                    };
                    let (frame, used) = parsed;
                    let header: Vec<u8> = buf[..used.min(14)].to_vec();
                    buf.drain(..used);
                    let mut reply = None;
                    let end_tcp = {
                        let mut o = state.borrow_mut();
                        o.log("←", &header);
                        let masked_ok = frame.masked == (mode == Mode::Client);
                        if !masked_ok {
                            o.violation = Some(format!(
                                "peer sent a {} frame",
                                if frame.masked { "masked" } else { "unmasked" }
                            ));
                            return;
                        }
                        // RSV1 marks a compressed message, on its first frame only (RFC 7692 §6).
                        let allowed = if negotiated && matches!(frame.opcode, TEXT | BINARY) {
                            0b100
                        } else {
                            0
                        };
                        if frame.rsv & !allowed != 0 {
                            o.violation = Some("peer set reserved bits".into());
                            return;
                        }
                        if o.peer_close.is_some() {
                            o.violation = Some("peer sent a frame after its close frame".into());
                            return;
                        }
                        match frame.opcode {
                            TEXT | BINARY if message.is_some() => {
                                o.violation = Some("peer started a message inside another".into());
                                return;
                            }
                            TEXT | BINARY => {
                                message = Some((frame.opcode, frame.payload, frame.rsv != 0))
                            }
                            CONT => match message.as_mut() {
                                Some((_, data, _)) => data.extend_from_slice(&frame.payload),
                                None => {
                                    o.violation =
                                        Some("peer sent a continuation with no message".into());
                                    return;
                                }
                            },
                            PONG => o.messages.push(Expected::Pong(frame.payload)),
                            PING => {}
                            CLOSE => {
                                let code = (frame.payload.len() >= 2).then(|| {
                                    u16::from_be_bytes([frame.payload[0], frame.payload[1]])
                                });
                                o.peer_close = Some(code);
                                o.close_before_final_write = !o.final_write_started;
                                if o.suite_close.is_none() {
                                    // Answer with the same code, as an endpoint should.
                                    let body =
                                        code.map(|c| wire::close_body(c, b"")).unwrap_or_default();
                                    o.suite_close = Some(code.unwrap_or(1005));
                                    let bytes = Frame::new(CLOSE, body).encode(mask(u32::MAX));
                                    o.log("→", &bytes);
                                    reply = Some(bytes);
                                }
                                if mode == Mode::Client {
                                    // The server ends TCP after the close handshake (RFC 6455 §7.1.1).
                                    o.suite_ended_tcp = true;
                                }
                            }
                            op => {
                                o.violation = Some(format!("peer sent opcode {op}"));
                                return;
                            }
                        }
                        if frame.fin && matches!(frame.opcode, TEXT | BINARY | CONT) {
                            if let Some((opcode, data, compressed)) = message.take() {
                                let data = if compressed {
                                    match codec_r
                                        .borrow_mut()
                                        .as_mut()
                                        .map(|c| c.inflate(&data, 64 << 20))
                                    {
                                        Some(Ok(inflated)) => inflated,
                                        Some(Err(err)) => {
                                            o.violation = Some(err);
                                            return;
                                        }
                                        None => {
                                            unreachable!("RSV1 is allowed only when negotiated")
                                        }
                                    }
                                } else {
                                    data
                                };
                                o.messages.push(if opcode == TEXT {
                                    Expected::Text(data)
                                } else {
                                    Expected::Binary(data)
                                });
                            }
                        }
                        o.suite_ended_tcp
                    };
                    if let Some(bytes) = reply {
                        let mut w = stream;
                        let _ = w.write_all(&bytes).await;
                    }
                    if end_tcp {
                        let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
                    }
                }
                let now = Instant::now();
                if now > deadline {
                    state.borrow_mut().timed_out = true;
                    return;
                }
                let read = future::or(async { Some(r.read(&mut chunk).await) }, async {
                    Timer::at(deadline).await;
                    None
                })
                .await;
                match read {
                    None => {
                        state.borrow_mut().timed_out = true;
                        return;
                    }
                    Some(Ok(0)) => {
                        let mut o = state.borrow_mut();
                        if !o.suite_ended_tcp {
                            o.peer_ended_tcp = true;
                        }
                        return;
                    }
                    Some(Err(err)) => {
                        state.borrow_mut().peer_reset = Some(err.to_string());
                        return;
                    }
                    Some(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        }
    };
    future::zip(writer, reader).await;
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
    Rc::try_unwrap(state).map(RefCell::into_inner).unwrap_or_default()
}

fn mark_final_write(state: &Rc<RefCell<Observed>>) {
    state.borrow_mut().final_write_started = true;
}

async fn wait_for(
    state: &Rc<RefCell<Observed>>,
    deadline: Instant,
    done: impl Fn(&Observed) -> bool,
) {
    while !done(&state.borrow()) && Instant::now() < deadline {
        Timer::after(Duration::from_millis(1)).await;
    }
}

fn describe(messages: &[Expected]) -> String {
    if messages.is_empty() {
        return "nothing".into();
    }
    let parts: Vec<String> = messages
        .iter()
        .take(8)
        .map(|m| match m {
            Expected::Text(t) => format!("text({} bytes)", t.len()),
            Expected::Binary(b) => format!("binary({} bytes)", b.len()),
            Expected::Pong(p) => format!("pong({} bytes)", p.len()),
        })
        .collect();
    let more =
        if messages.len() > 8 { format!(" … {} in all", messages.len()) } else { String::new() };
    format!("{}{more}", parts.join(", "))
}

fn code_name(code: Option<Option<u16>>) -> String {
    match code {
        None => "none".into(),
        Some(None) => "empty close frame".into(),
        Some(Some(c)) => c.to_string(),
    }
}

/// Applies the case's expectations to what was observed.
fn judge(case: &Case, mode: Mode, o: Observed, duration: Duration) -> CaseResult {
    let messages_ok = o.messages == case.expect;
    let closed_by = match (o.peer_ended_tcp, o.suite_ended_tcp) {
        (true, _) => "peer",
        (false, true) => "suite",
        _ => "nobody (timeout)",
    };
    // In server mode the server must end TCP; in client mode the suite (the server) does.
    let tcp_ok = match mode {
        Mode::Server => o.peer_ended_tcp,
        Mode::Client => o.suite_ended_tcp || o.peer_ended_tcp,
    };
    let (verdict, reason) = if let Some(violation) = &o.violation {
        (Verdict::Failed, violation.clone())
    } else if let Some(err) =
        o.peer_reset.as_ref().filter(|_| case.outcome != Outcome::Informational)
    {
        // A reset discards what was in flight: it is never a clean close.
        (Verdict::Failed, format!("the connection was reset, not closed: {err}"))
    } else {
        match &case.outcome {
            Outcome::Informational => {
                (Verdict::Informational, format!("peer closed with {}", code_name(o.peer_close)))
            }
            _ if o.timed_out => (Verdict::Failed, "the connection was not closed in time".into()),
            // Messages must match exactly when the connection ends normally. When it fails or
            // we close, an implementation may stop before echoing everything it received
            // first: a prefix of the expected messages is NON-STRICT, as in Autobahn.
            Outcome::Echo if !messages_ok => (
                Verdict::Failed,
                format!("expected {}, received {}", describe(&case.expect), describe(&o.messages)),
            ),
            _ if !case.expect.starts_with(&o.messages) => (
                Verdict::Failed,
                format!("expected {}, received {}", describe(&case.expect), describe(&o.messages)),
            ),
            Outcome::Echo => match o.peer_close {
                Some(Some(1000)) if tcp_ok => (Verdict::Ok, String::new()),
                Some(Some(1000)) => (Verdict::Failed, "the peer did not close TCP".into()),
                other => (
                    Verdict::Failed,
                    format!("expected a 1000 answer to our close, got {}", code_name(other)),
                ),
            },
            Outcome::Answer(codes) => match o.peer_close {
                Some(code) if codes.contains(&code) && tcp_ok => (Verdict::Ok, String::new()),
                Some(code) if codes.contains(&code) => {
                    (Verdict::Failed, "the peer did not close TCP".into())
                }
                other => {
                    (Verdict::Failed, format!("expected close {codes:?}, got {}", code_name(other)))
                }
            },
            Outcome::Fail(codes) | Outcome::FailFast(codes) => match o.peer_close {
                Some(Some(code)) if codes.contains(&code) => {
                    if matches!(case.outcome, Outcome::FailFast(_)) && !o.close_before_final_write {
                        (
                            Verdict::NonStrict,
                            "failed, but only after the rest of the message was sent".into(),
                        )
                    } else if !tcp_ok {
                        (Verdict::Failed, "the peer did not close TCP".into())
                    } else {
                        (Verdict::Ok, String::new())
                    }
                }
                None if o.peer_ended_tcp => {
                    (Verdict::NonStrict, "dropped TCP without a close frame".into())
                }
                other => {
                    (Verdict::Failed, format!("expected close {codes:?}, got {}", code_name(other)))
                }
            },
        }
    };
    let (verdict, reason) = if verdict == Verdict::Ok && !messages_ok {
        let why = format!(
            "closed before echoing all: expected {}, received {}",
            describe(&case.expect),
            describe(&o.messages)
        );
        (Verdict::NonStrict, why)
    } else {
        (verdict, reason)
    };
    let expected = match &case.outcome {
        Outcome::Echo => format!("{}; close 1000 answered", describe(&case.expect)),
        Outcome::Answer(codes) => {
            format!("{}; our close answered with {codes:?}", describe(&case.expect))
        }
        Outcome::Fail(codes) => format!("{}; peer fails with {codes:?}", describe(&case.expect)),
        Outcome::FailFast(codes) => {
            format!("{}; peer fails with {codes:?} before the end", describe(&case.expect))
        }
        Outcome::Informational => "informational".into(),
    };
    CaseResult {
        id: case.id.clone(),
        description: case.description.clone(),
        verdict,
        reason,
        expected,
        observed: format!("{}; peer close {}", describe(&o.messages), code_name(o.peer_close)),
        peer_close: o.peer_close,
        suite_close: o.suite_close,
        closed_by,
        duration,
        wire_log: o.log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(id: &str) -> Case {
        cases::catalogue().into_iter().find(|c| c.id == id).expect("case exists")
    }

    fn observed(messages: Vec<Expected>, peer_close: Option<Option<u16>>) -> Observed {
        Observed {
            messages,
            peer_close,
            peer_ended_tcp: true,
            close_before_final_write: true,
            ..Observed::default()
        }
    }

    #[test]
    fn the_catalogue_has_517_cases_with_unique_ids() {
        let cases = cases::catalogue();
        // 301 in sections 1-7, 9 and 10; 90 in section 12; 126 in section 13.
        assert_eq!(cases.len(), 517);
        let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 517);
    }

    #[test]
    fn verdicts_follow_the_rules() {
        let echo = find("1.1.2");
        let ok = observed(echo.expect.clone(), Some(Some(1000)));
        assert_eq!(judge(&echo, Mode::Server, ok, Duration::ZERO).verdict, Verdict::Ok);
        let missing = observed(vec![], Some(Some(1000)));
        assert_eq!(judge(&echo, Mode::Server, missing, Duration::ZERO).verdict, Verdict::Failed);
        let not_closed =
            Observed { peer_ended_tcp: false, ..observed(echo.expect.clone(), Some(Some(1000))) };
        assert_eq!(judge(&echo, Mode::Server, not_closed, Duration::ZERO).verdict, Verdict::Failed);

        // 3.2: text echoed, then fail with 1002. Without the echo: NON-STRICT. Wrong code: FAILED.
        let fail = find("3.2");
        let full = observed(fail.expect.clone(), Some(Some(1002)));
        assert_eq!(judge(&fail, Mode::Server, full, Duration::ZERO).verdict, Verdict::Ok);
        let early = observed(vec![], Some(Some(1002)));
        assert_eq!(judge(&fail, Mode::Server, early, Duration::ZERO).verdict, Verdict::NonStrict);
        let wrong = observed(fail.expect.clone(), Some(Some(1000)));
        assert_eq!(judge(&fail, Mode::Server, wrong, Duration::ZERO).verdict, Verdict::Failed);
        let dropped = observed(fail.expect.clone(), None);
        assert_eq!(judge(&fail, Mode::Server, dropped, Duration::ZERO).verdict, Verdict::NonStrict);
        // A reset is never a clean close, even after the right close frame.
        let reset = Observed {
            peer_ended_tcp: false,
            peer_reset: Some("connection reset by peer".into()),
            ..observed(fail.expect.clone(), Some(Some(1002)))
        };
        assert_eq!(judge(&fail, Mode::Server, reset, Duration::ZERO).verdict, Verdict::Failed);

        // 6.4.1: failing only after the last write is NON-STRICT.
        let fast = find("6.4.1");
        let late =
            Observed { close_before_final_write: false, ..observed(vec![], Some(Some(1007))) };
        assert_eq!(judge(&fast, Mode::Server, late, Duration::ZERO).verdict, Verdict::NonStrict);
        let timed_out = Observed { timed_out: true, ..observed(vec![], None) };
        assert_eq!(judge(&fast, Mode::Server, timed_out, Duration::ZERO).verdict, Verdict::Failed);
    }
}
