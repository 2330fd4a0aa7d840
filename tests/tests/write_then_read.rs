//! Clients that write a whole message before they read its echo (scripts, blocking client
//! libraries, many test tools) must get the echo on every path, whatever the message's size
//! within the limit: the server reads on inside a message while the echo it streams waits.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use smol::Async;
use ws_tests::{RawClient, client_frame, each_engine};
use ws_transport::{Config, Error, WebSocket, accept};

/// The client's message: one frame of `len` bytes, or `frames` fragments of `len` each.
struct Plan {
    frames: usize,
    len: usize,
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed) % 251) as u8).collect()
}

/// Writes the whole message with blocking writes, reads nothing until it is written, then
/// reads the echo and checks every byte. A server that stops reading while its echo waits
/// makes the write time out.
fn write_then_read(addr: SocketAddr, plan: &Plan) -> Result<()> {
    let mut client = RawClient::connect(addr)?;
    client.stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    client.stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut sent = Vec::with_capacity(plan.frames * plan.len);
    for i in 0..plan.frames {
        let payload = pattern(plan.len, i);
        let opcode = if i == 0 { 0x2 } else { 0x0 };
        let fin = if i + 1 == plan.frames { 0x80 } else { 0 };
        let frame = client_frame(fin | opcode, &payload, [9, 8, 7, i as u8]);
        client.stream.write_all(&frame).with_context(|| {
            format!("the server stopped reading at frame {i} of {}", plan.frames)
        })?;
        sent.extend_from_slice(&payload);
    }
    let (opcode, echoed) = client.read_message()?;
    ensure!(opcode == 2, "echoed as opcode {opcode}");
    ensure!(echoed.len() == sent.len(), "echoed {} of {} bytes", echoed.len(), sent.len());
    ensure!(echoed == sent, "the echo differs from what was sent");
    Ok(())
}

const ONE_FRAME: Plan = Plan { frames: 1, len: 16 << 20 };
const FRAGMENTS: Plan = Plan { frames: 60, len: 1 << 20 };

#[test]
fn the_engines_echo_16_mib_in_one_frame_to_a_client_that_writes_it_all_first() -> Result<()> {
    for server in each_engine(&ws_echo::Options::default()) {
        let (_, server) = server?;
        write_then_read(server.addr, &ONE_FRAME)?;
    }
    Ok(())
}

#[test]
fn the_engines_echo_60_mib_in_60_fragments_to_a_client_that_writes_it_all_first() -> Result<()> {
    for server in each_engine(&ws_echo::Options::default()) {
        let (_, server) = server?;
        write_then_read(server.addr, &FRAGMENTS)?;
    }
    Ok(())
}

/// A ws-transport server on its own thread, running `echo` on every connection it accepts
/// (one at a time) until the test ends.
fn transport_server(
    echo: fn(WebSocket<smol::net::TcpStream>) -> smol::future::Boxed<Result<(), Error>>,
) -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut config = Config::default();
    config.protocol.max_message_size = 64 << 20;
    std::thread::spawn(move || {
        smol::block_on(async move {
            let listener = Async::new(listener)?;
            loop {
                let (stream, _) = listener.accept().await?;
                let ws = accept(smol::net::TcpStream::from(stream), config.clone()).await?;
                let _ = echo(ws).await;
            }
            #[allow(unreachable_code)]
            Ok::<(), anyhow::Error>(())
        })
    });
    Ok(addr)
}

#[test]
fn the_readme_loop_echoes_to_a_client_that_writes_it_all_first() -> Result<()> {
    let addr = transport_server(|mut ws| {
        Box::pin(async move {
            while let Some(message) = ws.recv().await? {
                ws.send(message).await?;
            }
            Ok(())
        })
    })?;
    write_then_read(addr, &ONE_FRAME)?;
    write_then_read(addr, &FRAGMENTS)
}

#[test]
fn split_halves_echo_to_a_client_that_writes_it_all_first() -> Result<()> {
    let addr = transport_server(|ws| {
        Box::pin(async move {
            let (mut reader, writer) = ws.split();
            while let Some(message) = reader.recv().await? {
                writer.send(message).await?;
            }
            Ok(())
        })
    })?;
    write_then_read(addr, &ONE_FRAME)?;
    write_then_read(addr, &FRAGMENTS)
}
