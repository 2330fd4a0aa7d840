//! Backpressure, alone in its own test binary so that the memory it reads is the server's.

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use anyhow::Result;
use ws_tests::{RawClient, TestServer, rss_bytes};

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_client_that_never_reads_cannot_grow_server_memory() -> Result<()> {
    let server = TestServer::start_default()?;
    let mut client = RawClient::connect(server.addr)?;
    let before = rss_bytes()?;
    client.stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let payload = pattern(64 << 10);
    let frame = ws_tests::client_frame(0x82, &payload, [5, 6, 7, 8]);
    let mut written = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Write whole frames until the server stops reading (our write times out), never reading
    // the echo. A partial write is resumed where it stopped, so the stream stays valid and a
    // server that failed the connection would show up as an error other than a timeout.
    let mut offset = 0;
    while Instant::now() < deadline {
        match client.stream.write(&frame[offset..]) {
            Ok(n) => {
                written += n as u64;
                offset = (offset + n) % frame.len();
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(err) => return Err(err.into()),
        }
    }
    let growth = rss_bytes()?.saturating_sub(before);
    // Loopback socket buffers hold some megabytes in each direction; the server holds at most
    // one read buffer and its write high-water mark. Without backpressure this loop would run
    // for the full 20 s and push gigabytes.
    assert!(Instant::now() < deadline, "the server never stopped reading ({written} bytes taken)");
    assert!(written < 64 << 20, "server took {written} bytes from a client that never reads");
    assert!(growth < 32 << 20, "process memory grew by {growth} bytes");
    // The server was pushing back, not gone: once we read, the echo flows, intact.
    let (opcode, echoed) = client.read_message()?;
    assert_eq!(opcode, 2);
    assert!(echoed == payload, "the first echo differs");
    eprintln!(
        "never-reading client: server took {written} bytes before pushing back; RSS grew {growth} bytes"
    );
    Ok(())
}
