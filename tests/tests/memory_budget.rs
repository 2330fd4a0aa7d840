//! The server-wide memory budget: alone in its own test binary, so that the memory it reads
//! is the server's.
//!
//! A thousand clients negotiate permessage-deflate, each start a compressed message, never
//! finish it and never read: each has the server hold zlib state for both directions, a read
//! buffer and the start of the echo, some 0.4 MB, 400 MB in all. The budget stops the
//! reading at `max_memory`; upgrades get 503 meanwhile; once it has been spent for
//! `budget_timeout`, the connections holding their share are closed with 1013 and the server
//! serves newcomers again.

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ws_tests::{RawClient, TestServer, rss_bytes};

const CONNECTIONS: usize = 1000;
const BUDGET: usize = 64 << 20;
/// What one turn of each engine may take past the budget, and the allocator's slack.
const SLACK: u64 = 48 << 20;
const BUDGET_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the server has ended the connection: reads (without blocking) what it sent until
/// the end of the stream, a reset, or nothing more for now.
fn ended(client: &mut RawClient) -> bool {
    let mut scratch = [0u8; 64 << 10];
    loop {
        match client.stream.read(&mut scratch) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn refused_with_503(err: &anyhow::Error) -> bool {
    format!("{err:#}").contains(" 503 ")
}

/// One test, so that the memory each part reads is its own server's only.
#[test]
fn the_memory_budget_bounds_what_connections_hold_and_counts_no_idle_one() -> Result<()> {
    a_thousand_connections_holding_memory_stay_within_the_memory_budget()?;
    idle_connections_count_nothing_against_the_budget()
}

fn a_thousand_connections_holding_memory_stay_within_the_memory_budget() -> Result<()> {
    // 256 KiB of text that compresses to some KiB: the start of a message never finished.
    let text: Vec<u8> = (0..256u32 << 10).map(|i| b'a' + (i * 7 % 23) as u8).collect();
    let mut message = Vec::new();
    ws_proto::Compressor::new(15, true, 6).compress_fragment(&text, false, &mut message);
    for engine in ws_tests::engines() {
        eprintln!("engine: {engine:?}");
        let mut options = ws_echo::Options::default();
        options.0.engine = engine;
        options.0.max_memory = BUDGET;
        options.0.budget_timeout = BUDGET_TIMEOUT;
        let server = TestServer::start(options)?;
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let (client, head) = RawClient::connect_deflate(server.addr)?;
            ensure!(head.contains("permessage-deflate"), "not negotiated: {head}");
            clients.push(client);
        }
        let before = rss_bytes()?;
        let started = Instant::now();
        for client in &mut clients {
            client.send(0x41, &message)?; // text, RSV1, FIN clear
            client.stream.set_nonblocking(true)?;
        }
        // Spent: upgrades are refused with 503.
        let mut peak = before;
        loop {
            peak = peak.max(rss_bytes()?);
            match RawClient::connect(server.addr) {
                Err(err) if refused_with_503(&err) => break,
                Err(err) => anyhow::bail!("refused otherwise: {err:#}"),
                Ok(_) => {}
            }
            ensure!(
                started.elapsed() < BUDGET_TIMEOUT,
                "the budget was never spent ({} of {} bytes held)",
                server.budget.used(),
                BUDGET
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Until pressure closes connections, nothing more is taken: watch the memory.
        while started.elapsed() < BUDGET_TIMEOUT {
            peak = peak.max(rss_bytes()?);
            std::thread::sleep(Duration::from_millis(50));
        }
        let growth = peak.saturating_sub(before);
        eprintln!(
            "{CONNECTIONS} connections holding memory: RSS grew at most {:.1} MiB against a {} \
             MiB budget",
            growth as f64 / (1 << 20) as f64,
            BUDGET >> 20
        );
        ensure!(growth < BUDGET as u64 + SLACK, "RSS grew by {growth} bytes");
        // Under pressure, the connections holding their share are closed (1013), which
        // frees the budget: a newcomer is served again.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut refusals = 0;
        loop {
            ensure!(
                Instant::now() < deadline,
                "no newcomer served ({refusals} refused; {} of {} bytes held)",
                server.budget.used(),
                BUDGET
            );
            match RawClient::connect(server.addr) {
                Ok(mut fresh) => {
                    fresh.stream.set_read_timeout(Some(Duration::from_secs(20)))?;
                    fresh.send(0x81, b"within budget")?;
                    let echo = fresh.read_message().context("the newcomer's echo")?;
                    ensure!(echo == (1, b"within budget".to_vec()));
                    break;
                }
                Err(err) => {
                    ensure!(refused_with_503(&err), "refused otherwise: {err:#}");
                    refusals += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let closed = clients.iter_mut().map(ended).filter(|&ended| ended).count();
        eprintln!("a newcomer was served after {refusals} refusals; {closed} connections closed");
        ensure!(closed > 0, "no connection was closed for the budget");
        ensure!(closed < CONNECTIONS, "every connection was closed, not only those over share");
        drop(clients);
        server.stop();
    }
    Ok(())
}

fn idle_connections_count_nothing_against_the_budget() -> Result<()> {
    const IDLE: usize = 200;
    for engine in ws_tests::engines() {
        eprintln!("engine: {engine:?}");
        let mut options = ws_echo::Options::default();
        options.0.engine = engine;
        let server = TestServer::start(options)?;
        let mut clients = Vec::new();
        let mut message = Vec::new();
        ws_proto::Compressor::new(15, true, 6).compress(&[b'z'; 100 << 10], &mut message);
        for _ in 0..IDLE {
            let (mut client, _) = RawClient::connect_deflate(server.addr)?;
            // A compressed message each: zlib state both ways while it is echoed.
            client.send(0xc2, &message)?;
            let (opcode, _) = client.read_message()?;
            ensure!(opcode == 2);
            clients.push(client);
        }
        // Idle now: their buffers and zlib state are freed, and no longer counted. (An
        // engine's pool of read buffers may remain: at most 16 of 512 KiB.)
        let deadline = Instant::now() + Duration::from_secs(10);
        let pool = 16 * (512 << 10);
        while server.budget.used() > pool + IDLE * 1024 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let used = server.budget.used();
        eprintln!("{IDLE} idle connections after a compressed echo each: {used} bytes counted");
        ensure!(used <= pool + IDLE * 1024, "{used} bytes counted for idle connections");
        drop(clients);
        server.stop();
    }
    Ok(())
}
