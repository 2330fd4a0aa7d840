//! The connection state machine (RFC 6455 §5, §6, §7): bytes in, events and bytes out.

use std::fmt;
use std::ops::Range;

use crate::close::{CloseCode, CloseFrame};
use crate::error::{ProtocolError, SendError};
#[cfg(feature = "deflate")]
use crate::extensions::{Decompressor, DeflateParams, INFLATE_STEP, InflateError};
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, RSV1, Status};
use crate::inspect::{FrameLog, Frames};
use crate::mask::apply_mask;
use crate::sender::{Output, RETAINED_BUFFER, Sender};
use crate::traffic::{Counts, Traffic};
use crate::utf8::Utf8Validator;
use crate::vocab::{
    Chunk, Delivery, MaskKeySource, MessageKind, MessageRef, ProtocolConfig, Role, State,
};

/// What the peer did, reported by [`Connection::poll_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A complete message ([`Delivery::Messages`]).
    Message(MessageRef<'a>),
    /// Part of a message ([`Delivery::Chunks`]).
    Chunk(Chunk<'a>),
    /// A ping. With [`ProtocolConfig::auto_pong`] the pong is already queued.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The peer's close frame. If we had not sent one, the answering close is already queued;
    /// either way the close handshake is complete.
    Close(CloseFrame<'a>),
    /// The peer broke the protocol. A close frame with the error's
    /// [`close_code`](ProtocolError::close_code) is queued; the connection is closed and
    /// ignores further input.
    Failed(ProtocolError),
    /// The peer closed the transport before the close handshake completed (code 1006).
    Disconnected,
}

/// An event from [`Connection::poll_event_owned`]: a binary message owned, a small text
/// message owned, or any other event as [`Connection::poll_event`] reports it.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolledEvent<'a> {
    /// A complete binary message ([`Delivery::Messages`]), owned: moved out of the
    /// connection when it was assembled there (it came in several frames or reads, or was
    /// inflated), copied out of the read buffer otherwise.
    Binary(Vec<u8>),
    /// A complete text message ([`Delivery::Messages`]) that fits in the buffer last
    /// [recycled](Connection::recycle), copied into it: receiving it allocates nothing.
    Text(String),
    /// Any other event, the other text messages included: a `String` built from owned
    /// bytes is validated again (safe code cannot skip that), which costs more than
    /// copying the `&str`.
    Event(Event<'a>),
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    fin: bool,
    mask: Option<[u8; 4]>,
    len: u64,
    remaining: u64,
    mask_offset: usize,
    /// A chunk of it has been reported (compressed frames, whose input is taken in steps).
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    reported: bool,
}

/// The data message being received.
#[derive(Debug, Clone, Copy)]
struct InMessage {
    kind: MessageKind,
    /// Payload bytes declared so far, all frames.
    declared: u64,
    /// A chunk of it has been reported.
    started: bool,
    /// RSV1 was set on its first frame: the payload is compressed (RFC 7692 §6).
    compressed: bool,
    /// Bytes inflated so far, for the message limit in chunk delivery.
    #[cfg_attr(not(feature = "deflate"), allow(dead_code))]
    inflated: usize,
}

/// Where a chunk sits in its frame.
#[derive(Debug, Clone, Copy)]
struct FramePos {
    len: u64,
    fin: bool,
    start: bool,
    end: bool,
}

/// Where an event's bytes live, as indices, so that the state machine can advance without
/// holding a borrow.
#[derive(Debug, Clone)]
enum Ev {
    Message {
        kind: MessageKind,
        range: Range<usize>,
        assembled: bool,
    },
    Chunk {
        kind: MessageKind,
        range: Range<usize>,
        first: bool,
        last: bool,
        frame: FramePos,
        /// The data is in the inflate buffer, not the input buffer.
        inflated: bool,
    },
    Ping(Range<usize>),
    Pong(Range<usize>),
    Close {
        code: CloseCode,
        reason: Range<usize>,
    },
    Failed(ProtocolError),
    Disconnected,
}

/// One WebSocket connection, after the opening handshake, with no I/O of its own.
///
/// Drive it like this:
/// 1. Put the bytes read from the transport in with [`receive_data`](Self::receive_data) (or
///    read straight into [`input_buffer`](Self::input_buffer) and call
///    [`input_written`](Self::input_written)); on end of stream call
///    [`receive_eof`](Self::receive_eof).
/// 2. Call [`poll_event`](Self::poll_event) until it returns `None`. Events borrow the
///    connection: copy out what you keep.
/// 3. Queue sends with [`send_text`](Self::send_text), [`send_binary`](Self::send_binary),
///    [`send_fragment`](Self::send_fragment), [`send_ping`](Self::send_ping),
///    [`close`](Self::close).
/// 4. Write [`pending_output`](Self::pending_output) to the transport and report what was
///    written with [`consume_output`](Self::consume_output). Automatic pongs and close replies
///    are queued there too, so drain it after polling events.
/// 5. When [`should_close_transport`](Self::should_close_transport) is true and the output is
///    drained, close the transport.
///
/// ```
/// use ws_proto::{Connection, Event, MessageRef, ProtocolConfig};
///
/// let mut server = Connection::server(ProtocolConfig::default());
/// // A masked "Hello" from a client (RFC 6455 §5.7).
/// server.receive_data(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// let Some(Event::Message(MessageRef::Text(text))) = server.poll_event() else { panic!() };
/// let reply = text.to_uppercase();
/// server.send_text(&reply)?;
/// assert_eq!(server.pending_output(), b"\x81\x05HELLO");
/// # Ok::<(), ws_proto::SendError>(())
/// ```
pub struct Connection {
    role: Role,
    config: ProtocolConfig,
    state: State,
    /// The connection failed us or the peer; the transport should close now.
    failed: bool,
    eof: bool,
    /// Pong frames received, whoever polled them; see [`Connection::pongs_received`].
    pongs: u64,
    /// Data messages received whole (their last frame or chunk reported).
    messages_received: u64,
    /// The peer's close frame came while we were open: the peer closed first.
    peer_closed_first: bool,
    /// What the peer sent since the last [`Connection::take_traffic`].
    received: Counts,

    /// Read buffer: `input[in_start..in_end]` is unprocessed. Kept fully initialised so reads
    /// can go straight into it.
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    frame: Option<InFrame>,
    message: Option<InMessage>,
    /// Assembly buffer for messages that arrive in more than one piece.
    assembly: Vec<u8>,
    /// The last event borrowed `assembly`; clear it on the next poll.
    assembly_delivered: bool,
    /// A buffer handed back with [`Connection::recycle`], for the next message that
    /// [`Connection::poll_event_owned`] copies out (empty: none).
    recycled: Vec<u8>,
    utf8: Utf8Validator,
    /// The decompressor, when permessage-deflate is negotiated.
    #[cfg(feature = "deflate")]
    inflate: Option<Box<Decompressor>>,
    /// Inflated data of the current chunk, in chunk delivery.
    inflated: Vec<u8>,
    /// Compressed bytes at `in_start`, already unmasked, that the inflater has yet to take
    /// (chunk delivery inflates in steps of at most `INFLATE_STEP`).
    #[cfg(feature = "deflate")]
    inflate_ahead: usize,
    /// The last inflate step stopped at its output limit: more may come without input.
    #[cfg(feature = "deflate")]
    inflate_more: bool,

    out: Output,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("buffered_input", &(self.in_end - self.in_start))
            .field("pending_output", &(self.out.buf.len() - self.out.start))
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A server-side connection.
    pub fn server(config: ProtocolConfig) -> Self {
        Self::new(Role::Server, config, None)
    }

    /// A client-side connection, masking each frame with a key from `keys`.
    pub fn client(config: ProtocolConfig, keys: impl MaskKeySource + 'static) -> Self {
        Self::new(Role::Client, config, Some(Box::new(keys)))
    }

    fn new(role: Role, config: ProtocolConfig, keys: Option<Box<dyn MaskKeySource>>) -> Self {
        Self {
            role,
            config,
            state: State::Open,
            failed: false,
            eof: false,
            pongs: 0,
            messages_received: 0,
            peer_closed_first: false,
            received: Counts::default(),
            input: Vec::new(),
            in_start: 0,
            in_end: 0,
            frame: None,
            message: None,
            assembly: Vec::new(),
            assembly_delivered: false,
            recycled: Vec::new(),
            utf8: Utf8Validator::new(),
            #[cfg(feature = "deflate")]
            inflate: None,
            inflated: Vec::new(),
            #[cfg(feature = "deflate")]
            inflate_ahead: 0,
            #[cfg(feature = "deflate")]
            inflate_more: false,
            out: Output {
                keys,
                buf: Vec::new(),
                start: 0,
                sending: None,
                open_frame: None,
                deferred_pong: None,
                deferred_close: None,
                #[cfg(feature = "deflate")]
                deflate: None,
                sending_compressed: false,
                scratch: Vec::new(),
                messages_sent: 0,
                closed_first: false,
                sent: Counts::default(),
                data_opcode: OpCode::Binary,
                inspect: None,
            },
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The close state.
    #[inline]
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &ProtocolConfig {
        &self.config
    }

    /// Turns on permessage-deflate with the parameters the handshake negotiated: messages
    /// with RSV1 set are inflated (the message limit applies to the inflated size), and data
    /// messages are sent compressed, at zlib `level` (0 to 9).
    #[cfg(feature = "deflate")]
    pub fn set_deflate(&mut self, params: &DeflateParams, level: u32) {
        let (compressor, decompressor) = params.codec(self.role, level);
        self.inflate = Some(Box::new(decompressor));
        self.out.deflate = Some(Box::new(compressor));
    }

    /// Whether permessage-deflate is on.
    #[inline]
    pub fn compression(&self) -> bool {
        self.out.compression()
    }

    /// Whether the transport should be closed once [`pending_output`](Self::pending_output)
    /// is written: after a failure, after the transport's end, or when the close handshake is
    /// complete on the server (§7.1.1: "the server MUST close the underlying TCP connection
    /// immediately"; a client waits for the server to do it, with a timeout of its own).
    pub fn should_close_transport(&self) -> bool {
        self.state == State::Closed && (self.role == Role::Server || self.failed || self.eof)
    }

    // ---- input -------------------------------------------------------------------------------

    /// Feeds bytes read from the transport. Bytes after the connection closed are dropped.
    pub fn receive_data(&mut self, data: &[u8]) {
        if self.state == State::Closed || data.is_empty() {
            return;
        }
        let buf = self.input_buffer(data.len());
        buf[..data.len()].copy_from_slice(data);
        self.input_written(data.len());
    }

    /// Space for at least `min` bytes to be read straight into, avoiding the copy that
    /// [`receive_data`](Self::receive_data) makes. Report what was written with
    /// [`input_written`](Self::input_written).
    #[inline]
    pub fn input_buffer(&mut self, min: usize) -> &mut [u8] {
        self.compact_input();
        if self.input.len() - self.in_end < min {
            self.grow_input(min);
        }
        &mut self.input[self.in_end..]
    }

    /// [`input_buffer`](Self::input_buffer) when the buffer must grow: out of line.
    #[inline(never)]
    fn grow_input(&mut self, min: usize) {
        // Vec's own doubling keeps growth amortised; only the new tail is zeroed.
        self.input.resize(self.in_end + min, 0);
    }

    /// Records that `n` bytes were written at the start of [`input_buffer`](Self::input_buffer).
    ///
    /// # Panics
    ///
    /// If `n` is more than that buffer's length.
    #[inline]
    pub fn input_written(&mut self, n: usize) {
        assert!(self.in_end + n <= self.input.len(), "input_written past the input buffer");
        if self.state == State::Closed {
            return;
        }
        self.in_end += n;
    }

    /// Records the end of the transport's input stream.
    pub fn receive_eof(&mut self) {
        self.eof = true;
    }

    /// Pong frames received so far. A keepalive timer compares it with its value when the
    /// ping went out, so it sees the answer however the events are polled.
    pub fn pongs_received(&self) -> u64 {
        self.pongs
    }

    /// Bytes buffered but not yet processed: at most one partial frame header or control frame
    /// once [`poll_event`](Self::poll_event) has returned `None`.
    #[inline]
    pub fn buffered_input(&self) -> usize {
        self.in_end - self.in_start
    }

    /// Bytes of memory the connection's buffers hold (their capacity), compression state
    /// aside: what an idle connection costs beyond this struct.
    #[inline]
    pub fn buffer_capacity(&self) -> usize {
        self.input.capacity()
            + self.assembly.capacity()
            + self.recycled.capacity()
            + self.inflated.capacity()
            + self.out.buf.capacity()
            + self.out.scratch.capacity()
    }

    /// Bytes of memory the connection holds beyond its own struct: the capacity of its
    /// buffers and, with permessage-deflate, the state of zlib's inflater and deflater while
    /// they are allocated (by zlib's own formula, zconf.h), and an inspected connection's frame
    /// log. What a server-wide memory budget counts for it.
    pub fn memory(&self) -> usize {
        let log = self.out.inspect.as_ref().map_or(0, |log| log.memory());
        let deferred = |frame: &Option<Vec<u8>>| frame.as_ref().map_or(0, Vec::capacity);
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut bytes = self.buffer_capacity()
            + deferred(&self.out.deferred_pong)
            + deferred(&self.out.deferred_close)
            + log;
        #[cfg(feature = "deflate")]
        {
            bytes += self.inflate.as_ref().map_or(0, |inflate| inflate.memory());
            bytes += self.out.deflate.as_ref().map_or(0, |deflate| deflate.memory());
        }
        bytes
    }

    /// Takes out the input buffer when it holds no unprocessed input, so that a caller with
    /// many connections can keep a pool of read buffers instead of one per connection; the
    /// connection gets another from [`input_buffer`](Self::input_buffer) (or
    /// [`give_input_buffer`](Self::give_input_buffer)) when it next reads.
    ///
    /// ```
    /// use ws_proto::{Connection, ProtocolConfig};
    ///
    /// let mut conn = Connection::server(ProtocolConfig::default());
    /// conn.input_buffer(4096);
    /// let buf = conn.take_input_buffer().expect("an empty buffer");
    /// assert_eq!(conn.buffer_capacity(), 0);
    /// // Another connection reads into it without allocating or zeroing it again.
    /// let mut other = Connection::server(ProtocolConfig::default());
    /// other.give_input_buffer(buf);
    /// assert!(other.input_buffer(4096).len() >= 4096);
    /// ```
    #[inline]
    pub fn take_input_buffer(&mut self) -> Option<Vec<u8>> {
        if self.in_start != self.in_end || self.input.capacity() == 0 {
            return None;
        }
        self.in_start = 0;
        self.in_end = 0;
        Some(std::mem::take(&mut self.input))
    }

    /// Gives the connection a buffer to read into (from a pool; see
    /// [`take_input_buffer`](Self::take_input_buffer)) if it holds none; otherwise hands
    /// `buf` back. Its contents are irrelevant: it is only written into.
    #[inline]
    pub fn give_input_buffer(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        if self.input.capacity() != 0 {
            return Some(buf);
        }
        debug_assert_eq!(self.in_end, 0);
        self.input = buf;
        self.in_start = 0;
        self.in_end = 0;
        None
    }

    /// Takes out the output buffer when everything in it was written (its capacity kept, its
    /// contents cleared), for a pool as with [`take_input_buffer`](Self::take_input_buffer);
    /// the next frame queued allocates another unless one is given back with
    /// [`give_output_buffer`](Self::give_output_buffer).
    #[inline]
    pub fn take_output_buffer(&mut self) -> Option<Vec<u8>> {
        if self.out.start != self.out.buf.len() || self.out.buf.capacity() == 0 {
            return None;
        }
        self.out.start = 0;
        let mut buf = std::mem::take(&mut self.out.buf);
        buf.clear();
        Some(buf)
    }

    /// Gives the connection an empty buffer to queue output in if it holds none (nothing is
    /// pending and its buffer was taken or freed); otherwise hands `buf` back.
    #[inline]
    pub fn give_output_buffer(&mut self, mut buf: Vec<u8>) -> Option<Vec<u8>> {
        if self.out.buf.capacity() != 0 || !self.out.buf.is_empty() {
            return Some(buf);
        }
        buf.clear();
        self.out.buf = buf;
        self.out.start = 0;
        None
    }

    /// Frees buffers that hold nothing, so an idle connection costs only this struct (and a
    /// [recycled](Self::recycle) buffer of at most [`RECYCLED_IDLE_MAX`] bytes), and moves a
    /// few held bytes (part of a header or control frame) out of a large read buffer.
    /// Call it when the connection goes idle; buffers are allocated again on demand.
    #[inline]
    pub fn release_idle_buffers(&mut self) {
        // The common case, a connection whose buffers went to a pool already, that holds no
        // compression state and at most a small recycled buffer: nothing to do. Inlined, so
        // that it costs its caller a few comparisons.
        if !self.compression()
            && self.recycled.capacity() <= RECYCLED_IDLE_MAX
            && self.buffer_capacity() == self.recycled.capacity()
        {
            return;
        }
        self.release_held_buffers();
    }

    /// [`release_idle_buffers`](Self::release_idle_buffers) past its common case.
    #[inline(never)]
    fn release_held_buffers(&mut self) {
        if self.recycled.capacity() > RECYCLED_IDLE_MAX {
            self.recycled = Vec::new();
        }
        let held = self.in_end - self.in_start;
        if held == 0 {
            self.input = Vec::new();
            self.in_start = 0;
            self.in_end = 0;
        } else if held <= MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD && self.input.capacity() > 4 << 10 {
            // A peer that sends part of a header and stops must not pin a large read buffer:
            // what is held is at most a header and a control frame, cheap to move.
            self.input = self.input[self.in_start..self.in_end].to_vec();
            self.in_start = 0;
            self.in_end = held;
        }
        if self.message.is_none() {
            self.assembly = Vec::new();
            self.assembly_delivered = false;
        }
        if self.out.start == self.out.buf.len() {
            self.out.buf = Vec::new();
            self.out.start = 0;
        }
        self.inflated = Vec::new();
        self.out.scratch = Vec::new();
        // Without context takeover no state carries between messages: free it.
        #[cfg(feature = "deflate")]
        {
            if self.message.is_none() {
                if let Some(inflate) = self.inflate.as_mut() {
                    inflate.release();
                }
            }
            if self.out.sending.is_none() {
                if let Some(deflate) = self.out.deflate.as_mut() {
                    deflate.release();
                }
            }
        }
    }

    #[inline]
    fn compact_input(&mut self) {
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        } else if self.in_start > 0 {
            self.input.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        }
    }

    // ---- events ------------------------------------------------------------------------------

    /// The next event, or `None` when more input is needed.
    ///
    /// The event borrows the connection's buffers: copy out what you keep before calling a
    /// `&mut self` method again.
    #[must_use = "events report messages and failures"]
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        let ev = self.advance()?;
        self.count(&ev);
        Some(make_event(ev, &self.input, &self.assembly, &self.inflated))
    }

    /// [`poll_event`](Self::poll_event) for a driver that hands messages out by value: a
    /// binary message comes owned, and one of [`DIRECT_WRITE_MIN`](crate::DIRECT_WRITE_MIN)
    /// bytes or more assembled in the connection's buffer (a message in several frames or
    /// reads, or inflated) is moved out of it rather than copied, with at most a quarter of
    /// its length spare (an uncompressed message's buffer grows to fit it exactly); the
    /// connection assembles the next message in a new buffer. The others are copied: into the
    /// buffer last handed back with [`recycle`](Self::recycle) when they fit in it, else into
    /// one of exactly their length; the assembly buffer is kept. A text message that fits in
    /// the recycled buffer comes owned too ([`PolledEvent::Text`]); the others are reported
    /// borrowed, as [`poll_event`](Self::poll_event) does.
    ///
    /// ```
    /// use ws_proto::{Connection, PolledEvent, ProtocolConfig};
    ///
    /// let mut conn = Connection::server(ProtocolConfig::default());
    /// // A masked binary frame (key 0) with the payload "hi", in two reads.
    /// conn.receive_data(&[0x82, 0x82, 0, 0, 0, 0, b'h']);
    /// assert!(conn.poll_event_owned().is_none());
    /// conn.receive_data(b"i");
    /// assert_eq!(conn.poll_event_owned(), Some(PolledEvent::Binary(b"hi".to_vec())));
    /// ```
    #[must_use = "events report messages and failures"]
    #[inline]
    pub fn poll_event_owned(&mut self) -> Option<PolledEvent<'_>> {
        // Asked after every message: when the input is used up, without a call.
        if self.at_rest() {
            return None;
        }
        self.next_event_owned()
    }

    #[inline(never)]
    fn next_event_owned(&mut self) -> Option<PolledEvent<'_>> {
        let ev = self.advance()?;
        self.count(&ev);
        if let Ev::Message { kind: MessageKind::Text, ref range, assembled } = ev {
            if range.len() <= self.recycled.capacity() && self.recycled.capacity() != 0 {
                let text = message_text(range.clone(), assembled, &self.input, &self.assembly);
                // Emptied first, the buffer is valid UTF-8 at no cost, and the text (checked
                // as it arrived, and once more to make the `&str`, as for a borrowed one) is
                // copied in.
                let mut buf = std::mem::take(&mut self.recycled);
                buf.clear();
                let mut owned = String::from_utf8(buf).unwrap_or_default();
                owned.push_str(text);
                return Some(PolledEvent::Text(owned));
            }
        }
        let Ev::Message { kind: MessageKind::Binary, range, assembled } = ev else {
            return Some(PolledEvent::Event(make_event(
                ev,
                &self.input,
                &self.assembly,
                &self.inflated,
            )));
        };
        if !assembled || range.len() < crate::DIRECT_WRITE_MIN {
            let data = message_bytes(range, assembled, &self.input, &self.assembly);
            // Into the buffer last recycled when the message fits: no allocation then. One
            // that does not fit keeps the buffer for the next.
            if data.len() > self.recycled.capacity() {
                return Some(PolledEvent::Binary(data.to_vec()));
            }
            let mut owned = std::mem::take(&mut self.recycled);
            owned.clear();
            owned.extend_from_slice(data);
            return Some(PolledEvent::Binary(owned));
        }
        // The assembly holds exactly this message (`range` is all of it), in a buffer grown
        // to fit it (`grow_within`), or with up to two of inflation's 16 KiB steps spare:
        // those are given back where they are more than a quarter of the message.
        self.assembly_delivered = false;
        let mut data = std::mem::take(&mut self.assembly);
        if data.capacity() - data.len() > data.len() / 4 && data.capacity() <= SHRINK_MAX {
            data.shrink_to_fit();
        }
        Some(PolledEvent::Binary(data))
    }

    /// Hands back the buffer of a message the caller is done with (one
    /// [`poll_event_owned`](Self::poll_event_owned) returned, say, once its reply is
    /// queued), for the next message it copies out that fits in it (binary, or text as a
    /// `String`): a loop that receives and replies then allocates nothing per message. Kept
    /// when it is larger than the one the connection holds, which it replaces (so that the
    /// buffer follows the largest messages of late), and smaller than
    /// [`DIRECT_WRITE_MIN`](crate::DIRECT_WRITE_MIN) (assembled messages of that size are
    /// moved out, not copied); freed otherwise. Counted in [`memory`](Self::memory); an
    /// idle connection keeps it only up to [`RECYCLED_IDLE_MAX`] bytes (see
    /// [`release_idle_buffers`](Self::release_idle_buffers)).
    ///
    /// ```
    /// use ws_proto::{Connection, PolledEvent, ProtocolConfig};
    ///
    /// let mut conn = Connection::server(ProtocolConfig::default());
    /// let buf = Vec::with_capacity(64);
    /// let at = buf.as_ptr();
    /// conn.recycle(buf);
    /// // A masked binary frame (key 0) with the payload "hi".
    /// conn.receive_data(&[0x82, 0x82, 0, 0, 0, 0, b'h', b'i']);
    /// let Some(PolledEvent::Binary(data)) = conn.poll_event_owned() else { panic!() };
    /// assert_eq!((data.as_slice(), data.as_ptr()), (&b"hi"[..], at));
    /// ```
    #[inline]
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() > self.recycled.capacity() && buf.capacity() < crate::DIRECT_WRITE_MIN {
            self.recycled = buf;
        }
    }

    /// Counts a data message received once its last piece is reported.
    #[inline]
    fn count(&mut self, ev: &Ev) {
        if matches!(ev, Ev::Message { .. } | Ev::Chunk { last: true, .. }) {
            self.messages_received += 1;
        }
    }

    /// Data messages received whole so far (in chunk delivery, counted at their last chunk).
    pub fn messages_received(&self) -> u64 {
        self.messages_received
    }

    /// Data messages sent so far (counted as their last frame is queued).
    pub fn messages_sent(&self) -> u64 {
        self.out.messages_sent
    }

    /// What went each way, by opcode, since the last call (see [`Tally`](crate::Tally)): for
    /// metrics. The
    /// counts restart from zero; [`messages_received`](Self::messages_received) and
    /// [`messages_sent`](Self::messages_sent) do not.
    #[inline]
    pub fn take_traffic(&mut self) -> Traffic {
        #[cfg(feature = "deflate")]
        let (inflated, deflated) = (
            self.inflate.as_deref_mut().map(|d| &mut d.tally),
            self.out.deflate.as_deref_mut().map(|c| &mut c.tally),
        );
        #[cfg(not(feature = "deflate"))]
        let (inflated, deflated) = (None, None);
        Traffic { received: self.received.take(inflated), sent: self.out.sent.take(deflated) }
    }

    /// Logs every frame from now on, both ways, as parsed and encoded (a frame inspector): at
    /// most `capacity` records between [`take_frames`](Self::take_frames), later ones dropped
    /// and counted. A received record is made when its header is parsed (a control frame's,
    /// once the whole frame is here), before the connection's rules are checked: a frame
    /// with a bad MASK or RSV bit, over a limit, or out of order is logged, then fails the
    /// connection. A header no endpoint may send (a reserved opcode, a fragmented or
    /// oversized control frame) is not logged; the close frame that answers it is. The
    /// payload kept is what had arrived with the header.
    pub fn inspect_frames(&mut self, capacity: usize) {
        self.out.inspect = Some(Box::new(FrameLog::new(capacity)));
    }

    /// The frames logged since the last call, on a connection given
    /// [`inspect_frames`](Self::inspect_frames); `None` on others.
    pub fn take_frames(&mut self) -> Option<Frames> {
        self.out.inspect.as_mut().map(|log| log.take())
    }

    /// Which end started the close: ours if we sent a close frame (or failed the connection)
    /// while it was open, the peer's if its close frame came first; `None` while open, and
    /// when the transport ended with no close frame either way.
    pub fn closed_by(&self) -> Option<Role> {
        let peer = match self.role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        if self.out.closed_first {
            Some(self.role)
        } else if self.peer_closed_first {
            Some(peer)
        } else {
            None
        }
    }

    /// The common case once a read's events are drained: no input, no frame begun, no
    /// assembled message to clear and no end of stream to report: nothing can happen.
    /// (Inflated output still to come keeps its frame open: `read_compressed_chunk` ends a
    /// frame only once drained.)
    #[inline]
    fn at_rest(&self) -> bool {
        self.in_start == self.in_end
            && self.frame.is_none()
            && !self.eof
            && !self.assembly_delivered
    }

    fn advance(&mut self) -> Option<Ev> {
        if self.assembly_delivered {
            self.assembly_delivered = false;
            self.assembly.clear();
            if self.assembly.capacity() > RETAINED_BUFFER {
                self.assembly = Vec::new();
            }
        }
        if self.at_rest() {
            return None;
        }
        loop {
            if self.state == State::Closed {
                return None;
            }
            let step = match self.frame {
                Some(frame) => self.read_payload(frame),
                None => self.read_header(),
            };
            match step {
                Step::Event(ev) => return Some(ev),
                Step::Continue => {}
                Step::NeedInput => {
                    if self.eof {
                        self.state = State::Closed;
                        return Some(Ev::Disconnected);
                    }
                    return None;
                }
            }
        }
    }

    fn fail(&mut self, err: ProtocolError) -> Step {
        // §7.1.7: "the endpoint MUST _Close the WebSocket Connection_, and MAY report the
        // problem to the user" after sending a close frame with an appropriate code.
        if self.state == State::Open {
            self.queue_close_frame(err.close_code(), "");
            self.out.closed_first = true;
        }
        self.state = State::Closed;
        self.failed = true;
        self.in_start = self.in_end;
        self.frame = None;
        self.message = None;
        #[cfg(feature = "deflate")]
        {
            self.inflate_ahead = 0;
            self.inflate_more = false;
        }
        Step::Event(Ev::Failed(err))
    }

    fn read_header(&mut self) -> Step {
        if let Some(step) = self.small_message() {
            return step;
        }
        let available = &self.input[self.in_start..self.in_end];
        let (header, header_len) = match FrameHeader::parse(available) {
            Ok(Status::Complete(header, len)) => (header, len),
            Ok(Status::Partial) => return Step::NeedInput,
            Err(err) => return self.fail(err),
        };
        // A data frame is logged as its header is read; a control frame once all of it is
        // here (until then the header is parsed again at each read).
        let whole = !header.opcode.is_control()
            || available.len() >= header_len + header.payload_len as usize;
        if let Some(log) = self.out.inspect.as_mut().filter(|_| whole) {
            log.received(header, available, header_len);
        }
        // §5.2: "If a nonzero value is received and none of the negotiated extensions defines
        // the meaning of such a nonzero value, the receiving endpoint MUST _Fail the WebSocket
        // Connection_." permessage-deflate defines RSV1 on the first frame of a data message
        // only (RFC 7692 §6): on a control frame or a continuation it is an error too.
        let allowed = match header.opcode {
            OpCode::Text | OpCode::Binary if self.compression() => RSV1,
            _ => 0,
        };
        if header.rsv & !allowed != 0 {
            return self.fail(ProtocolError::ReservedBits);
        }
        // §5.1: a server MUST close on an unmasked client frame; a client on a masked server
        // frame.
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return self.fail(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return self.fail(ProtocolError::MaskedFrame),
            _ => {}
        }
        if header.opcode.is_control() {
            // Control payloads are at most 125 bytes (checked by the parser): wait for all of it.
            let len = header.payload_len as usize;
            if available.len() < header_len + len {
                return Step::NeedInput;
            }
            let start = self.in_start + header_len;
            self.in_start = start + len;
            self.received.frame(header.opcode, true, len as u64);
            return self.control_frame(header, start..start + len);
        }
        self.data_header(header, header_len)
    }

    /// The common frame, told from its first two bytes: a whole single-frame text or binary
    /// message of at most 125 bytes, masked as the peer's role requires, with no reserved bit
    /// set, arriving between messages, in message delivery, on a connection nobody inspects.
    /// It is checked and reported as `read_header` and `data_header` would (the frame and
    /// message limits included); `None` leaves every other frame to them.
    #[inline]
    fn small_message(&mut self) -> Option<Step> {
        let available = &self.input[self.in_start..self.in_end];
        let [b0, b1, ..] = *available else { return None };
        let masked = self.role == Role::Server;
        let len = usize::from(b1 & 0x7f);
        let header_len = if masked { 6 } else { 2 };
        let kind = match b0 {
            0x81 => MessageKind::Text,
            0x82 => MessageKind::Binary,
            _ => return None,
        };
        if (b1 & 0x80 != 0) != masked
            || len > 125
            || available.len() < header_len + len
            || self.message.is_some()
            || self.config.delivery != Delivery::Messages
            || self.out.inspect.is_some()
            || len > self.config.max_frame_size.min(self.config.max_message_size)
        {
            return None;
        }
        let start = self.in_start + header_len;
        let range = start..start + len;
        if masked {
            let key = [available[2], available[3], available[4], available[5]];
            apply_mask(&mut self.input[range.clone()], key, 0);
        }
        self.in_start = range.end;
        self.received.frame(kind.opcode(), true, len as u64);
        if kind == MessageKind::Text
            && simdutf8::basic::from_utf8(&self.input[range.clone()]).is_err()
        {
            return Some(self.fail(ProtocolError::InvalidUtf8));
        }
        Some(Step::Event(Ev::Message { kind, range, assembled: false }))
    }

    fn data_header(&mut self, header: FrameHeader, header_len: usize) -> Step {
        let len = header.payload_len;
        let message = match (header.opcode, self.message) {
            (OpCode::Continuation, None) => {
                return self.fail(ProtocolError::UnexpectedContinuation);
            }
            (OpCode::Continuation, Some(message)) => message,
            (_, Some(_)) => return self.fail(ProtocolError::ExpectedContinuation),
            (opcode, None) => {
                let kind =
                    if opcode == OpCode::Text { MessageKind::Text } else { MessageKind::Binary };
                self.utf8 = Utf8Validator::new();
                let compressed = header.rsv & RSV1 != 0;
                InMessage { kind, declared: 0, started: false, compressed, inflated: 0 }
            }
        };
        // Limits come from the header, before any payload is buffered.
        if len > self.config.max_frame_size as u64 {
            return self.fail(ProtocolError::FrameTooLarge);
        }
        let declared = message.declared + len;
        if declared > self.config.max_message_size as u64 {
            return self.fail(ProtocolError::MessageTooLarge);
        }
        self.in_start += header_len;
        self.received.frame(message.kind.opcode(), header.fin, len);
        #[cfg(feature = "deflate")]
        if let Some(inflate) = self.inflate.as_mut().filter(|_| message.compressed) {
            inflate.tally.compressed += len;
        }
        let frame = InFrame {
            fin: header.fin,
            mask: header.mask,
            len,
            remaining: len,
            mask_offset: 0,
            reported: false,
        };

        // The common case: a whole single-frame message already in the buffer is reported in
        // place, copied nowhere.
        let whole_in_buffer = (self.in_end - self.in_start) as u64 >= len;
        if self.config.delivery == Delivery::Messages
            && header.fin
            && header.opcode != OpCode::Continuation
            && !message.compressed
            && whole_in_buffer
        {
            let range = self.in_start..self.in_start + len as usize;
            self.in_start = range.end;
            if let Some(key) = header.mask {
                apply_mask(&mut self.input[range.clone()], key, 0);
            }
            if message.kind == MessageKind::Text
                && simdutf8::basic::from_utf8(&self.input[range.clone()]).is_err()
            {
                return self.fail(ProtocolError::InvalidUtf8);
            }
            return Step::Event(Ev::Message { kind: message.kind, range, assembled: false });
        }
        self.message = Some(InMessage { declared, ..message });
        self.frame = Some(frame);
        Step::Continue
    }

    fn read_payload(&mut self, mut frame: InFrame) -> Step {
        #[cfg(feature = "deflate")]
        if self.config.delivery == Delivery::Chunks && self.message.is_some_and(|m| m.compressed) {
            return self.read_compressed_chunk(frame);
        }
        let available = (self.in_end - self.in_start) as u64;
        let n = available.min(frame.remaining) as usize;
        if n == 0 && frame.remaining > 0 {
            return Step::NeedInput;
        }
        let Some(mut message) = self.message else {
            unreachable!("a data frame is read only inside a message");
        };
        let range = self.in_start..self.in_start + n;
        self.in_start = range.end;
        let frame_start = frame.remaining == frame.len;
        if let Some(key) = frame.mask {
            frame.mask_offset = apply_mask(&mut self.input[range.clone()], key, frame.mask_offset);
        }
        frame.remaining -= n as u64;
        let frame_done = frame.remaining == 0;
        let last = frame_done && frame.fin;
        #[cfg(feature = "deflate")]
        if message.compressed {
            self.frame = if frame_done { None } else { Some(frame) };
            return self.read_compressed(range, message, last);
        }
        if message.kind == MessageKind::Text {
            let checked = self.utf8.feed(&self.input[range.clone()]);
            let checked = if last { checked.and_then(|()| self.utf8.finish()) } else { checked };
            if let Err(err) = checked {
                return self.fail(err);
            }
        }
        self.frame = if frame_done { None } else { Some(frame) };
        let first = !message.started;
        message.started = true;
        self.message = if last { None } else { Some(message) };

        match self.config.delivery {
            Delivery::Messages => {
                if self.assembly.len() + n > self.config.max_message_size {
                    // Unreachable while declared lengths are checked, kept as a backstop.
                    return self.fail(ProtocolError::MessageTooLarge);
                }
                grow_within(&mut self.assembly, n, message.declared);
                self.assembly.extend_from_slice(&self.input[range]);
                if last {
                    self.assembly_delivered = true;
                    let range = 0..self.assembly.len();
                    return Step::Event(Ev::Message { kind: message.kind, range, assembled: true });
                }
                Step::Continue
            }
            Delivery::Chunks => {
                if n > 0 || first || last {
                    let frame = FramePos {
                        len: frame.len,
                        fin: frame.fin,
                        start: frame_start,
                        end: frame_done,
                    };
                    Step::Event(Ev::Chunk {
                        kind: message.kind,
                        range,
                        first,
                        last,
                        frame,
                        inflated: false,
                    })
                } else {
                    Step::Continue
                }
            }
        }
    }

    /// The payload of a compressed message in message delivery: inflated into the assembly
    /// buffer, with the message limit applied to the inflated size.
    #[cfg(feature = "deflate")]
    fn read_compressed(&mut self, range: Range<usize>, mut message: InMessage, last: bool) -> Step {
        let Some(inflate) = self.inflate.as_mut() else {
            unreachable!("RSV1 is accepted only with permessage-deflate");
        };
        let (base, limit) = (self.assembly.len(), self.config.max_message_size);
        let buf = &mut self.assembly;
        let mut result = inflate.decompress(&self.input[range], buf, limit);
        if last && result.is_ok() {
            result = inflate.finish(buf, limit);
        }
        let new = base..buf.len();
        message.inflated += new.len();
        inflate.tally.uncompressed += new.len() as u64;
        let verdict = inflated_verdict(&mut self.utf8, message.kind, &buf[new], last, result);
        if let Err(err) = verdict {
            return self.fail(err);
        }
        message.started = true;
        self.message = if last { None } else { Some(message) };
        if last {
            self.assembly_delivered = true;
            let range = 0..self.assembly.len();
            return Step::Event(Ev::Message { kind: message.kind, range, assembled: true });
        }
        Step::Continue
    }

    /// The payload of a compressed message in chunk delivery, inflated in steps of at most
    /// [`INFLATE_STEP`] bytes, each reported as a chunk: a connection holds one step of the
    /// inflated message at a time, whatever the message inflates to. The compressed input
    /// that a step leaves stays in the input buffer (unmasked) for the next.
    #[cfg(feature = "deflate")]
    fn read_compressed_chunk(&mut self, mut frame: InFrame) -> Step {
        let Some(mut message) = self.message else {
            unreachable!("a data frame is read only inside a message");
        };
        let Some(inflate) = self.inflate.as_mut() else {
            unreachable!("RSV1 is accepted only with permessage-deflate");
        };
        // Unmask what has arrived of the frame past what already waits.
        let ahead = self.inflate_ahead;
        let arrived = self.in_end - self.in_start - ahead;
        let n = (arrived as u64).min(frame.remaining) as usize;
        let new = self.in_start + ahead..self.in_start + ahead + n;
        if let Some(key) = frame.mask {
            frame.mask_offset = apply_mask(&mut self.input[new], key, frame.mask_offset);
        }
        frame.remaining -= n as u64;
        let waiting = ahead + n;
        let all_arrived = frame.remaining == 0;
        if waiting == 0 && !self.inflate_more && !all_arrived {
            self.frame = Some(frame);
            return Step::NeedInput;
        }

        self.inflated.clear();
        let mut consumed = 0;
        let mut last = false;
        let mut result = Ok(());
        if waiting > 0 || self.inflate_more {
            let data = &self.input[self.in_start..self.in_start + waiting];
            match inflate.inflate_step(data, &mut self.inflated, INFLATE_STEP) {
                Ok(step) => {
                    consumed = step.consumed;
                    self.inflate_more = step.more;
                }
                Err(err) => result = Err(err),
            }
        }
        let drained = consumed == waiting && !self.inflate_more;
        // The message's last frame, all taken: what the trailer completes, in the room left.
        let room = INFLATE_STEP - self.inflated.len();
        if result.is_ok() && all_arrived && frame.fin && drained && room > 0 {
            match inflate.finish_step(&mut self.inflated, room) {
                Ok(more) => last = !more,
                Err(err) => result = Err(err),
            }
        }
        self.in_start += consumed;
        self.inflate_ahead = waiting - consumed;
        let frame_done = all_arrived && drained && (!frame.fin || last);

        message.inflated += self.inflated.len();
        if let Some(inflate) = self.inflate.as_mut() {
            inflate.tally.uncompressed += self.inflated.len() as u64;
        }
        if result.is_ok() && message.inflated > self.config.max_message_size {
            result = Err(InflateError::TooLarge);
        }
        let verdict = inflated_verdict(&mut self.utf8, message.kind, &self.inflated, last, result);
        if let Err(err) = verdict {
            return self.fail(err);
        }
        let first = !message.started;
        message.started = true;
        self.message = if last { None } else { Some(message) };
        let report = !self.inflated.is_empty() || first || last;
        let pos =
            FramePos { len: frame.len, fin: frame.fin, start: !frame.reported, end: frame_done };
        frame.reported |= report;
        self.frame = if frame_done { None } else { Some(frame) };
        if !report {
            return Step::Continue;
        }
        let range = 0..self.inflated.len();
        Step::Event(Ev::Chunk {
            kind: message.kind,
            range,
            first,
            last,
            frame: pos,
            inflated: true,
        })
    }

    fn control_frame(&mut self, header: FrameHeader, range: Range<usize>) -> Step {
        if let Some(key) = header.mask {
            apply_mask(&mut self.input[range.clone()], key, 0);
        }
        match header.opcode {
            OpCode::Ping => {
                // §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame in
                // response ... unless it already received a Close frame." We also stop once we
                // sent one: nothing may follow our close frame.
                if self.config.auto_pong && self.state == State::Open {
                    self.out.queue_control(OpCode::Pong, &self.input[range.clone()]);
                }
                Step::Event(Ev::Ping(range))
            }
            OpCode::Pong => {
                self.pongs += 1;
                Step::Event(Ev::Pong(range))
            }
            OpCode::Close => {
                let close = match CloseFrame::parse(&self.input[range.clone()]) {
                    Ok(close) => close,
                    Err(err) => return self.fail(err),
                };
                let code = close.code;
                self.received.close = Some(code);
                let reason = range.start + 2.min(range.len())..range.end;
                if self.state == State::Open {
                    self.peer_closed_first = true;
                    // §5.5.1: "the endpoint MUST send a Close frame in response ... typically
                    // echoing the status code it received".
                    if code == CloseCode::NO_STATUS {
                        self.out.queue_control(OpCode::Close, &[]);
                    } else {
                        self.queue_close_frame(code, "");
                    }
                }
                self.state = State::Closed;
                self.in_start = self.in_end;
                self.frame = None;
                self.message = None;
                Step::Event(Ev::Close { code, reason })
            }
            _ => unreachable!("data opcodes are not control frames"),
        }
    }

    // ---- output ------------------------------------------------------------------------------

    /// Bytes waiting to be written to the transport.
    #[inline]
    pub fn pending_output(&self) -> &[u8] {
        &self.out.buf[self.out.start..]
    }

    /// Records that the first `n` bytes of [`pending_output`](Self::pending_output) were
    /// written.
    ///
    /// # Panics
    ///
    /// If `n` is more than is pending.
    #[inline]
    pub fn consume_output(&mut self, n: usize) {
        self.out.consume(n);
    }

    /// Whether a frame begun with [`Sender::begin_frame`] still awaits payload: nothing else
    /// (a close frame included) can go out before it completes.
    #[inline]
    pub fn frame_in_progress(&self) -> bool {
        self.out.open_frame.is_some()
    }

    /// Whether a data message from the peer has begun and not yet ended.
    #[inline]
    pub fn receiving_message(&self) -> bool {
        self.message.is_some()
    }

    /// The most output that may be owed while input is still taken because the peer is
    /// inside a message (see [`takes_input`](Self::takes_input)): the message limit, an
    /// eighth more for the frame headers of a reply that echoes it, and 64 KiB.
    pub fn max_owed_in_message(&self) -> usize {
        let limit = self.config.max_message_size;
        limit.saturating_add(limit / 8).saturating_add(64 << 10)
    }

    /// Whether input should be taken (read from the transport, or polled for events) while
    /// [`pending_output`](Self::pending_output) holds what it holds: when less than
    /// `high_water` bytes are owed, or while the peer is inside a message and less than
    /// [`max_owed_in_message`](Self::max_owed_in_message) is owed.
    ///
    /// The second rule is what keeps a peer that writes a whole message before it reads
    /// from deadlocking with a reply that streams: the reply cannot be written while the
    /// peer is not reading, and the peer cannot finish writing while we are not. Within a
    /// message we read on and hold the reply, as an endpoint that assembles messages holds
    /// the message; backpressure applies at message boundaries.
    #[inline]
    pub fn takes_input(&self, high_water: usize) -> bool {
        let owed = self.pending_output().len();
        owed < high_water || (self.message.is_some() && owed < self.max_owed_in_message())
    }

    /// The sending side, to queue frames.
    pub fn sender(&mut self) -> Sender<'_> {
        Sender { out: &mut self.out, state: &mut self.state }
    }

    /// Like [`poll_event`](Self::poll_event), with a [`Sender`] usable while the event is
    /// borrowed, so that a reply can be queued straight from the received payload (an echo
    /// copies each byte once, from the input buffer to the output buffer).
    ///
    /// ```
    /// use ws_proto::{Connection, Event, ProtocolConfig};
    ///
    /// let mut server = Connection::server(ProtocolConfig::default());
    /// server.receive_data(&[0x82, 0x83, 1, 2, 3, 4, 0x60, 0x60, 0x60]); // b"abc" masked
    /// while let Some((event, mut sender)) = server.poll_event_with_sender() {
    ///     if let Event::Message(message) = event {
    ///         sender.send_message(message.kind(), message.as_bytes())?;
    ///     }
    /// }
    /// assert_eq!(server.pending_output(), b"\x82\x03abc");
    /// # Ok::<(), ws_proto::SendError>(())
    /// ```
    #[must_use = "events report messages and failures"]
    pub fn poll_event_with_sender(&mut self) -> Option<(Event<'_>, Sender<'_>)> {
        let ev = self.advance()?;
        self.count(&ev);
        let event = make_event(ev, &self.input, &self.assembly, &self.inflated);
        Some((event, Sender { out: &mut self.out, state: &mut self.state }))
    }

    /// Sends a text message in one frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.sender().send_text(text)
    }

    /// Sends a binary message in one frame.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.sender().send_binary(data)
    }

    /// Sends one frame of a fragmented message; see [`Sender::send_fragment`].
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        self.sender().send_fragment(kind, data, fin)
    }

    /// Sends a ping with up to 125 bytes of payload.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.sender().send_ping(payload)
    }

    /// Sends an unsolicited pong (§5.5.3: "A Pong frame MAY be sent unsolicited") with up to
    /// 125 bytes of payload.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.sender().send_pong(payload)
    }

    /// Starts the close handshake (§7.1.2) with `code` and a reason of up to 123 bytes.
    ///
    /// Data frames from the peer are still reported until its close frame arrives.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.sender().close(code, reason)
    }

    fn queue_close_frame(&mut self, code: CloseCode, reason: &str) {
        self.out.queue_close_frame(code, reason);
    }
}

/// Builds the public event from indices into the connection's buffers.
/// What inflated data says about the message: text is checked before an inflate error is
/// reported, as the bytes inflated before the error come first in the message, so the verdict
/// does not depend on how a frame was split across reads (found by the connection fuzz
/// target); `last` ends the text check, once the inflating succeeded.
#[cfg(feature = "deflate")]
fn inflated_verdict(
    utf8: &mut Utf8Validator,
    kind: MessageKind,
    inflated: &[u8],
    last: bool,
    result: Result<(), InflateError>,
) -> Result<(), ProtocolError> {
    if kind == MessageKind::Text {
        utf8.feed(inflated)?;
        if last && result.is_ok() {
            utf8.finish()?;
        }
    }
    result.map_err(|err| match err {
        InflateError::TooLarge => ProtocolError::MessageTooLarge,
        _ => ProtocolError::InvalidCompressedData(kind),
    })
}

/// The largest moved message buffer [`Connection::poll_event_owned`] shrinks. Above it,
/// allocators map memory of its own, and shrinking gives pages back that the next message
/// faults in again (255 faults per 1 MiB message, measured); there the spare is under a
/// quarter anyway.
const SHRINK_MAX: usize = 128 << 10;

/// The largest [recycled](Connection::recycle) buffer an idle connection keeps (see
/// [`Connection::release_idle_buffers`]): enough for the small messages where an allocation
/// per message costs most, little beside the connection's own struct.
pub const RECYCLED_IDLE_MAX: usize = 256;

/// Makes room for `n` more bytes in `buf`, doubling as `Vec` does but to no more than
/// `declared` bytes (what the peer has declared of the message so far, which is at least
/// what will be assembled): a message assembled whole fills its buffer exactly, while what
/// is allocated still follows what has arrived (at most twice it), never the declaration
/// alone.
fn grow_within(buf: &mut Vec<u8>, n: usize, declared: u64) {
    let needed = buf.len() + n;
    if needed <= buf.capacity() {
        return;
    }
    let cap = usize::try_from(declared).unwrap_or(usize::MAX);
    let target = (buf.capacity() * 2).min(cap).max(needed);
    buf.reserve_exact(target - buf.len());
}

/// A data message's bytes: in the assembly buffer when it was assembled, else in place in
/// the read buffer.
#[inline]
fn message_bytes<'a>(
    range: Range<usize>,
    assembled: bool,
    input: &'a [u8],
    assembly: &'a [u8],
) -> &'a [u8] {
    if assembled { &assembly[range] } else { &input[range] }
}

/// A text message's bytes as text: validated as they arrived, so this check cannot fail.
#[inline]
fn message_text<'a>(
    range: Range<usize>,
    assembled: bool,
    input: &'a [u8],
    assembly: &'a [u8],
) -> &'a str {
    simdutf8::basic::from_utf8(message_bytes(range, assembled, input, assembly)).unwrap_or_default()
}

fn make_event<'a>(ev: Ev, input: &'a [u8], assembly: &'a [u8], inflated: &'a [u8]) -> Event<'a> {
    match ev {
        Ev::Message { kind, range, assembled } => Event::Message(match kind {
            MessageKind::Binary => {
                MessageRef::Binary(message_bytes(range, assembled, input, assembly))
            }
            MessageKind::Text => MessageRef::Text(message_text(range, assembled, input, assembly)),
        }),
        Ev::Chunk { kind, range, first, last, frame, inflated: from_inflated } => {
            Event::Chunk(Chunk {
                kind,
                data: if from_inflated { &inflated[range] } else { &input[range] },
                first,
                last,
                frame_len: frame.len,
                fin: frame.fin,
                frame_start: frame.start,
                frame_end: frame.end,
            })
        }
        Ev::Ping(range) => Event::Ping(&input[range]),
        Ev::Pong(range) => Event::Pong(&input[range]),
        Ev::Close { code, reason } => Event::Close(CloseFrame {
            code,
            reason: std::str::from_utf8(&input[reason]).unwrap_or_default(),
        }),
        Ev::Failed(err) => Event::Failed(err),
        Ev::Disconnected => Event::Disconnected,
    }
}

enum Step {
    Event(Ev),
    Continue,
    NeedInput,
}
