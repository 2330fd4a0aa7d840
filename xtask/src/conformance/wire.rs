//! Frames on the wire, built and parsed here byte by byte — deliberately malformed ones
//! included — so the suite shares no code with the implementation it tests.

/// Opcodes by number, as the RFC gives them.
pub(crate) const CONT: u8 = 0x0;
pub(crate) const TEXT: u8 = 0x1;
pub(crate) const BINARY: u8 = 0x2;
pub(crate) const CLOSE: u8 = 0x8;
pub(crate) const PING: u8 = 0x9;
pub(crate) const PONG: u8 = 0xa;

/// A frame to send: every header field is free, so invalid frames can be built.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) fin: bool,
    pub(crate) rsv: u8,
    pub(crate) opcode: u8,
    pub(crate) payload: Vec<u8>,
}

impl Frame {
    pub(crate) fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self { fin: true, rsv: 0, opcode, payload: payload.into() }
    }

    pub(crate) fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    pub(crate) fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }

    /// Encodes the frame, masked with `mask` (a client's frames) or not (a server's).
    pub(crate) fn encode(&self, mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        let b0 = (u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.opcode & 0xf);
        push_frame(&mut out, b0, &self.payload, mask);
        out
    }
}

/// Appends a frame whose first byte is `b0` (FIN, RSV, opcode), masked with `mask` if given.
pub(crate) fn push_frame(out: &mut Vec<u8>, b0: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let len = payload.len();
    out.push(b0);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        }
        None => out.extend_from_slice(payload),
    }
}

/// A close frame body: code and reason.
pub(crate) fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(reason);
    body
}

/// A frame received from the peer under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) fin: bool,
    pub(crate) rsv: u8,
    pub(crate) opcode: u8,
    pub(crate) masked: bool,
    pub(crate) payload: Vec<u8>,
}

/// A complete frame's header, with where its payload lies in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) rsv: u8,
    pub(crate) opcode: u8,
    pub(crate) mask: Option<[u8; 4]>,
    /// The payload's bytes in the buffer, still masked if `mask` is set.
    pub(crate) payload: std::ops::Range<usize>,
}

/// Finds one complete frame at the start of `buf` without copying it: `Ok(None)` if more bytes
/// are needed, an error for a length over `limit` (checked before waiting for the payload).
pub(crate) fn parse_header(buf: &[u8], limit: usize) -> Result<Option<Header>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (len, mut pos) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")), 10),
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    if len > limit as u64 {
        return Err(format!("peer declared a {len}-byte frame"));
    }
    let len = len as usize;
    let mask = if buf[1] & 0x80 != 0 {
        let Some(key) = buf.get(pos..pos + 4) else { return Ok(None) };
        pos += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    if buf.len() < pos + len {
        return Ok(None);
    }
    Ok(Some(Header {
        fin: buf[0] & 0x80 != 0,
        rsv: (buf[0] >> 4) & 7,
        opcode: buf[0] & 0xf,
        mask,
        payload: pos..pos + len,
    }))
}

/// Parses one frame from the start of `buf` into an unmasked copy; see [`parse_header`].
pub(crate) fn parse(buf: &[u8], limit: usize) -> Result<Option<(Received, usize)>, String> {
    let Some(header) = parse_header(buf, limit)? else { return Ok(None) };
    let mut payload = buf[header.payload.clone()].to_vec();
    if let Some(key) = header.mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    let used = header.payload.end;
    let frame = Received {
        fin: header.fin,
        rsv: header.rsv,
        opcode: header.opcode,
        masked: header.mask.is_some(),
        payload,
    };
    Ok(Some((frame, used)))
}

/// The `Sec-WebSocket-Accept` for a key: SHA-1 and base64, written here from FIPS 180-1 and
/// RFC 4648 so the suite checks the handshake independently.
pub(crate) fn accept_key(key: &str) -> String {
    let mut data = key.as_bytes().to_vec();
    data.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(&sha1(&data))
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t =
                a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_section_1_3_accept_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn frames_round_trip() {
        for len in [0, 125, 126, 65535, 65536] {
            let frame = Frame::new(BINARY, vec![7; len]).fin(false).rsv(5);
            for mask in [None, Some([1, 2, 3, 4])] {
                let bytes = frame.encode(mask);
                let (parsed, used) = parse(&bytes, 1 << 20).unwrap().unwrap();
                assert_eq!(used, bytes.len());
                assert_eq!(
                    (parsed.fin, parsed.rsv, parsed.opcode, parsed.masked),
                    (false, 5, BINARY, mask.is_some())
                );
                assert_eq!(parsed.payload, frame.payload);
                assert!(parse(&bytes[..bytes.len() - 1], 1 << 20).unwrap().is_none());
            }
        }
    }
}
