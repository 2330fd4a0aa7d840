//! A connection's timers, sans-IO: see [`Timers`].

use std::time::{Duration, Instant};

use crate::close::CloseCode;
use crate::connection::Connection;
use crate::vocab::State;

/// How long each timer runs. Durations only; the caller's transport may have timers of its
/// own (a write timeout, say) that do not concern the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimerSettings {
    /// How long to wait for the peer's close frame, and then for the transport to end, after
    /// the close handshake starts. Default 5 s.
    pub close_timeout: Duration,
    /// Send a ping after this long without hearing from the peer. Default off.
    pub ping_interval: Option<Duration>,
    /// Fail the connection (1011) when a keepalive ping gets no pong in this time.
    /// Default 20 s.
    pub pong_timeout: Duration,
    /// Close the connection (1001) after this long without receiving anything. Default off.
    pub idle_timeout: Option<Duration>,
    /// How long output may wait for a transport that takes none of it before the peer is
    /// given up on (it stopped reading). Run by [`Session`](crate::Session). Default 30 s.
    pub write_timeout: Duration,
}

impl Default for TimerSettings {
    fn default() -> Self {
        Self {
            close_timeout: Duration::from_secs(5),
            ping_interval: None,
            pong_timeout: Duration::from_secs(20),
            idle_timeout: None,
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl TimerSettings {
    /// Whether a deadline is timed from the last input: keepalive pings (`ping_interval`) or
    /// the idle timeout. Without either, a read needs no time
    /// ([`Session::received_untimed`](crate::Session::received_untimed)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use ws_proto::TimerSettings;
    ///
    /// let mut settings = TimerSettings::default();
    /// assert!(!settings.follows_input());
    /// settings.idle_timeout = Some(Duration::from_secs(60));
    /// assert!(settings.follows_input());
    /// ```
    pub fn follows_input(&self) -> bool {
        self.ping_interval.is_some() || self.idle_timeout.is_some()
    }
}

/// Which timer a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deadline {
    /// The close handshake, or the transport's end after it, took too long.
    Close,
    /// A keepalive ping went unanswered.
    Pong,
    /// Time to send a keepalive ping.
    Ping,
    /// Nothing was received for the idle timeout.
    Idle,
    /// Output waited too long for a transport that took none of it (run by
    /// [`Session`](crate::Session)).
    Write,
}

/// What the transport does after [`Timers::handle_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimerAction {
    /// Frames were queued (a ping, or a close frame): write them and carry on.
    Flush,
    /// Give up on the connection: write what is queued if the transport can (a 1011 close
    /// frame after an unanswered ping), then end it. The deadline says why.
    Abort(Deadline),
}

/// A connection's timers, sans-IO: the close timeout, keepalive pings with a pong deadline,
/// and the idle timeout. The caller supplies the time and runs the clock; [`Timers`] says
/// when the next deadline is ([`poll_timeout`](Timers::poll_timeout)) and acts on it
/// ([`handle_timeout`](Timers::handle_timeout)) by queueing frames on the [`Connection`].
///
/// ```
/// use std::time::{Duration, Instant};
/// use ws_proto::{Connection, Deadline, ProtocolConfig, TimerAction, TimerSettings, Timers};
///
/// let start = Instant::now();
/// let mut conn = Connection::server(ProtocolConfig::default());
/// let mut settings = TimerSettings::default();
/// settings.ping_interval = Some(Duration::from_secs(10));
/// let mut timers = Timers::new(start);
/// // Nothing received for 10 s: time for a keepalive ping.
/// let (at, which) = timers.poll_timeout(&settings, &conn, start).expect("a deadline");
/// assert_eq!((at, which), (start + Duration::from_secs(10), Deadline::Ping));
/// assert_eq!(timers.handle_timeout(which, &mut conn, at), TimerAction::Flush);
/// assert_eq!(conn.pending_output(), b"\x89\x09keepalive");
/// ```
///
/// The settings are passed to [`poll_timeout`](Self::poll_timeout) rather than kept here:
/// they are usually the same for every connection, and the caller has them already.
#[derive(Debug, Clone)]
pub struct Timers {
    last_received: Instant,
    /// When the keepalive ping went out, and the pongs received by then.
    ping_sent: Option<(Instant, u64)>,
    closing_since: Option<Instant>,
    /// The round trip of the last keepalive ping answered, in microseconds (at least 1), until
    /// taken; 0 for none. Four bytes rather than an `Option<Duration>`'s sixteen: every
    /// connection has timers.
    rtt_micros: u32,
}

impl Timers {
    /// Timers for a connection that opened at `now`.
    pub fn new(now: Instant) -> Self {
        Self { last_received: now, ping_sent: None, closing_since: None, rtt_micros: 0 }
    }

    /// Records that input arrived at `now` (it pushes the keepalive and idle deadlines back).
    pub fn received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// Starts the close timer at `now` if it is not running yet (the caller started the close
    /// handshake; a close the connection started itself is noticed by
    /// [`poll_timeout`](Self::poll_timeout)).
    pub fn start_closing(&mut self, now: Instant) {
        self.closing_since.get_or_insert(now);
    }

    /// When the close timer started, if it did.
    pub fn closing_since(&self) -> Option<Instant> {
        self.closing_since
    }

    /// The round trip of the last keepalive ping answered since the last call: from the ping
    /// being queued to the first [`poll_timeout`](Self::poll_timeout) that saw a pong (drivers
    /// poll right after input, so this is when the pong was read).
    pub fn take_ping_rtt(&mut self) -> Option<Duration> {
        let micros = std::mem::take(&mut self.rtt_micros);
        (micros > 0).then(|| Duration::from_micros(u64::from(micros)))
    }

    /// The next deadline and its timer under `settings`, given the connection's state at
    /// `now`: once the
    /// connection is no longer open only the close timer runs; a pong received since the
    /// keepalive ping answers it, however the events were polled.
    pub fn poll_timeout(
        &mut self,
        settings: &TimerSettings,
        conn: &Connection,
        now: Instant,
    ) -> Option<(Instant, Deadline)> {
        if conn.state() != State::Open {
            self.start_closing(now);
        }
        if let Some((sent, pongs)) = self.ping_sent {
            if conn.pongs_received() > pongs {
                self.ping_sent = None;
                let micros = now.saturating_duration_since(sent).as_micros();
                self.rtt_micros = u32::try_from(micros).unwrap_or(u32::MAX).max(1);
            }
        }
        let s = settings;
        if let Some(since) = self.closing_since {
            return Some((since + s.close_timeout, Deadline::Close));
        }
        let keepalive = match (self.ping_sent, s.ping_interval) {
            (Some((sent, _)), _) => Some((sent + s.pong_timeout, Deadline::Pong)),
            (None, Some(interval)) => Some((self.last_received + interval, Deadline::Ping)),
            (None, None) => None,
        };
        let idle = s.idle_timeout.map(|idle| (self.last_received + idle, Deadline::Idle));
        // The earlier of the two; keepalive on a tie.
        match (keepalive, idle) {
            (Some(keepalive), Some(idle)) if idle.0 < keepalive.0 => Some(idle),
            (Some(keepalive), _) => Some(keepalive),
            (None, idle) => idle,
        }
    }

    /// Acts on a deadline returned by [`poll_timeout`](Self::poll_timeout) that has passed:
    /// queues a keepalive ping, a close frame 1001 (idle) or 1011 (unanswered ping) on `conn`.
    pub fn handle_timeout(
        &mut self,
        which: Deadline,
        conn: &mut Connection,
        now: Instant,
    ) -> TimerAction {
        match which {
            Deadline::Close | Deadline::Write => TimerAction::Abort(which),
            Deadline::Pong => {
                // No protocol rule was broken, but the peer is unresponsive: 1011.
                let _ = conn.close(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
                TimerAction::Abort(Deadline::Pong)
            }
            Deadline::Ping => {
                self.ping_sent = Some((now, conn.pongs_received()));
                // A ping that cannot go out now (a frame of ours is half sent) still counts
                // as sent: the pong deadline bounds the wait instead of a retry loop.
                let _ = conn.send_ping(b"keepalive");
                TimerAction::Flush
            }
            Deadline::Idle => {
                let _ = conn.close(CloseCode::GOING_AWAY, "idle timeout");
                self.start_closing(now);
                TimerAction::Flush
            }
        }
    }
}
