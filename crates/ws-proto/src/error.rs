//! Error types, one per failure domain.

use crate::vocab::MessageKind;

/// Why the connection failed the peer (§7.1.7). Each maps to the close code sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A reserved opcode (3–7, 0xB–0xF) was used.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV bits were set that no negotiated extension defines.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// A 64-bit payload length had its most significant bit set.
    #[error("payload length has its most significant bit set")]
    InvalidLength,
    /// A control frame declared more than 125 bytes of payload.
    #[error("control frame longer than 125 bytes")]
    ControlFrameTooLong,
    /// A control frame had FIN clear.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A client sent an unmasked frame.
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A server sent a masked frame.
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A continuation frame arrived with no message open.
    #[error("continuation frame with no message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was open.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A frame declared more payload than the configured maximum frame size.
    #[error("frame larger than the maximum frame size")]
    FrameTooLarge,
    /// A message grew past the configured maximum message size.
    #[error("message larger than the maximum message size")]
    MessageTooLarge,
    /// A text message or close reason was not valid UTF-8.
    #[error("invalid utf-8 in text")]
    InvalidUtf8,
    /// A close frame carried a one-byte payload.
    #[error("close frame with a one-byte payload")]
    InvalidClosePayload,
    /// A close frame carried a code that may not be sent.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A compressed message (RFC 7692) did not inflate: 1007 for text, 1002 for binary.
    #[error("invalid compressed data")]
    InvalidCompressedData(MessageKind),
}

/// A command that the connection cannot carry out in its state: misuse of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent (or the connection failed); no more frames may be sent.
    #[error("the connection is closing or closed")]
    Closed,
    /// A control frame payload over 125 bytes.
    #[error("control frame payload longer than 125 bytes")]
    ControlFrameTooLong,
    /// A close reason over 123 bytes.
    #[error("close reason longer than 123 bytes")]
    ReasonTooLong,
    /// A close code that may not be sent on the wire.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A whole message, or the first fragment of a new one, while a fragmented message is open.
    #[error("a fragmented message is in progress")]
    MessageInProgress,
    /// A continuation of a different type than the message in progress.
    #[error("fragment type does not match the message in progress")]
    FragmentMismatch,
    /// Another send while a frame begun with `begin_frame` awaits its payload.
    #[error("a frame is in progress")]
    FrameInProgress,
    /// `send_frame_data` without a frame begun with `begin_frame`.
    #[error("no frame is in progress")]
    NoFrameInProgress,
    /// More payload than the frame declared, or a length over 2^63 - 1.
    #[error("payload exceeds the frame's declared length")]
    FrameOverrun,
}
