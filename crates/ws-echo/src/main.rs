//! `ws-echo`: a WebSocket echo server. `ws-echo --help` lists the flags.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures_lite::StreamExt;
use smol::Executor;
use tracing::{info, warn};
use ws_echo::{Certificates, EchoApp, Engine, MetricsServer, Options, Server, Stats};

/// A WebSocket echo server (RFC 6455). Serves a demo page at http://ADDR/, a frame inspector
/// at /inspect, /healthz and Prometheus metrics at /metrics (https:// and wss:// with
/// --tls-cert and --tls-key).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<NonZeroUsize>,
    /// Largest message accepted, all fragments together, in bytes; larger ones are closed
    /// with 1009.
    #[arg(long, default_value_t = 64 << 20, value_parser = clap::value_parser!(u64).range(1..=(1 << 40)))]
    max_message_size: u64,
    /// Largest frame accepted, in bytes; larger ones are closed with 1009.
    #[arg(long, default_value_t = 16 << 20, value_parser = clap::value_parser!(u64).range(1..=(1 << 40)))]
    max_frame_size: u64,
    /// Bytes all connections may hold together (buffers, zlib state, echoes owed); at the
    /// limit new connections get HTTP 503, the others stop reading until it frees up, and
    /// those stuck holding at least their share for 10 s are closed with 1013.
    #[arg(long, default_value_t = 512 << 20, value_parser = clap::value_parser!(u64).range(1 << 20..=(1 << 48)))]
    max_memory: u64,
    /// Connections served at once; more get HTTP 503.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_connections: u64,
    /// Seconds a client has to complete the opening handshake.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    handshake_timeout: u64,
    /// Seconds to wait for the peer's close frame and TCP close after the close handshake
    /// starts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    close_timeout: u64,
    /// Send a keepalive ping after this many seconds of silence; a peer that does not answer
    /// within --pong-timeout is dropped (1011). 0 turns keepalive off.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=86400))]
    ping_interval: u64,
    /// Seconds a peer has to answer a keepalive ping.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pong_timeout: u64,
    /// Close connections (1001) that send nothing for this many seconds [default: off].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86400))]
    idle_timeout: Option<u64>,
    /// Do not negotiate permessage-deflate (RFC 7692), even when a client offers it.
    #[arg(long)]
    no_compression: bool,
    /// Keep each side's compression context from one message to the next (better ratio for
    /// small similar messages, about 350 KiB of zlib state per connection that has sent or
    /// received a message). Off by default: the state is freed between messages, so an idle
    /// connection costs a few KiB whether or not it compresses.
    #[arg(long)]
    context_takeover: bool,
    /// The largest LZ77 window the server compresses with, as a power of two (9 to 15).
    /// Smaller windows use less memory per connection and compress less.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u8).range(9..=15))]
    server_max_window_bits: u8,
    /// The largest LZ77 window the server asks clients to compress with, when they allow a
    /// limit (9 to 15).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u8).range(9..=15))]
    client_max_window_bits: u8,
    /// What runs the echo once a WebSocket is open: `epoll` (Linux: engine threads with
    /// edge-triggered epoll, fewer system calls per message) or `async` (each connection a
    /// task on the executor, through ws-transport's WebSocket).
    #[arg(long, value_enum, default_value_t = Engine::default())]
    engine: Engine,
    /// Serve TLS (wss:// and https://) with this certificate: a PEM file, the server's
    /// certificate first, then any intermediates. SIGHUP reads it and --tls-key again
    /// without dropping connections.
    #[arg(long, requires = "tls_key", value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert: a PEM file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert", value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// Upgrade only requests for this path (say `/ws`); WebSocket requests for any other
    /// path get 404. The demo page connects to it. [default: every path upgrades]
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    /// Serve Prometheus metrics (/metrics, OpenMetrics text) on this address instead of on
    /// --bind; docs/deploy.md lists them. [default: /metrics on --bind]
    #[arg(long, value_name = "ADDR")]
    metrics_bind: Option<SocketAddr>,
    /// Set SO_REUSEPORT on the listening socket, so that several ws-echo processes can
    /// listen on one port and the kernel spreads connections among them (Linux).
    #[arg(long)]
    reuse_port: bool,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive such as
    /// `ws_echo=debug`. At info, every connection logs one line as it ends (target
    /// `ws_server::access`: peer, duration, bytes, messages, close code, who closed);
    /// `ws_server::access=off` turns those off.
    #[arg(long, default_value = "info")]
    log: String,
    /// Log lines as text, or as one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `2026-12-01T20:00:00Z  INFO ws_server::access: closed with 1000 peer=... code=1000`
    Text,
    /// `{"timestamp":"...","level":"INFO","fields":{"message":"closed with 1000","code":1000,...},"target":"ws_server::access"}`
    Json,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("invalid --log filter {:?}", args.log))?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }

    // The echo's defaults, and the engine's settings under them.
    let mut echo = Options::default();
    let options = &mut echo.0;
    options.max_connections = args.max_connections as usize;
    options.max_memory = usize::try_from(args.max_memory).context("--max-memory")?;
    let transport = &mut options.transport;
    transport.protocol.max_message_size =
        usize::try_from(args.max_message_size).context("--max-message-size")?;
    transport.protocol.max_frame_size =
        usize::try_from(args.max_frame_size).context("--max-frame-size")?;
    transport.handshake_timeout = Duration::from_secs(args.handshake_timeout);
    transport.close_timeout = Duration::from_secs(args.close_timeout);
    transport.ping_interval =
        (args.ping_interval > 0).then(|| Duration::from_secs(args.ping_interval));
    transport.pong_timeout = Duration::from_secs(args.pong_timeout);
    transport.idle_timeout = args.idle_timeout.map(Duration::from_secs);
    // The server's compression defaults live in `Options::default`; flags adjust them.
    if args.no_compression {
        transport.compression = None;
    }
    if let Some(deflate) = transport.compression.as_mut() {
        deflate.server_max_window_bits = args.server_max_window_bits;
        deflate.client_max_window_bits = args.client_max_window_bits;
        if args.context_takeover {
            deflate.server_no_context_takeover = false;
            deflate.client_no_context_takeover = false;
        }
    }

    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    options.engine = args.engine;
    options.threads = threads;
    options.reuse_port = args.reuse_port;
    let mut app = match &args.path {
        Some(path) => {
            EchoApp::default().path(path).map_err(|why| anyhow::anyhow!("invalid --path {why}"))?
        }
        None => EchoApp::default(),
    };
    let stats = Arc::new(Stats::new());
    options.stats = Some(Arc::clone(&stats));
    let metrics = match args.metrics_bind {
        Some(addr) => Some(
            MetricsServer::bind(addr, stats)
                .with_context(|| format!("binding --metrics-bind {addr}"))?,
        ),
        None => {
            app = app.metrics(stats);
            None
        }
    };
    let certificates = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let certificates = Certificates::load(cert, key).context("reading the certificate")?;
            options.tls = Some(certificates.server_config()?);
            Some(certificates)
        }
        _ => None,
    };
    let server =
        Server::bind_app(args.bind, echo, app).with_context(|| format!("binding {}", args.bind))?;
    let addr = server.local_addr().context("reading the bound address")?;
    let (ws, http) = if certificates.is_some() { ("wss", "https") } else { ("ws", "http") };
    println!("listening on {ws}://{addr}");
    info!(threads, "demo page at {http}://{addr}/");
    let ex = Arc::new(Executor::new());
    match metrics {
        Some(metrics) => {
            let at = metrics.local_addr().context("reading the metrics address")?;
            println!("metrics on http://{at}/metrics");
            ex.spawn(metrics.run(Arc::clone(&ex))).detach();
        }
        None => info!("metrics at {http}://{addr}/metrics"),
    }

    use async_signal::Signal;
    let signals = async_signal::Signals::new([Signal::Term, Signal::Int, Signal::Hup])
        .context("installing signal handlers")?;
    let (stop_tx, stop_rx) = async_channel::bounded::<()>(1);
    let summary = std::thread::scope(|scope| {
        for i in 1..threads {
            let ex = Arc::clone(&ex);
            let stop = stop_rx.clone();
            std::thread::Builder::new()
                .name(format!("ws-echo-{i}"))
                .spawn_scoped(scope, move || smol::block_on(ex.run(stop.recv())))
                .expect("spawning a worker thread");
        }
        let shutdown = async move {
            let mut signals = signals;
            while let Some(Ok(signal)) = signals.next().await {
                if signal != Signal::Hup {
                    info!(?signal, "signal received");
                    break;
                }
                match &certificates {
                    Some(certificates) => match certificates.reload() {
                        Ok(()) => info!("SIGHUP: certificate read again"),
                        Err(err) => warn!("SIGHUP: keeping the certificate in use: {err:#}"),
                    },
                    None => info!("SIGHUP: no certificate to read (no --tls-cert)"),
                }
            }
        };
        let summary = smol::block_on(ex.run(server.run(Arc::clone(&ex), shutdown)));
        drop(stop_tx);
        summary
    });
    if summary.abandoned > 0 {
        warn!(abandoned = summary.abandoned, "connections still open at the drain deadline");
    }
    info!(accepted = summary.accepted, "stopped");
    Ok(())
}
