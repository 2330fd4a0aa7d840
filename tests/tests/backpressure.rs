//! Backpressure, alone in its own test binary so that the memory it reads is the server's.

use std::io::Write;
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
    let frame = ws_tests::client_frame(0x82, &pattern(64 << 10), [5, 6, 7, 8]);
    let mut written = 0u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Write until the server stops reading (our write times out), never reading the echo.
    while Instant::now() < deadline {
        match client.stream.write(&frame) {
            Ok(n) => written += n as u64,
            Err(_) => break,
        }
    }
    let growth = rss_bytes()?.saturating_sub(before);
    // Loopback socket buffers hold some megabytes in each direction; the server holds at most
    // one read buffer and its write high-water mark. Without backpressure this loop would run
    // for the full 20 s and push gigabytes.
    assert!(Instant::now() < deadline, "the server never stopped reading ({written} bytes taken)");
    assert!(written < 64 << 20, "server took {written} bytes from a client that never reads");
    assert!(growth < 32 << 20, "process memory grew by {growth} bytes");
    eprintln!(
        "never-reading client: server took {written} bytes before pushing back; RSS grew {growth} bytes"
    );
    Ok(())
}
