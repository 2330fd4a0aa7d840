//! Project automation, run as `cargo xtask <command>`.
//!
//! - `ci`: everything CI checks, in the order a person would want to see failures: formatting,
//!   lints, docs, the dependency rule for `ws-proto`, tests, and a build of the fuzz targets.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
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
         ci    fmt --check, clippy -D warnings, doc -D warnings, dependency rules, tests, fuzz build"
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

fn ci() -> Result<()> {
    run("format", cargo().args(["fmt", "--all", "--check"]))?;
    run("lint", cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run(
        "docs",
        cargo().args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    check_proto_dependencies()?;
    run("tests", cargo().args(["test", "--workspace"]))?;
    run(
        "fuzz targets build",
        cargo().args(["check", "--manifest-path", "fuzz/Cargo.toml", "--bins"]),
    )?;
    eprintln!("\nci: all steps passed");
    Ok(())
}

/// `ws-proto` is sans-IO: no runtime or I/O crate may appear among its normal dependencies.
fn check_proto_dependencies() -> Result<()> {
    eprintln!("\n==> dependency rule: ws-proto has no runtime or I/O dependencies");
    let output = cargo()
        .args(["tree", "-p", "ws-proto", "-e", "normal", "--prefix", "none"])
        .output()
        .context("running cargo tree")?;
    if !output.status.success() {
        bail!("cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let tree = String::from_utf8(output.stdout).context("cargo tree output is not utf-8")?;
    const FORBIDDEN: [&str; 6] = ["smol", "async-io", "tokio", "futures-io", "async-std", "mio"];
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| FORBIDDEN.contains(name))
        .collect();
    if !found.is_empty() {
        bail!("ws-proto depends on {found:?}");
    }
    eprintln!("ok: {} crates, none of {FORBIDDEN:?}", tree.lines().count());
    Ok(())
}
