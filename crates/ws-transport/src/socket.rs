//! [`WebSocket`]: a `ws-proto` session driven over an async stream.
//!
//! Everything here is I/O: the policy (timers, when to read, when and how the stream ends)
//! is [`ws_proto::Session`]'s. The state lives in the [`WebSocket`], never in a future, so
//! the poll functions can be called again after any `Pending` and the async fns built on
//! them are cancel-safe.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite, future};
use ws_proto::{
    CloseCode, Connection, Deadline, Event, PolledEvent, Session, State, TimerAction,
    TransportCommand,
};

use crate::config::Config;
use crate::error::{End, Error, Timeout};
use crate::message::{IN_PLACE_MIN, Message, Outgoing};
use crate::pool;
use crate::runtime::{AsyncTimer, Runtime};

/// The smallest read requested: enough for small messages in one read.
const MIN_READ: usize = 2 << 10;

/// Bytes one poll of [`WebSocket::recv`] reads, and one call of the write loop writes, before
/// it gives way: it has its task woken again (see [`Runtime::yield_turn`]) and returns
/// `Pending`, so that a message of many megabytes moving as fast as the peer sends or reads
/// it delays the other tasks on the thread (small messages on other connections) by one turn
/// of this size, not by the whole message (tokio's cooperative budget alone yields only
/// after 128 reads, 8 MiB at 64 KiB each).
pub(crate) const TURN_BYTES: usize = 1 << 20;

/// Reads per poll while the close handshake finishes (what the peer sends then is dropped):
/// a peer that keeps sending cannot hold the task.
const FINISH_READS: usize = 16;

/// A WebSocket over a stream `S` (any `futures-io` `AsyncRead + AsyncWrite`), after the opening
/// handshake. Get one from [`accept`](crate::accept) or [`connect`](crate::connect).
///
/// High level: [`recv`](Self::recv), [`send`](Self::send), [`close`](Self::close). Low level,
/// for streaming and zero-copy replies: [`connection_mut`](Self::connection_mut) to poll
/// events and queue frames, [`read_more`](Self::read_more) and [`flush`](Self::flush) to move
/// bytes. Each async fn has a poll function underneath.
///
/// # Cancellation
///
/// Every async fn is cancel-safe: dropping its future (in `select!`, or at a timeout) loses
/// nothing and corrupts nothing. A message [`recv`](Self::recv) had received is returned by
/// the next `recv`; a message [`send`](Self::send) or [`feed`](Self::feed) had queued is
/// written by the next call that writes (any send, `flush` or `close`, or `recv` once it
/// waits for input), in order.
/// A message whose `feed` was dropped before it returned was not queued.
///
/// Once the stream failed, timed out or was closed, sends return [`Error::Closed`].
///
/// # Ending the stream
///
/// The session ends the stream as RFC 6455 §7.1.1 asks: a server ends its side first
/// (`poll_close`) and then reads, dropping what comes, until the peer ends its side, so that
/// closing never meets unread input (which makes TCP send a reset, and can lose our close
/// frame); a client waits for the server to end first. Both waits are bounded by the close
/// timeout. `poll_close` must therefore end the write side alone, as TCP's `shutdown(Write)`
/// does: smol's `smol::net::TcpStream` (async-net), tokio's streams through `tokio-util`'s
/// compat layer, and TLS streams do. async-io's `Async<TcpStream>` does not (its
/// `poll_close` only flushes; the FIN goes when it is dropped): convert it with
/// `smol::net::TcpStream::from`, or a server's close waits for the close timeout whenever the
/// client waits for the server to close first, as it should.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    session: Session,
    config: Config,
    /// The next deadline, armed at `timer_at`.
    runtime: Arc<dyn Runtime>,
    /// Made when a deadline is first waited for.
    timer: Option<Pin<Box<dyn AsyncTimer>>>,
    timer_at: Option<Instant>,
    /// The session had a deadline when `poll_deadline` last asked (`false`: none, nothing
    /// to wait for but input).
    timed: bool,
    /// A deadline is timed from the last input (keepalive or idle timeout): reads record
    /// the time. Without, they read no clock.
    timed_reads: bool,
    /// A message sent in place whose payload is still to be written; see [`InFlight`].
    in_flight: Option<InFlight>,
    /// A message received and not yet returned (its `recv` was dropped while writing).
    received: Option<Message>,
    /// How the session ended, once the peer's close, a failure or the end of stream was
    /// seen; reported once by `recv`.
    end: Option<End>,
    peer_close: Option<(CloseCode, String)>,
    /// `poll_close` of the stream's write side was begun and has not completed.
    shutting_down: bool,
    /// Bytes were written that the stream's `poll_flush` has not yet confirmed (a buffering
    /// stream, TLS say, may hold them).
    unflushed: bool,
    bytes_read: u64,
    bytes_written: u64,
    /// Bytes to ask for in the next read, adapted to recent reads.
    read_size: usize,
    /// Bytes read since a read last left the stream drained (took less than it asked).
    burst: usize,
    /// The connection's buffers went to the thread's pool at its last wait (see `pool`).
    pooled: bool,
    /// The connection's events were polled until it had none, and no input reached it
    /// since: polling again would find none (`recv` skips that after each wake-up).
    drained: bool,
}

/// The payload of a frame sent in place: the first `after` bytes of the pending output (the
/// frames queued before it, its own header last) go out first, then the payload from `sent`.
#[derive(Debug)]
struct InFlight {
    payload: Vec<u8>,
    sent: usize,
    after: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream whose opening handshake is complete. `already_read` holds bytes read
    /// past the handshake: the start of the frame stream.
    pub fn from_parts(stream: S, conn: Connection, config: Config, already_read: &[u8]) -> Self {
        let mut conn = conn;
        conn.receive_data(already_read);
        // Frame bytes that came with the handshake count as read.
        let bytes_read = conn.buffered_input() as u64;
        let runtime = config.runtime_or_default();
        let now = runtime.now();
        let timed_reads = config.timers().follows_input();
        Self {
            stream,
            session: Session::new(conn, now),
            runtime,
            config,
            timer: None,
            timer_at: None,
            timed: true,
            timed_reads,
            in_flight: None,
            received: None,
            end: None,
            peer_close: None,
            shutting_down: false,
            unflushed: false,
            bytes_read,
            bytes_written: 0,
            read_size: MIN_READ,
            burst: 0,
            pooled: false,
            drained: false,
        }
    }

    /// Takes the WebSocket apart, to drive the connection some other way (an event loop of
    /// one's own, say): the stream and the state machine, with any input already read and
    /// output not yet written still inside it. The timers' state is dropped.
    ///
    /// # Panics
    ///
    /// If a message sent in place is still being written (call [`flush`](Self::flush)
    /// first).
    pub fn into_parts(self) -> (S, Connection) {
        assert!(self.in_flight.is_none(), "into_parts with a message still being written");
        (self.stream, self.session.into_connection())
    }

    /// The time now, on the runtime's clock.
    fn now(&self) -> Instant {
        self.runtime.now()
    }

    /// The protocol state machine.
    pub fn connection(&self) -> &Connection {
        self.session.connection()
    }

    /// The protocol state machine, to poll events and queue frames directly.
    pub fn connection_mut(&mut self) -> &mut Connection {
        // The caller may feed it input or poll its events itself.
        self.drained = false;
        self.session.connection_mut()
    }

    /// The round trip of the last keepalive ping answered since the last call (see
    /// [`Session::take_ping_rtt`]).
    pub fn take_ping_rtt(&mut self) -> Option<std::time::Duration> {
        self.session.take_ping_rtt()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The peer's close code and reason, once its close frame arrived.
    pub fn peer_close(&self) -> Option<(CloseCode, &str)> {
        self.peer_close.as_ref().map(|(code, reason)| (*code, reason.as_str()))
    }

    /// Bytes of memory the WebSocket holds beyond its struct: the connection's
    /// ([`Connection::memory`]), a message sent in place still being written, and a message
    /// received and not yet returned. For a memory budget.
    pub fn memory(&self) -> usize {
        self.session.connection().memory()
            + self.in_flight.as_ref().map_or(0, |flight| flight.payload.capacity())
            + self.received.as_ref().map_or(0, Message::capacity)
    }

    /// Bytes read from and written to the stream since the handshake.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_read, self.bytes_written)
    }

    // ---- receiving ---------------------------------------------------------------------------

    /// Receives the next message. Pings are answered along the way. Returns `Ok(None)` once
    /// the close handshake completes (and after that); `Err` if the peer broke the protocol
    /// (after the close frame with the right code was sent) or the stream failed. Cancel-safe.
    ///
    /// What [`feed`](Self::feed) queued is written before it waits for input, not before it
    /// returns a message already read: an echo loop of `recv` and `feed` answers a peer that
    /// pipelines with one write per read, not one per message.
    ///
    /// Requires [`Delivery::Messages`](ws_proto::Delivery::Messages), the default; with
    /// chunks, poll [`connection_mut`](Self::connection_mut) instead.
    pub async fn recv(&mut self) -> Result<Option<Message>, Error> {
        future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The poll function under [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Message>, Error>> {
        let turn_ends = self.bytes_read + TURN_BYTES as u64;
        loop {
            // Output queued since the last wait (replies fed, pongs) is written when this is
            // about to wait for input (`poll_read_more` flushes first), not before each
            // message already read: a peer that pipelines gets its replies in one write.
            // Some goes first all the same: a frame sent in place must be whole before
            // anything else is queued, past the write buffer size nothing more is taken in
            // (backpressure), and a closing session writes as it goes.
            let owed = self.in_flight.is_some()
                || !self.session.is_open()
                || self.session.pending_output().len() >= self.config.write_buffer_size;
            let flushed = if owed { ready!(self.poll_flush(cx)) } else { Ok(()) };
            if self.received.is_none() && self.end.is_none() && flushed.is_ok() {
                let before = self.session.pending_output().len();
                self.take_events()?;
                if self.session.pending_output().len() > before {
                    // The connection answered a ping (or a close): that goes now, with what
                    // was fed before it, however long the application takes over the
                    // messages still to come.
                    ready!(self.poll_flush(cx)).ok();
                }
            }
            // A message received is returned even if writing failed since: the failure is
            // reported by the next call.
            if let Some(message) = self.received.take() {
                return Poll::Ready(Ok(Some(message)));
            }
            if let Some(end) = self.end {
                ready!(self.poll_finish(cx));
                self.end = Some(End::Reported);
                return Poll::Ready(end.result());
            }
            flushed?;
            if self.bytes_read >= turn_ends {
                // This poll's turn is spent with the message not yet whole: the rest is read
                // in the next, after the tasks that became ready meanwhile.
                self.runtime.yield_turn(cx);
                return Poll::Pending;
            }
            ready!(self.poll_read_more(cx))?;
        }
    }

    /// Polls the connection's events until a message or the end, keeping what `recv` returns.
    fn take_events(&mut self) -> Result<(), Error> {
        while !self.drained {
            let Some(polled) = self.session.connection_mut().poll_event_owned() else {
                self.drained = true;
                break;
            };
            let event = match polled {
                // Moved out of the connection when it was assembled there, not copied again.
                PolledEvent::Binary(data) => {
                    self.received = Some(Message::Binary(data));
                    return Ok(());
                }
                PolledEvent::Text(text) => {
                    self.received = Some(Message::Text(text));
                    return Ok(());
                }
                PolledEvent::Event(event) => event,
                // Nothing else is reported in message delivery.
                _ => continue,
            };
            match event {
                Event::Message(message) => {
                    self.received = Some(message.into());
                    return Ok(());
                }
                Event::Chunk(_) => {
                    return Err(Error::Unsupported(
                        "recv needs Delivery::Messages; poll the connection for chunks",
                    ));
                }
                Event::Close(frame) => {
                    self.peer_close = Some((frame.code, frame.reason.to_owned()));
                    self.end = Some(End::Closed);
                    return Ok(());
                }
                Event::Failed(err) => {
                    self.end = Some(End::Failed(err));
                    return Ok(());
                }
                Event::Disconnected => {
                    self.end = Some(End::Disconnected);
                    return Ok(());
                }
                _ => {}
            }
        }
        if self.session.connection().state() == State::Closed && self.end.is_none() {
            self.end = Some(End::Closed);
        }
        Ok(())
    }

    /// Reads once from the stream into the connection, handling keepalive, idle and close
    /// deadlines while waiting (writing the frames they queue). Output owed is written
    /// first; the read waits for it, except while the peer is inside a message (up to
    /// [`Connection::max_owed_in_message`](ws_proto::Connection::max_owed_in_message)
    /// owed), so that a reply streamed to a peer that writes a whole message before it
    /// reads does not deadlock. Returns `false` at the end of the stream. Cancel-safe.
    pub async fn read_more(&mut self) -> Result<bool, Error> {
        future::poll_fn(|cx| self.poll_read_more(cx)).await
    }

    /// The poll function under [`read_more`](Self::read_more).
    pub fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Error>> {
        loop {
            // Nothing is read while output is owed (backpressure), unless the peer is inside
            // a message: then we read on and hold the reply (see `Session::wants_read`), so
            // that a peer that writes a whole message before it reads is not deadlocked.
            if self.poll_flush(cx)?.is_pending() && !self.session.wants_read() {
                return Poll::Pending;
            }
            if self.session.is_closed() {
                return Poll::Ready(Err(Error::Closed));
            }
            if self.session.read_closed() {
                return Poll::Ready(Ok(false));
            }
            let max = self.config.read_buffer_size.max(MIN_READ);
            let size = self.read_size.clamp(MIN_READ, max);
            if self.pooled {
                // Buffers given to the thread's pool at the last wait: take some back.
                self.pooled = false;
                pool::take(self.session.connection_mut());
            }
            let buf = self.session.read_buffer(size);
            match Pin::new(&mut self.stream).poll_read(cx, buf) {
                Poll::Ready(Ok(n)) => {
                    if self.timed_reads {
                        self.session.received(n, self.now());
                    } else {
                        self.session.received_untimed(n);
                    }
                    self.drained = false;
                    if n == 0 {
                        return Poll::Ready(Ok(false));
                    }
                    self.bytes_read += n as u64;
                    // Grow the next read while reads fill the buffer. One that does not
                    // drained the stream: the next is sized to twice what came since it
                    // was last drained, so that what arrives together (a message larger
                    // than the last read, say) is taken in one read next time, not a read
                    // that fills the buffer and one more for the rest.
                    self.burst += n;
                    self.read_size = if n >= size {
                        size * 2
                    } else {
                        (std::mem::take(&mut self.burst) * 2).max(MIN_READ)
                    };
                    return Poll::Ready(Ok(true));
                }
                Poll::Ready(Err(err)) if err.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(self.failed(err))),
                Poll::Pending => {
                    // Nothing to read: the connection is idle. Its empty buffers go to the
                    // thread's pool (the next read on this thread takes them back, or
                    // another connection's does) and the rest is freed, so an idle
                    // connection costs only its structs (and a recycled message buffer of
                    // at most `ws_proto::RECYCLED_IDLE_MAX` bytes).
                    let conn = self.session.connection_mut();
                    self.pooled = pool::give(conn);
                    conn.release_idle_buffers();
                    let which = ready!(self.poll_deadline(cx));
                    self.on_deadline(which, cx)?;
                    // A ping or close frame was queued: write it, then wait for input again.
                    if self.poll_flush(cx)?.is_pending() && !self.session.wants_read() {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    // ---- sending -----------------------------------------------------------------------------

    /// Sends a message and waits until the stream has taken it. Cancel-safe: dropped after
    /// the message was queued, it is written by the next call that writes.
    ///
    /// A message of [`IN_PLACE_MIN`] bytes or more is not copied: its header and payload go
    /// out in one vectored write (a client masks the owned payload in place).
    pub async fn send(&mut self, message: impl Outgoing) -> Result<(), Error> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues a message, waiting only while more than [`Config::write_buffer_size`] bytes are
    /// queued (backpressure), or, once the peer has closed or broken the protocol, for the
    /// close handshake to finish before it refuses (see [`poll_ready`](Self::poll_ready)).
    /// Call [`flush`](Self::flush) after a batch, or let [`recv`](Self::recv) write it when
    /// it next waits for input.
    pub async fn feed(&mut self, message: impl Outgoing) -> Result<(), Error> {
        future::poll_fn(|cx| self.poll_ready(cx)).await?;
        self.start_send(message)
    }

    /// Ready to queue a message: nothing is being written in place, and no more than
    /// [`Config::write_buffer_size`] bytes are queued (writing them until that is so).
    ///
    /// [`Error::Closed`] once the connection is closing. When the peer closed it or broke
    /// the protocol, that answer waits until the close handshake has finished (within
    /// [`Config::close_timeout`]): a program that drops the WebSocket at a failed send, as
    /// `forward` and `?` do, then ends TCP cleanly instead of resetting it under the peer's
    /// close frame. What is left to receive is kept for [`recv`](Self::recv).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !self.session.is_open() {
            // A frame of ours begun in pieces holds the close reply back: no wait can end.
            if self.end.is_some() && !self.session.connection().frame_in_progress() {
                ready!(self.poll_finish(cx));
            }
            return Poll::Ready(Err(Error::Closed));
        }
        if self.in_flight.is_some()
            || self.session.pending_output().len() > self.config.write_buffer_size
        {
            ready!(self.poll_flush(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a message without waiting; call after [`poll_ready`](Self::poll_ready).
    /// Plain (uncompressed) owned messages of [`IN_PLACE_MIN`] bytes or more are written
    /// later straight from `message`, not copied.
    pub fn start_send(&mut self, message: impl Outgoing) -> Result<(), Error> {
        self.check_can_send()?;
        let kind = message.kind();
        let in_place = message.bytes().len() >= IN_PLACE_MIN
            && self.in_flight.is_none()
            && !self.session.connection().compression();
        if in_place {
            match message.into_owned_bytes() {
                Ok(mut payload) => {
                    self.session.connection_mut().sender().send_in_place(kind, &mut payload)?;
                    let after = self.session.pending_output().len();
                    self.in_flight = Some(InFlight { payload, sent: 0, after });
                    return Ok(());
                }
                Err(message) => return self.queue(message),
            }
        }
        self.queue(message)
    }

    fn queue(&mut self, message: impl Outgoing) -> Result<(), Error> {
        let conn = self.session.connection_mut();
        let queued = conn.sender().send_message(message.kind(), message.bytes());
        // The payload is copied: an owned one's buffer takes the next binary message this
        // connection receives (a binary echo loop then allocates nothing per message).
        if let Ok(buf) = message.into_owned_bytes() {
            conn.recycle(buf);
        }
        queued.map_err(closed_or)
    }

    /// Sends after the stream failed or ended, or after our close frame, are refused.
    fn check_can_send(&self) -> Result<(), Error> {
        if self.session.is_open() { Ok(()) } else { Err(Error::Closed) }
    }

    /// Sends a ping with up to 125 bytes of payload.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        future::poll_fn(|cx| self.poll_ready(cx)).await?;
        self.queue_ping(payload)?;
        self.flush().await
    }

    /// Queues a ping; call after [`poll_ready`](Self::poll_ready).
    pub(crate) fn queue_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.check_can_send()?;
        self.session.connection_mut().send_ping(payload).map_err(closed_or)
    }

    /// Whether messages may still be sent.
    pub(crate) fn is_open(&self) -> bool {
        self.session.is_open()
    }

    /// Writes all queued output, within [`Config::write_timeout`] of no progress, and ends
    /// the stream when the session says so. Cancel-safe.
    pub async fn flush(&mut self) -> Result<(), Error> {
        future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// The poll function under [`flush`](Self::flush).
    #[inline]
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The common case, on every poll of a connection with nothing to write: an open
        // session owes nothing and asks nothing of the transport (it ends the stream only
        // once closed). Kept out of line, the loop below costs a call and its frame.
        if !self.shutting_down
            && !self.unflushed
            && self.in_flight.is_none()
            && self.session.is_open()
            && self.session.pending_output().is_empty()
        {
            return Poll::Ready(Ok(()));
        }
        self.poll_flush_owed(cx)
    }

    /// [`poll_flush`](Self::poll_flush) with something to write, flush or end. Out of line,
    /// so that the check in `poll_flush` inlines into its callers.
    #[inline(never)]
    fn poll_flush_owed(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let turn_ends = self.bytes_written + TURN_BYTES as u64;
        loop {
            if self.shutting_down {
                // `poll_close` ends our side (TCP: FIN); errors are ignored, as the peer may be
                // gone already. The session then reads until the peer's side ends too.
                let closed = Pin::new(&mut self.stream).poll_close(cx);
                if closed.is_pending() {
                    self.session.write_blocked(self.now());
                    let which = ready!(self.poll_deadline(cx));
                    self.on_deadline(which, cx)?;
                    continue;
                }
                self.shutting_down = false;
            }
            if self.session.pending_output().is_empty() && self.in_flight.is_none() {
                if self.unflushed {
                    match Pin::new(&mut self.stream).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.unflushed = false,
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(self.failed(err))),
                        Poll::Pending => {
                            self.session.write_blocked(self.now());
                            let which = ready!(self.poll_deadline(cx));
                            self.on_deadline(which, cx)?;
                            continue;
                        }
                    }
                }
                match self.session.poll_transport() {
                    Some(TransportCommand::ShutdownWrite) => self.shutting_down = true,
                    // Both sides ended: the stream is dropped with the WebSocket.
                    Some(_) | None => return Poll::Ready(Ok(())),
                }
                continue;
            }
            if self.session.is_closed() {
                return Poll::Ready(Err(Error::Closed));
            }
            if self.bytes_written >= turn_ends {
                // A peer that reads as fast as this writes a large message: give way with
                // the rest still to write, as `poll_recv` does when reading.
                self.runtime.yield_turn(cx);
                return Poll::Pending;
            }
            match self.poll_write_some(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(self.failed(err))),
                Poll::Pending => {
                    self.session.write_blocked(self.now());
                    let which = ready!(self.poll_deadline(cx));
                    self.on_deadline(which, cx)?;
                }
            }
        }
    }

    /// One write: the pending output, with the payload sent in place after its header.
    fn poll_write_some(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let pending = self.session.pending_output();
        let (n, from_output) = match &mut self.in_flight {
            Some(flight) => {
                let parts = [
                    IoSlice::new(&pending[..flight.after]),
                    IoSlice::new(&flight.payload[flight.sent..]),
                ];
                let n = ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, &parts))?;
                let from_output = n.min(flight.after);
                flight.after -= from_output;
                flight.sent += n - from_output;
                if flight.sent == flight.payload.len() {
                    self.in_flight = None;
                }
                (n, from_output)
            }
            None => {
                let n = ready!(Pin::new(&mut self.stream).poll_write(cx, pending))?;
                (n, n)
            }
        };
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.bytes_written += n as u64;
        self.unflushed = true;
        self.session.wrote(from_output);
        Poll::Ready(Ok(()))
    }

    // ---- closing -----------------------------------------------------------------------------

    /// Closes the connection: sends a close frame (after a frame of ours that is half sent),
    /// waits up to [`Config::close_timeout`] for the peer's, and ends the stream (a client
    /// waits for the server to end it first, §7.1.1). Messages that arrive meanwhile are
    /// dropped. Works in either delivery mode. Cancel-safe: the close frame is queued once.
    ///
    /// A frame begun with [`Sender::begin_frame`](ws_proto::Sender::begin_frame) must be
    /// finished first: `close` refuses with
    /// [`SendError::FrameInProgress`](ws_proto::SendError::FrameInProgress) rather than wait
    /// for a frame that nothing else can finish.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        self.begin_close(code, reason)?;
        future::poll_fn(|cx| self.poll_close_handshake(cx)).await
    }

    /// [`close`](Self::close) with 1000 (Normal Closure), as a poll function (the `Sink`'s
    /// `poll_close`).
    pub fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.begin_close(CloseCode::NORMAL, "")?;
        self.poll_close_handshake(cx)
    }

    /// Queues the close frame, once.
    pub(crate) fn begin_close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        if self.session.connection().frame_in_progress() {
            return Err(Error::Send(ws_proto::SendError::FrameInProgress));
        }
        if self.session.is_open() {
            self.session.close(code, reason, self.now())?;
        }
        Ok(())
    }

    fn poll_close_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            ready!(self.poll_flush(cx)).or_else(ignore_closed)?;
            // Messages that arrive meanwhile are dropped; how the session ends is kept in
            // `end`, so that a close dropped while it finishes still reports it next time.
            while self.end.is_none() {
                let Some(event) = self.session.connection_mut().poll_event() else { break };
                self.end = match event {
                    Event::Close(frame) => {
                        self.peer_close = Some((frame.code, frame.reason.to_owned()));
                        Some(End::Closed)
                    }
                    Event::Failed(err) => Some(End::Failed(err)),
                    Event::Disconnected => Some(End::Disconnected),
                    _ => None,
                };
            }
            if self.end.is_some()
                || self.session.is_closed()
                || self.session.connection().state() == State::Closed
            {
                ready!(self.poll_finish(cx));
                return Poll::Ready(match self.end.replace(End::Reported) {
                    Some(End::Failed(err)) => Err(Error::Protocol(err)),
                    _ => Ok(()),
                });
            }
            // The close timer bounds the wait: Err(Timeout::Close) when the peer never answers.
            ready!(self.poll_read_more(cx))?;
        }
    }

    /// After the close handshake or a failure: writes what is queued, ends our side, and
    /// reads (dropping it) until the peer ends its side, within the close timeout. A peer
    /// that keeps sending meanwhile is read [`FINISH_READS`] times per poll, then the task
    /// yields; the close deadline is looked at on every pass, not only when a read waits.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..FINISH_READS {
            if ready!(self.poll_flush(cx)).is_err() || self.session.is_closed() {
                return Poll::Ready(());
            }
            if !self.session.wants_read() {
                return Poll::Ready(());
            }
            if let Poll::Ready(which) = self.poll_deadline(cx) {
                if self.on_deadline(which, cx).is_err() {
                    return Poll::Ready(());
                }
                continue;
            }
            if ready!(self.poll_read_more(cx)).is_err() {
                return Poll::Ready(());
            }
        }
        // Other tasks run before this one reads on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Gives up on the stream now, without the close handshake: one try to close it
    /// (`poll_close`, not waited for: over TLS that would wait for a peer that may not read
    /// to take the `close_notify`; a TCP socket ends when the WebSocket is dropped).
    /// Idempotent; errors are ignored, as the peer may already be gone. Sends fail with
    /// [`Error::Closed`] after it.
    pub async fn shutdown(&mut self) {
        if !self.session.is_closed() {
            self.session.transport_closed();
            let close = future::poll_fn(|cx| Pin::new(&mut self.stream).poll_close(cx));
            let _ = future::poll_once(close).await;
        }
    }

    // ---- timers ------------------------------------------------------------------------------

    /// Ready with the session's next deadline once it has passed.
    #[inline]
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Deadline> {
        // The common case, at every wait for input: nothing has brought a deadline forward
        // since the last look (only input came, which pushes deadlines back), and there was
        // none then: nothing to wait for but input, found without a call.
        if !self.timed && self.timer_at.is_none() && self.session.timeout_not_earlier() {
            return Poll::Pending;
        }
        self.poll_deadline_timed(cx)
    }

    #[inline(never)]
    fn poll_deadline_timed(&mut self, cx: &mut Context<'_>) -> Poll<Deadline> {
        // Nothing has brought a deadline forward since the last look, so the timer armed
        // then still stands: wait on it without reading the clock.
        if self.session.timeout_not_earlier() {
            if let (Some(timer), Some(_)) = (&mut self.timer, self.timer_at) {
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // It fired: look again below.
                self.timer_at = None;
            }
        }
        let settings = self.config.timers();
        // Bounded: each turn either returns or finds the timer fired, so time has moved on
        // to the deadline.
        loop {
            let now = self.now();
            let Some((at, which)) = self.session.poll_timeout(&settings, now) else {
                self.timed = false;
                return Poll::Pending;
            };
            self.timed = true;
            if at <= now {
                self.timer_at = None;
                return Poll::Ready(which);
            }
            // Re-armed only for an earlier deadline: activity moves keepalive and idle
            // deadlines later with every read, and re-arming a reactor timer per message costs
            // more than an early wake-up that finds the deadline moved and arms it again.
            if self.timer_at.is_none_or(|armed| at < armed) {
                match &mut self.timer {
                    Some(timer) => timer.as_mut().reset(at),
                    None => self.timer = Some(self.runtime.new_timer(at)),
                }
                self.timer_at = Some(at);
            }
            if let Some(timer) = &mut self.timer {
                ready!(timer.as_mut().poll(cx));
            }
            self.timer_at = None;
        }
    }

    /// Acts on a deadline that passed: `Ok` when frames were queued to write, the timeout
    /// when the session gave up (after one try to write a 1011 close frame).
    fn on_deadline(&mut self, which: Deadline, cx: &mut Context<'_>) -> Result<(), Error> {
        match self.session.handle_timeout(which, self.now()) {
            TimerAction::Abort(which) => {
                // Not inside a payload sent in place: that frame would be corrupt.
                if which == Deadline::Pong && self.in_flight.is_none() {
                    let _ =
                        Pin::new(&mut self.stream).poll_write(cx, self.session.pending_output());
                }
                let _ = Pin::new(&mut self.stream).poll_close(cx);
                Err(Error::Timeout(match which {
                    Deadline::Pong => Timeout::Pong,
                    Deadline::Write => Timeout::Write,
                    _ => Timeout::Close,
                }))
            }
            _ => Ok(()),
        }
    }

    /// The stream failed: nothing more is read or written.
    fn failed(&mut self, err: io::Error) -> Error {
        self.session.transport_closed();
        Error::Io(err)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Splits into a reader and a writer half, so that one task receives while others send.
    /// Both drive this WebSocket (its timers, close sequencing), each poll behind a lock held
    /// only while it runs.
    ///
    /// This is not `StreamExt::split` (which gives a sink and a stream, in that order, of
    /// the whole WebSocket): the writer here is `Clone`, its `close` only sends the close
    /// frame, and the reader runs the timers.
    pub fn split(self) -> (crate::WsReader<S>, crate::WsWriter<S>) {
        crate::split::split(self)
    }
}

/// A send refused by the connection because it is closing is [`Error::Closed`].
fn closed_or(err: ws_proto::SendError) -> Error {
    match err {
        ws_proto::SendError::Closed => Error::Closed,
        other => Error::Send(other),
    }
}

/// While closing, a stream that is already closed is not a failure.
fn ignore_closed(err: Error) -> Result<(), Error> {
    match err {
        Error::Closed => Ok(()),
        other => Err(other),
    }
}
