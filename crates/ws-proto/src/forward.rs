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

/// Fragments a [`Forwarder`] cuts a message into, when it cuts one, are at least this large
/// (the last of a message, or of a text frame it keeps, aside): few enough that a peer which counts the fragments of a
/// message (Python `websockets` allows 4,096) takes a message of 64 MiB in 1,024 of them, and
/// small enough that a connection holds little while one streams.
pub const FRAGMENT_MIN: usize = 64 << 10;

/// Forwards received chunks onto a [`Sender`] as they arrive, so that a message of any size
/// streams through in bounded memory.
///
/// - Binary frames are forwarded frame for frame as their payload arrives: each frame sent
///   has the length and FIN bit of the frame received.
/// - Text is validated as it arrives, but nothing may interrupt a frame, so a frame cannot be
///   sent before its last byte is known good: invalid UTF-8 late in it could then no longer
///   be answered with a close frame (1007). A text frame is therefore held until it is whole
///   and then sent as it came, unless it grows past [`FRAGMENT_MIN`] bytes first: then it is
///   cut into fragments of at least that size, each sent once it is validated, at a character
///   boundary (RFC 6455 §5.4 lets an intermediary change a message's fragmentation). A late
///   invalid byte still gets 1007; the fragments sent before it are never completed.
/// - With permessage-deflate negotiated, messages are sent compressed, in fragments cut the
///   same way: a compressed message's frames do not map to its inflated data, which arrives
///   in steps of at most [`INFLATE_STEP`](crate::INFLATE_STEP).
///
/// What it holds is at most one fragment and one chunk.
///
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
        if sender.compression() || chunk.kind == MessageKind::Text {
            let sent = self.refragment(sender, chunk);
            if chunk.last {
                // Nothing is held between messages: an idle connection keeps no fragment
                // buffer.
                self.held = Vec::new();
            }
            return sent;
        }
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

    /// Text, and anything compressed: an uncompressed text frame is sent once it is whole,
    /// unless it grows past [`FRAGMENT_MIN`] first; then, as compressed data always is, it
    /// is sent in fragments of at least that size, each cut at a character boundary.
    fn refragment(&mut self, sender: &mut Sender<'_>, chunk: &Chunk<'_>) -> Result<(), SendError> {
        let text = chunk.kind == MessageKind::Text;
        // Where the peer's frame ends, ours may too (uncompressed text keeps its frames).
        let frame_end = chunk.last || (text && chunk.frame_end && !sender.compression());
        if self.held.is_empty() && (frame_end || chunk.data.len() >= FRAGMENT_MIN) {
            // Straight from the chunk, without a copy; a code point it ends inside of waits.
            let cut = if frame_end || !text { chunk.data.len() } else { char_boundary(chunk.data) };
            sender.send_fragment(chunk.kind, &chunk.data[..cut], chunk.last)?;
            self.held.extend_from_slice(&chunk.data[cut..]);
            return Ok(());
        }
        self.held.extend_from_slice(chunk.data);
        if frame_end {
            let sent = sender.send_fragment(chunk.kind, &self.held, chunk.last);
            self.held.clear();
            return sent;
        }
        if self.held.len() >= FRAGMENT_MIN {
            let cut = if text { char_boundary(&self.held) } else { self.held.len() };
            sender.send_fragment(chunk.kind, &self.held[..cut], false)?;
            self.held.drain(..cut);
        }
        Ok(())
    }

    /// Bytes of memory held (the capacity of what [`held`](Self::held) counts), for a
    /// memory budget.
    pub fn memory(&self) -> usize {
        self.held.capacity()
    }

    /// Bytes held: the next fragment of a text or compressed message, not yet sent.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// Where `data`, valid UTF-8 so far, stops being whole characters: before a code point that
/// it ends inside of.
fn char_boundary(data: &[u8]) -> usize {
    // A code point is at most four bytes: look back at most three for its lead byte.
    for back in 1..=data.len().min(3) {
        let byte = data[data.len() - back];
        if byte & 0xc0 != 0x80 {
            // A lead byte (or ASCII): does its sequence fit in what follows it?
            let len = match byte {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            return if len > back { data.len() - back } else { data.len() };
        }
    }
    data.len()
}

#[cfg(test)]
mod tests {
    use super::char_boundary;

    #[test]
    fn char_boundary_keeps_whole_characters() {
        let text = "aé€😀".as_bytes(); // 1, 2, 3 and 4 bytes
        assert_eq!(char_boundary(text), text.len());
        for end in 0..=text.len() {
            let cut = char_boundary(&text[..end]);
            assert!(std::str::from_utf8(&text[..cut]).is_ok(), "cut {cut} of {end}");
            assert!(end - cut < 4, "held back {} bytes", end - cut);
            // Only an incomplete character is held back.
            assert_eq!(std::str::from_utf8(&text[..end]).is_ok(), cut == end, "{end}");
        }
    }
}
