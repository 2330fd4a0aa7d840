//! The session: read/write policy, end of stream, who closes the transport first, and every
//! timer, all on an injected clock (time is an argument; nothing here sleeps).

mod common;

use std::time::{Duration, Instant};

use common::*;
use ws_proto::{
    CloseCode, Deadline, Event, MessageKind, ProtocolConfig, Session, TimerAction, TimerSettings,
    TransportCommand,
};

const S: Duration = Duration::from_secs(1);

fn session(conn: ws_proto::Connection, now: Instant) -> Session {
    Session::new(conn, now)
}

/// Feeds `bytes` as one read.
fn read(session: &mut Session, bytes: &[u8], now: Instant) {
    session.read_buffer(bytes.len())[..bytes.len()].copy_from_slice(bytes);
    session.received(bytes.len(), now);
}

/// Echoes every data message and returns the other events.
fn echo(session: &mut Session) -> Vec<Owned> {
    let mut others = Vec::new();
    let conn = session.connection_mut();
    for _ in 0..1000 {
        let Some((event, mut sender)) = conn.poll_event_with_sender() else { return others };
        match event {
            Event::Message(message) => {
                let _ = sender.send_message(message.kind(), message.as_bytes());
            }
            other => others.push(owned(other)),
        }
    }
    panic!("events did not settle");
}

fn take(session: &mut Session) -> Vec<u8> {
    let out = session.pending_output().to_vec();
    session.wrote(out.len());
    out
}

fn commands(session: &mut Session) -> Vec<TransportCommand> {
    std::iter::from_fn(|| session.poll_transport()).take(10).collect()
}

#[test]
fn a_half_closed_client_is_echoed_and_then_the_transport_ends() {
    // Data and FIN in one read's worth: the echo goes out, then our side ends and the
    // transport closes (the peer's side has ended already).
    let t0 = Instant::now();
    let mut s = session(server(), t0);
    read(&mut s, &client_frame(0x81, b"hi"), t0);
    s.received(0, t0);
    assert_eq!(echo(&mut s), vec![Owned::Disconnected]);
    assert!(!s.wants_read());
    assert_eq!(commands(&mut s), vec![], "nothing ends while the echo is owed");
    assert_eq!(take(&mut s), b"\x81\x02hi");
    assert_eq!(commands(&mut s), vec![TransportCommand::ShutdownWrite, TransportCommand::Close]);
    assert!(s.is_closed());
}

#[test]
fn section_7_1_1_the_server_ends_tcp_first_and_drains_until_the_client_does() {
    let t0 = Instant::now();
    let mut s = session(server(), t0);
    read(&mut s, &client_frame(0x88, &[0x03, 0xe8]), t0);
    assert_eq!(echo(&mut s), vec![Owned::Close(CloseCode::NORMAL, String::new())]);
    assert_eq!(take(&mut s), [0x88, 0x02, 0x03, 0xe8]);
    assert_eq!(commands(&mut s), vec![TransportCommand::ShutdownWrite]);
    // Still reading: what the client sends now is dropped, so closing meets no unread input.
    assert!(s.wants_read());
    read(&mut s, b"late bytes", t0 + S);
    assert_eq!(echo(&mut s), vec![]);
    assert_eq!(commands(&mut s), vec![]);
    s.received(0, t0 + S);
    assert_eq!(commands(&mut s), vec![TransportCommand::Close]);
}

#[test]
fn section_7_1_1_the_client_waits_for_the_server_to_end_tcp() {
    let t0 = Instant::now();
    let mut s = session(client(ProtocolConfig::default()), t0);
    s.close(CloseCode::NORMAL, "", t0).unwrap();
    take(&mut s);
    read(&mut s, &frame(0x88, &[0x03, 0xe8], None), t0);
    assert_eq!(echo(&mut s), vec![Owned::Close(CloseCode::NORMAL, String::new())]);
    assert_eq!(commands(&mut s), vec![], "the client does not end TCP first");
    assert!(s.wants_read());
    s.received(0, t0 + S);
    assert_eq!(commands(&mut s), vec![TransportCommand::ShutdownWrite, TransportCommand::Close]);
}

#[test]
fn the_close_timer_bounds_waiting_for_the_peers_end_of_stream() {
    let t0 = Instant::now();
    let settings = TimerSettings::default();
    let mut s = session(client(ProtocolConfig::default()), t0);
    s.close(CloseCode::NORMAL, "", t0).unwrap();
    take(&mut s);
    read(&mut s, &frame(0x88, &[0x03, 0xe8], None), t0 + S);
    echo(&mut s);
    // The server never ends TCP: the close timer, from our close frame, gives up.
    assert_eq!(s.poll_timeout(&settings, t0 + S), Some((t0 + 5 * S, Deadline::Close)));
    assert_eq!(s.handle_timeout(Deadline::Close, t0 + 5 * S), TimerAction::Abort(Deadline::Close));
    assert!(s.is_closed());
    assert!(!s.wants_read());
    assert_eq!(s.poll_timeout(&settings, t0 + 5 * S), None);
}

#[test]
fn no_input_is_read_while_output_is_owed() {
    let t0 = Instant::now();
    let mut s = session(server(), t0);
    assert!(s.wants_read());
    read(&mut s, &client_frame(0x82, b"abc"), t0);
    echo(&mut s);
    assert!(!s.wants_read());
    s.wrote(2);
    assert!(!s.wants_read());
    s.wrote(3);
    assert!(s.wants_read());
}

#[test]
fn a_write_blocked_past_the_write_timeout_gives_up_and_progress_resets_it() {
    let t0 = Instant::now();
    let mut settings = TimerSettings::default();
    settings.write_timeout = 10 * S;
    let mut s = session(server(), t0);
    s.connection_mut().send_binary(&[0; 100]).unwrap();
    assert_eq!(s.poll_timeout(&settings, t0), None, "not blocked yet");
    s.write_blocked(t0 + S);
    assert_eq!(s.poll_timeout(&settings, t0 + S), Some((t0 + 11 * S, Deadline::Write)));
    // Later reports of the same block keep the first time.
    s.write_blocked(t0 + 5 * S);
    assert_eq!(s.poll_timeout(&settings, t0 + 5 * S), Some((t0 + 11 * S, Deadline::Write)));
    // Progress restarts it.
    s.wrote(50);
    assert_eq!(s.poll_timeout(&settings, t0 + 6 * S), None);
    s.write_blocked(t0 + 7 * S);
    let (at, which) = s.poll_timeout(&settings, t0 + 7 * S).unwrap();
    assert_eq!((at, which), (t0 + 17 * S, Deadline::Write));
    assert_eq!(s.handle_timeout(which, at), TimerAction::Abort(Deadline::Write));
    assert!(s.is_closed());
    assert!(!s.wants_read());
}

#[test]
fn the_write_deadline_comes_before_a_later_keepalive() {
    let t0 = Instant::now();
    let mut settings = TimerSettings::default();
    settings.ping_interval = Some(60 * S);
    settings.write_timeout = 10 * S;
    let mut s = session(server(), t0);
    assert_eq!(s.poll_timeout(&settings, t0), Some((t0 + 60 * S, Deadline::Ping)));
    s.connection_mut().send_text("x").unwrap();
    s.write_blocked(t0);
    assert_eq!(s.poll_timeout(&settings, t0), Some((t0 + 10 * S, Deadline::Write)));
}

#[test]
fn keepalive_and_idle_run_on_the_session_clock() {
    let t0 = Instant::now();
    let mut settings = TimerSettings::default();
    settings.ping_interval = Some(10 * S);
    settings.idle_timeout = Some(25 * S);
    let mut s = session(server(), t0);
    let (at, which) = s.poll_timeout(&settings, t0).unwrap();
    assert_eq!((at, which), (t0 + 10 * S, Deadline::Ping));
    assert_eq!(s.handle_timeout(which, at), TimerAction::Flush);
    assert_eq!(take(&mut s), b"\x89\x09keepalive");
    // The pong arrives at 12 s: the next ping is due at 22 s, the idle close at 37 s.
    read(&mut s, &client_frame(0x8a, b"keepalive"), t0 + 12 * S);
    assert_eq!(echo(&mut s), vec![Owned::Pong(b"keepalive".to_vec())]);
    assert_eq!(s.poll_timeout(&settings, t0 + 12 * S), Some((t0 + 22 * S, Deadline::Ping)));
    settings.ping_interval = None;
    let (at, which) = s.poll_timeout(&settings, t0 + 12 * S).unwrap();
    assert_eq!((at, which), (t0 + 37 * S, Deadline::Idle));
    assert_eq!(s.handle_timeout(which, at), TimerAction::Flush);
    assert_eq!(take(&mut s)[..4], [0x88, 0x0e, 0x03, 0xe9]); // close 1001
    assert_eq!(s.poll_timeout(&settings, at), Some((at + 5 * S, Deadline::Close)));
}

#[test]
fn a_close_asked_for_inside_a_frame_follows_that_frame() {
    // A shutdown or an idle timeout in the middle of a large frame we are forwarding.
    let t0 = Instant::now();
    let mut s = session(server(), t0);
    s.connection_mut().sender().begin_frame(MessageKind::Binary, true, 4).unwrap();
    s.connection_mut().sender().send_frame_data(b"ab").unwrap();
    s.close(CloseCode::GOING_AWAY, "bye", t0).unwrap();
    assert_eq!(take(&mut s), b"\x82\x04ab");
    s.connection_mut().sender().send_frame_data(b"cd").unwrap();
    assert_eq!(take(&mut s), b"cd\x88\x05\x03\xe9bye");
    // No data frame may follow the close frame.
    assert!(s.connection_mut().send_text("more").is_err());
}

#[test]
fn the_transport_does_not_end_inside_a_frame_of_ours() {
    // The peer's close arrives while we stream a frame: the reply waits for the frame, and
    // so does the end of the stream.
    let t0 = Instant::now();
    let mut s = session(server(), t0);
    s.connection_mut().sender().begin_frame(MessageKind::Binary, true, 2).unwrap();
    read(&mut s, &client_frame(0x88, &[0x03, 0xe8]), t0);
    assert_eq!(echo(&mut s), vec![Owned::Close(CloseCode::NORMAL, String::new())]);
    assert_eq!(take(&mut s), b"\x82\x02");
    assert_eq!(commands(&mut s), vec![], "the frame is not complete");
    s.connection_mut().sender().send_frame_data(b"xy").unwrap();
    assert_eq!(take(&mut s), b"xy\x88\x02\x03\xe8");
    assert_eq!(commands(&mut s), vec![TransportCommand::ShutdownWrite]);
}

#[test]
fn an_idle_timeout_inside_a_frame_closes_after_it() {
    let t0 = Instant::now();
    let mut s = session(server(), t0);
    s.connection_mut().sender().begin_frame(MessageKind::Binary, true, 2).unwrap();
    assert_eq!(s.handle_timeout(Deadline::Idle, t0 + S), TimerAction::Flush);
    assert_eq!(take(&mut s), b"\x82\x02");
    s.connection_mut().sender().send_frame_data(b"xy").unwrap();
    assert_eq!(take(&mut s)[..6], *b"xy\x88\x0e\x03\xe9");
}

#[test]
fn after_a_failure_the_close_frame_goes_out_and_then_the_transport_ends() {
    let t0 = Instant::now();
    let mut s = session(server(), t0);
    read(&mut s, &unmasked(0x81, b"x"), t0);
    assert!(matches!(echo(&mut s)[..], [Owned::Failed(_)]));
    assert_eq!(commands(&mut s), vec![]);
    assert_eq!(take(&mut s), [0x88, 0x02, 0x03, 0xea]); // 1002
    assert_eq!(commands(&mut s), vec![TransportCommand::ShutdownWrite]);
    s.received(0, t0);
    assert_eq!(commands(&mut s), vec![TransportCommand::Close]);
}

#[test]
fn a_client_that_failed_the_connection_still_waits_for_the_server_to_end_tcp() {
    let t0 = Instant::now();
    let mut s = session(client(ProtocolConfig::default()), t0);
    read(&mut s, &frame(0x81, b"x", Some(KEY)), t0); // masked: servers must not mask
    assert!(matches!(echo(&mut s)[..], [Owned::Failed(_)]));
    assert_eq!(take(&mut s)[..2], [0x88, 0x82]); // our 1002, masked
    assert_eq!(commands(&mut s), vec![]);
    assert!(s.wants_read());
    s.received(0, t0 + S);
    assert_eq!(commands(&mut s), vec![TransportCommand::ShutdownWrite, TransportCommand::Close]);
}

#[test]
fn after_the_transport_failed_nothing_more_is_asked() {
    let t0 = Instant::now();
    let mut settings = TimerSettings::default();
    settings.idle_timeout = Some(S);
    let mut s = session(server(), t0);
    assert_eq!(s.poll_timeout(&settings, t0), Some((t0 + S, Deadline::Idle)));
    // The close handshake is done and our side is due to end ...
    read(&mut s, &client_frame(0x88, &[0x03, 0xe8]), t0);
    echo(&mut s);
    take(&mut s);
    // ... when the transport fails: nothing more is asked of it.
    s.transport_closed();
    assert_eq!(commands(&mut s), vec![]);
    assert!(s.is_closed());
    assert!(!s.wants_read());
    assert_eq!(s.poll_timeout(&settings, t0), None);
    assert_eq!(s.close(CloseCode::NORMAL, "", t0), Err(ws_proto::SendError::Closed));
}

fn unmasked(b0: u8, payload: &[u8]) -> Vec<u8> {
    frame(b0, payload, None)
}

/// `timeout_not_earlier` holds across input, which pushes deadlines back, and not across
/// what can bring one forward: a deadline handled, a pong (the next ping may be due before
/// the pong deadline), a blocked write, a close.
#[test]
fn timeout_not_earlier_holds_only_while_deadlines_can_only_move_back() {
    let t0 = Instant::now();
    let mut settings = TimerSettings::default();
    settings.ping_interval = Some(S);
    settings.pong_timeout = 10 * S;
    let mut s = session(server(), t0);
    // Nothing was asked yet.
    assert!(!s.timeout_not_earlier());
    assert_eq!(s.poll_timeout(&settings, t0), Some((t0 + S, Deadline::Ping)));
    assert!(s.timeout_not_earlier());
    // A message (echoed and written) pushes the ping back.
    read(&mut s, &client_frame(0x82, b"x"), t0 + S / 2);
    assert!(echo(&mut s).is_empty());
    s.wrote(s.pending_output().len());
    assert!(s.timeout_not_earlier());
    assert_eq!(s.poll_timeout(&settings, t0 + S / 2), Some((t0 + 3 * S / 2, Deadline::Ping)));
    // The ping goes out: a deadline handled, its pong deadline 10 s on.
    assert_eq!(s.handle_timeout(Deadline::Ping, t0 + 2 * S), TimerAction::Flush);
    assert!(!s.timeout_not_earlier());
    s.wrote(s.pending_output().len());
    assert_eq!(s.poll_timeout(&settings, t0 + 2 * S), Some((t0 + 12 * S, Deadline::Pong)));
    assert!(s.timeout_not_earlier());
    // The pong brings the next ping, 1 s after it, before the pong deadline.
    read(&mut s, &client_frame(0x8a, b"keepalive"), t0 + 3 * S);
    assert_eq!(echo(&mut s), [Owned::Pong(b"keepalive".to_vec())]);
    assert!(!s.timeout_not_earlier());
    assert_eq!(s.poll_timeout(&settings, t0 + 3 * S), Some((t0 + 4 * S, Deadline::Ping)));
    assert!(s.timeout_not_earlier());
    // A blocked write brings in the write deadline, until output moves again.
    read(&mut s, &client_frame(0x82, b"y"), t0 + 3 * S);
    assert!(echo(&mut s).is_empty());
    s.write_blocked(t0 + 3 * S);
    assert!(!s.timeout_not_earlier());
    s.wrote(s.pending_output().len());
    assert!(s.timeout_not_earlier());
    // Our close starts the close timer.
    s.close(CloseCode::NORMAL, "", t0 + 3 * S).unwrap();
    assert!(!s.timeout_not_earlier());
}
