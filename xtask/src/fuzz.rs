//! `cargo xtask fuzz`: every fuzz target in `fuzz/` for a bounded time, and what each did.
//!
//! Each target starts from the corpus kept in the repository (`fuzz/corpus/<target>`, read
//! only here) and writes what it finds to `target/fuzz-corpus/<target>`; `cargo fuzz cmin`
//! folds that back into the kept corpus when someone wants to (see fuzz/README.md). A crash
//! fails the run, with the input left in `fuzz/artifacts/<target>`. cargo-fuzz needs nightly
//! features: `RUSTC_BOOTSTRAP=1` enables them on the stable toolchain.

use anyhow::{Context, Result, bail};
use std::path::Path;

/// The targets, as `fuzz/Cargo.toml` names them.
const TARGETS: [&str; 5] = ["connection", "handshake", "session", "deflate_echo", "tls_server"];

/// Runs every target for `seconds` and prints the executions each made.
pub(crate) fn run_all(root: &Path, seconds: u64) -> Result<()> {
    let mut report = Vec::new();
    for target in TARGETS {
        let found = root.join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&found)?;
        let kept = root.join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&kept)?;
        eprintln!("\n==> fuzz {target} for {seconds} s");
        let output = crate::cargo()
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(&found)
            .arg(&kept)
            .args(["--", &format!("-max_total_time={seconds}"), "-print_final_stats=1"])
            .output()
            .context("running cargo fuzz (install it with `cargo install cargo-fuzz`)")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("fuzz target {target} failed ({}):\n{}", output.status, tail.join("\n"));
        }
        let runs = stat(&stderr, "stat::number_of_executed_units:").unwrap_or(0);
        let corpus = std::fs::read_dir(&found)?.count() + std::fs::read_dir(&kept)?.count();
        eprintln!("{target}: {runs} executions in {seconds} s, no crash; {corpus} corpus inputs");
        report.push(format!("{target} {runs}"));
    }
    eprintln!("fuzz: {}", report.join(", "));
    Ok(())
}

/// A number from libFuzzer's final statistics (`-print_final_stats=1`).
fn stat(stderr: &str, name: &str) -> Option<u64> {
    stderr.lines().find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}
