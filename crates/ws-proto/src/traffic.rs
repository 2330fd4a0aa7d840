//! What a connection sent and received, by opcode, for metrics: see [`Traffic`].

use crate::close::CloseCode;
use crate::frame::OpCode;

/// The opcodes a [`Tally`] counts, in the order of its arrays. Continuation frames count
/// under the opcode of the message they continue.
pub const TALLIED_OPCODES: [OpCode; 5] =
    [OpCode::Text, OpCode::Binary, OpCode::Ping, OpCode::Pong, OpCode::Close];

/// What went one way over a connection since the last
/// [`Connection::take_traffic`](crate::Connection::take_traffic).
///
/// Data messages (text, binary) count once each, when their last frame's header is read or
/// queued; control frames (ping, pong, close) count each. Bytes are frame payload bytes as on
/// the wire (compressed where the message is compressed; unmasked), counted with the frame's
/// header.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    counts: [u64; 5],
    bytes: [u64; 5],
    /// Payload bytes of compressed data frames, on the wire.
    pub compressed: u64,
    /// What those bytes were before compression (sent) or inflated to (received).
    pub uncompressed: u64,
    /// The close frame's code, if one went this way in the period (1005 for a close frame
    /// without a code).
    pub close: Option<CloseCode>,
}

/// A connection's [`Tally`] each way, from
/// [`Connection::take_traffic`](crate::Connection::take_traffic).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// What the peer sent.
    pub received: Tally,
    /// What this end queued to send.
    pub sent: Tally,
}

impl Traffic {
    /// Nothing either way.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Tally {
    /// Data messages (text, binary) or control frames (ping, pong, close) of `opcode`; 0 for
    /// continuation frames, which count under their message's opcode.
    pub fn count(&self, opcode: OpCode) -> u64 {
        slot(opcode).map_or(0, |i| self.counts[i])
    }

    /// Payload bytes of frames of `opcode` (continuations under their message's opcode).
    pub fn bytes(&self, opcode: OpCode) -> u64 {
        slot(opcode).map_or(0, |i| self.bytes[i])
    }

    /// [`count`](Self::count) for each of [`TALLIED_OPCODES`], in its order.
    pub fn counts(&self) -> &[u64; 5] {
        &self.counts
    }

    /// [`bytes`](Self::bytes) for each of [`TALLIED_OPCODES`], in its order.
    pub fn bytes_by_opcode(&self) -> &[u64; 5] {
        &self.bytes
    }
}

/// What a connection keeps of one way's [`Tally`] between takes, small because every
/// connection holds two: counts and control payload in `u32` (a driver takes them after each
/// turn, and a turn holds far fewer than 2^32 frames), data payload in `u64` (one frame
/// header may declare more). Compressed bytes are kept by the codec, which only compressing
/// connections have.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    counts: [u32; 5],
    data: [u64; 2],
    control: [u32; 3],
    pub(crate) close: Option<CloseCode>,
}

impl Counts {
    /// Counts a frame header: its payload bytes, and a message or control frame when it is
    /// one's last frame. `opcode` is the message's opcode for a continuation.
    #[inline]
    pub(crate) fn frame(&mut self, opcode: OpCode, fin: bool, payload_len: u64) {
        let Some(i) = slot(opcode) else { return };
        if i < 2 {
            self.data[i] = self.data[i].wrapping_add(payload_len);
        } else {
            // Control payloads are at most 125 bytes.
            self.control[i - 2] = self.control[i - 2].wrapping_add(payload_len as u32);
        }
        if fin {
            self.counts[i] = self.counts[i].wrapping_add(1);
        }
    }

    /// The tally so far, with the codec's figures; both start again from zero.
    #[inline]
    pub(crate) fn take(&mut self, codec: Option<&mut CompressedBytes>) -> Tally {
        let counts = std::mem::take(self);
        let squeezed = codec.map(std::mem::take).unwrap_or_default();
        let bytes = [
            counts.data[0],
            counts.data[1],
            u64::from(counts.control[0]),
            u64::from(counts.control[1]),
            u64::from(counts.control[2]),
        ];
        Tally {
            counts: counts.counts.map(u64::from),
            bytes,
            compressed: squeezed.compressed,
            uncompressed: squeezed.uncompressed,
            close: counts.close,
        }
    }
}

/// Compressed payload bytes on the wire and what they were uncompressed, kept by a
/// compressor or decompressor between takes.
#[derive(Debug, Default, Clone, Copy)]
#[cfg_attr(not(feature = "deflate"), allow(dead_code))]
pub(crate) struct CompressedBytes {
    pub(crate) compressed: u64,
    pub(crate) uncompressed: u64,
}

#[inline]
fn slot(opcode: OpCode) -> Option<usize> {
    match opcode {
        OpCode::Text => Some(0),
        OpCode::Binary => Some(1),
        OpCode::Ping => Some(2),
        OpCode::Pong => Some(3),
        OpCode::Close => Some(4),
        OpCode::Continuation => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Connection, Event, MessageKind, ProtocolConfig};

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut frame = vec![u8::from(fin) << 7 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    #[test]
    fn counts_each_way_by_opcode_and_resets_when_taken() {
        let mut conn = Connection::server(ProtocolConfig::default());
        let mut input = masked(0x1, true, b"hello");
        input.extend(masked(0x2, false, b"ab"));
        input.extend(masked(0x9, true, b"p"));
        input.extend(masked(0x0, true, b"cde"));
        conn.receive_data(&input);
        while conn.poll_event().is_some() {}
        conn.send_text("hi").unwrap();
        conn.send_fragment(MessageKind::Binary, b"xy", false).unwrap();
        conn.send_fragment(MessageKind::Binary, b"z", true).unwrap();

        let traffic = conn.take_traffic();
        let r = traffic.received;
        assert_eq!((r.count(OpCode::Text), r.bytes(OpCode::Text)), (1, 5));
        // The fragmented binary message counts once, with both fragments' bytes.
        assert_eq!((r.count(OpCode::Binary), r.bytes(OpCode::Binary)), (1, 5));
        assert_eq!((r.count(OpCode::Ping), r.bytes(OpCode::Ping)), (1, 1));
        assert_eq!(r.count(OpCode::Continuation), 0);
        let s = traffic.sent;
        // The automatic pong, then our messages.
        assert_eq!((s.count(OpCode::Pong), s.bytes(OpCode::Pong)), (1, 1));
        assert_eq!((s.count(OpCode::Text), s.bytes(OpCode::Text)), (1, 2));
        assert_eq!((s.count(OpCode::Binary), s.bytes(OpCode::Binary)), (1, 3));
        assert_eq!((r.close, s.close), (None, None));
        assert!(conn.take_traffic().is_empty());

        conn.receive_data(&masked(0x8, true, &[0x03, 0xe8]));
        assert!(matches!(conn.poll_event(), Some(Event::Close(_))));
        let traffic = conn.take_traffic();
        assert_eq!(traffic.received.close, Some(CloseCode::NORMAL));
        assert_eq!(traffic.sent.close, Some(CloseCode::NORMAL));
        assert_eq!(traffic.sent.count(OpCode::Close), 1);
        // The cumulative counts the access log reads are not reset.
        assert_eq!((conn.messages_received(), conn.messages_sent()), (2, 2));
    }

    #[test]
    fn a_close_without_a_code_and_a_failure_are_tallied() {
        let mut conn = Connection::server(ProtocolConfig::default());
        conn.receive_data(&masked(0x8, true, b""));
        while conn.poll_event().is_some() {}
        let traffic = conn.take_traffic();
        assert_eq!(traffic.received.close, Some(CloseCode::NO_STATUS));
        assert_eq!(traffic.sent.close, Some(CloseCode::NO_STATUS));

        let mut conn = Connection::server(ProtocolConfig::default());
        conn.receive_data(&masked(0x1, true, &[0xff]));
        while conn.poll_event().is_some() {}
        let traffic = conn.take_traffic();
        assert_eq!(traffic.sent.close, Some(CloseCode::INVALID_PAYLOAD));
        // The frame was read before its payload failed it.
        assert_eq!(traffic.received.bytes(OpCode::Text), 1);
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn compressed_bytes_are_tallied_both_ways() {
        use crate::{Compressor, DeflateParams};
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let mut conn = Connection::server(ProtocolConfig::default());
        conn.set_deflate(&params, 6);
        let text = "compress me ".repeat(50);
        let mut deflate = Compressor::new(15, true, 6);
        let mut body = Vec::new();
        deflate.compress_fragment(text.as_bytes(), true, &mut body);
        let key = [9, 8, 7, 6];
        let mut frame = vec![0xc1, 0xfe];
        frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
        frame.extend_from_slice(&key);
        frame.extend(body.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        conn.receive_data(&frame);
        while conn.poll_event().is_some() {}
        conn.send_text(&text).unwrap();
        let traffic = conn.take_traffic();
        for tally in [traffic.received, traffic.sent] {
            assert_eq!(tally.uncompressed, text.len() as u64);
            assert_eq!(tally.compressed, tally.bytes(OpCode::Text));
            assert!(tally.compressed < tally.uncompressed / 5, "{tally:?}");
        }
    }
}
