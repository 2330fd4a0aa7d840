//! Frame-preserving forwarding: what an echo or a proxy does with [`Delivery::Chunks`]. See
//! [`Forwarder`].
//!
//! [`Delivery::Chunks`]: crate::Delivery::Chunks

use crate::error::SendError;
use crate::sender::Sender;
use crate::vocab::{Chunk, MessageKind};

/// Binary payload at least this large is offered to a direct write (see
/// [`Forwarder::forward`]); smaller pieces are cheaper to copy into the output buffer, where
/// they batch with other frames.
pub const DIRECT_WRITE_MIN: usize = 4 << 10;

/// A vectored write to the transport: it is offered the pending output and then payload, and
/// returns how many bytes it took (see [`Sender::send_frame_data_via`]).
pub type DirectWrite<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> usize;

/// Forwards received chunks onto a [`Sender`] frame for frame: each frame sent has the length
/// and FIN bit of the frame received, so the peer's fragmentation is kept and a large frame
/// streams through in bounded memory (RFC 6455 §5.4 lets an intermediary keep or change
/// fragmentation; this keeps it).
///
/// - Binary frames are forwarded as their payload arrives.
/// - A text frame is held until it is whole (at most `max_frame_size`): were it streamed,
///   invalid UTF-8 late in the frame could no longer be answered with a close frame (1007),
///   since nothing may interrupt a frame.
/// - A compressed message (permessage-deflate on the sending side) is held whole (at most
///   `max_message_size`) and sent as one message, compressed again: its frames do not map to
///   the inflated data.
///
/// ```
/// use ws_proto::{Connection, Delivery, Event, Forwarder, ProtocolConfig};
///
/// let mut config = ProtocolConfig::default();
/// config.delivery = Delivery::Chunks;
/// let mut server = Connection::server(config);
/// // Two fragments of a binary message, masked with a zero key: "ab" then "c".
/// server.receive_data(&[0x02, 0x82, 0, 0, 0, 0, b'a', b'b', 0x80, 0x81, 0, 0, 0, 0, b'c']);
/// let mut forwarder = Forwarder::default();
/// while let Some((event, mut sender)) = server.poll_event_with_sender() {
///     if let Event::Chunk(chunk) = event {
///         forwarder.forward(&mut sender, &chunk, None)?;
///     }
/// }
/// assert_eq!(server.pending_output(), b"\x02\x02ab\x80\x01c");
/// # Ok::<(), ws_proto::SendError>(())
/// ```
#[derive(Debug)]
pub struct Forwarder {
    /// The text frame or compressed message held until whole.
    held: Vec<u8>,
    /// Binary payload from this size is offered to the direct write.
    direct_min: usize,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self { held: Vec::new(), direct_min: DIRECT_WRITE_MIN }
    }
}

impl Forwarder {
    /// A forwarder that offers binary payload from `min` bytes (instead of
    /// [`DIRECT_WRITE_MIN`]) to the direct write: tests and fuzzing use 1 to exercise that
    /// path with small frames.
    pub fn with_direct_min(min: usize) -> Self {
        Self { held: Vec::new(), direct_min: min.max(1) }
    }

    /// Forwards one chunk. `direct`, when given, is a vectored write to the transport
    /// (pending output, then payload; returns the bytes it took): binary payload of at least
    /// [`DIRECT_WRITE_MIN`] bytes is offered to it and copied into the output only if it does
    /// not take it all (see [`Sender::send_frame_data_via`]). `Err` is the sender's:
    /// [`SendError::Closed`] once a close frame was sent, after which nothing more goes out.
    pub fn forward(
        &mut self,
        sender: &mut Sender<'_>,
        chunk: &Chunk<'_>,
        direct: Option<DirectWrite<'_>>,
    ) -> Result<(), SendError> {
        if self.held.is_empty() && self.held.capacity() > 64 << 10 {
            self.held = Vec::new();
        }
        if sender.compression() {
            self.held.extend_from_slice(chunk.data);
            if chunk.last {
                let sent = sender.send_message(chunk.kind, &self.held);
                self.held.clear();
                return sent;
            }
            return Ok(());
        }
        match chunk.kind {
            MessageKind::Binary => {
                if chunk.frame_start {
                    sender.begin_frame(MessageKind::Binary, chunk.fin, chunk.frame_len)?;
                }
                match direct {
                    Some(write) if chunk.data.len() >= self.direct_min => {
                        sender.send_frame_data_via(chunk.data, |pending, data| write(pending, data))
                    }
                    _ if !chunk.data.is_empty() => sender.send_frame_data(chunk.data),
                    _ => Ok(()),
                }
            }
            MessageKind::Text if chunk.frame_start && chunk.frame_end => {
                sender.send_fragment(MessageKind::Text, chunk.data, chunk.fin)
            }
            MessageKind::Text => {
                self.held.extend_from_slice(chunk.data);
                if !chunk.frame_end {
                    return Ok(());
                }
                let sent = sender.send_fragment(MessageKind::Text, &self.held, chunk.fin);
                self.held.clear();
                sent
            }
        }
    }

    /// Bytes held: a text frame or compressed message not yet whole.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}
