//! A log of the frames a connection parses and encodes, for a frame inspector: see
//! [`Connection::inspect_frames`](crate::Connection::inspect_frames).

use std::collections::VecDeque;

use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::mask::apply_mask;

/// Payload bytes kept per frame: a control frame's whole payload, the start of a data frame's.
pub const INSPECTED_PAYLOAD: usize = MAX_CONTROL_PAYLOAD;

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Parsed from the peer's bytes.
    Received,
    /// Encoded by this end.
    Sent,
}

/// One frame as the connection parsed or encoded it.
#[derive(Clone, PartialEq, Eq)]
pub struct FrameRecord {
    /// Which way it went.
    pub direction: Direction,
    /// The header's fields.
    pub header: FrameHeader,
    header_bytes: [u8; MAX_HEADER_LEN],
    header_len: u8,
    payload: [u8; INSPECTED_PAYLOAD],
    payload_kept: u8,
}

impl std::fmt::Debug for FrameRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRecord")
            .field("direction", &self.direction)
            .field("header", &self.header)
            .field("wire_payload", &self.wire_payload())
            .finish()
    }
}

impl FrameRecord {
    fn new(direction: Direction, header: FrameHeader, header_bytes: &[u8]) -> Self {
        let mut bytes = [0; MAX_HEADER_LEN];
        let n = header_bytes.len().min(MAX_HEADER_LEN);
        bytes[..n].copy_from_slice(&header_bytes[..n]);
        Self {
            direction,
            header,
            header_bytes: bytes,
            header_len: n as u8,
            payload: [0; INSPECTED_PAYLOAD],
            payload_kept: 0,
        }
    }

    /// The header as on the wire (2 to 14 bytes: the two first, the extended length, the
    /// masking key).
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes[..usize::from(self.header_len)]
    }

    /// The start of the payload as on the wire (masked, if the frame is), up to
    /// [`INSPECTED_PAYLOAD`] bytes; fewer if the payload is shorter, or if only that much had
    /// arrived when a received header was parsed.
    pub fn wire_payload(&self) -> &[u8] {
        &self.payload[..usize::from(self.payload_kept)]
    }

    /// [`wire_payload`](Self::wire_payload) unmasked (RFC 6455 §5.3): the payload's first
    /// bytes as the application sees them (compressed, if the message is).
    pub fn payload(&self) -> Vec<u8> {
        let mut data = self.wire_payload().to_vec();
        if let Some(key) = self.header.mask {
            apply_mask(&mut data, key, 0);
        }
        data
    }

    fn keep(&mut self, bytes: &[u8]) {
        let kept = usize::from(self.payload_kept);
        let wanted = (self.header.payload_len as usize).min(INSPECTED_PAYLOAD);
        let n = bytes.len().min(wanted.saturating_sub(kept));
        self.payload[kept..kept + n].copy_from_slice(&bytes[..n]);
        self.payload_kept += n as u8;
    }
}

/// The frames logged since the last
/// [`Connection::take_frames`](crate::Connection::take_frames), oldest first.
#[derive(Debug, Default)]
pub struct Frames {
    /// The frames kept.
    pub records: Vec<FrameRecord>,
    /// Frames not kept because the log was full (its capacity reached before it was taken).
    pub dropped: u64,
}

/// What an inspected connection keeps: at most `capacity` records between takes.
#[derive(Debug)]
pub(crate) struct FrameLog {
    records: VecDeque<FrameRecord>,
    capacity: usize,
    dropped: u64,
    /// The record of the sent frame whose payload is still being kept (it goes out in
    /// pieces; received frames may be logged meanwhile).
    keeping_sent: Option<usize>,
}

impl FrameLog {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { records: VecDeque::new(), capacity, dropped: 0, keeping_sent: None }
    }

    /// A received header, and what had arrived of its payload.
    pub(crate) fn received(&mut self, header: FrameHeader, wire: &[u8], header_len: usize) {
        let mut record = FrameRecord::new(Direction::Received, header, &wire[..header_len]);
        record.keep(&wire[header_len..]);
        self.push(record);
    }

    /// A sent header; its payload follows through [`sent_payload`](Self::sent_payload).
    pub(crate) fn sent(&mut self, header: FrameHeader, header_bytes: &[u8]) {
        let index = self.records.len();
        let kept = self.push(FrameRecord::new(Direction::Sent, header, header_bytes));
        self.keeping_sent = kept.then_some(index);
    }

    /// Payload of the last sent frame, as on the wire.
    pub(crate) fn sent_payload(&mut self, bytes: &[u8]) {
        if let Some(record) = self.keeping_sent.and_then(|i| self.records.get_mut(i)) {
            record.keep(bytes);
        }
    }

    /// Whether it was kept.
    fn push(&mut self, record: FrameRecord) -> bool {
        if self.records.len() >= self.capacity {
            self.dropped += 1;
            return false;
        }
        self.records.push_back(record);
        true
    }

    /// What the records hold, for the memory budget.
    pub(crate) fn memory(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<FrameRecord>()
    }

    pub(crate) fn take(&mut self) -> Frames {
        // A sent frame's payload still to come is not kept once its record is taken.
        self.keeping_sent = None;
        Frames {
            records: self.records.drain(..).collect(),
            dropped: std::mem::take(&mut self.dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Connection, MessageKind, OpCode, ProtocolConfig};

    #[test]
    fn frames_are_logged_both_ways_as_on_the_wire() {
        let mut server = Connection::server(ProtocolConfig::default());
        assert!(server.take_frames().is_none());
        server.inspect_frames(8);
        // RFC 6455 §5.7: a masked "Hello" from a client.
        let hello = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        server.receive_data(&hello);
        while server.poll_event().is_some() {}
        server.send_text("Hello").unwrap();
        // A frame sent in pieces keeps its payload as the pieces come.
        let mut sender = server.sender();
        sender.begin_frame(MessageKind::Binary, true, 4).unwrap();
        sender.send_frame_data(b"ab").unwrap();
        sender.send_frame_data_via(b"cd", |pending, _| pending.len() + 1).unwrap();

        let frames = server.take_frames().expect("inspected");
        assert_eq!(frames.dropped, 0);
        let [received, sent, binary] = &frames.records[..] else { panic!("{frames:?}") };
        assert_eq!(received.direction, Direction::Received);
        assert_eq!(received.header_bytes(), &hello[..6]);
        assert_eq!(received.header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(received.wire_payload(), &hello[6..]);
        assert_eq!(received.payload(), b"Hello");
        assert_eq!((sent.direction, sent.header.opcode), (Direction::Sent, OpCode::Text));
        assert_eq!((sent.header_bytes(), sent.wire_payload()), (&[0x81, 0x05][..], &b"Hello"[..]));
        assert_eq!(
            (binary.header_bytes(), binary.payload()),
            (&[0x82, 0x04][..], b"abcd".to_vec())
        );
        assert!(server.take_frames().unwrap().records.is_empty());
    }

    #[test]
    fn a_full_log_drops_and_counts_and_a_failing_frame_is_logged() {
        let mut server = Connection::server(ProtocolConfig::default());
        server.inspect_frames(1);
        // An unmasked text from a client: logged, then the connection fails with 1002.
        server.receive_data(&[0x81, 0x02, b'h', b'i']);
        while server.poll_event().is_some() {}
        let frames = server.take_frames().unwrap();
        // The close frame 1002 did not fit.
        assert_eq!((frames.records.len(), frames.dropped), (1, 1));
        assert_eq!(frames.records[0].header.mask, None);
        assert_eq!(frames.records[0].payload(), b"hi");
    }

    #[test]
    fn a_control_frame_in_pieces_is_logged_once_and_sent_payload_finds_its_frame() {
        let mut server = Connection::server(ProtocolConfig::default());
        server.inspect_frames(8);
        // A masked ping "ab", a byte at a time.
        for byte in [0x89, 0x82, 0, 0, 0, 0, b'a', b'b'] {
            server.receive_data(&[byte]);
            while server.poll_event().is_some() {}
        }
        let frames = server.take_frames().unwrap();
        let [ping, pong] = &frames.records[..] else { panic!("{frames:?}") };
        assert_eq!((ping.header.opcode, ping.payload()), (OpCode::Ping, b"ab".to_vec()));
        assert_eq!((pong.header.opcode, pong.wire_payload()), (OpCode::Pong, &b"ab"[..]));
        // A frame sent in pieces while a received one is logged in between.
        server.sender().begin_frame(MessageKind::Binary, true, 2).unwrap();
        server.receive_data(&[0x82, 0x81, 0, 0, 0, 0, b'z']);
        while server.poll_event().is_some() {}
        server.sender().send_frame_data(b"xy").unwrap();
        let frames = server.take_frames().unwrap();
        let [sent, received] = &frames.records[..] else { panic!("{frames:?}") };
        assert_eq!((sent.direction, sent.payload()), (Direction::Sent, b"xy".to_vec()));
        assert_eq!((received.direction, received.payload()), (Direction::Received, b"z".to_vec()));
    }
}
