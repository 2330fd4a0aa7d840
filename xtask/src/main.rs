//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks, in the order a person would want to see failures: formatting,
//!   lints, docs, the dependency rule for `ws-proto`, tests, conformance (every server path
//!   and the client, whole, split and on tokio; both engines and the client again over TLS), a
//!   60-second soak, and every fuzz target for 45 seconds.
//! - `soak`: ws-echo under a realistic mix of clients for a set time, every byte checked.
//! - `fuzz`: every fuzz target for a bounded time, from the corpus kept in `fuzz/corpus`.
//! - `conformance`: the Autobahn-style case catalogue against one of our servers
//!   (`--server`, or any with `--url`), or with `--client [--split] [--tokio]` against our
//!   client;
//!   `--tls` runs it over TLS.
//! - `bench`: ws-echo against echo servers on peer crates (`bench/peers`), side by side.
//! - `load`: a one-thread load generator against a running echo server.
//! - `idle`: opens many idle connections and reports the server's memory per connection.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod bench;
mod conformance;
mod fuzz;
mod load;
mod process;
mod soak;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("conformance-all") => conformance_runs(CI_CONFORMANCE),
        Some("conformance") => conformance::main(&args[1..]),
        Some("bench") => bench::main(&root(), &args[1..]),
        Some("soak") => soak::main(&root(), &args[1..]),
        Some("fuzz") => {
            flag(&args[1..], "--seconds", Some(60)).and_then(|s| fuzz::run_all(&root(), s))
        }
        Some("bench-run") => bench::run(&root(), &args[1..]),
        Some("load") => load_command(&args[1..]),
        Some("idle") => idle_command(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print_help();
            Ok(())
        }
        Some(other) => {
            print_help();
            Err(anyhow::anyhow!("unknown command {other:?}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    eprintln!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
         ci    fmt --check, clippy -D warnings, doc -D warnings, dependency rules, tests, conformance, fuzzing\n  \
         conformance-all   every conformance run ci makes, two at a time\n  \
         conformance [--client [--split] [--tokio]] [--server ws-echo|ws-echo-async|ws-echo-uring|ws-transport|ws-transport-tokio|ws-transport-axum] [--tls] [--url ws://HOST:PORT/] [--cases PREFIX] [--bless]\n  \
         bench [--quick] [--baseline WS_ECHO_BINARY] [--servers NAME,NAME] [--repeats N]   ws-echo against fastwebsockets, tokio-tungstenite, async-tungstenite (and another ws-echo build); --servers runs only those named (and fastwebsockets)\n  \
         soak  [--minutes M | --seconds S] [--connections N] [--engine E]   ws-echo under a realistic mix (default 10 minutes, 10,000 connections)\n  \
         fuzz  [--seconds S]   runs every fuzz target for S seconds (default 60), from the corpus in fuzz/corpus\n  \
         load  --addr HOST:PORT [--connections N] [--size BYTES] [--seconds S] [--warmup S] [--server-pid PID] [--deflate] [--tls CA.pem] [--inflight K] [--method verify|load-test] [--large N] [--large-size BYTES] [--interval-us US]\n  \
         idle  --addr HOST:PORT --server-pid PID [--connections N]"
    );
}

/// The workspace root (the parent of this crate's directory).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// Runs a command, echoing it, and fails if it fails.
fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\n==> {step}: {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {step}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

/// The conformance runs of `ci` (and `cargo xtask conformance-all`): every server path,
/// the client whole, split and on tokio, then over TLS; as (what, `xtask conformance` flags).
const CI_CONFORMANCE: &[(&str, &[&str])] = &[
    ("ws-echo (epoll engine)", &[]),
    ("ws-echo (portable engine)", &["--server", "ws-echo-async"]),
    ("ws-echo (io_uring engine)", &["--server", "ws-echo-uring"]),
    ("ws-transport recv/send server", &["--server", "ws-transport"]),
    ("ws-transport on tokio (Stream + Sink)", &["--server", "ws-transport-tokio"]),
    ("ws-transport's axum extractor", &["--server", "ws-transport-axum"]),
    ("client mode", &["--client"]),
    ("client mode (split halves)", &["--client", "--split"]),
    ("client mode on tokio (StreamExt::next, SinkExt::send)", &["--client", "--tokio"]),
    ("client mode on tokio (forward over the halves)", &["--client", "--tokio", "--split"]),
    ("over TLS, ws-echo (epoll engine)", &["--tls"]),
    ("over TLS, ws-echo (portable engine)", &["--server", "ws-echo-async", "--tls"]),
    ("over TLS, ws-echo (io_uring engine)", &["--server", "ws-echo-uring", "--tls"]),
    ("over TLS, client mode", &["--client", "--tls"]),
];

/// Conformance runs at once in `ci`. A run mostly waits (on its cases' pauses and deadlines):
/// two share the machine's two cores and take about the time of one and a half.
const CONFORMANCE_AT_ONCE: usize = 2;

/// Runs `cargo xtask conformance ARGS` for each `(name, ARGS)`, [`CONFORMANCE_AT_ONCE`] at a
/// time, each one's output kept in `target/conformance/ci-N.log` and shown when it ends
/// (whole if it failed, else its summary); fails after all have run if any failed.
fn conformance_runs(runs: &[(&str, &[&str])]) -> Result<()> {
    let logs = root().join("target/conformance");
    std::fs::create_dir_all(&logs)?;
    eprintln!("\n==> conformance: {} runs, {CONFORMANCE_AT_ONCE} at a time", runs.len());
    let mut failed = Vec::new();
    for (batch, chunk) in runs.chunks(CONFORMANCE_AT_ONCE).enumerate() {
        let mut running = Vec::new();
        for (i, (name, args)) in chunk.iter().enumerate() {
            let log = logs.join(format!("ci-{}.log", batch * CONFORMANCE_AT_ONCE + i + 1));
            let out = std::fs::File::create(&log)?;
            let child = cargo()
                .args(["xtask", "conformance"])
                .args(*args)
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("starting conformance, {name}"))?;
            running.push((name, args, log, child));
        }
        for (name, args, log, mut child) in running {
            let status = child.wait()?;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprintln!("\n==> conformance, {name} (xtask conformance {}):", args.join(" "));
            if status.success() {
                // The summary line ("Conformance, server mode: 517 cases in 46.3 s") and the
                // verdict count.
                let lines: Vec<&str> = text.lines().collect();
                let summary = lines.iter().filter(|line| line.starts_with("Conformance,"));
                for line in summary.chain(lines.last()) {
                    eprintln!("{line}");
                }
            } else {
                eprintln!("{text}");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        bail!("conformance failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Seconds `ci` fuzzes each target for.
const CI_FUZZ_SECONDS: u64 = 45;

fn ci() -> Result<()> {
    run("format", cargo().args(["fmt", "--all", "--check"]))?;
    run("lint", cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run(
        "docs",
        cargo().args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    check_dependency_rules()?;
    run(
        "ws-proto without default features",
        cargo().args(["check", "-p", "ws-proto", "--no-default-features"]),
    )?;
    run(
        "ws-transport for tokio alone",
        cargo().args([
            "check",
            "-p",
            "ws-transport",
            "--no-default-features",
            "--features",
            "tokio,axum,deflate",
        ]),
    )?;
    run("tests", cargo().args(["test", "--workspace"]))?;
    conformance_runs(CI_CONFORMANCE)?;
    run(
        "fuzz targets build",
        cargo().args(["check", "--manifest-path", "fuzz/Cargo.toml", "--bins"]),
    )?;
    run("soak, 60 s", cargo().args(["xtask", "soak", "--seconds", "60"]))?;
    fuzz::run_all(&root(), CI_FUZZ_SECONDS)?;
    eprintln!("\nci: all steps passed");
    Ok(())
}

/// `ws-proto` is sans-IO: no runtime or I/O crate may appear among its normal dependencies.
/// And `ws-transport` built for tokio alone (`--no-default-features --features
/// tokio,axum,deflate`) compiles no second runtime.
fn check_dependency_rules() -> Result<()> {
    check_dependencies(
        "ws-proto has no runtime or I/O dependencies",
        &["-p", "ws-proto"],
        &["smol", "async-io", "tokio", "futures-io", "async-std", "mio"],
    )?;
    check_dependencies(
        "ws-transport for tokio compiles no smol",
        &["-p", "ws-transport", "--no-default-features", "--features", "tokio,axum,deflate"],
        &["smol", "async-io", "async-net", "async-executor", "blocking", "polling"],
    )
}

/// Fails if any of `forbidden` is among the normal dependencies `cargo tree ARGS` lists.
fn check_dependencies(rule: &str, args: &[&str], forbidden: &[&str]) -> Result<()> {
    eprintln!("\n==> dependency rule: {rule}");
    let output = cargo()
        .arg("tree")
        .args(args)
        .args(["-e", "normal", "--prefix", "none"])
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!("cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let tree = String::from_utf8(output.stdout).context("cargo tree output is not utf-8")?;
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| forbidden.contains(name))
        .collect();
    if !found.is_empty() {
        bail!("{rule}: it depends on {found:?}");
    }
    eprintln!("ok: {} crates, none of {forbidden:?}", tree.lines().count());
    Ok(())
}

/// Parses `--name value` pairs.
fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: Option<T>) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match args.iter().position(|a| a == name) {
        Some(i) => {
            let value = args.get(i + 1).with_context(|| format!("{name} needs a value"))?;
            value.parse().map_err(|e| anyhow::anyhow!("{name} {value:?}: {e}"))
        }
        None => default.with_context(|| format!("{name} is required")),
    }
}

/// `--tls CA.pem`: TLS to a server whose certificate for `localhost` that CA signed.
fn tls_flag(args: &[String]) -> Result<Option<std::sync::Arc<ws_transport::rustls::ClientConfig>>> {
    use ws_transport::rustls::pki_types::{CertificateDer, pem::PemObject};
    let Some(i) = args.iter().position(|a| a == "--tls") else { return Ok(None) };
    let path = args.get(i + 1).context("--tls needs a CA file")?;
    let mut roots = ws_transport::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).with_context(|| format!("reading {path}"))? {
        roots.add(cert?)?;
    }
    Ok(Some(ws_transport::client_config(roots)?))
}

fn load_command(args: &[String]) -> Result<()> {
    let defaults = load::LoadOptions::new(flag(args, "--addr", None)?);
    let options = load::LoadOptions {
        connections: flag(args, "--connections", Some(1))?,
        size: flag(args, "--size", Some(20))?,
        warmup: std::time::Duration::from_secs_f64(flag(args, "--warmup", Some(1.0))?),
        duration: std::time::Duration::from_secs_f64(flag(args, "--seconds", Some(5.0))?),
        server_pid: args
            .iter()
            .any(|a| a == "--server-pid")
            .then(|| flag(args, "--server-pid", None))
            .transpose()?,
        deflate: args.iter().any(|a| a == "--deflate"),
        tls: tls_flag(args)?,
        inflight: flag(args, "--inflight", Some(1))?,
        method: flag(args, "--method", Some(load::Method::Verify))?,
        large: flag(args, "--large", Some(0))?,
        large_size: flag(args, "--large-size", Some(defaults.large_size))?,
        interval: args
            .iter()
            .any(|a| a == "--interval-us")
            .then(|| flag(args, "--interval-us", None).map(std::time::Duration::from_micros))
            .transpose()?,
        ..defaults
    };
    if options.inflight == 0 {
        bail!("--inflight must be at least 1");
    }
    let report = load::run(&options)?;
    print!(
        "connections {} size {} B inflight {}: p50 {:.0} us, p99 {:.0} us",
        options.connections, options.size, options.inflight, report.p50_us, report.p99_us
    );
    // Beside large messages the server's CPU is mostly theirs: per small message it means
    // nothing.
    if let Some(cpu) = report.server_cpu_us_per_msg.filter(|_| options.large == 0) {
        print!(", server cpu {cpu:.2} us/msg");
    }
    print!(", load cpu {:.0}%", report.load_cpu_percent);
    if report.load_bound() {
        // The generator was the limit: its rate is not a figure of the server's.
        print!(", msg/s not reported: the load generator was the bottleneck");
    } else {
        let mb = report.messages_per_sec() * options.size as f64 / 1e6;
        print!(", {:.0} msg/s, {mb:.1} MB/s", report.messages_per_sec());
    }
    println!(" ({} messages in {:.1} s)", report.messages, report.seconds);
    if options.large > 0 {
        println!(
            "  beside them {} connections x {} B: {} messages, p99 {:.0} us",
            options.large, options.large_size, report.large_messages, report.large_p99_us
        );
    }
    Ok(())
}

fn idle_command(args: &[String]) -> Result<()> {
    let addr = flag(args, "--addr", None)?;
    let pid = flag(args, "--server-pid", None)?;
    let count = flag(args, "--connections", Some(10_000))?;
    let (before, after, per_conn) =
        load::idle(addr, count, pid, args.iter().any(|a| a == "--deflate"), None)?;
    println!(
        "{count} idle connections: server RSS {:.1} MiB -> {:.1} MiB, {:.0} bytes per connection; all {count} still echo",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_conn
    );
    Ok(())
}
