//! The session layer's policy and timers, driven by an arbitrary script against an injected
//! clock: reads, partial writes, blocked writes, time passing, closes from either side, end of
//! stream and transport failure, in both roles, with keepalive and idle timers on or off.
//!
//! Checks, besides that nothing panics: nothing is asked of the transport while output is
//! owed; `Close` comes only after `ShutdownWrite`, and nothing after it; a closed session asks
//! for nothing and times nothing; a deadline is never in the past when handed out late; and
//! every session ends — once the script is over, the peer stops sending and reads everything,
//! and time runs, the session closes the transport within a bounded number of deadlines.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ws_proto::{
    CloseCode, Connection, ProtocolConfig, Session, TimerAction, TimerSettings, TransportCommand,
};

/// What the script has done to the transport so far, as the session asked.
#[derive(Default)]
struct Transport {
    shut_down: bool,
    closed: bool,
}

/// Runs the session's transport commands, checking their order.
fn commands(session: &mut Session, transport: &mut Transport) {
    while let Some(command) = session.poll_transport() {
        assert!(session.pending_output().is_empty(), "{command:?} asked while output is owed");
        assert!(!transport.closed, "{command:?} asked after Close");
        match command {
            TransportCommand::ShutdownWrite => {
                assert!(!transport.shut_down, "ShutdownWrite asked twice");
                transport.shut_down = true;
            }
            TransportCommand::Close => {
                assert!(transport.shut_down, "Close asked before ShutdownWrite");
                transport.closed = true;
            }
            _ => {}
        }
    }
}

/// Acts on every deadline due at `now`.
fn deadlines(session: &mut Session, settings: &TimerSettings, now: Instant) {
    // Each deadline acted on queues a frame or moves the state on: a handful suffice.
    for _ in 0..8 {
        match session.poll_timeout(settings, now) {
            Some((at, which)) if at <= now => {
                if let TimerAction::Abort(_) = session.handle_timeout(which, now) {
                    assert!(session.is_closed(), "aborted but not closed");
                }
            }
            _ => return,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, script)) = data.split_first() else { return };
    let client = flags & 1 != 0;
    let mut settings = TimerSettings::default();
    settings.ping_interval = (flags & 2 != 0).then(|| Duration::from_secs(3));
    settings.idle_timeout = (flags & 4 != 0).then(|| Duration::from_secs(7));
    let conn = if client {
        Connection::client(ProtocolConfig::default(), || [9, 9, 9, 9])
    } else {
        Connection::server(ProtocolConfig::default())
    };
    let start = Instant::now();
    let mut now = start;
    let mut session = Session::new(conn, now);
    let mut transport = Transport::default();
    let mut ops = script.iter().copied();
    while let Some(op) = ops.next() {
        let arg = ops.next().unwrap_or(0);
        match op % 9 {
            // Peer data: `arg` bytes of the script, as read.
            0 => {
                let bytes: Vec<u8> = ops.by_ref().take(usize::from(arg % 64)).collect();
                if session.wants_read() && !bytes.is_empty() {
                    session.receive_data(&bytes, now);
                    while session.connection_mut().poll_event().is_some() {}
                }
            }
            // The transport takes part of what is owed.
            1 => {
                let owed = session.pending_output().len();
                if owed > 0 && !session.is_closed() {
                    let n = (owed * usize::from(arg) / 255).max(1);
                    session.wrote(n);
                }
            }
            2 => {
                if !session.pending_output().is_empty() {
                    session.write_blocked(now);
                }
            }
            // Time passes: up to 25.5 s.
            3 => now += Duration::from_millis(u64::from(arg) * 100),
            4 => {
                let _ = session.close(CloseCode(1000 + u16::from(arg % 16)), "", now);
            }
            5 => {
                if !session.read_closed() && !session.is_closed() {
                    session.received(0, now);
                    while session.connection_mut().poll_event().is_some() {}
                }
            }
            6 => {
                let _ = session.connection_mut().send_binary(&[arg; 3]);
            }
            7 => session.transport_closed(),
            _ => {}
        }
        commands(&mut session, &mut transport);
        deadlines(&mut session, &settings, now);
        commands(&mut session, &mut transport);
        if session.is_closed() {
            assert!(session.poll_timeout(&settings, now).is_none(), "a closed session times");
            assert!(session.poll_transport().is_none(), "a closed session asks");
        }
        if let Some((at, _)) = session.poll_timeout(&settings, now) {
            // Due deadlines were acted on above; what remains is due later.
            assert!(at > now || session.is_closed(), "a deadline left in the past");
        }
    }
    // The end: the peer reads everything, sends nothing more and ends its side; time runs.
    // Every session must close within a bounded number of deadlines.
    for _ in 0..32 {
        if session.is_closed() || transport.closed {
            return;
        }
        let owed = session.pending_output().len();
        if owed > 0 {
            session.wrote(owed);
        }
        if session.wants_read() && !session.read_closed() && transport.shut_down {
            session.received(0, now);
        }
        while session.connection_mut().poll_event().is_some() {}
        commands(&mut session, &mut transport);
        match session.poll_timeout(&settings, now) {
            Some((at, _)) => now = now.max(at),
            None => {
                if !transport.shut_down && !session.read_closed() {
                    // Nothing timed and the transport open: the peer ends its side.
                    session.received(0, now);
                }
            }
        }
        deadlines(&mut session, &settings, now);
        commands(&mut session, &mut transport);
    }
    panic!("the session never ended (client {client}, after {:?})", now - start);
});
