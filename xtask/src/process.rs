//! Servers started as child processes: what they print when they listen.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Child;

use anyhow::{Context, Result};

/// Reads the first line a server started with piped stdout prints, `listening on ws://ADDR`
/// (or `wss://ADDR`), and returns the address.
pub(crate) fn listening_addr(child: &mut Child, name: &str) -> Result<SocketAddr> {
    let stdout = child.stdout.take().with_context(|| format!("{name}: no stdout"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let rest = line.trim().strip_prefix("listening on ");
    let addr = rest
        .and_then(|rest| rest.strip_prefix("ws://").or_else(|| rest.strip_prefix("wss://")))
        .with_context(|| format!("{name}: unexpected first line {line:?}"))?
        .parse()
        .with_context(|| format!("{name}: {line:?}"))?;
    Ok(addr)
}
