//! The sans-IO timers: deadlines and what firing them queues.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ws_proto::{CloseCode, Deadline, TimerAction, TimerSettings, Timers};

const S: Duration = Duration::from_secs(1);

fn with(ping: Option<u64>, idle: Option<u64>) -> TimerSettings {
    let mut s = TimerSettings::default();
    s.ping_interval = ping.map(Duration::from_secs);
    s.idle_timeout = idle.map(Duration::from_secs);
    s
}

#[test]
fn no_timer_runs_on_an_open_connection_by_default() {
    let t0 = Instant::now();
    let conn = server();
    let settings = TimerSettings::default();
    let mut timers = Timers::new(t0);
    assert_eq!(timers.poll_timeout(&settings, &conn, t0), None);
}

#[test]
fn the_close_timer_starts_when_the_connection_stops_being_open() {
    let t0 = Instant::now();
    let mut conn = server();
    let settings = with(Some(10), Some(60));
    let mut timers = Timers::new(t0);
    conn.close(CloseCode::NORMAL, "").unwrap();
    // Only the close timer runs now, from when it was first noticed.
    assert_eq!(
        timers.poll_timeout(&settings, &conn, t0 + 2 * S),
        Some((t0 + 7 * S, Deadline::Close))
    );
    assert_eq!(
        timers.poll_timeout(&settings, &conn, t0 + 3 * S),
        Some((t0 + 7 * S, Deadline::Close))
    );
    assert_eq!(
        timers.handle_timeout(Deadline::Close, &mut conn, t0 + 7 * S),
        TimerAction::Abort(Deadline::Close)
    );
}

#[test]
fn an_answered_ping_keeps_the_connection_and_an_unanswered_one_fails_it_with_1011() {
    let t0 = Instant::now();
    let mut conn = server();
    let settings = with(Some(10), None);
    let mut timers = Timers::new(t0);
    let (at, which) = timers.poll_timeout(&settings, &conn, t0).unwrap();
    assert_eq!((at, which), (t0 + 10 * S, Deadline::Ping));
    assert_eq!(timers.handle_timeout(which, &mut conn, at), TimerAction::Flush);
    assert_eq!(take_output(&mut conn), b"\x89\x09keepalive");
    // The pong deadline runs from the ping.
    assert_eq!(timers.poll_timeout(&settings, &conn, at), Some((t0 + 30 * S, Deadline::Pong)));
    assert_eq!(timers.take_ping_rtt(), None);
    // A pong arrives (whoever polls the event): the next ping is due 10 s after it.
    conn.receive_data(&client_frame(0x8a, b"keepalive"));
    timers.received(t0 + 12 * S);
    while conn.poll_event().is_some() {}
    assert_eq!(
        timers.poll_timeout(&settings, &conn, t0 + 12 * S),
        Some((t0 + 22 * S, Deadline::Ping))
    );
    // Its round trip is reported once: 2 s from ping to pong.
    assert_eq!(timers.take_ping_rtt(), Some(2 * S));
    assert_eq!(timers.take_ping_rtt(), None);
    // This time nothing answers.
    timers.handle_timeout(Deadline::Ping, &mut conn, t0 + 22 * S);
    take_output(&mut conn);
    let (at, which) = timers.poll_timeout(&settings, &conn, t0 + 22 * S).unwrap();
    assert_eq!((at, which), (t0 + 42 * S, Deadline::Pong));
    assert_eq!(timers.handle_timeout(which, &mut conn, at), TimerAction::Abort(Deadline::Pong));
    assert_eq!(take_output(&mut conn)[..4], [0x88, 0x18, 0x03, 0xf3]); // close 1011
}

#[test]
fn input_pushes_the_idle_deadline_back_and_idleness_closes_with_1001() {
    let t0 = Instant::now();
    let mut conn = server();
    let settings = with(None, Some(30));
    let mut timers = Timers::new(t0);
    assert_eq!(timers.poll_timeout(&settings, &conn, t0), Some((t0 + 30 * S, Deadline::Idle)));
    timers.received(t0 + 20 * S);
    let (at, which) = timers.poll_timeout(&settings, &conn, t0 + 20 * S).unwrap();
    assert_eq!((at, which), (t0 + 50 * S, Deadline::Idle));
    assert_eq!(timers.handle_timeout(which, &mut conn, at), TimerAction::Flush);
    assert_eq!(take_output(&mut conn)[..4], [0x88, 0x0e, 0x03, 0xe9]); // close 1001
    // Then the close timer.
    assert_eq!(timers.poll_timeout(&settings, &conn, at), Some((at + 5 * S, Deadline::Close)));
}

#[test]
fn the_earlier_of_keepalive_and_idle_comes_first() {
    let t0 = Instant::now();
    let conn = server();
    let settings = with(Some(30), Some(20));
    let mut timers = Timers::new(t0);
    assert_eq!(timers.poll_timeout(&settings, &conn, t0), Some((t0 + 20 * S, Deadline::Idle)));
}
