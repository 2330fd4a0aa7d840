//! permessage-deflate cannot amplify memory: alone in its own test binary, so that the
//! memory it reads is the server's.
//!
//! Each client sends one unfinished compressed message (FIN clear) whose data inflates to
//! 60 MiB, within the 64 MiB default limit, and leaves it open. The server inflates it in
//! bounded steps and streams the echo back re-compressed, so a connection holds a step and a
//! fragment of it, never the message.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ws_tests::{RawClient, TestServer, rss_bytes};

/// Enough that holding the messages would take 1.2 GB (20 × 60 MiB), few enough for a debug
/// build to inflate and echo them all in 20 to 30 s per engine.
const CONNECTIONS: usize = 20;
const INFLATED: usize = 60 << 20;
/// What RSS may grow by per connection: far below the message (measured: about 0.5 MiB).
const PER_CONNECTION: u64 = 5 << 19;

#[test]
fn unfinished_compressed_messages_that_inflate_to_60_mib_cost_bounded_memory() -> Result<()> {
    // ws-echo's defaults, on each engine.
    for engine in ws_tests::engines() {
        eprintln!("engine: {engine:?}");
        let mut options = ws_echo::Options::default();
        options.0.engine = engine;
        let server = TestServer::start(options)?;
        // The message, compressed as a sync-flushed fragment that is not the last.
        let mut compressor = ws_proto::Compressor::new(15, true, 9);
        let mut bomb = Vec::new();
        compressor.compress_fragment(&vec![0u8; INFLATED], false, &mut bomb);
        ensure!(bomb.len() < 128 << 10, "the bomb is {} bytes", bomb.len());
        // Warm up: the server's threads, allocator arenas and a first deflate echo.
        let (mut warm, _) = RawClient::connect_deflate(server.addr)?;
        let mut hello = Vec::new();
        ws_proto::Compressor::new(15, true, 6).compress(b"warm", &mut hello);
        warm.send(0xc1, &hello)?;
        warm.read_frame()?.context("the warm-up echo")?;
        let before = rss_bytes()?;

        let started = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            let (mut client, head) = RawClient::connect_deflate(server.addr)?;
            ensure!(head.contains("permessage-deflate"), "not negotiated: {head}");
            client.stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            client.send(0x42, &bomb)?; // binary, RSV1, FIN clear
            clients.push(client);
        }
        // Each echo streams back: read it until all of the 60 MiB has come (inflated here)
        // but the fragment the server holds while the message is open, so the server has
        // taken all of each bomb. It must not have ended the message.
        let held = ws_proto::FRAGMENT_MIN + ws_proto::INFLATE_STEP;
        for (i, client) in clients.iter_mut().enumerate() {
            read_unfinished_echo(client, INFLATED - held)
                .with_context(|| format!("the echo on connection {i}"))?;
        }
        let growth = rss_bytes()?.saturating_sub(before);
        eprintln!(
            "{CONNECTIONS} connections each holding an unfinished message inflating to 60 MiB: \
             RSS grew {:.1} MiB in {:.1} s",
            growth as f64 / (1 << 20) as f64,
            started.elapsed().as_secs_f64()
        );
        ensure!(growth < CONNECTIONS as u64 * PER_CONNECTION, "RSS grew by {growth} bytes");
        // Everyone else is still served.
        let mut fresh = RawClient::connect(server.addr)?;
        fresh.send(0x81, b"after the bombs")?;
        ensure!(fresh.read_message()? == (1, b"after the bombs".to_vec()));
        drop(clients);
        server.stop();
    }
    Ok(())
}

/// Reads the echo's fragments, inflating them, until at least `expected` bytes have come;
/// checks that they are zeros and that the message is still open.
fn read_unfinished_echo(client: &mut RawClient, expected: usize) -> Result<()> {
    let mut decompressor = ws_proto::Decompressor::new(15, true);
    let mut inflated = 0;
    let mut out = Vec::new();
    let mut first = true;
    while inflated < expected {
        let frame = client.read_frame()?.context("closed")?;
        match frame.opcode {
            0x8 => anyhow::bail!("closed with {:?}", frame.close_code()),
            0x9 | 0xa => continue,
            _ => {}
        }
        ensure!(frame.opcode == if first { 0x2 } else { 0x0 }, "opcode {}", frame.opcode);
        ensure!(frame.rsv == if first { 0b100 } else { 0 }, "rsv {:#b}", frame.rsv);
        ensure!(!frame.fin, "the echo ended a message that has not ended");
        first = false;
        out.clear();
        decompressor.decompress(&frame.payload, &mut out, INFLATED).context("inflating")?;
        ensure!(out.iter().all(|&b| b == 0), "the echo is not the zeros sent");
        inflated += out.len();
    }
    Ok(())
}
