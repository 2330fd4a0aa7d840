//! End-to-end: the echo server's timers (idle, keepalive ping and pong, write, close), each run
//! against both echo engines with short timeouts. The timers' rules are tested exactly, on an
//! injected clock, in `crates/ws-proto/tests/session.rs`; these check that each engine runs
//! them, with margins of several hundred milliseconds so that a loaded machine does not
//! fail them.

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use ws_echo::Options;
use ws_tests::{RawClient, client_frame, each_engine};

/// Default options with the transport's settings adjusted.
fn with_transport(configure: impl Fn(&mut ws_transport::Config)) -> Options {
    let mut options = Options::default();
    configure(&mut options.transport);
    options
}

#[test]
fn an_idle_connection_is_closed_with_1001() -> Result<()> {
    let options = with_transport(|t| {
        t.idle_timeout = Some(Duration::from_millis(1000));
    });
    for server in each_engine(&options) {
        let (engine, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        // Activity pushes the deadline back.
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(200));
            client.send(0x81, b"still here")?;
            assert_eq!(client.read_message()?, (1, b"still here".to_vec()), "{engine:?}");
        }
        let quiet = Instant::now();
        let (code, tcp_closed) = client.expect_close()?;
        let waited = quiet.elapsed();
        assert_eq!(code, 1001, "{engine:?}");
        assert!(tcp_closed, "{engine:?}");
        assert!(waited >= Duration::from_millis(900), "{engine:?}: closed after {waited:?}");
        assert!(waited < Duration::from_secs(6), "{engine:?}: closed after {waited:?}");
    }
    Ok(())
}

/// Reads frames for `period`, answering pings when `answer`; returns the pings seen, or the
/// close code if the server closed.
fn read_pings(client: &mut RawClient, period: Duration, answer: bool) -> Result<(usize, u16)> {
    let end = Instant::now() + period;
    let mut pings = 0;
    client.stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    while Instant::now() < end {
        match client.read_frame() {
            Ok(Some(frame)) if frame.opcode == 0x9 => {
                pings += 1;
                if answer {
                    client.send(0x8a, &frame.payload)?;
                }
            }
            Ok(Some(frame)) if frame.opcode == 0x8 => {
                client.stream.set_read_timeout(Some(Duration::from_secs(20)))?;
                return Ok((pings, frame.close_code().unwrap_or(1005)));
            }
            Ok(Some(frame)) => bail!("unexpected frame {frame:?}"),
            Ok(None) => bail!("TCP closed without a close frame"),
            Err(err)
                if err.downcast_ref::<std::io::Error>().is_some_and(|e| {
                    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                }) => {}
            Err(err) => return Err(err),
        }
    }
    client.stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok((pings, 0))
}

#[test]
fn keepalive_keeps_a_client_that_answers_and_drops_one_that_does_not() -> Result<()> {
    let options = with_transport(|t| {
        t.ping_interval = Some(Duration::from_millis(200));
        t.pong_timeout = Duration::from_millis(1000);
    });
    for server in each_engine(&options) {
        let (engine, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        // Silent except for pongs, for well over the pong timeout: still open.
        let (pings, closed) = read_pings(&mut client, Duration::from_millis(2500), true)?;
        assert_eq!(closed, 0, "{engine:?}: closed although every ping was answered");
        assert!(pings >= 3, "{engine:?}: {pings} pings in 2.5 s at a 200 ms interval");
        client.send(0x82, b"alive")?;
        assert_eq!(client.read_message()?, (2, b"alive".to_vec()), "{engine:?}");
        // Now the pings go unanswered: 1011 after the pong timeout.
        let (_, code) = read_pings(&mut client, Duration::from_secs(5), false)?;
        assert_eq!(code, 1011, "{engine:?}");
    }
    Ok(())
}

#[test]
fn a_client_that_never_reads_is_dropped_at_the_write_timeout() -> Result<()> {
    let options = with_transport(|t| {
        t.write_timeout = Duration::from_millis(500);
    });
    for server in each_engine(&options) {
        let (engine, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        client.stream.set_write_timeout(Some(Duration::from_secs(15)))?;
        let frame = client_frame(0x82, &vec![7u8; 1 << 20], [1, 2, 3, 4]);
        let started = Instant::now();
        // Echoes pile up unread until the server's writes stop; within the write timeout
        // (plus the time to fill both socket buffers) it drops the connection, and writing
        // fails. At most 512 MiB, so a server that never gives up fails the test, not hangs.
        let error = (0..512).find_map(|_| client.stream.write_all(&frame).err());
        let elapsed = started.elapsed();
        let Some(error) = error else { bail!("{engine:?}: the server kept reading 512 MiB") };
        ensure!(
            matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
            ),
            "{engine:?}: writing ended with {error} after {elapsed:?}, not a dropped connection"
        );
        // Not before the timeout: a server that dropped a slow reader at once would also
        // end the writes with a reset.
        assert!(elapsed >= Duration::from_millis(450), "{engine:?}: dropped after {elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{engine:?}: dropped after {elapsed:?}");
        // Others are still served.
        let mut other = RawClient::connect(server.addr)?;
        other.send(0x81, b"next")?;
        assert_eq!(other.read_message()?, (1, b"next".to_vec()), "{engine:?}");
    }
    Ok(())
}

#[test]
fn shutdown_gives_up_on_a_client_that_never_answers_the_close() -> Result<()> {
    let options = with_transport(|t| {
        t.close_timeout = Duration::from_millis(300);
    });
    for server in each_engine(&options) {
        let (engine, server) = server?;
        let mut client = RawClient::connect(server.addr)?;
        client.send(0x81, b"hi")?;
        assert_eq!(client.read_message()?, (1, b"hi".to_vec()));
        let stop_at = Instant::now();
        let summary = server.stop();
        let stopped = stop_at.elapsed();
        // The close frame came, then the server ended TCP without our answer.
        let frame = client.read_frame()?.expect("a close frame");
        assert_eq!(frame.close_code(), Some(1001), "{engine:?}");
        assert!(client.read_frame()?.is_none(), "{engine:?}: TCP still open");
        assert_eq!(summary.abandoned, 0, "{engine:?}");
        // It waited for the answer for the close timeout before giving up.
        assert!(stopped >= Duration::from_millis(250), "{engine:?}: shutdown took {stopped:?}");
        assert!(stopped < Duration::from_secs(3), "{engine:?}: shutdown took {stopped:?}");
    }
    Ok(())
}
