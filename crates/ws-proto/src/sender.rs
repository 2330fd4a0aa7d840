//! The output side of a connection: the frame encoder, its buffer, and [`Sender`].

use std::fmt;

use crate::close::{CloseCode, MAX_CLOSE_REASON};
use crate::error::SendError;
#[cfg(feature = "deflate")]
use crate::extensions::Compressor;
#[cfg(feature = "deflate")]
use crate::frame::RSV1;
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, first_byte};
use crate::inspect::FrameLog;
use crate::mask::apply_mask;
use crate::traffic::Counts;
use crate::vocab::{MaskKeySource, MessageKind, State};

/// Output buffers above this capacity are released once drained, so that one large message
/// does not pin memory for the connection's lifetime.
pub(crate) const RETAINED_BUFFER: usize = 64 << 10;

/// The output side of a connection: the frame encoder and its buffer.
pub(crate) struct Output {
    /// Masking keys; present for a client.
    pub(crate) keys: Option<Box<dyn MaskKeySource>>,
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
    /// The type of the fragmented message being sent, if one is open.
    pub(crate) sending: Option<MessageKind>,
    /// A frame begun with [`Sender::begin_frame`] whose payload is still to come.
    pub(crate) open_frame: Option<OpenFrame>,
    /// The pong and close frame the connection owes while a frame is open, sent when it
    /// completes. One pong is enough (§5.5.3: an endpoint "MAY elect to send a Pong frame for
    /// only the most recently processed Ping frame").
    pub(crate) deferred_pong: Option<Vec<u8>>,
    pub(crate) deferred_close: Option<Vec<u8>>,
    /// The compressor, when permessage-deflate is negotiated.
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<Box<Compressor>>,
    /// The message being sent is compressed.
    pub(crate) sending_compressed: bool,
    /// Compressed payload before it is framed.
    pub(crate) scratch: Vec<u8>,
    /// Data messages whose last frame has been queued.
    pub(crate) messages_sent: u64,
    /// Our close frame was queued while the connection was open: we closed first.
    pub(crate) closed_first: bool,
    /// What was queued since the last [`Connection::take_traffic`](crate::Connection::take_traffic).
    pub(crate) sent: Counts,
    /// The opcode of the last data message begun: what its continuations count under.
    pub(crate) data_opcode: OpCode,
    /// The frame log of an inspected connection (both ways: the input side logs here too).
    pub(crate) inspect: Option<Box<FrameLog>>,
}

/// The state of a frame being sent in pieces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenFrame {
    remaining: u64,
    mask: Option<[u8; 4]>,
    mask_offset: usize,
}

impl Output {
    /// Drops the first `n` pending bytes, which the caller wrote.
    pub(crate) fn consume(&mut self, n: usize) {
        assert!(self.start + n <= self.buf.len(), "consumed more output than pending");
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            if self.buf.capacity() > RETAINED_BUFFER {
                self.buf = Vec::new();
            }
        }
    }

    /// Queues one frame of a data message, compressing it when the message is compressed
    /// (RSV1 on its first frame only, RFC 7692 §6.1).
    #[inline]
    pub(crate) fn queue_data(&mut self, opcode: OpCode, fin: bool, data: &[u8]) {
        #[cfg(feature = "deflate")]
        if self.sending_compressed && self.deflate.is_some() {
            self.queue_compressed(opcode, fin, data);
            return;
        }
        self.queue_frame(opcode, fin, data);
    }

    #[cfg(feature = "deflate")]
    fn queue_compressed(&mut self, opcode: OpCode, fin: bool, data: &[u8]) {
        let Some(deflate) = self.deflate.as_mut() else {
            unreachable!("queue_data calls this only with a compressor");
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        deflate.compress_fragment(data, fin, &mut scratch);
        deflate.tally.uncompressed += data.len() as u64;
        deflate.tally.compressed += scratch.len() as u64;
        let rsv = if opcode == OpCode::Continuation { 0 } else { RSV1 };
        self.queue_frame_rsv(opcode, fin, rsv, &scratch);
        if scratch.capacity() <= RETAINED_BUFFER {
            self.scratch = scratch;
        }
    }

    #[inline]
    pub(crate) fn compression(&self) -> bool {
        #[cfg(feature = "deflate")]
        return self.deflate.is_some();
        #[cfg(not(feature = "deflate"))]
        return false;
    }

    pub(crate) fn queue_close_frame(&mut self, code: CloseCode, reason: &str) {
        let mut body = [0; MAX_CONTROL_PAYLOAD];
        body[..2].copy_from_slice(&code.0.to_be_bytes());
        body[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
        self.queue_control(OpCode::Close, &body[..2 + reason.len()]);
    }

    /// Queues a control frame the connection owes the peer (pong, close), after the open
    /// frame if there is one: nothing may be interleaved inside a frame.
    pub(crate) fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        if self.open_frame.is_none() {
            self.queue_frame(opcode, true, payload);
        } else if opcode == OpCode::Pong {
            self.deferred_pong = Some(payload.to_vec());
        } else {
            self.deferred_close = Some(payload.to_vec());
        }
    }

    pub(crate) fn flush_deferred(&mut self) {
        if let Some(pong) = self.deferred_pong.take() {
            self.queue_frame(OpCode::Pong, true, &pong);
        }
        if let Some(close) = self.deferred_close.take() {
            self.queue_frame(OpCode::Close, true, &close);
        }
    }

    /// Writes a frame header to the output, counting it in the tally and a data message when
    /// it is its last.
    #[inline]
    fn encode_header(&mut self, header: &FrameHeader) {
        header.encode_to_vec(&mut self.buf);
        if let Some(log) = self.inspect.as_mut() {
            log.sent(*header, &self.buf[self.buf.len() - header.encoded_len()..]);
        }
        self.count_frame(header.opcode, header.fin, header.payload_len);
    }

    /// Counts a frame queued: in the traffic tally, and as a message sent at its last frame.
    #[inline]
    fn count_frame(&mut self, opcode: OpCode, fin: bool, payload_len: u64) {
        let opcode = match opcode {
            OpCode::Continuation => self.data_opcode,
            opcode => opcode,
        };
        if !opcode.is_control() {
            self.data_opcode = opcode;
            if fin {
                self.messages_sent += 1;
            }
        }
        self.sent.frame(opcode, fin, payload_len);
    }

    #[inline]
    pub(crate) fn queue_frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        self.queue_frame_rsv(opcode, fin, 0, payload);
    }

    pub(crate) fn queue_frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        // The common frame: a server's (unmasked) of at most 125 bytes on a connection nobody
        // inspects, behind a two-byte header.
        if self.keys.is_none()
            && self.inspect.is_none()
            && payload.len() <= 125
            && opcode != OpCode::Close
        {
            self.buf.reserve(2 + payload.len());
            self.buf.extend_from_slice(&[first_byte(fin, rsv, opcode), payload.len() as u8]);
            self.buf.extend_from_slice(payload);
            self.count_frame(opcode, fin, payload.len() as u64);
            return;
        }
        // §5.3: a client masks every frame with a fresh key.
        let mask = self.keys.as_mut().map(|keys| keys.next_key());
        let header = FrameHeader { fin, rsv, opcode, mask, payload_len: payload.len() as u64 };
        // One reservation for the header and the payload: a small frame is two copies into
        // the buffer, not two growth checks and calls.
        self.buf.reserve(MAX_HEADER_LEN + payload.len());
        self.encode_header(&header);
        if opcode == OpCode::Close {
            self.sent.close = Some(match payload {
                [hi, lo, ..] => CloseCode(u16::from_be_bytes([*hi, *lo])),
                _ => CloseCode::NO_STATUS,
            });
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut self.buf[start..], key, 0);
        }
        self.inspect_payload(start);
    }

    /// Logs the sent payload from `buf[start..]`, on an inspected connection.
    #[inline]
    fn inspect_payload(&mut self, start: usize) {
        if let Some(log) = self.inspect.as_mut() {
            log.sent_payload(&self.buf[start..]);
        }
    }
}

/// Queues frames on a connection's output. Get one from [`Connection::sender`](crate::Connection::sender) or, to reply
/// to an event while it is borrowed, [`Connection::poll_event_with_sender`](crate::Connection::poll_event_with_sender).
pub struct Sender<'a> {
    pub(crate) out: &'a mut Output,
    pub(crate) state: &'a mut State,
}

impl fmt::Debug for Sender<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("state", &*self.state).finish_non_exhaustive()
    }
}

impl Sender<'_> {
    /// Sends a text message in one frame.
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        self.send_message(MessageKind::Text, text.as_bytes())
    }

    /// Sends a binary message in one frame.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.send_message(MessageKind::Binary, data)
    }

    /// Sends a message of `kind` in one frame. For [`MessageKind::Text`] the caller is
    /// responsible for `data` being UTF-8.
    pub fn send_message(&mut self, kind: MessageKind, data: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if self.out.sending.is_some() {
            return Err(SendError::MessageInProgress);
        }
        self.out.sending_compressed = self.out.compression();
        self.out.queue_data(kind.opcode(), true, data);
        Ok(())
    }

    /// Sends one frame of a fragmented message (§5.4): the first call for a message opens it
    /// with `kind`, later calls continue it with the same `kind`, and `fin` ends it. Control
    /// frames may be sent between fragments.
    ///
    /// The caller is responsible for text fragments concatenating to valid UTF-8.
    pub fn send_fragment(
        &mut self,
        kind: MessageKind,
        data: &[u8],
        fin: bool,
    ) -> Result<(), SendError> {
        self.check_open()?;
        let opcode = match self.out.sending {
            None => {
                self.out.sending_compressed = self.out.compression();
                kind.opcode()
            }
            Some(open) if open == kind => OpCode::Continuation,
            Some(_) => return Err(SendError::FragmentMismatch),
        };
        self.out.sending = if fin { None } else { Some(kind) };
        self.out.queue_data(opcode, fin, data);
        Ok(())
    }

    /// Sends a ping with up to 125 bytes of payload.
    pub fn send_ping(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Sends an unsolicited pong with up to 125 bytes of payload.
    pub fn send_pong(&mut self, payload: &[u8]) -> Result<(), SendError> {
        self.send_control(OpCode::Pong, payload)
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        self.check_open()?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlFrameTooLong);
        }
        self.out.queue_frame(opcode, true, payload);
        Ok(())
    }

    /// Starts the close handshake (§7.1.2) with `code` and a reason of up to 123 bytes. A
    /// frame begun with [`begin_frame`](Self::begin_frame) and not yet complete is finished
    /// first: the close frame goes out right after its payload (nothing may interrupt a
    /// frame), and no other data frame follows.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        // §5.5.1: "After sending a Close frame, the endpoint MUST NOT send any further data
        // frames."
        if *self.state != State::Open {
            return Err(SendError::Closed);
        }
        if !code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::ReasonTooLong);
        }
        self.out.queue_close_frame(code, reason);
        self.out.closed_first = true;
        *self.state = State::CloseSent;
        Ok(())
    }

    /// Starts a frame of `payload_len` bytes whose payload follows in pieces through
    /// [`send_frame_data`](Self::send_frame_data), so a large frame can be forwarded as it
    /// arrives without being held whole. The opcode follows the fragmentation state as in
    /// [`send_fragment`](Self::send_fragment). Until the payload is complete, other sends
    /// return [`SendError::FrameInProgress`]; pongs and close frames the connection owes are
    /// sent after it.
    ///
    /// ```
    /// use ws_proto::{Connection, MessageKind, ProtocolConfig};
    ///
    /// let mut server = Connection::server(ProtocolConfig::default());
    /// let mut sender = server.sender();
    /// sender.begin_frame(MessageKind::Binary, true, 4)?;
    /// sender.send_frame_data(b"ab")?;
    /// sender.send_frame_data(b"cd")?;
    /// assert_eq!(server.pending_output(), b"\x82\x04abcd");
    /// # Ok::<(), ws_proto::SendError>(())
    /// ```
    pub fn begin_frame(
        &mut self,
        kind: MessageKind,
        fin: bool,
        payload_len: u64,
    ) -> Result<(), SendError> {
        self.check_open()?;
        if payload_len >> 63 != 0 {
            return Err(SendError::FrameOverrun);
        }
        // A frame sent in pieces is never compressed (its compressed length is unknown in
        // advance); messages may be sent uncompressed when compression is on (RFC 7692 §6).
        let opcode = match self.out.sending {
            None => {
                self.out.sending_compressed = false;
                kind.opcode()
            }
            Some(open) if open == kind && !self.out.sending_compressed => OpCode::Continuation,
            Some(_) => return Err(SendError::FragmentMismatch),
        };
        self.out.sending = if fin { None } else { Some(kind) };
        let mask = self.out.keys.as_mut().map(|keys| keys.next_key());
        let header = FrameHeader { fin, rsv: 0, opcode, mask, payload_len };
        self.out.encode_header(&header);
        if payload_len > 0 {
            self.out.open_frame = Some(OpenFrame { remaining: payload_len, mask, mask_offset: 0 });
        }
        Ok(())
    }

    /// Adds payload to the frame started by [`begin_frame`](Self::begin_frame). Fails with
    /// [`SendError::FrameOverrun`] past the declared length, or
    /// [`SendError::NoFrameInProgress`] without an open frame.
    pub fn send_frame_data(&mut self, data: &[u8]) -> Result<(), SendError> {
        self.queue_frame_data(data, true)
    }

    /// [`send_frame_data`](Self::send_frame_data); `inspect` logs the payload on an
    /// inspected connection (not when the caller logged it already).
    fn queue_frame_data(&mut self, data: &[u8], inspect: bool) -> Result<(), SendError> {
        let Some(mut frame) = self.out.open_frame else {
            return Err(SendError::NoFrameInProgress);
        };
        if data.len() as u64 > frame.remaining {
            return Err(SendError::FrameOverrun);
        }
        let start = self.out.buf.len();
        self.out.buf.extend_from_slice(data);
        if let Some(key) = frame.mask {
            frame.mask_offset = apply_mask(&mut self.out.buf[start..], key, frame.mask_offset);
        }
        if inspect {
            self.out.inspect_payload(start);
        }
        frame.remaining -= data.len() as u64;
        if frame.remaining == 0 {
            self.out.open_frame = None;
            self.out.flush_deferred();
        } else {
            self.out.open_frame = Some(frame);
        }
        Ok(())
    }

    /// Like [`send_frame_data`](Self::send_frame_data), but first offers the pending output
    /// and `data` to `write` — a vectored write to the transport, returning how many bytes
    /// it took — so that payload written there is never copied into the output buffer (an
    /// echo then copies a large frame nowhere: straight from the input buffer to the socket).
    /// What `write` took is removed from the pending output first, then from `data`; the
    /// rest of `data` is queued as `send_frame_data` would. A masked frame (a client's) is
    /// queued without calling `write`, as its payload must be masked first.
    ///
    /// ```
    /// use ws_proto::{Connection, MessageKind, ProtocolConfig};
    ///
    /// let mut server = Connection::server(ProtocolConfig::default());
    /// let mut sender = server.sender();
    /// sender.begin_frame(MessageKind::Binary, true, 6)?;
    /// let mut wire = Vec::new();
    /// // The transport takes the header and four payload bytes.
    /// sender.send_frame_data_via(b"abcdef", |pending, data| {
    ///     wire.extend_from_slice(pending);
    ///     wire.extend_from_slice(&data[..4]);
    ///     pending.len() + 4
    /// })?;
    /// assert_eq!(wire, b"\x82\x06abcd");
    /// assert_eq!(server.pending_output(), b"ef");
    /// # Ok::<(), ws_proto::SendError>(())
    /// ```
    pub fn send_frame_data_via(
        &mut self,
        data: &[u8],
        write: impl FnOnce(&[u8], &[u8]) -> usize,
    ) -> Result<(), SendError> {
        let Some(frame) = self.out.open_frame else {
            return Err(SendError::NoFrameInProgress);
        };
        if data.len() as u64 > frame.remaining {
            return Err(SendError::FrameOverrun);
        }
        if frame.mask.is_some() || data.is_empty() {
            return self.send_frame_data(data);
        }
        if let Some(log) = self.out.inspect.as_mut() {
            log.sent_payload(data);
        }
        let pending = self.out.buf.len() - self.out.start;
        let written = write(&self.out.buf[self.out.start..], data).min(pending + data.len());
        self.out.consume(written.min(pending));
        let taken = written.saturating_sub(pending);
        if taken > 0 {
            let remaining = frame.remaining - taken as u64;
            self.out.open_frame = (remaining > 0).then_some(OpenFrame { remaining, ..frame });
        }
        if taken < data.len() {
            return self.queue_frame_data(&data[taken..], false);
        }
        if self.out.open_frame.is_none() {
            self.out.flush_deferred();
        }
        Ok(())
    }

    /// Queues only the header of a one-frame message whose payload the caller writes itself,
    /// right after [`Connection::pending_output`](crate::Connection::pending_output) — a vectored write of header and payload that
    /// copies the payload nowhere. For a client, `payload` is masked in place.
    ///
    /// The caller must write all pending output and then all of `payload` before queueing or
    /// polling anything else on the connection.
    ///
    /// ```
    /// use ws_proto::{Connection, MessageKind, ProtocolConfig};
    ///
    /// let mut client = Connection::client(ProtocolConfig::default(), || [0x37, 0xfa, 0x21, 0x3d]);
    /// let mut payload = *b"Hello";
    /// client.sender().send_in_place(MessageKind::Text, &mut payload)?;
    /// assert_eq!(client.pending_output(), [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
    /// assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
    /// # Ok::<(), ws_proto::SendError>(())
    /// ```
    pub fn send_in_place(
        &mut self,
        kind: MessageKind,
        payload: &mut [u8],
    ) -> Result<(), SendError> {
        self.check_open()?;
        if self.out.sending.is_some() {
            return Err(SendError::MessageInProgress);
        }
        let mask = self.out.keys.as_mut().map(|keys| keys.next_key());
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: kind.opcode(),
            mask,
            payload_len: payload.len() as u64,
        };
        self.out.encode_header(&header);
        if let Some(key) = mask {
            apply_mask(payload, key, 0);
        }
        if let Some(log) = self.out.inspect.as_mut() {
            log.sent_payload(payload);
        }
        Ok(())
    }

    /// Whether a frame begun with [`begin_frame`](Self::begin_frame) still awaits payload.
    pub fn frame_in_progress(&self) -> bool {
        self.out.open_frame.is_some()
    }

    /// Whether permessage-deflate was negotiated: messages sent whole are compressed.
    pub fn compression(&self) -> bool {
        self.out.compression()
    }

    fn check_open(&self) -> Result<(), SendError> {
        if self.out.open_frame.is_some() {
            return Err(SendError::FrameInProgress);
        }
        // §5.5.1: "After sending a Close frame, the endpoint MUST NOT send any further data
        // frames."
        if *self.state == State::Open { Ok(()) } else { Err(SendError::Closed) }
    }
}
