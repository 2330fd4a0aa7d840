//! What an application gives the engine: a [`Handler`] per connection, which sees the
//! connection's events and replies through a [`Reply`]; and what it gets back: a
//! [`ConnHandle`] to send to or close the connection from anywhere.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};

use crate::budget::Budget;
use crate::handle::ConnHandle;
use tracing::{error, info, warn};
use ws_proto::{
    Chunk, CloseCode, Connection, DIRECT_WRITE_MIN, DirectWrite, Event, Forwarder, ProtocolError,
    SendError, Sender,
};

/// One connection's application logic, run on the connection's engine thread (or task).
/// Per-connection state lives in the handler itself.
///
/// ```
/// use ws_proto::Event;
/// use ws_server::{Handler, Reply};
///
/// /// Answers every text message with its length.
/// struct Lengths;
///
/// impl Handler for Lengths {
///     fn on_event(&mut self, event: Event<'_>, reply: &mut Reply<'_>) {
///         if let Event::Message(message) = event {
///             let _ = reply.send_text(&message.as_bytes().len().to_string());
///         }
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// The connection is open; `handle` sends to it or closes it from other threads or tasks
    /// (keep a clone to broadcast).
    fn on_open(&mut self, handle: &ConnHandle) {
        let _ = handle;
    }

    /// An event from the peer. It borrows the connection's buffers: reply straight from it
    /// through `reply` (copied once into the output, or written straight to the socket for
    /// large frame data), or copy out what you keep. Pings are answered and close frames
    /// returned already; after [`Event::Close`], [`Event::Failed`] or
    /// [`Event::Disconnected`] the engine ends the session itself.
    fn on_event(&mut self, event: Event<'_>, reply: &mut Reply<'_>);

    /// The session ended, however it ended (the engine shutting down with it still open
    /// included). Called once, after [`on_open`](Self::on_open); a handler whose connection
    /// never opened on an engine (it could not be registered, or its engine had ended) is
    /// dropped without either.
    fn on_close(&mut self, end: &End) {
        let _ = end;
    }

    /// The connection's frames as ws-proto parsed and encoded them since the last call, for a
    /// connection accepted with [`Accept::inspect`](crate::Accept::inspect): after each
    /// turn that logged any, and once more before [`on_close`](Self::on_close). A frame
    /// inspector; other handlers never see it.
    fn on_frames(&mut self, frames: ws_proto::Frames) {
        let _ = frames;
    }

    /// Bytes the handler holds for its connection beyond its own struct (a message it
    /// assembles, a fragment it forwards), counted against the server's memory budget
    /// ([`Options::max_memory`](crate::Options::max_memory)) after each of its events.
    /// Default 0.
    fn memory(&self) -> usize {
        0
    }
}

/// How a connection ended, as [`Handler::on_close`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub enum End {
    /// The close handshake completed; the code is the peer's (or ours, if the peer's close
    /// frame never came because we ended first).
    Closed(CloseCode),
    /// The peer broke the protocol; the close frame with the error's code was sent.
    Failed(ProtocolError),
    /// The peer ended the stream without a close frame (1006).
    Disconnected,
    /// The stream failed or a deadline passed (write, close, keepalive).
    Error(io::Error),
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(code) => write!(f, "closed with {}", code.0),
            Self::Failed(err) => write!(f, "failed with {}: {err}", err.close_code().0),
            Self::Disconnected => f.write_str("peer went away (1006)"),
            Self::Error(err) => write!(f, "connection error: {err}"),
        }
    }
}

impl End {
    /// The close code the session ended with: the one in the close handshake (the peer's, or
    /// ours when the peer's never came), the code we failed it with, or 1006 (Abnormal
    /// Closure) when it ended without a close handshake: the peer went away, the stream
    /// failed, or a deadline passed (a keepalive timeout's 1011 is sent, not waited for).
    pub fn code(&self) -> CloseCode {
        match self {
            Self::Closed(code) => *code,
            Self::Failed(err) => err.close_code(),
            Self::Disconnected | Self::Error(_) => CloseCode::ABNORMAL,
        }
    }
}

/// The access log: one line per connection as it ends, under the target `ws_server::access`
/// (at info, or warn when the session failed or errored): the peer, how long it was open,
/// WebSocket bytes read and written after the opening handshake (plaintext, under TLS),
/// data messages received and queued to send, the close code ([`End::code`]), which end
/// closed first (`client`, `server`, or `none` when the stream just ended) and how it ended.
pub(crate) fn log_end(
    peer: SocketAddr,
    end: &End,
    conn: &Connection,
    duration: std::time::Duration,
    read: u64,
    written: u64,
) {
    let closed_by = match conn.closed_by() {
        Some(ws_proto::Role::Client) => "client",
        Some(ws_proto::Role::Server) => "server",
        None => "none",
    };
    let duration_ms = duration.as_millis() as u64;
    let (messages_in, messages_out) = (conn.messages_received(), conn.messages_sent());
    let code = end.code().0;
    macro_rules! access {
        ($level:ident) => {
            $level!(
                target: "ws_server::access",
                %peer, duration_ms, bytes_in = read, bytes_out = written, messages_in,
                messages_out, code, closed_by, "{end}"
            )
        };
    }
    match end {
        End::Closed(_) | End::Disconnected => access!(info),
        End::Failed(_) | End::Error(_) => access!(warn),
    }
}

/// Replies to the event being handled: a [`Sender`] (every command of it is reachable through
/// `Deref`), whose frame data is written straight to the socket where the engine can, so a
/// forwarded frame is copied by no one but the kernel. Errors are [`SendError`]:
/// [`SendError::Closed`] once a close frame was sent.
pub struct Reply<'a> {
    sender: Sender<'a>,
    direct: Option<DirectWrite<'a>>,
}

impl fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply").field("direct", &self.direct.is_some()).finish_non_exhaustive()
    }
}

impl<'a> Deref for Reply<'a> {
    type Target = Sender<'a>;

    fn deref(&self) -> &Sender<'a> {
        &self.sender
    }
}

impl DerefMut for Reply<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.sender
    }
}

impl<'a> Reply<'a> {
    #[inline]
    pub(crate) fn new(sender: Sender<'a>, direct: Option<DirectWrite<'a>>) -> Self {
        Self { sender, direct }
    }

    /// Adds payload to the frame begun with [`Sender::begin_frame`], as
    /// [`Sender::send_frame_data`] does; from [`DIRECT_WRITE_MIN`] bytes it is offered to the
    /// socket first and copied only if the socket does not take it all.
    #[inline]
    pub fn send_frame_data(&mut self, data: &[u8]) -> Result<(), SendError> {
        match self.direct.as_mut() {
            Some(write) if data.len() >= DIRECT_WRITE_MIN => {
                self.sender.send_frame_data_via(data, |pending, data| write(pending, data))
            }
            _ => self.sender.send_frame_data(data),
        }
    }

    /// Forwards a received chunk frame for frame with `forwarder` (see [`Forwarder`]), large
    /// binary payload straight to the socket where the engine can.
    #[inline]
    pub fn forward(
        &mut self,
        forwarder: &mut Forwarder,
        chunk: &Chunk<'_>,
    ) -> Result<(), SendError> {
        let direct = self.direct.as_mut().map(|write| &mut **write as DirectWrite<'_>);
        forwarder.forward(&mut self.sender, chunk, direct)
    }
}

/// Runs a handler callback, `what`, so that a panic in it ends only its connection: the
/// panic is caught and logged, and `None` returned. The engine then closes the connection
/// with 1011 and calls no more of that handler (it is dropped with its connection), and
/// every other connection of the engine carries on.
///
/// (With `panic = "abort"` a panic still ends the process: there is nothing to catch.)
#[inline]
pub(crate) fn guarded<R>(peer: SocketAddr, what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(not a string)".to_owned());
            error!(%peer, "the handler panicked in {what}: {message}; closing with 1011");
            // The payload's own drop may panic too: that one is not let out either.
            if let Err(again) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(panic)))
            {
                std::mem::forget(again);
            }
            None
        }
    }
}

/// Drops a handler under [`guarded`]: a `Drop` that panics must not end the engine.
pub(crate) fn drop_handler<H>(peer: SocketAddr, handler: H) {
    let _ = guarded(peer, "drop", move || drop(handler));
}

/// The error a connection ends with when its handler panicked.
pub(crate) fn panicked() -> io::Error {
    io::Error::other("the handler panicked")
}

/// Hands the frames `conn` logged to `handler`, if it is inspected and logged any. `false`
/// if the handler panicked.
#[inline]
pub(crate) fn hand_frames<H: Handler + ?Sized>(
    conn: &mut Connection,
    handler: &mut H,
    peer: SocketAddr,
) -> bool {
    if let Some(frames) = conn.take_frames() {
        if !frames.records.is_empty() || frames.dropped > 0 {
            return guarded(peer, "on_frames", || handler.on_frames(frames)).is_some();
        }
    }
    true
}

/// What one pass over a connection's buffered events did.
pub(crate) struct Pass {
    /// How the session ended, if it did.
    pub(crate) end: Option<End>,
    /// Stopped at the high-water mark with events possibly left: write, then pass again
    /// (no more input is taken until some of the output is written).
    pub(crate) more: bool,
    /// Stopped with input left because what it queued would spend the memory budget: report
    /// what the connection holds, then wait for the budget before passing again.
    pub(crate) over_budget: bool,
    /// The handler panicked: a close frame 1011 is queued, and the handler must not be
    /// called again (`end` is set too).
    pub(crate) panicked: bool,
    /// ... inside a frame of ours it had begun: no close frame can follow, so the stream is
    /// to be ended now (the peer sees it end mid-frame: 1006).
    pub(crate) abort: bool,
}

/// Polls the events buffered in `conn` and hands them to `handler`, until an end (close,
/// failure, disconnection), the input runs out, or `high_water` bytes of output are queued
/// (backpressure: what is queued is written before more events are taken) and the peer is
/// not inside a message (within one, input is taken up to
/// [`Connection::max_owed_in_message`]; see [`Connection::takes_input`]). Every engine
/// pumps events through this one function.
pub(crate) fn pump<H: Handler + ?Sized>(
    conn: &mut Connection,
    handler: &mut H,
    peer: SocketAddr,
    high_water: usize,
    budget: &Budget,
    mut direct: Option<DirectWrite<'_>>,
) -> Pass {
    let mut pass =
        Pass { end: None, more: false, over_budget: false, panicked: false, abort: false };
    // What this pass adds is not in the budget until the driver reports it: every 64 KiB of
    // output it queues, the pass looks whether the budget has room for it.
    let owed_at_start = conn.pending_output().len();
    let mut next_look = owed_at_start + BUDGET_LOOK;
    while let Some((event, sender)) = conn.poll_event_with_sender() {
        let end = match event {
            Event::Close(frame) => Some(End::Closed(frame.code)),
            Event::Failed(err) => Some(End::Failed(err)),
            Event::Disconnected => Some(End::Disconnected),
            _ => None,
        };
        let direct = direct.as_mut().map(|write| &mut **write as DirectWrite<'_>);
        let called =
            guarded(peer, "on_event", || handler.on_event(event, &mut Reply::new(sender, direct)));
        if called.is_none() {
            // The close frame cannot go out inside a frame of ours that the handler will
            // never finish: then the connection is aborted instead (`Pass::abort`).
            pass.abort = conn.frame_in_progress();
            if !pass.abort {
                let _ = conn.close(CloseCode::INTERNAL_ERROR, "");
            }
            pass.end = Some(End::Error(panicked()));
            pass.panicked = true;
            break;
        }
        if end.is_some() {
            pass.end = end;
            break;
        }
        if !conn.takes_input(high_water) {
            pass.more = true;
            break;
        }
        let owed = conn.pending_output().len();
        if owed >= next_look {
            let added = owed.saturating_sub(owed_at_start);
            if budget.used() + added >= budget.limit() && conn.buffered_input() > 0 {
                pass.over_budget = true;
                break;
            }
            next_look = owed + BUDGET_LOOK;
        }
    }
    pass
}

/// How much output a pass queues between looks at the memory budget.
const BUDGET_LOOK: usize = 64 << 10;
