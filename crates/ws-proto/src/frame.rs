//! Base framing (RFC 6455 §5.2): opcodes and frame headers, parsed from any prefix of a buffer
//! and encoded into caller memory.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```

use crate::error::ProtocolError;
use crate::vocab::MessageKind;

/// The largest encoded frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (§5.5: "All control frames MUST have a
/// payload length of 125 bytes or less").
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (§5.2). Reserved opcodes are not representable: parsing one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: a continuation frame of a fragmented message.
    Continuation,
    /// `0x1`: the first frame of a text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: a connection close.
    Close,
    /// `0x9`: a ping.
    Ping,
    /// `0xA`: a pong.
    Pong,
}

impl OpCode {
    /// Decodes the low four bits of the first header byte; `None` for a reserved opcode.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The four-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (§5.5: the most significant bit of the opcode is set).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// The result of parsing from a buffer that may hold only part of the input.
///
/// Running out of input is not an error: `Partial` asks for more bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status<T> {
    /// The value, and how many bytes of the buffer it used.
    Complete(T, usize),
    /// More bytes are needed.
    Partial,
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2 and RSV3 as the low three bits (RSV1 is `0b100`).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length, as declared. Never allocate from it without checking a limit first.
    pub payload_len: u64,
}

/// RSV1, the bit permessage-deflate uses (RFC 7692 §6).
pub const RSV1: u8 = 0b100;

impl FrameHeader {
    /// A header for a final, unmasked frame with no reserved bits.
    pub fn new(opcode: OpCode, payload_len: u64) -> Self {
        Self { fin: true, rsv: 0, opcode, mask: None, payload_len }
    }

    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Partial` when `buf` is too short, and an error for a header no endpoint may send
    /// whatever its role or extensions: a reserved opcode, a 64-bit length with its most
    /// significant bit set, a control frame longer than 125 bytes or not final.
    ///
    /// ```
    /// use ws_proto::{FrameHeader, OpCode, Status};
    ///
    /// let wire = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
    /// let Status::Complete(header, used) = FrameHeader::parse(&wire)? else { panic!() };
    /// assert_eq!((header.opcode, header.payload_len, used), (OpCode::Text, 5, 2));
    /// assert_eq!(FrameHeader::parse(&wire[..1])?, Status::Partial);
    /// # Ok::<(), ws_proto::ProtocolError>(())
    /// ```
    pub fn parse(buf: &[u8]) -> Result<Status<FrameHeader>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(Status::Partial);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            // §5.5: "All control frames MUST have a payload length of 125 bytes or less and
            // MUST NOT be fragmented."
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        let (payload_len, mut used) = match len7 {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(Status::Partial);
                };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(Status::Partial);
                };
                let len = u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
                // §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::InvalidLength);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let Some(bytes) = buf.get(used..used + 4) else {
                return Ok(Status::Partial);
            };
            used += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };
        Ok(Status::Complete(FrameHeader { fin, rsv, opcode, mask, payload_len }, used))
    }

    /// The number of bytes [`encode`](Self::encode) writes for this header.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        if self.mask.is_some() { len + 4 } else { len }
    }

    /// Writes the header into `out`, using the shortest length form (§5.2: "the minimal number
    /// of bytes MUST be used to encode the length"), and returns the number of bytes written.
    ///
    /// ```
    /// use ws_proto::{FrameHeader, MAX_HEADER_LEN, OpCode};
    ///
    /// let mut out = [0; MAX_HEADER_LEN];
    /// let n = FrameHeader::new(OpCode::Binary, 256).encode(&mut out);
    /// assert_eq!(&out[..n], [0x82, 0x7e, 0x01, 0x00]);
    /// ```
    ///
    /// # Panics
    ///
    /// If `payload_len` has its most significant bit set, which no frame may declare.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        assert!(self.payload_len >> 63 == 0, "payload length over 2^63 - 1");
        out[0] = first_byte(self.fin, self.rsv, self.opcode);
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut used = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[used..used + 4].copy_from_slice(&key);
            used += 4;
        }
        used
    }

    /// Appends the encoded header to `out`.
    #[inline]
    pub fn encode_to_vec(&self, out: &mut Vec<u8>) {
        let mut buf = [0; MAX_HEADER_LEN];
        let end = out.len() + self.encode(&mut buf);
        // The whole array goes in and the excess is cut: a copy of fixed size, which
        // compiles to a few moves where a copy of `n` bytes calls `memcpy`.
        out.extend_from_slice(&buf);
        out.truncate(end);
    }
}

/// A header's first byte: FIN, RSV1–3 (`rsv`'s low three bits) and the opcode.
#[inline]
pub(crate) fn first_byte(fin: bool, rsv: u8, opcode: OpCode) -> u8 {
    (u8::from(fin) << 7) | ((rsv & 0x7) << 4) | opcode.as_u8()
}

impl MessageKind {
    pub(crate) fn opcode(self) -> OpCode {
        match self {
            Self::Text => OpCode::Text,
            Self::Binary => OpCode::Binary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(wire: &[u8]) -> (FrameHeader, usize) {
        match FrameHeader::parse(wire).expect("valid header") {
            Status::Complete(h, n) => (h, n),
            Status::Partial => panic!("partial"),
        }
    }

    /// Table-driven header cases: wire bytes, then the expected header and its length.
    macro_rules! header_cases {
        ($($name:ident: $wire:expr => ($fin:expr, $op:expr, $mask:expr, $len:expr, $used:expr);)*) => {$(
            #[test]
            fn $name() {
                let wire: &[u8] = &$wire;
                let (h, used) = parse_all(wire);
                assert_eq!(h, FrameHeader { fin: $fin, rsv: 0, opcode: $op, mask: $mask, payload_len: $len });
                assert_eq!(used, $used);
                // Every strict prefix is Partial, never an error.
                for cut in 0..used {
                    assert_eq!(FrameHeader::parse(&wire[..cut]).unwrap(), Status::Partial, "cut {cut}");
                }
                // Encoding gives the same bytes back.
                let mut out = [0; MAX_HEADER_LEN];
                let n = h.encode(&mut out);
                assert_eq!(&out[..n], &wire[..used]);
            }
        )*};
    }

    header_cases! {
        // RFC 6455 §5.7 examples.
        rfc_5_7_single_frame_unmasked_text: [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
            => (true, OpCode::Text, None, 5, 2);
        rfc_5_7_single_frame_masked_text: [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
            => (true, OpCode::Text, Some([0x37, 0xfa, 0x21, 0x3d]), 5, 6);
        rfc_5_7_fragmented_first: [0x01, 0x03, 0x48, 0x65, 0x6c]
            => (false, OpCode::Text, None, 3, 2);
        rfc_5_7_fragmented_last: [0x80, 0x02, 0x6c, 0x6f]
            => (true, OpCode::Continuation, None, 2, 2);
        rfc_5_7_unmasked_ping: [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
            => (true, OpCode::Ping, None, 5, 2);
        rfc_5_7_masked_pong: [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
            => (true, OpCode::Pong, Some([0x37, 0xfa, 0x21, 0x3d]), 5, 6);
        rfc_5_7_256_bytes_binary: [0x82, 0x7e, 0x01, 0x00]
            => (true, OpCode::Binary, None, 256, 4);
        rfc_5_7_64_kib_binary: [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]
            => (true, OpCode::Binary, None, 65536, 10);
        length_125_is_7_bit: [0x82, 0x7d] => (true, OpCode::Binary, None, 125, 2);
        length_126_is_16_bit: [0x82, 0x7e, 0x00, 0x7e] => (true, OpCode::Binary, None, 126, 4);
        length_65535_is_16_bit: [0x82, 0x7e, 0xff, 0xff] => (true, OpCode::Binary, None, 65535, 4);
        length_max_63_bit: [0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
            => (true, OpCode::Binary, None, u64::MAX >> 1, 10);
        empty_close: [0x88, 0x00] => (true, OpCode::Close, None, 0, 2);
    }

    #[test]
    fn rfc_5_2_length_with_msb_set_is_rejected() {
        let wire = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&wire), Err(ProtocolError::InvalidLength));
    }

    #[test]
    fn rfc_5_2_reserved_opcodes_are_rejected() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(FrameHeader::parse(&[0x80 | op, 0]), Err(ProtocolError::ReservedOpcode(op)));
        }
    }

    #[test]
    fn rfc_5_5_control_frames_are_short_and_final() {
        assert_eq!(FrameHeader::parse(&[0x89, 126]), Err(ProtocolError::ControlFrameTooLong));
        assert_eq!(FrameHeader::parse(&[0x88, 127]), Err(ProtocolError::ControlFrameTooLong));
        assert_eq!(FrameHeader::parse(&[0x09, 0]), Err(ProtocolError::FragmentedControlFrame));
        assert!(FrameHeader::parse(&[0x89, 125]).is_ok());
    }

    #[test]
    fn rsv_bits_are_reported_not_judged() {
        let (h, _) = parse_all(&[0xf1, 0x00]);
        assert_eq!(h.rsv, 0b111);
        let (h, _) = parse_all(&[0xc1, 0x00]);
        assert_eq!(h.rsv, RSV1);
    }

    #[test]
    fn encoded_len_matches_encode() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader { mask, ..FrameHeader::new(OpCode::Binary, len) };
                let mut out = [0; MAX_HEADER_LEN];
                assert_eq!(h.encode(&mut out), h.encoded_len());
            }
        }
    }
}
