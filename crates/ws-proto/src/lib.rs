//! Sans-IO WebSocket protocol (RFC 6455).
//!
//! This crate is the protocol and nothing else: it reads no socket, spawns no task, reads no
//! clock and draws no random numbers. Callers feed it bytes and drain events and bytes to
//! write, so any runtime (or none) can drive it. `ws-transport` drives it over async streams.
//!
//! Start with:
//! - [`RequestParser`] and [`Request::websocket`] for the server's opening handshake, or
//!   [`ClientRequest`] for the client's;
//! - [`Connection`], the state machine for everything after the handshake, and
//!   [`Session`], which adds its timers and transport policy (when to read, who closes TCP
//!   first): what a driver runs (`docs/transport-guide.md` has the whole loop);
//! - [`ProtocolConfig`], the limits (all finite by default).
//!
//! The state machine alone, on a server (a real driver also runs a [`Session`]'s timers and
//! its [`poll_transport`](Session::poll_transport), which ends TCP without a reset):
//!
//! ```
//! use ws_proto::{Connection, Event, MessageRef, ProtocolConfig};
//!
//! # fn read_from_socket(_: &mut [u8]) -> usize { 0 }
//! # fn write_to_socket(_: &[u8]) {}
//! let mut conn = Connection::server(ProtocolConfig::default());
//! loop {
//!     let n = read_from_socket(conn.input_buffer(4096));
//!     if n == 0 { conn.receive_eof() } else { conn.input_written(n) }
//!     while let Some(event) = conn.poll_event() {
//!         if let Event::Message(MessageRef::Text(text)) = event {
//!             let reply = text.to_owned();
//!             conn.send_text(&reply).ok(); // Err only if we already closed
//!         }
//!     }
//!     write_to_socket(conn.pending_output());
//!     conn.consume_output(conn.pending_output().len());
//!     if conn.should_close_transport() || n == 0 { break }
//! }
//! ```
//!
//! A peer that breaks the protocol is not an `Err`: the connection queues a close frame with
//! the right code (1002, 1007, 1009) and reports [`Event::Failed`]. `Err` is for misuse of the
//! API, such as sending after close.

#![forbid(unsafe_code)]

mod close;
mod connection;
mod error;
mod extensions;
mod forward;
mod frame;
mod handshake;
mod inspect;
mod mask;
mod sender;
mod session;
mod timers;
mod traffic;
mod utf8;
mod vocab;

pub use close::{CloseCode, CloseFrame, MAX_CLOSE_REASON};
pub use connection::{Connection, Event, PolledEvent, RECYCLED_IDLE_MAX};
pub use error::{ProtocolError, SendError};
#[cfg(feature = "deflate")]
pub use extensions::{
    Compressor, Decompressor, DeflateConfig, DeflateNegotiationError, DeflateParams, INFLATE_STEP,
    InflateError, Inflated, PERMESSAGE_DEFLATE,
};
pub use extensions::{ExtensionOffer, ExtensionSyntaxError, parse_extensions};
pub use forward::{DIRECT_WRITE_MIN, DirectWrite, FRAGMENT_MIN, Forwarder};
pub use frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, RSV1, Status};
pub use handshake::{
    Accepted, ClientHandshake, ClientRequest, HandshakeError, HandshakeLimits, Header,
    ProtocolNotOffered, Request, RequestParser, Response, ResponseError, Setup, Upgrade,
    accept_key,
};
pub use inspect::{Direction, FrameRecord, Frames, INSPECTED_PAYLOAD};
pub use mask::apply_mask;
#[doc(hidden)]
pub use mask::apply_mask_bytewise;
pub use sender::Sender;
pub use session::{Session, TransportCommand};
pub use timers::{Deadline, TimerAction, TimerSettings, Timers};
pub use traffic::{TALLIED_OPCODES, Tally, Traffic};
pub use utf8::Utf8Validator;
pub use vocab::{
    Chunk, Delivery, MaskKeySource, MessageKind, MessageRef, ProtocolConfig, Role, State,
};

/// The code in `docs/transport-guide.md`, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/transport-guide.md")]
struct TransportGuide;
