//! `cargo xtask bench`: ws-echo against echo servers on the crates users would pick instead,
//! measured side by side in one run.
//!
//! Method: each server is a fresh process pinned to CPU 0 (`taskset`), the load generator runs
//! here pinned to CPU 1; TCP_NODELAY everywhere; one message in flight per connection; a
//! warm-up, then a measured window; the servers interleaved inside each repeat with the order
//! rotated; medians and the min–max spread over the repeats. Server CPU time per message comes
//! from /proc (user + system over the window), the steadiest figure on a shared machine.
//! The generator's own CPU is measured too: where it is near 100 % its messages/s is its own
//! limit, and the table says so instead of giving a figure.
//!
//! Beside the main table: the `load_test` method with 1 and 16 messages in flight per
//! connection ([`load::Method::LoadTest`]), and a mixed load (paced small messages alone,
//! then beside connections streaming 16 MiB messages) for fairness.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ws_transport::rustls::ClientConfig;

use crate::load::{self, LoadOptions, LoadReport};

/// A server under test: how to start it.
#[derive(Debug, Clone)]
struct Server {
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
}

/// ws-echo's two engines from `binary`, under the names given.
fn ws_echo(binary: &Path, names: [&'static str; 2]) -> [Server; 2] {
    let args = |engine: &[&str]| -> Vec<String> {
        // One worker thread: the server has one CPU.
        let mut args: Vec<String> = ["--threads", "1", "--log", "error", "--bind", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        args.extend(engine.iter().map(|a| a.to_string()));
        args
    };
    [
        Server { name: names[0], binary: binary.to_owned(), args: args(&[]) },
        // The same binary with the portable engine: ws-transport's WebSocket on smol.
        Server { name: names[1], binary: binary.to_owned(), args: args(&["--engine", "async"]) },
    ]
}

/// ws-echo's engines from `binary`: epoll, the same threads on io_uring, and the portable
/// one.
fn ws_echo_all(binary: &Path) -> Vec<Server> {
    let mut servers: Vec<Server> = ws_echo(binary, ["ws-echo", "ws-echo (async)"]).into();
    let mut uring = servers[0].clone();
    uring.name = "ws-echo (io_uring)";
    uring.args.extend(["--engine".to_owned(), "uring".to_owned()]);
    servers.insert(1, uring);
    servers
}

/// The servers of a run: ws-echo as built, the peers, and (with `--baseline PATH`) another
/// build of ws-echo, to measure a change before and after in the same run.
fn servers(root: &Path, baseline: Option<&Path>) -> Vec<Server> {
    let peers = root.join("bench/peers/target/release");
    let binary = root.join("target/release/ws-echo");
    let mut servers = ws_echo_all(&binary);
    if let Some(binary) = baseline {
        servers.extend(ws_echo(binary, ["ws-echo (baseline)", "ws-echo (async, baseline)"]));
    }
    // The library on tokio: ws-transport's WebSocket as a Stream and Sink, plain and behind
    // axum's router and our extractor (examples/; one runtime thread each).
    let examples = root.join("target/release/examples");
    servers.extend([
        Server {
            name: "ws-transport (tokio)",
            binary: examples.join("tokio_echo"),
            args: vec!["127.0.0.1:0".into()],
        },
        Server {
            name: "ws-transport (axum)",
            binary: examples.join("axum_chat"),
            args: vec!["127.0.0.1:0".into()],
        },
    ]);
    servers.extend([
        Server {
            name: "fastwebsockets",
            binary: peers.join("fastwebsockets-echo"),
            args: vec!["127.0.0.1:0".into()],
        },
        Server {
            name: "tokio-tungstenite",
            binary: peers.join("tokio-tungstenite-echo"),
            args: vec!["127.0.0.1:0".into()],
        },
        Server {
            name: "async-tungstenite",
            binary: peers.join("async-tungstenite-echo"),
            args: vec!["127.0.0.1:0".into()],
        },
    ]);
    servers
}

/// Repeats of each cell in a full run.
const FULL_REPEATS: usize = 3;

/// The servers named in `list` (comma-separated, as the tables name them), in the run's
/// order, with fastwebsockets always among them: the tables' ratios are to it.
fn choose(servers: Vec<Server>, list: &str) -> Result<Vec<Server>> {
    let names: Vec<&str> = list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    for name in &names {
        if !servers.iter().any(|s| s.name == *name) {
            let known: Vec<&str> = servers.iter().map(|s| s.name).collect();
            bail!("--servers: no server {name:?} (known: {})", known.join(", "));
        }
    }
    Ok(servers
        .into_iter()
        .filter(|s| s.name == "fastwebsockets" || names.contains(&s.name))
        .collect())
}

/// A running server process, killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Running {
    fn start(server: &Server) -> Result<Self> {
        let mut child = Command::new("taskset")
            .args(["-c", "0"])
            .arg(&server.binary)
            .args(&server.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", server.name))?;
        let addr = crate::process::listening_addr(&mut child, server.name)?;
        Ok(Self { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far, from /proc/PID/status.
    fn peak_rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM")?;
        let kib: u64 = line.split_whitespace().nth(1).context("malformed VmHWM")?.parse()?;
        Ok(kib * 1024)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples by (connections, size, server).
type Samples = BTreeMap<(usize, usize, &'static str), Vec<Sample>>;

/// One measurement.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    msgs_per_sec: f64,
    mb_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_msg: f64,
    peak_rss: u64,
    /// The load generator's CPU, percent of one core.
    load_cpu: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

/// The plan of a run.
struct Plan {
    connections: Vec<usize>,
    sizes: Vec<usize>,
    repeats: usize,
    warmup: Duration,
    window: Duration,
    idle_connections: usize,
}

/// `cargo xtask bench [--quick]`: builds everything in release, then re-runs itself pinned to
/// CPU 1 as the load generator.
pub(crate) fn main(root: &Path, args: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = |args: &[&str]| -> Result<()> {
        let status = Command::new(&cargo).current_dir(root).args(args).status()?;
        if !status.success() {
            bail!("cargo {} failed", args.join(" "));
        }
        Ok(())
    };
    build(&["build", "--release", "-p", "ws-echo", "-p", "xtask"])?;
    build(&["build", "--release", "-p", "ws-examples", "--examples"])?;
    build(&["build", "--release", "--manifest-path", "bench/peers/Cargo.toml"])?;
    let status = Command::new("taskset")
        .args(["-c", "1"])
        .arg(root.join("target/release/xtask"))
        .arg("bench-run")
        .args(args)
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("bench-run failed ({status})");
    }
    Ok(())
}

/// The measurement itself, run pinned to CPU 1.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--tls") {
        if args.iter().any(|a| a == "--servers" || a == "--repeats") {
            bail!("--servers and --repeats apply to the plain run, not --tls");
        }
        return run_tls(root, quick);
    }
    let baseline = match args.iter().position(|a| a == "--baseline") {
        Some(i) => Some(PathBuf::from(args.get(i + 1).context("--baseline needs a path")?)),
        None => None,
    };
    let mut plan = if quick {
        Plan {
            connections: vec![1, 16, 256],
            sizes: vec![20, 16 << 10],
            repeats: 1,
            warmup: Duration::from_millis(500),
            window: Duration::from_millis(1500),
            idle_connections: 1000,
        }
    } else {
        Plan {
            connections: vec![1, 16, 256],
            sizes: vec![20, 1 << 10, 16 << 10, 1 << 20],
            repeats: FULL_REPEATS,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(3),
            idle_connections: 10_000,
        }
    };
    plan.repeats = crate::flag(args, "--repeats", Some(plan.repeats))?;
    if plan.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    let mut servers = servers(root, baseline.as_deref());
    let chosen = args.iter().any(|a| a == "--servers");
    if chosen {
        servers = choose(servers, &crate::flag::<String>(args, "--servers", None)?)?;
    }
    for server in &servers {
        if !server.binary.exists() {
            bail!("{} is not built ({})", server.name, server.binary.display());
        }
    }
    let samples = measure_cells(&plan, &servers, None)?;

    // One connection echoing 16 MiB messages.
    let mut large: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for repeat in 0..plan.repeats {
        for k in 0..servers.len() {
            let server = &servers[(k + repeat) % servers.len()];
            let running = Running::start(server)?;
            let options = LoadOptions {
                size: 16 << 20,
                warmup: plan.warmup,
                duration: plan.window.max(Duration::from_secs(2)),
                server_pid: Some(running.pid()),
                ..LoadOptions::new(running.addr)
            };
            let report = load::run(&options)
                .with_context(|| format!("{} with 16 MiB messages", server.name))?;
            let mbs = report.messages_per_sec() * (16 << 20) as f64 / 1e6;
            eprintln!(
                "repeat {} {:>17} 16 MiB single connection: {mbs:.0} MB/s",
                repeat + 1,
                server.name
            );
            large.entry(server.name).or_default().push(mbs);
        }
    }

    let extra = measure_extra(&plan, &servers)?;
    let idle = measure_idle(&plan, &servers, None)?;

    let mut markdown = render(&plan, quick, &servers, "fastwebsockets", &samples, &large, &idle);
    markdown.push_str(&render_extra(&servers, "fastwebsockets", &extra));
    let json = render_json(&plan, &samples, &large, &idle, &extra);
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results.json"), &json)?;
    std::fs::write(out.join("results.md"), &markdown)?;
    // Only a full run of every server, at the default repeats, is the published one.
    if !quick && baseline.is_none() && !chosen && plan.repeats == FULL_REPEATS {
        std::fs::write(root.join("docs/benchmarks.json"), &json)?;
    }
    println!("{markdown}");
    println!("written to {}", out.display());
    Ok(())
}

/// Samples by (connections, size, server): each cell of `plan` on each server, the servers
/// interleaved inside each repeat with the order rotated; over TLS with `tls`.
fn measure_cells(
    plan: &Plan,
    servers: &[Server],
    tls: Option<&Arc<ClientConfig>>,
) -> Result<Samples> {
    let mut samples = Samples::new();
    let cells: Vec<(usize, usize)> =
        plan.connections.iter().flat_map(|&c| plan.sizes.iter().map(move |&s| (c, s))).collect();
    for repeat in 0..plan.repeats {
        for (i, &(connections, size)) in cells.iter().enumerate() {
            let n = servers.len();
            for k in 0..n {
                let server = &servers[(k + i + repeat) % n];
                let running = Running::start(server)?;
                let options = LoadOptions {
                    connections,
                    size,
                    warmup: plan.warmup,
                    duration: plan.window,
                    server_pid: Some(running.pid()),
                    tls: tls.cloned(),
                    ..LoadOptions::new(running.addr)
                };
                let report = load::run(&options)
                    .with_context(|| format!("{} at {connections} x {size} B", server.name))?;
                let sample = Sample {
                    msgs_per_sec: report.messages_per_sec(),
                    mb_per_sec: report.messages_per_sec() * size as f64 / 1e6,
                    p50_us: report.p50_us,
                    p99_us: report.p99_us,
                    cpu_us_per_msg: report.server_cpu_us_per_msg.unwrap_or(f64::NAN),
                    peak_rss: running.peak_rss()?,
                    load_cpu: report.load_cpu_percent,
                };
                eprintln!(
                    "repeat {} {:>17} {connections:>3} x {size:>8} B: {:>9.0} msg/s {:>8.1} MB/s cpu {:>7.2} us/msg p50 {:>7.0} us p99 {:>7.0} us load cpu {:>3.0}%",
                    repeat + 1,
                    server.name,
                    sample.msgs_per_sec,
                    sample.mb_per_sec,
                    sample.cpu_us_per_msg,
                    sample.p50_us,
                    sample.p99_us,
                    sample.load_cpu
                );
                samples.entry((connections, size, server.name)).or_default().push(sample);
            }
        }
    }

    Ok(samples)
}

/// The cells beside the main table (see [`EXTRA`]), all by the `load_test` method.
#[derive(Debug, Clone, Copy)]
struct Extra {
    name: &'static str,
    connections: usize,
    inflight: usize,
    /// Connections streaming 16 MiB messages beside the small ones.
    large: usize,
    /// Small messages paced at one per this many microseconds per connection.
    interval_us: Option<u64>,
}

/// The pipelined cells (the `load_test` method, 20 B) and the mixed load: 32 connections
/// each sending 20 B every millisecond, alone and beside 2 connections streaming 16 MiB.
const EXTRA: [Extra; 6] = [
    Extra::load_test("load_test 16 x 20 B", 16, 1),
    Extra::load_test("load_test 16 x 20 B, 16 in flight", 16, 16),
    Extra::load_test("load_test 256 x 20 B", 256, 1),
    Extra::load_test("load_test 256 x 20 B, 16 in flight", 256, 16),
    Extra::paced("paced 32 x 20 B alone", 0),
    Extra::paced("paced 32 x 20 B beside 2 x 16 MiB", 2),
];

impl Extra {
    const fn load_test(name: &'static str, connections: usize, inflight: usize) -> Self {
        Self { name, connections, inflight, large: 0, interval_us: None }
    }

    const fn paced(name: &'static str, large: usize) -> Self {
        Self { name, connections: 32, inflight: 1, large, interval_us: Some(1000) }
    }
}

/// Reports by (cell of [`EXTRA`], server).
type ExtraSamples = BTreeMap<(usize, &'static str), Vec<LoadReport>>;

/// Each cell of [`EXTRA`] on each server, interleaved and rotated as the main cells are.
fn measure_extra(plan: &Plan, servers: &[Server]) -> Result<ExtraSamples> {
    let mut samples = ExtraSamples::new();
    for repeat in 0..plan.repeats {
        for (i, cell) in EXTRA.iter().enumerate() {
            let n = servers.len();
            for k in 0..n {
                let server = &servers[(k + i + repeat) % n];
                let running = Running::start(server)?;
                let options = LoadOptions {
                    connections: cell.connections,
                    warmup: plan.warmup,
                    duration: plan.window,
                    server_pid: Some(running.pid()),
                    inflight: cell.inflight,
                    method: load::Method::LoadTest,
                    large: cell.large,
                    interval: cell.interval_us.map(Duration::from_micros),
                    ..LoadOptions::new(running.addr)
                };
                let report = load::run(&options)
                    .with_context(|| format!("{}: {}", server.name, cell.name))?;
                eprintln!(
                    "repeat {} {:>17} {}: {:.0} msg/s, cpu {:.2} us/msg, p50 {:.0} us, p99 {:.0} us, load cpu {:.0}%",
                    repeat + 1,
                    server.name,
                    cell.name,
                    report.messages_per_sec(),
                    report.server_cpu_us_per_msg.unwrap_or(f64::NAN),
                    report.p50_us,
                    report.p99_us,
                    report.load_cpu_percent
                );
                samples.entry((i, server.name)).or_default().push(report);
            }
        }
    }
    Ok(samples)
}

/// The pipelined cells as a table beside `base`, then the mixed load.
fn render_extra(servers: &[Server], base: &str, samples: &ExtraSamples) -> String {
    let med = |i: usize, server: &str, f: fn(&LoadReport) -> f64| {
        samples.get(&(i, server)).map(|r| median(r.iter().map(f).collect()))
    };
    let rate = |r: &LoadReport| r.messages_per_sec();
    let cpu = |r: &LoadReport| r.server_cpu_us_per_msg.unwrap_or(f64::NAN);
    let load_cpu = |r: &LoadReport| r.load_cpu_percent;
    let mut out = format!(
        "\nThe `load_test` method (one prebuilt message per connection, resent when its echo \
         is back, not compared). msg/s is given only where the generator stayed below \
         {:.0}% CPU.\n\n| cell | server | msg/s | server CPU µs/msg | load CPU | msg/s vs {base} | CPU vs {base} |\n|---|---|---|---|---|---|---|\n",
        load::LOAD_BOUND_PERCENT
    );
    for (i, cell) in EXTRA.iter().enumerate().filter(|(_, c)| c.interval_us.is_none()) {
        for server in servers {
            let (Some(r), Some(c), Some(l)) = (
                med(i, server.name, rate),
                med(i, server.name, cpu),
                med(i, server.name, load_cpu),
            ) else {
                continue;
            };
            let bound = l >= load::LOAD_BOUND_PERCENT;
            let base_rate = med(i, base, rate).filter(|_| !bound);
            let base_bound = med(i, base, load_cpu).is_some_and(|l| l >= load::LOAD_BOUND_PERCENT);
            let ratio =
                |a: f64, b: Option<f64>| b.map_or("–".into(), |b| format!("{:.2}×", a / b));
            out.push_str(&format!(
                "| {} | {} | {} | {c:.2} | {l:.0}% | {} | {} |\n",
                cell.name,
                server.name,
                if bound { "load-bound".into() } else { format!("{r:.0}") },
                if base_bound { "–".into() } else { ratio(r, base_rate) },
                ratio(c, med(i, base, cpu)),
            ));
        }
    }
    let paced =
        |large: bool| EXTRA.iter().position(|c| c.interval_us.is_some() && (c.large > 0) == large);
    let (Some(alone), Some(beside)) = (paced(false), paced(true)) else { return out };
    out.push_str(
        "\nFairness: 32 connections each sending 20 B every millisecond, alone and beside 2 \
         connections streaming 16 MiB messages (the small messages' round trips).\n\n\
         | server | alone p50 µs | alone p99 µs | beside p50 µs | beside p99 µs | 16 MiB echoed meanwhile, MB/s | load CPU |\n|---|---|---|---|---|---|---|\n",
    );
    for server in servers {
        let (Some(a50), Some(a99), Some(b50), Some(b99), Some(large), Some(l)) = (
            med(alone, server.name, |r| r.p50_us),
            med(alone, server.name, |r| r.p99_us),
            med(beside, server.name, |r| r.p50_us),
            med(beside, server.name, |r| r.p99_us),
            med(beside, server.name, |r| {
                r.large_messages as f64 * load::LARGE_SIZE as f64 / 1e6 / r.seconds
            }),
            med(beside, server.name, load_cpu),
        ) else {
            continue;
        };
        out.push_str(&format!(
            "| {} | {a50:.0} | {a99:.0} | {b50:.0} | {b99:.0} | {large:.0} | {l:.0}% |\n",
            server.name
        ));
    }
    out
}

/// Memory per idle connection on each server (every connection checked to echo after).
fn measure_idle(
    plan: &Plan,
    servers: &[Server],
    tls: Option<&Arc<ClientConfig>>,
) -> Result<BTreeMap<&'static str, f64>> {
    let mut idle: BTreeMap<&'static str, f64> = BTreeMap::new();
    for server in servers {
        let running = Running::start(server)?;
        let (_, _, per_conn) =
            load::idle(running.addr, plan.idle_connections, running.pid(), false, tls)
                .with_context(|| {
                    format!("{} with {} idle connections", server.name, plan.idle_connections)
                })?;
        eprintln!(
            "{:>17} {} idle connections: {per_conn:.0} bytes each, all still echo",
            server.name, plan.idle_connections
        );
        idle.insert(server.name, per_conn);
    }

    Ok(idle)
}

/// ws-echo's engines and fastwebsockets on tokio-rustls, all with the certificate
/// `issued` and ring as the crypto provider.
fn tls_servers(root: &Path, issued: &ws_tests::tls::Issued) -> Vec<Server> {
    let (cert, key) = (issued.cert.display().to_string(), issued.key.display().to_string());
    let binary = root.join("target/release/ws-echo");
    let mut servers = ws_echo_all(&binary);
    for server in &mut servers {
        server.args.extend(["--tls-cert".into(), cert.clone(), "--tls-key".into(), key.clone()]);
    }
    servers.push(Server {
        name: "fastwebsockets + tokio-rustls",
        binary: root.join("bench/peers/target/release/fastwebsockets-tls-echo"),
        args: vec!["127.0.0.1:0".into(), cert, key],
    });
    servers
}

/// `cargo xtask bench --tls [--quick]`: CPU per message at 16 and 256 connections (20 B and
/// 16 KiB), full TLS handshakes per second (no resumption) and memory per idle TLS
/// connection, for ws-echo against fastwebsockets on tokio-rustls, in one run.
fn run_tls(root: &Path, quick: bool) -> Result<()> {
    let pki = ws_tests::tls::TestPki::new()?;
    let issued = pki.localhost()?;
    let mut client = (*pki.client_config()?).clone();
    // Every handshake in full: the cost a server pays for a new client.
    client.resumption = ws_transport::rustls::client::Resumption::disabled();
    let client = Arc::new(client);
    let plan = Plan {
        connections: vec![16, 256],
        sizes: vec![20, 16 << 10],
        repeats: if quick { 1 } else { 3 },
        warmup: Duration::from_millis(if quick { 500 } else { 1000 }),
        window: Duration::from_millis(if quick { 1500 } else { 3000 }),
        idle_connections: if quick { 1000 } else { 10_000 },
    };
    let servers = tls_servers(root, &issued);
    for server in &servers {
        if !server.binary.exists() {
            bail!("{} is not built ({})", server.name, server.binary.display());
        }
    }
    let samples = measure_cells(&plan, &servers, Some(&client))?;
    // Handshakes: 8 clients connecting again and again.
    let mut handshakes: BTreeMap<&'static str, Vec<(f64, f64)>> = BTreeMap::new();
    for repeat in 0..plan.repeats {
        for k in 0..servers.len() {
            let server = &servers[(k + repeat) % servers.len()];
            let running = Running::start(server)?;
            let (rate, cpu) = load::handshakes(
                running.addr,
                Some(&client),
                8,
                plan.warmup,
                plan.window,
                Some(running.pid()),
            )
            .with_context(|| format!("{}: handshakes", server.name))?;
            let cpu = cpu.unwrap_or(f64::NAN);
            eprintln!(
                "repeat {} {:>28} TLS handshakes: {rate:.0}/s, server cpu {cpu:.0} us each",
                repeat + 1,
                server.name
            );
            handshakes.entry(server.name).or_default().push((rate, cpu));
        }
    }
    let idle = measure_idle(&plan, &servers, Some(&client))?;
    let base = "fastwebsockets + tokio-rustls";
    let mut markdown =
        render(&plan, quick, &servers, base, &samples, &BTreeMap::new(), &BTreeMap::new());
    markdown.push_str(&format!(
        "\n| server | full TLS handshakes/s (8 clients) | server CPU µs per handshake | idle memory per TLS connection | idle vs {base} |\n|---|---|---|---|---|\n"
    ));
    let base_idle = idle.get(base).copied();
    for server in &servers {
        let h = handshakes.get(server.name).cloned().unwrap_or_default();
        let rate = median(h.iter().map(|x| x.0).collect());
        let cpu = median(h.iter().map(|x| x.1).collect());
        let per_conn = idle.get(server.name).copied().unwrap_or(f64::NAN);
        let ratio = base_idle.map_or("–".into(), |b| format!("{:.2}×", per_conn / b));
        markdown.push_str(&format!(
            "| {} | {rate:.0} | {cpu:.0} | {per_conn:.0} bytes ({} connections) | {ratio} |\n",
            server.name, plan.idle_connections
        ));
    }
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results-tls.md"), &markdown)?;
    println!("{markdown}");
    println!("written to {}", out.join("results-tls.md").display());
    Ok(())
}

fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn render(
    plan: &Plan,
    quick: bool,
    servers: &[Server],
    base: &str,
    samples: &Samples,
    large: &BTreeMap<&'static str, Vec<f64>>,
    idle: &BTreeMap<&'static str, f64>,
) -> String {
    let mut out = format!(
        "{} run: {} repeat(s), warm-up {:.1} s, window {:.1} s. Medians; [min–max] over repeats.\n\n",
        if quick { "Quick" } else { "Full" },
        plan.repeats,
        plan.warmup.as_secs_f64(),
        plan.window.as_secs_f64()
    );
    out.push_str(&format!(
        "msg/s and MB/s are given only where the load generator stayed below {:.0}% CPU \
         (\"load-bound\" where it did not: the rate was its own).\n\n",
        load::LOAD_BOUND_PERCENT
    ));
    out.push_str(&format!("| conns | size | server | msg/s | MB/s | p50 µs | p99 µs | server CPU µs/msg | peak RSS MiB | load CPU | CPU vs {base} | msg/s vs {base} |\n"));
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for &connections in &plan.connections {
        for &size in &plan.sizes {
            let base = samples.get(&(connections, size, base));
            let base_cpu = base.map(|s| median(s.iter().map(|x| x.cpu_us_per_msg).collect()));
            let bound = |s: &[Sample]| {
                median(s.iter().map(|x| x.load_cpu).collect()) >= load::LOAD_BOUND_PERCENT
            };
            let base_rate = base
                .filter(|s| !bound(s))
                .map(|s| median(s.iter().map(|x| x.msgs_per_sec).collect()));
            for server in servers {
                let Some(s) = samples.get(&(connections, size, server.name)) else { continue };
                let rates: Vec<f64> = s.iter().map(|x| x.msgs_per_sec).collect();
                let (lo, hi) = spread(&rates);
                let rate = median(rates);
                let cpu = median(s.iter().map(|x| x.cpu_us_per_msg).collect());
                let rss = s.iter().map(|x| x.peak_rss).max().unwrap_or(0) as f64 / 1048576.0;
                let load_cpu = median(s.iter().map(|x| x.load_cpu).collect());
                let ratio =
                    |a: f64, b: Option<f64>| b.map_or("–".into(), |b| format!("{:.2}×", a / b));
                let (rate_cell, mb_cell, rate_ratio) = if bound(s) {
                    ("load-bound".to_string(), "–".to_string(), "–".to_string())
                } else {
                    (
                        format!("{rate:.0} [{lo:.0}–{hi:.0}]"),
                        format!("{:.1}", median(s.iter().map(|x| x.mb_per_sec).collect())),
                        ratio(rate, base_rate),
                    )
                };
                out.push_str(&format!(
                    "| {connections} | {} | {} | {rate_cell} | {mb_cell} | {:.0} | {:.0} | {cpu:.2} | {rss:.1} | {load_cpu:.0}% | {} | {rate_ratio} |\n",
                    size_name(size),
                    server.name,
                    median(s.iter().map(|x| x.p50_us).collect()),
                    median(s.iter().map(|x| x.p99_us).collect()),
                    ratio(cpu, base_cpu),
                ));
            }
        }
    }
    if large.is_empty() && idle.is_empty() {
        return out;
    }
    out.push_str(
        "\n| server | 16 MiB, one connection, MB/s | idle memory per connection |\n|---|---|---|\n",
    );
    for server in servers {
        let mbs = large.get(server.name).map(|v| {
            let (lo, hi) = spread(v);
            format!("{:.0} [{lo:.0}–{hi:.0}]", median(v.clone()))
        });
        let per_conn = idle
            .get(server.name)
            .map(|b| format!("{:.0} bytes ({} connections)", b, plan.idle_connections));
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            server.name,
            mbs.unwrap_or_default(),
            per_conn.unwrap_or_default()
        ));
    }
    out
}

fn render_json(
    plan: &Plan,
    samples: &Samples,
    large: &BTreeMap<&'static str, Vec<f64>>,
    idle: &BTreeMap<&'static str, f64>,
    extra: &ExtraSamples,
) -> String {
    let mut cells = Vec::new();
    for ((connections, size, server), s) in samples {
        let list = |f: fn(&Sample) -> f64| {
            s.iter().map(f).map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ")
        };
        cells.push(format!(
            "    {{\"server\": \"{server}\", \"connections\": {connections}, \"size\": {size}, \"msgs_per_sec\": [{}], \"mb_per_sec\": [{}], \
             \"p50_us\": [{}], \"p99_us\": [{}], \"server_cpu_us_per_msg\": [{}], \"peak_rss_bytes\": [{}], \"load_cpu_percent\": [{}]}}",
            list(|x| x.msgs_per_sec),
            list(|x| x.mb_per_sec),
            list(|x| x.p50_us),
            list(|x| x.p99_us),
            list(|x| x.cpu_us_per_msg),
            s.iter().map(|x| x.peak_rss.to_string()).collect::<Vec<_>>().join(", "),
            list(|x| x.load_cpu),
        ));
    }
    let mut extras = Vec::new();
    for ((i, server), reports) in extra {
        let list = |f: fn(&LoadReport) -> f64| {
            reports.iter().map(f).map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ")
        };
        extras.push(format!(
            "    {{\"cell\": \"{}\", \"server\": \"{server}\", \"msgs_per_sec\": [{}], \"p50_us\": [{}], \"p99_us\": [{}], \
             \"server_cpu_us_per_msg\": [{}], \"load_cpu_percent\": [{}], \"large_messages\": [{}]}}",
            EXTRA[*i].name,
            list(|r| r.messages_per_sec()),
            list(|r| r.p50_us),
            list(|r| r.p99_us),
            list(|r| r.server_cpu_us_per_msg.unwrap_or(f64::NAN)),
            list(|r| r.load_cpu_percent),
            list(|r| r.large_messages as f64),
        ));
    }
    let large: Vec<String> = large
        .iter()
        .map(|(k, v)| {
            format!(
                "\"{k}\": [{}]",
                v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    let idle: Vec<String> = idle.iter().map(|(k, v)| format!("\"{k}\": {v:.0}")).collect();
    format!(
        "{{\n  \"repeats\": {},\n  \"warmup_s\": {},\n  \"window_s\": {},\n  \"cells\": [\n{}\n  ],\n  \"extra\": [\n{}\n  ],\n  \"single_16mib_mb_per_sec\": {{{}}},\n  \"idle_bytes_per_connection\": {{{}}},\n  \"idle_connections\": {}\n}}\n",
        plan.repeats,
        plan.warmup.as_secs_f64(),
        plan.window.as_secs_f64(),
        cells.join(",\n"),
        extras.join(",\n"),
        large.join(", "),
        idle.join(", "),
        plan.idle_connections
    )
}
