//! The words every module shares: roles, message kinds, borrowed messages and chunks, the
//! close state, a connection's limits, and masking-key sources. Imports nothing else of the
//! crate, so no module imports its own importer.

/// Which end of the connection this is. It decides who masks (§5.1) and who closes the TCP
/// connection first (§7.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that sent the opening handshake: masks every frame it sends.
    Client,
    /// The end that accepted it: sends unmasked frames, requires masked ones.
    Server,
}

/// How data frames are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// One [`Event::Message`](crate::Event::Message) per complete message, fragments assembled (up to
    /// [`ProtocolConfig::max_message_size`]).
    #[default]
    Messages,
    /// [`Event::Chunk`](crate::Event::Chunk)s as payload arrives, so a caller can forward a message of any size in
    /// bounded memory. Text chunks are validated UTF-8 so far, but a chunk may end in the middle
    /// of a code point.
    Chunks,
}

/// Limits and behaviour of a [`Connection`](crate::Connection). Every limit is finite; see `docs/limits.md`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProtocolConfig {
    /// The largest payload one frame may declare; a larger one fails the connection with 1009.
    /// Default 16 MiB.
    pub max_frame_size: usize,
    /// The largest message, all fragments together; a larger one fails the connection with
    /// 1009. Checked from each frame header, before any of its payload is buffered. Default
    /// 64 MiB.
    pub max_message_size: usize,
    /// Answer each ping with a pong carrying the same payload (§5.5.2). Default on.
    pub auto_pong: bool,
    /// Whole messages or streamed chunks. Default [`Delivery::Messages`].
    pub delivery: Delivery,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            auto_pong: true,
            delivery: Delivery::Messages,
        }
    }
}

/// The type of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

/// A complete message, borrowed from the connection until the next call that changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A text message, validated UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> MessageRef<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(data) => data,
        }
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        match self {
            Self::Text(_) => MessageKind::Text,
            Self::Binary(_) => MessageKind::Binary,
        }
    }
}

/// A piece of a message's payload, in [`Delivery::Chunks`] mode: the data, and where it sits
/// in its message and its frame (a forwarder keeps the frame boundaries; see
/// [`Forwarder`](crate::Forwarder)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub(crate) kind: MessageKind,
    pub(crate) data: &'a [u8],
    pub(crate) first: bool,
    pub(crate) last: bool,
    pub(crate) frame_len: u64,
    pub(crate) fin: bool,
    pub(crate) frame_start: bool,
    pub(crate) frame_end: bool,
}

impl<'a> Chunk<'a> {
    /// The message's type, from its first frame.
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// Unmasked (and inflated) payload bytes; may be empty. Text is valid UTF-8 so far, but a
    /// chunk may end in the middle of a code point.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// This is the first chunk of the message.
    pub fn first(&self) -> bool {
        self.first
    }

    /// This is the last chunk of the message.
    pub fn last(&self) -> bool {
        self.last
    }

    /// The payload length the chunk's frame declared.
    pub fn frame_len(&self) -> u64 {
        self.frame_len
    }

    /// The frame's FIN bit: the frame ends the message.
    pub fn fin(&self) -> bool {
        self.fin
    }

    /// This chunk begins its frame.
    pub fn frame_start(&self) -> bool {
        self.frame_start
    }

    /// This chunk ends its frame.
    pub fn frame_end(&self) -> bool {
        self.frame_end
    }
}

/// The close state of a connection (§7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; its data frames are still reported.
    CloseSent,
    /// The close handshake completed, the connection failed, or the transport ended. No frames
    /// are sent or received.
    Closed,
}

/// A source of masking keys for a client connection (§5.3: "The masking key needs to be
/// unpredictable ... MUST be derived from a strong source of entropy").
///
/// Any `FnMut() -> [u8; 4]` is one. Tests pass a fixed sequence; transports a system RNG.
pub trait MaskKeySource: Send {
    /// The key for the next frame.
    fn next_key(&mut self) -> [u8; 4];
}

impl<F: FnMut() -> [u8; 4] + Send> MaskKeySource for F {
    fn next_key(&mut self) -> [u8; 4] {
        self()
    }
}
