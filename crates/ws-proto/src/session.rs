//! The session: a [`Connection`] with its timers and its transport policy, so that a driver
//! is only I/O. See [`Session`].

use std::time::Instant;

use crate::close::CloseCode;
use crate::connection::Connection;
use crate::error::SendError;
use crate::timers::{Deadline, TimerAction, TimerSettings, Timers};
use crate::vocab::{Role, State};

/// What the driver does to the transport, from [`Session::poll_transport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportCommand {
    /// End our side of the stream (for TCP: `shutdown(Write)`, which sends FIN), and keep
    /// reading: what the peer still sends is read and dropped until its side ends too, so
    /// that closing never meets unread input (which makes TCP send a reset instead of FIN).
    ShutdownWrite,
    /// Close the transport: both sides are done, or a deadline gave up on them.
    Close,
}

/// One WebSocket connection with everything a driver would otherwise decide for itself:
/// the protocol's timers (close, keepalive ping and pong, idle) and the blocked-write
/// deadline; when to read and when not to; what end of stream means; when the transport
/// may close and which side goes first (RFC 6455 §7.1.1). A driver is then only I/O:
///
/// 1. While [`wants_read`](Self::wants_read), read into
///    [`read_buffer`](Self::read_buffer) and report it with [`received`](Self::received)
///    (0 bytes: the stream ended).
/// 2. Poll the connection's events ([`connection_mut`](Self::connection_mut)) until `None`,
///    queueing replies.
/// 3. Write [`pending_output`](Self::pending_output); report it with
///    [`wrote`](Self::wrote), or [`write_blocked`](Self::write_blocked) when the transport
///    takes nothing more for now.
/// 4. Carry out [`poll_transport`](Self::poll_transport) until it returns `None`.
/// 5. Wait for the transport, or until [`poll_timeout`](Self::poll_timeout)'s deadline, and
///    then call [`handle_timeout`](Self::handle_timeout).
///
/// Reading stops while output is owed: a peer that does not read what we send gets no more
/// of our attention until it does (backpressure), and the write timeout bounds the wait.
/// Inside a message from the peer, reading goes on up to
/// [`Connection::max_owed_in_message`]: a peer that writes a whole message before it reads
/// its echo would otherwise deadlock with a reply that streams.
///
/// ```
/// use std::time::Instant;
/// use ws_proto::{Connection, Event, ProtocolConfig, Session, TransportCommand};
///
/// let now = Instant::now();
/// let mut session = Session::new(Connection::server(ProtocolConfig::default()), now);
/// // A masked "Hello" (RFC 6455 §5.7), and then the client half-closes (FIN, no close).
/// let hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// session.read_buffer(hello.len())[..hello.len()].copy_from_slice(&hello);
/// session.received(hello.len(), now);
/// session.received(0, now);
/// let conn = session.connection_mut();
/// while let Some((event, mut sender)) = conn.poll_event_with_sender() {
///     if let Event::Message(message) = event {
///         sender.send_message(message.kind(), message.as_bytes())?;
///     }
/// }
/// assert!(!session.wants_read()); // the echo is owed, and the input has ended
/// assert_eq!(session.pending_output(), b"\x81\x05Hello");
/// session.wrote(7);
/// // The echo is out: end the stream.
/// assert_eq!(session.poll_transport(), Some(TransportCommand::ShutdownWrite));
/// assert_eq!(session.poll_transport(), Some(TransportCommand::Close));
/// assert_eq!(session.poll_transport(), None);
/// # Ok::<(), ws_proto::SendError>(())
/// ```
#[derive(Debug)]
pub struct Session {
    conn: Connection,
    timers: Timers,
    /// Since when output has waited for a transport that takes nothing.
    write_blocked_since: Option<Instant>,
    /// The peer ended its side of the stream.
    read_closed: bool,
    /// We ended ours ([`TransportCommand::ShutdownWrite`] was handed out).
    write_closed: bool,
    /// The transport is closed, or must be ([`TransportCommand::Close`] was handed out, or
    /// the driver reported it failed).
    closed: bool,
    /// The pongs received when [`poll_timeout`](Self::poll_timeout) last ran in the steady
    /// state (see `steady`); `None` when it last ran otherwise, or a deadline was handled
    /// since (see [`timeout_not_earlier`](Self::timeout_not_earlier)).
    steady_pongs: Option<u64>,
}

impl Session {
    /// A session for a connection whose opening handshake completed at `now`.
    pub fn new(conn: Connection, now: Instant) -> Self {
        Self {
            conn,
            timers: Timers::new(now),
            write_blocked_since: None,
            read_closed: false,
            write_closed: false,
            closed: false,
            steady_pongs: None,
        }
    }

    /// The protocol state machine.
    #[inline]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The protocol state machine, to poll events and queue frames.
    #[inline]
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The connection, without the session.
    pub fn into_connection(self) -> Connection {
        self.conn
    }

    // ---- input -------------------------------------------------------------------------------

    /// Whether the driver should read now: the stream has not ended, the transport is not
    /// closed, and no output is owed — or the peer is inside a message and what is owed is
    /// within [`Connection::max_owed_in_message`] (see [`Connection::takes_input`]: a peer
    /// that writes a whole message before it reads must not deadlock with its reply). After
    /// the close handshake this stays true until the peer ends its side (a client waits for
    /// the server to close first, §7.1.1; a server drains what the peer still sends),
    /// bounded by the close timeout.
    #[inline]
    pub fn wants_read(&self) -> bool {
        !self.read_closed && !self.closed && self.conn.takes_input(1)
    }

    /// Space for at least `min` bytes to read into; report them with
    /// [`received`](Self::received).
    #[inline]
    pub fn read_buffer(&mut self, min: usize) -> &mut [u8] {
        self.conn.input_buffer(min)
    }

    /// Records a read of `n` bytes into [`read_buffer`](Self::read_buffer) at `now`; 0 means
    /// the peer ended the stream.
    ///
    /// # Panics
    ///
    /// If `n` is more than the read buffer's length.
    #[inline]
    pub fn received(&mut self, n: usize, now: Instant) {
        if self.record_read(n) {
            self.timers.received(now);
        }
    }

    /// [`received`](Self::received) without the time, for a driver whose
    /// [`TimerSettings`] time no deadline from input
    /// ([`follows_input`](TimerSettings::follows_input): no keepalive, no idle timeout), so
    /// that a read costs it no reading of the clock. With either on, use `received`: this
    /// leaves those deadlines timed from the last read that gave the time.
    ///
    /// # Panics
    ///
    /// If `n` is more than the read buffer's length.
    #[inline]
    pub fn received_untimed(&mut self, n: usize) {
        self.record_read(n);
    }

    /// Records a read of `n` bytes (0: the end of the stream); whether it brought input.
    #[inline]
    fn record_read(&mut self, n: usize) -> bool {
        if n == 0 {
            self.read_closed = true;
            self.conn.receive_eof();
            return false;
        }
        self.conn.input_written(n);
        true
    }

    /// Feeds bytes read elsewhere (a reader with its own buffer), as
    /// [`received`](Self::received) does; empty `data` means the stream ended.
    pub fn receive_data(&mut self, data: &[u8], now: Instant) {
        let buf = self.read_buffer(data.len());
        buf[..data.len()].copy_from_slice(data);
        self.received(data.len(), now);
    }

    /// Whether the peer ended its side of the stream.
    #[inline]
    pub fn read_closed(&self) -> bool {
        self.read_closed
    }

    // ---- output ------------------------------------------------------------------------------

    /// Bytes waiting to be written to the transport.
    #[inline]
    pub fn pending_output(&self) -> &[u8] {
        self.conn.pending_output()
    }

    /// Records that a write made progress: the transport took bytes, `n` of them from
    /// [`pending_output`](Self::pending_output) (the rest from a payload the driver writes
    /// after it, such as one sent in place). The write timeout starts again from the next
    /// [`write_blocked`](Self::write_blocked).
    #[inline]
    pub fn wrote(&mut self, n: usize) {
        self.conn.consume_output(n);
        self.write_blocked_since = None;
    }

    /// Records that the transport took nothing at `now` with output still pending: the
    /// write timeout runs from the first such report until output moves again.
    #[inline]
    pub fn write_blocked(&mut self, now: Instant) {
        self.write_blocked_since.get_or_insert(now);
    }

    /// Records that the transport is closed: it failed, or the driver closed it (a stream
    /// that cannot end one side alone, such as one whose `close` ends both, is closed once
    /// [`TransportCommand::ShutdownWrite`] is carried out). Nothing more is read or written,
    /// and [`is_closed`](Self::is_closed) is true.
    pub fn transport_closed(&mut self) {
        self.closed = true;
    }

    /// Whether the transport is closed or must be: nothing more can be sent. A send queued
    /// now would never be written.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // ---- commands ----------------------------------------------------------------------------

    /// Starts the close handshake at `now` (§7.1.2). If a frame of ours is half sent, the
    /// close frame follows it: nothing may interrupt a frame.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        self.conn.close(code, reason)?;
        self.timers.start_closing(now);
        Ok(())
    }

    // ---- the transport -----------------------------------------------------------------------

    /// What to do to the transport now, if anything; call until `None`. Nothing is asked
    /// while output is owed. A server ends its side first
    /// ([`ShutdownWrite`](TransportCommand::ShutdownWrite)) once the close handshake is
    /// done, the connection failed or the peer's stream ended, and the transport closes once
    /// the peer's side has ended too; a client ends its side only after the server's
    /// (§7.1.1), within the close timeout.
    ///
    /// After [`handle_timeout`](Self::handle_timeout) gave up ([`TimerAction::Abort`]) or
    /// [`transport_closed`](Self::transport_closed), nothing more is asked: the session is
    /// over ([`is_closed`](Self::is_closed)) and the driver closes the transport itself.
    #[inline]
    pub fn poll_transport(&mut self) -> Option<TransportCommand> {
        // Nothing ends while output is owed, or inside a frame of ours (a close frame owed
        // waits for it to complete; the close timer bounds the wait).
        if self.closed || !self.conn.pending_output().is_empty() || self.conn.frame_in_progress() {
            return None;
        }
        // §7.1.1: "the server MUST close the underlying TCP connection immediately"; the
        // client waits for it to, after a failure too (the server closes once it has our
        // close frame), so that the client's close frame is not lost to a reset.
        let client = self.conn.role() == Role::Client;
        if !self.conn.should_close_transport() || (client && !self.read_closed) {
            return None;
        }
        if !self.write_closed {
            self.write_closed = true;
            return Some(TransportCommand::ShutdownWrite);
        }
        if self.read_closed {
            self.closed = true;
            return Some(TransportCommand::Close);
        }
        None
    }

    // ---- timers ------------------------------------------------------------------------------

    /// The next deadline and what it is for, given the connection's state at `now`: the
    /// write timeout while output is blocked, the close timeout once the connection is not
    /// open, otherwise keepalive and idle. `None` when nothing is timed (or the transport is
    /// closed).
    pub fn poll_timeout(
        &mut self,
        settings: &TimerSettings,
        now: Instant,
    ) -> Option<(Instant, Deadline)> {
        if self.closed {
            return None;
        }
        let protocol = self.timers.poll_timeout(settings, &self.conn, now);
        self.steady_pongs = self.steady().then(|| self.conn.pongs_received());
        let Some(since) = self.write_blocked_since else { return protocol };
        let write = (since + settings.write_timeout, Deadline::Write);
        // The earlier of the two; the write deadline on a tie.
        Some(match protocol {
            Some(protocol) if protocol.0 < write.0 => protocol,
            _ => write,
        })
    }

    /// Whether the next deadline is no earlier than what [`poll_timeout`](Self::poll_timeout)
    /// last returned (with the same settings), `None` included: since then nothing that can
    /// bring a deadline forward has happened (a write that blocked, a close, a pong, a
    /// deadline handled), only input, which pushes keepalive and idle deadlines back. A
    /// driver waiting on a timer armed for that deadline (or on none, when there was none)
    /// may then go on waiting without reading the clock or calling `poll_timeout`: it does
    /// so once the timer fires.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ws_proto::{Connection, ProtocolConfig, Session, TimerSettings};
    ///
    /// let start = Instant::now();
    /// let mut session = Session::new(Connection::server(ProtocolConfig::default()), start);
    /// let mut settings = TimerSettings::default();
    /// settings.idle_timeout = Some(Duration::from_secs(60));
    /// let first = session.poll_timeout(&settings, start);
    /// // A read later on (the first byte of a frame) moves the idle deadline back: the
    /// // timer armed for `first` stands.
    /// session.read_buffer(1)[0] = 0x81;
    /// session.received(1, start + Duration::from_secs(1));
    /// assert!(session.timeout_not_earlier());
    /// // A write that blocks brings the write deadline in.
    /// session.write_blocked(start + Duration::from_secs(2));
    /// assert!(!session.timeout_not_earlier());
    /// # let _ = first;
    /// ```
    #[inline]
    pub fn timeout_not_earlier(&self) -> bool {
        self.steady() && self.steady_pongs == Some(self.conn.pongs_received())
    }

    /// Open, the peer's side not ended, no write blocked, no close timer: only keepalive and
    /// idle deadlines run, and input only pushes them back.
    #[inline]
    fn steady(&self) -> bool {
        !self.closed
            && !self.read_closed
            && self.write_blocked_since.is_none()
            && self.conn.state() == State::Open
            && self.timers.closing_since().is_none()
    }

    /// Acts on a deadline from [`poll_timeout`](Self::poll_timeout) that has passed. On
    /// [`TimerAction::Abort`] the transport is closed for the session's part: the driver
    /// makes one try to write what is pending (a 1011 close frame after an unanswered ping)
    /// and closes it.
    pub fn handle_timeout(&mut self, which: Deadline, now: Instant) -> TimerAction {
        self.steady_pongs = None;
        let action = match which {
            Deadline::Write => TimerAction::Abort(Deadline::Write),
            _ => self.timers.handle_timeout(which, &mut self.conn, now),
        };
        if let TimerAction::Abort(_) = action {
            self.closed = true;
        }
        action
    }

    /// The round trip of the last keepalive ping answered since the last call (see
    /// [`Timers::take_ping_rtt`]).
    pub fn take_ping_rtt(&mut self) -> Option<std::time::Duration> {
        self.timers.take_ping_rtt()
    }

    /// Whether the connection is still open for messages both ways.
    #[inline]
    pub fn is_open(&self) -> bool {
        !self.closed && self.conn.state() == State::Open
    }
}
