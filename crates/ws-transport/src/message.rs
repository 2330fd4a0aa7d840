//! The messages a [`WebSocket`](crate::WebSocket) sends and receives: [`Message`], owned, and
//! [`Outgoing`], what a send takes.

use ws_proto::{MessageKind, MessageRef as ProtoMessage};

/// Messages at least this large are sent without copying their payload (see
/// [`WebSocket::send`](crate::WebSocket::send)); smaller ones are cheaper to copy into the output buffer, where they
/// batch with other frames.
pub const IN_PLACE_MIN: usize = ws_proto::DIRECT_WRITE_MIN;

/// An owned message, as [`WebSocket::recv`](crate::WebSocket::recv) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// The message, borrowed: ws-proto's view of it.
    pub fn borrowed(&self) -> ProtoMessage<'_> {
        match self {
            Self::Text(text) => ProtoMessage::Text(text),
            Self::Binary(data) => ProtoMessage::Binary(data),
        }
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.borrowed().as_bytes()
    }

    /// Text or binary.
    pub fn kind(&self) -> MessageKind {
        self.borrowed().kind()
    }

    /// Bytes of memory the payload holds (its buffer's capacity, at least its length).
    pub fn capacity(&self) -> usize {
        match self {
            Self::Text(text) => text.capacity(),
            Self::Binary(data) => data.capacity(),
        }
    }
}

/// What [`WebSocket::send`](crate::WebSocket::send) and [`WebSocket::feed`](crate::WebSocket::feed) take: text or binary, borrowed
/// (`&str`, `&[u8]`, copied once, into the output buffer) or owned (`String`, `Vec<u8>`,
/// [`Message`]; from 4 KiB not copied at all). Sealed: implemented for those types only.
pub trait Outgoing: sealed::Sealed {
    /// Text or binary.
    fn kind(&self) -> MessageKind;
    /// The payload.
    fn bytes(&self) -> &[u8];
    /// The payload as an owned buffer that may be masked in place, or `self` back when it is
    /// borrowed.
    fn into_owned_bytes(self) -> Result<Vec<u8>, Self>
    where
        Self: Sized;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for &str {}
    impl Sealed for String {}
    impl Sealed for &[u8] {}
    impl Sealed for Vec<u8> {}
    impl Sealed for super::Message {}
}

impl Outgoing for &str {
    fn kind(&self) -> MessageKind {
        MessageKind::Text
    }
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        Err(self)
    }
}

impl Outgoing for &[u8] {
    fn kind(&self) -> MessageKind {
        MessageKind::Binary
    }
    fn bytes(&self) -> &[u8] {
        self
    }
    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        Err(self)
    }
}

impl Outgoing for String {
    fn kind(&self) -> MessageKind {
        MessageKind::Text
    }
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        Ok(self.into_bytes())
    }
}

impl Outgoing for Vec<u8> {
    fn kind(&self) -> MessageKind {
        MessageKind::Binary
    }
    fn bytes(&self) -> &[u8] {
        self
    }
    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        Ok(self)
    }
}

impl Outgoing for Message {
    fn kind(&self) -> MessageKind {
        Message::kind(self)
    }
    fn bytes(&self) -> &[u8] {
        self.as_bytes()
    }
    fn into_owned_bytes(self) -> Result<Vec<u8>, Self> {
        Ok(match self {
            Self::Text(text) => text.into_bytes(),
            Self::Binary(data) => data,
        })
    }
}

/// Copies a message borrowed from the connection.
impl From<ProtoMessage<'_>> for Message {
    fn from(message: ProtoMessage<'_>) -> Self {
        match message {
            ProtoMessage::Text(text) => Self::Text(text.to_owned()),
            ProtoMessage::Binary(data) => Self::Binary(data.to_vec()),
        }
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::Binary(data)
    }
}

impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Self {
        Self::Binary(data.to_vec())
    }
}
