//! permessage-deflate (RFC 7692): negotiation of its four parameters for both roles, and the
//! per-message codec.
//!
//! The codec is sans-IO like the rest of the crate: [`Compressor::compress`] turns a whole
//! message into the payload of a frame with RSV1 set; [`Decompressor::decompress`] inflates the
//! payload of each frame as it arrives and [`Decompressor::finish`] ends the message, with the
//! inflated size checked against a limit *while* inflating, so a small frame that would inflate
//! to gigabytes costs at most the limit.
//!
//! The compression itself is flate2's (zlib-rs backend), which supports LZ77 windows of 2^9 to
//! 2^15 bytes. A window of 2^8, which RFC 7692 also allows, is not supported by zlib-style
//! compressors: an offer that would make us compress with it is declined; inflating data made
//! with it works (a larger window reads a smaller one's output).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

use super::ExtensionOffer;
use crate::vocab::Role;

/// What a zlib stream struct and its bookkeeping cost besides the formula's buffers.
const ZLIB_STREAM: usize = 6 << 10;

/// The extension's registered name.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The four octets a sync flush ends with, removed from each message on the wire (§7.2.1).
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What this endpoint asks for and accepts.
///
/// As a server, the window sizes are caps: the server compresses with at most
/// `server_max_window_bits`, and asks the client for at most `client_max_window_bits` when
/// the client allows it. As a client, they are what the offer requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// The server's LZ77 window, 2^bits bytes: 9 to 15. Default 15.
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 2^bits bytes: 9 to 15. Default 15.
    pub client_max_window_bits: u8,
    /// The server starts every message with an empty window (its compressor state can then
    /// be freed between messages). Default off.
    pub server_no_context_takeover: bool,
    /// The client starts every message with an empty window. Default off.
    pub client_no_context_takeover: bool,
    /// zlib compression level, 0 to 9. Default 6.
    pub level: u32,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            level: 6,
        }
    }
}

/// The parameters both ends agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's window, 2^bits bytes (8 to 15).
    pub server_max_window_bits: u8,
    /// The client's window, 2^bits bytes (8 to 15).
    pub client_max_window_bits: u8,
}

/// A negotiation that cannot succeed: the server's response breaks RFC 7692 §7.1.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeflateNegotiationError {
    /// A parameter is unknown, repeated, or has an invalid value.
    #[error("invalid permessage-deflate parameter {0:?}")]
    InvalidParameter(String),
    /// The server accepted permessage-deflate more than once.
    #[error("permessage-deflate accepted more than once")]
    Duplicate,
    /// The server's answer does not fit what was offered.
    #[error("permessage-deflate response does not match the offer: {0}")]
    Mismatch(&'static str),
}

/// The parameters of one offer or response, checked for syntax (§7.1).
#[derive(Debug, Default, Clone, Copy)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

fn window_bits(value: &str) -> Option<u8> {
    // §7.1.2: "a decimal integer ... in the range 8 to 15 ... without leading zeros".
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) if !value.starts_with('0') => Some(bits),
        _ => None,
    }
}

fn parse(offer: &ExtensionOffer) -> Result<Parsed, DeflateNegotiationError> {
    let mut parsed = Parsed::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &offer.params {
        let invalid = || DeflateNegotiationError::InvalidParameter(name.clone());
        if seen.contains(&name.as_str()) {
            return Err(invalid());
        }
        seen.push(name);
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => parsed.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => parsed.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => {
                parsed.server_max_window_bits = Some(window_bits(v).ok_or_else(invalid)?);
            }
            ("client_max_window_bits", None) => parsed.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => {
                parsed.client_max_window_bits = Some(Some(window_bits(v).ok_or_else(invalid)?));
            }
            _ => return Err(invalid()),
        }
    }
    Ok(parsed)
}

impl DeflateConfig {
    /// Server side (§7.1): accepts the first `permessage-deflate` offer it supports and returns
    /// the agreed parameters with the `Sec-WebSocket-Extensions` value to answer with. Offers
    /// with unknown, repeated or invalid parameters are declined, as are offers that would have
    /// the server compress with a 2^8 window.
    ///
    /// ```
    /// use ws_proto::{DeflateConfig, parse_extensions};
    ///
    /// let offers = parse_extensions("permessage-deflate; client_max_window_bits")?;
    /// let (params, response) = DeflateConfig::default().negotiate(&offers).expect("accepted");
    /// assert_eq!(response, "permessage-deflate");
    /// assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (15, 15));
    /// # Ok::<(), ws_proto::ExtensionSyntaxError>(())
    /// ```
    pub fn negotiate(&self, offers: &[ExtensionOffer]) -> Option<(DeflateParams, String)> {
        offers.iter().filter(|o| o.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE)).find_map(
            |offer| {
                let parsed = parse(offer).ok()?;
                let server_bits =
                    self.server_max_window_bits.min(parsed.server_max_window_bits.unwrap_or(15));
                if server_bits < 9 {
                    return None;
                }
                let (client_bits, say_client_bits) = match parsed.client_max_window_bits {
                    // The client may use any window unless it said it accepts a limit.
                    None => (15, false),
                    Some(offered) => {
                        let bits = self.client_max_window_bits.min(offered.unwrap_or(15));
                        (bits, bits < 15 || offered.is_some())
                    }
                };
                let params = DeflateParams {
                    server_no_context_takeover: parsed.server_no_context_takeover
                        || self.server_no_context_takeover,
                    client_no_context_takeover: parsed.client_no_context_takeover
                        || self.client_no_context_takeover,
                    server_max_window_bits: server_bits,
                    client_max_window_bits: client_bits,
                };
                let mut response = String::from(PERMESSAGE_DEFLATE);
                if params.server_no_context_takeover {
                    response.push_str("; server_no_context_takeover");
                }
                if params.client_no_context_takeover {
                    response.push_str("; client_no_context_takeover");
                }
                // §7.1.2.1: an offered server_max_window_bits must be answered with the same or a
                // smaller value.
                if parsed.server_max_window_bits.is_some() || server_bits < 15 {
                    response.push_str(&format!("; server_max_window_bits={server_bits}"));
                }
                if say_client_bits {
                    response.push_str(&format!("; client_max_window_bits={client_bits}"));
                }
                Some((params, response))
            },
        )
    }

    /// Client side: the `Sec-WebSocket-Extensions` value to offer.
    ///
    /// ```
    /// assert_eq!(
    ///     ws_proto::DeflateConfig::default().offer(),
    ///     "permessage-deflate; client_max_window_bits"
    /// );
    /// ```
    pub fn offer(&self) -> String {
        let mut offer = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            offer.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        // Without a value: we accept whatever limit the server sets (9 to 15).
        if self.client_max_window_bits < 15 {
            offer.push_str(&format!("; client_max_window_bits={}", self.client_max_window_bits));
        } else {
            offer.push_str("; client_max_window_bits");
        }
        offer
    }

    /// Client side: checks the server's answer to [`offer`](Self::offer) (§7.1). `Ok(None)`
    /// when the server did not accept permessage-deflate; an error when its answer breaks the
    /// rules, after which the client must fail the connection.
    pub fn accept_response(
        &self,
        accepted: &[ExtensionOffer],
    ) -> Result<Option<DeflateParams>, DeflateNegotiationError> {
        let mut found = accepted.iter().filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE));
        let Some(response) = found.next() else { return Ok(None) };
        if found.next().is_some() {
            return Err(DeflateNegotiationError::Duplicate);
        }
        let parsed = parse(response)?;
        let server_bits = match parsed.server_max_window_bits {
            Some(bits) if bits > self.server_max_window_bits => {
                return Err(DeflateNegotiationError::Mismatch(
                    "server_max_window_bits above the offer",
                ));
            }
            Some(bits) => bits,
            None if self.server_max_window_bits < 15 => {
                return Err(DeflateNegotiationError::Mismatch("server_max_window_bits missing"));
            }
            None => 15,
        };
        let client_bits = match parsed.client_max_window_bits {
            // §7.1.2.2: the response must carry a value.
            Some(None) => {
                return Err(DeflateNegotiationError::Mismatch(
                    "client_max_window_bits without a value",
                ));
            }
            Some(Some(bits)) if bits > self.client_max_window_bits => {
                return Err(DeflateNegotiationError::Mismatch(
                    "client_max_window_bits above the offer",
                ));
            }
            Some(Some(8)) => {
                return Err(DeflateNegotiationError::Mismatch(
                    "a 2^8 window is not supported for compression",
                ));
            }
            Some(Some(bits)) => bits,
            None => self.client_max_window_bits,
        };
        if self.server_no_context_takeover && !parsed.server_no_context_takeover {
            return Err(DeflateNegotiationError::Mismatch("server_no_context_takeover missing"));
        }
        Ok(Some(DeflateParams {
            server_no_context_takeover: parsed.server_no_context_takeover,
            client_no_context_takeover: parsed.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        }))
    }
}

impl DeflateParams {
    /// The compressor and decompressor for `role`, compressing at `level` (0 to 9).
    pub fn codec(&self, role: Role, level: u32) -> (Compressor, Decompressor) {
        let (own_bits, own_reset, peer_bits, peer_reset) = match role {
            Role::Server => (
                self.server_max_window_bits,
                self.server_no_context_takeover,
                self.client_max_window_bits,
                self.client_no_context_takeover,
            ),
            Role::Client => (
                self.client_max_window_bits,
                self.client_no_context_takeover,
                self.server_max_window_bits,
                self.server_no_context_takeover,
            ),
        };
        (Compressor::new(own_bits, own_reset, level), Decompressor::new(peer_bits, peer_reset))
    }
}

/// Compresses whole messages (§7.2.1).
pub struct Compressor {
    inner: Option<Compress>,
    window_bits: u8,
    no_context_takeover: bool,
    level: Compression,
    /// What a connection compressed, until it takes the figures for its traffic tally.
    pub(crate) tally: crate::traffic::CompressedBytes,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("allocated", &self.inner.is_some())
            .finish()
    }
}

impl Compressor {
    /// A compressor with a 2^`window_bits` window (9 to 15; 8 is raised to 9, which only the
    /// negotiation must avoid), resetting after each message if `no_context_takeover`.
    pub fn new(window_bits: u8, no_context_takeover: bool, level: u32) -> Self {
        Self {
            inner: None,
            window_bits: window_bits.clamp(9, 15),
            no_context_takeover,
            level: Compression::new(level.min(9)),
            tally: Default::default(),
        }
    }

    /// Appends the compressed form of one message to `out`: deflate with a sync flush, the
    /// final `00 00 ff ff` removed.
    ///
    /// ```
    /// use ws_proto::Compressor;
    ///
    /// // RFC 7692 §7.2.3.1.
    /// let mut compressor = Compressor::new(15, false, 6);
    /// let mut out = Vec::new();
    /// compressor.compress(b"Hello", &mut out);
    /// assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    /// ```
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) {
        self.compress_fragment(message, true, out);
    }

    /// Appends the compressed form of one fragment of a message to `out`. Every fragment is
    /// sync-flushed, so it can be sent at once; only the last loses its `00 00 ff ff`.
    pub fn compress_fragment(&mut self, message: &[u8], last: bool, out: &mut Vec<u8>) {
        let (bits, level) = (self.window_bits, self.level);
        let deflate =
            self.inner.get_or_insert_with(|| Compress::new_with_window_bits(level, false, bits));
        let start = out.len();
        let mut input = message;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before = deflate.total_in();
            let status = deflate.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(deflate.total_in() - before) as usize..];
            // Done once the input is consumed and the flush did not fill the buffer.
            let full = out.len() == out.capacity();
            match status {
                Ok(Status::Ok | Status::BufError) if input.is_empty() && !full => break,
                Ok(_) => {}
                // Compressing in memory cannot fail; stop rather than loop.
                Err(_) => break,
            }
        }
        if !last {
            return;
        }
        if out[start..].ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        if out.len() == start {
            // Nothing to flush (an empty message right after another): send the one octet of
            // an empty stored block, which the peer completes with the trailer (§7.2.3.6).
            out.push(0x00);
        }
        if self.no_context_takeover {
            deflate.reset();
        }
    }

    /// Bytes of zlib state while allocated, by zlib's formula for deflate (zconf.h:
    /// `(1 << (windowBits + 2)) + (1 << (memLevel + 9))`, memLevel 8), plus its stream
    /// struct; 0 once [`release`](Self::release)d.
    pub fn memory(&self) -> usize {
        if self.inner.is_none() {
            return 0;
        }
        (1 << (self.window_bits + 2)) + (1 << (8 + 9)) + ZLIB_STREAM
    }

    /// Frees the compressor's state (it is allocated again on the next message). Only
    /// possible without context takeover, where no state carries from one message to the
    /// next; returns whether it freed anything.
    pub fn release(&mut self) -> bool {
        self.no_context_takeover && self.inner.take().is_some()
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The data is not valid DEFLATE.
    #[error("invalid compressed data")]
    Invalid,
    /// The inflated message would exceed the limit.
    #[error("inflated message exceeds the limit")]
    TooLarge,
}

/// Inflates messages frame by frame (§7.2.2), whole or in bounded steps.
pub struct Decompressor {
    inner: Option<Decompress>,
    window_bits: u8,
    no_context_takeover: bool,
    /// The current message has had compressed bytes; without any, it is empty and the
    /// inflater must not see a trailer (see [`finish`](Self::finish)).
    fed: bool,
    /// Octets of the trailer the inflater has taken, while a message is being finished.
    trailer: usize,
    /// The data ended a DEFLATE stream (BFINAL): the rest of the message is ignored and the
    /// next one starts a new stream.
    ended: bool,
    /// What a connection inflated, until it takes the figures for its traffic tally.
    pub(crate) tally: crate::traffic::CompressedBytes,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("allocated", &self.inner.is_some())
            .finish()
    }
}

/// The most one step of inflating adds ([`Decompressor::inflate_step`]), and the steps in
/// which [`Decompressor::decompress`] grows its output: however much the data would inflate
/// to, a step holds at most this much of it, and the message limit is checked after each.
pub const INFLATE_STEP: usize = 16 << 10;

/// What one step of inflating did; see [`Decompressor::inflate_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inflated {
    /// Input bytes taken; the caller gives the rest again in the next step.
    pub consumed: usize,
    /// The step stopped at its output limit: more may come from input already taken, so
    /// step again (with empty input, if need be) before the message ends.
    pub more: bool,
}

impl Decompressor {
    /// A decompressor for a peer compressing with a 2^`window_bits` window (8 to 15),
    /// resetting after each message if the peer does not take over context.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        // A window at least as large as the peer's reads its output; zlib's minimum is 2^9.
        Self {
            inner: None,
            window_bits: window_bits.clamp(9, 15),
            no_context_takeover,
            fed: false,
            trailer: 0,
            ended: false,
            tally: Default::default(),
        }
    }

    /// Inflates the payload of one frame of a compressed message, appending to `out`, which
    /// may hold at most `limit` bytes in all. Call [`finish`](Self::finish) after the last.
    ///
    /// ```
    /// use ws_proto::Decompressor;
    ///
    /// // RFC 7692 §7.2.3.1, in two frames.
    /// let mut decompressor = Decompressor::new(15, false);
    /// let mut out = Vec::new();
    /// decompressor.decompress(&[0xf2, 0x48, 0xcd], &mut out, 1024)?;
    /// decompressor.decompress(&[0xc9, 0xc9, 0x07, 0x00], &mut out, 1024)?;
    /// decompressor.finish(&mut out, 1024)?;
    /// assert_eq!(out, b"Hello");
    /// # Ok::<(), ws_proto::InflateError>(())
    /// ```
    pub fn decompress(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let mut input = data;
        loop {
            let max = reserve_step(out, limit)?;
            let step = self.inflate_step(input, out, max)?;
            input = &input[step.consumed..];
            if out.len() > limit {
                return Err(InflateError::TooLarge);
            }
            if !step.more && input.is_empty() {
                return Ok(());
            }
        }
    }

    /// Ends a message: inflates the removed `00 00 ff ff` trailer, and resets when the peer
    /// does not take over context.
    ///
    /// A message with no compressed bytes at all is empty: a trailer alone is not a complete
    /// DEFLATE block, and feeding it would leave the inflater inside a stored block, so the
    /// next message would not inflate.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        loop {
            let max = match reserve_step(out, limit) {
                Ok(max) => max,
                Err(err) => {
                    self.end_message(true);
                    return Err(err);
                }
            };
            let more = self.finish_step(out, max)?;
            if out.len() > limit {
                self.end_message(true);
                return Err(InflateError::TooLarge);
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// One bounded step of [`decompress`](Self::decompress): inflates from `data` (payload
    /// of the current message), appending at most `max` bytes to `out`, and says how much
    /// input it took and whether more output may follow from it. However large the data
    /// would inflate, the caller holds at most `max` bytes of it at a time.
    ///
    /// ```
    /// use ws_proto::Decompressor;
    ///
    /// // RFC 7692 §7.2.3.1 ("Hello"), at most two bytes at a time.
    /// let mut decompressor = Decompressor::new(15, false);
    /// let (mut data, mut message) = (&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..], Vec::new());
    /// let mut out = Vec::new();
    /// loop {
    ///     out.clear();
    ///     let step = decompressor.inflate_step(data, &mut out, 2)?;
    ///     assert!(out.len() <= 2);
    ///     message.extend_from_slice(&out);
    ///     data = &data[step.consumed..];
    ///     if data.is_empty() && !step.more {
    ///         break;
    ///     }
    /// }
    /// while decompressor.finish_step(&mut message, 2)? {}
    /// assert_eq!(message, b"Hello");
    /// # Ok::<(), ws_proto::InflateError>(())
    /// ```
    pub fn inflate_step(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Inflated, InflateError> {
        self.fed |= !data.is_empty();
        self.step(data, out, max).inspect_err(|_| self.end_message(true))
    }

    /// One bounded step of [`finish`](Self::finish): inflates at most `max` bytes of what
    /// the trailer completes. Returns `true` while more may follow (step again).
    pub fn finish_step(&mut self, out: &mut Vec<u8>, max: usize) -> Result<bool, InflateError> {
        if self.fed && !self.ended {
            let step = match self.step(&TRAILER[self.trailer..], out, max) {
                Ok(step) => step,
                Err(err) => {
                    self.end_message(true);
                    return Err(err);
                }
            };
            self.trailer += step.consumed;
            if step.more || (self.trailer < TRAILER.len() && step.consumed > 0 && !self.ended) {
                return Ok(true);
            }
        }
        self.end_message(false);
        Ok(false)
    }

    /// Inflates from `data` into at most `max` more bytes of `out`.
    fn step(
        &mut self,
        data: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<Inflated, InflateError> {
        if self.ended {
            return Ok(Inflated { consumed: data.len(), more: false });
        }
        let bits = self.window_bits;
        let inflate =
            self.inner.get_or_insert_with(|| Decompress::new_with_window_bits(false, bits));
        let start = out.len();
        out.resize(start + max, 0);
        let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
        let status = inflate.decompress(data, &mut out[start..], FlushDecompress::Sync);
        let consumed = (inflate.total_in() - in_before) as usize;
        let produced = (inflate.total_out() - out_before) as usize;
        out.truncate(start + produced);
        match status.map_err(|_| InflateError::Invalid)? {
            Status::StreamEnd => {
                // BFINAL: the message's data ends here (§7.2.3.4); what follows is ignored.
                self.ended = true;
                Ok(Inflated { consumed: data.len(), more: false })
            }
            _ if max > 0 && produced == max => Ok(Inflated { consumed, more: true }),
            // With room to write, the inflater takes all its input or fails; no progress at
            // all would loop forever.
            _ if consumed == 0 && produced == 0 && !data.is_empty() => Err(InflateError::Invalid),
            _ => Ok(Inflated { consumed, more: false }),
        }
    }

    /// Ready for the next message: reset when context is not taken over, after a failure,
    /// or after a stream that ended (BFINAL).
    fn end_message(&mut self, failed: bool) {
        let reset = self.no_context_takeover || failed || self.ended;
        self.fed = false;
        self.trailer = 0;
        self.ended = false;
        if reset {
            if let Some(inflate) = self.inner.as_mut() {
                inflate.reset(false);
            }
        }
    }

    /// Bytes of zlib state while allocated, by zlib's formula for inflate (zconf.h: the
    /// window, `1 << windowBits`, and about 7 KB), plus its stream struct; 0 once
    /// [`release`](Self::release)d.
    pub fn memory(&self) -> usize {
        if self.inner.is_none() {
            return 0;
        }
        (1 << self.window_bits) + 7 * 1024 + ZLIB_STREAM
    }

    /// Frees the decompressor's state. Only possible when the peer does not take over
    /// context; returns whether it freed anything.
    pub fn release(&mut self) -> bool {
        self.no_context_takeover && self.inner.take().is_some()
    }
}

/// Makes room in `out` for the next step towards `limit` and returns the step's size: the
/// capacity grows geometrically but never past one byte over the limit, so it stays within
/// the limit whatever the data would inflate to, and one byte over says the limit is passed.
fn reserve_step(out: &mut Vec<u8>, limit: usize) -> Result<usize, InflateError> {
    let room = (limit + 1).saturating_sub(out.len());
    if room == 0 {
        return Err(InflateError::TooLarge);
    }
    let max = INFLATE_STEP.min(room);
    if out.capacity() - out.len() < max {
        let target = (out.capacity() * 2).max(out.len() + max).min(limit + 1);
        out.reserve_exact(target - out.len());
    }
    Ok(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extensions::parse_extensions;

    fn inflate(decompressor: &mut Decompressor, frames: &[&[u8]]) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        for frame in frames {
            decompressor.decompress(frame, &mut out, 1 << 20)?;
        }
        decompressor.finish(&mut out, 1 << 20)?;
        Ok(out)
    }

    #[test]
    fn rfc_7692_7_2_3_1_a_message_compressed_using_1_compressed_deflate_block() {
        let mut c = Compressor::new(15, false, 6);
        let mut out = Vec::new();
        c.compress(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflate(&mut d, &[&out]).unwrap(), b"Hello");
        // The same, in two fragments.
        let mut d = Decompressor::new(15, false);
        assert_eq!(
            inflate(&mut d, &[&[0xf2, 0x48, 0xcd], &[0xc9, 0xc9, 0x07, 0x00]]).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn rfc_7692_7_2_3_2_sharing_lz77_sliding_window() {
        let mut c = Compressor::new(15, false, 6);
        let mut first = Vec::new();
        c.compress(b"Hello", &mut first);
        let mut second = Vec::new();
        c.compress(b"Hello", &mut second);
        assert_eq!(second, [0xf2, 0x00, 0x11, 0x00, 0x00]);
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflate(&mut d, &[&first]).unwrap(), b"Hello");
        assert_eq!(inflate(&mut d, &[&second]).unwrap(), b"Hello");
        // Without context takeover, both messages are compressed alike.
        let mut c = Compressor::new(15, true, 6);
        let mut again = Vec::new();
        c.compress(b"Hello", &mut again);
        assert_eq!(again, first);
        again.clear();
        c.compress(b"Hello", &mut again);
        assert_eq!(again, first);
    }

    #[test]
    fn rfc_7692_7_2_3_3_using_a_deflate_block_with_no_compression() {
        let mut d = Decompressor::new(15, false);
        let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
        assert_eq!(inflate(&mut d, &[&stored]).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7692_7_2_3_4_using_a_deflate_block_with_bfinal_set() {
        let mut d = Decompressor::new(15, true);
        assert_eq!(
            inflate(&mut d, &[&[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00]]).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn rfc_7692_7_2_3_5_two_deflate_blocks_in_one_message() {
        let mut d = Decompressor::new(15, false);
        let two = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate(&mut d, &[&two]).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7692_7_2_3_6_generating_an_empty_fragment() {
        let mut c = Compressor::new(15, false, 6);
        let mut out = Vec::new();
        c.compress(b"", &mut out);
        assert_eq!(out, [0x00]);
        // Also right after another message, where the compressor has nothing to flush.
        c.compress(b"Hello", &mut Vec::new());
        out.clear();
        c.compress(b"", &mut out);
        assert_eq!(out, [0x00]);
        let mut d = Decompressor::new(15, false);
        assert_eq!(inflate(&mut d, &[&out]).unwrap(), b"");
        // An empty payload with RSV1 set is an empty message, too, and the stream stays in
        // step: the next message still inflates.
        assert_eq!(inflate(&mut d, &[]).unwrap(), b"");
        assert_eq!(inflate(&mut d, &[&[]]).unwrap(), b"");
        assert_eq!(
            inflate(&mut d, &[&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]]).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn round_trips_at_every_window_with_and_without_context_takeover() {
        let messages: Vec<Vec<u8>> = (0..20u32)
            .map(|i| (0..(i * 997 % 5000)).map(|j| ((j * 7 + i) % 13) as u8 + b'a').collect())
            .collect();
        for bits in 9..=15 {
            for reset in [false, true] {
                let mut c = Compressor::new(bits, reset, 6);
                let mut d = Decompressor::new(bits, reset);
                for message in &messages {
                    let mut wire = Vec::new();
                    c.compress(message, &mut wire);
                    // Split the compressed payload into three frames.
                    let (a, rest) = wire.split_at(wire.len() / 3);
                    let (b, c2) = rest.split_at(rest.len() / 2);
                    assert_eq!(
                        &inflate(&mut d, &[a, b, c2]).unwrap(),
                        message,
                        "bits {bits} reset {reset}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        // 16 MiB of zeros compress to about 16 KiB.
        let mut c = Compressor::new(15, false, 9);
        let mut bomb = Vec::new();
        c.compress(&vec![0u8; 16 << 20], &mut bomb);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let limit = 1 << 20;
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        let result = d.decompress(&bomb, &mut out, limit);
        assert_eq!(result, Err(InflateError::TooLarge));
        // Memory is bounded by the limit, not by what the data would inflate to.
        assert!(out.capacity() <= limit + INFLATE_STEP, "capacity {}", out.capacity());
    }

    #[test]
    fn invalid_data_is_an_error() {
        let mut d = Decompressor::new(15, false);
        let mut out = Vec::new();
        assert_eq!(
            d.decompress(&[0xff, 0xff, 0xff, 0xff], &mut out, 1024),
            Err(InflateError::Invalid)
        );
    }

    #[test]
    fn state_is_freed_only_without_context_takeover() {
        let mut c = Compressor::new(15, true, 6);
        c.compress(b"x", &mut Vec::new());
        assert!(c.release());
        let mut out = Vec::new();
        c.compress(b"Hello", &mut out);
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        let mut keep = Compressor::new(15, false, 6);
        keep.compress(b"x", &mut Vec::new());
        assert!(!keep.release());
    }

    // ---- negotiation ---------------------------------------------------------------------

    fn server(config: DeflateConfig, header: &str) -> Option<(DeflateParams, String)> {
        config.negotiate(&parse_extensions(header).unwrap())
    }

    #[test]
    fn rfc_7692_7_1_server_answers() {
        let config = DeflateConfig::default();
        let cases: &[(&str, Option<&str>)] = &[
            ("permessage-deflate", Some("permessage-deflate")),
            (
                // No limit needed: the client keeps its 2^15 window, unsaid.
                "permessage-deflate; client_max_window_bits",
                Some("permessage-deflate"),
            ),
            (
                "permessage-deflate; client_max_window_bits=10",
                Some("permessage-deflate; client_max_window_bits=10"),
            ),
            (
                "permessage-deflate; server_max_window_bits=12",
                Some("permessage-deflate; server_max_window_bits=12"),
            ),
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            ),
            // Declined: a 2^8 window for our compressor, bad values, duplicates, unknown names.
            ("permessage-deflate; server_max_window_bits=8", None),
            ("permessage-deflate; server_max_window_bits=16", None),
            ("permessage-deflate; server_max_window_bits=010", None),
            ("permessage-deflate; server_max_window_bits", None),
            ("permessage-deflate; client_max_window_bits=7", None),
            ("permessage-deflate; server_no_context_takeover=1", None),
            ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
            ("permessage-deflate; x-unknown", None),
            ("x-webkit-deflate-frame", None),
            // The first supported offer wins.
            (
                "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits",
                Some("permessage-deflate"),
            ),
        ];
        for (offer, expected) in cases {
            let got = server(config, offer).map(|(_, response)| response);
            assert_eq!(got.as_deref(), *expected, "offer {offer:?}");
        }
    }

    #[test]
    fn server_caps_apply() {
        let config = DeflateConfig {
            server_max_window_bits: 12,
            client_max_window_bits: 11,
            server_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let (params, response) =
            server(config, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; client_max_window_bits=11"
        );
        assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (12, 11));
        // Without client_max_window_bits in the offer the client's window cannot be limited.
        let (params, response) = server(config, "permessage-deflate").unwrap();
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"
        );
        assert_eq!(params.client_max_window_bits, 15);
    }

    #[test]
    fn client_checks_the_answer() {
        let config = DeflateConfig { server_max_window_bits: 12, ..DeflateConfig::default() };
        assert_eq!(
            config.offer(),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits"
        );
        let check = |header: &str| config.accept_response(&parse_extensions(header).unwrap());
        let params =
            check("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9")
                .unwrap()
                .unwrap();
        assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (10, 9));
        assert_eq!(check("").unwrap(), None);
        for bad in [
            "permessage-deflate", // server_max_window_bits missing
            "permessage-deflate; server_max_window_bits=13", // above the offer
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits", // no value
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=12; x=1",
            "permessage-deflate; server_max_window_bits=12, permessage-deflate; server_max_window_bits=12",
        ] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_negotiated_pair_round_trips_in_both_directions() {
        let client_config =
            DeflateConfig { client_max_window_bits: 10, ..DeflateConfig::default() };
        let offers = parse_extensions(&client_config.offer()).unwrap();
        let (server_params, response) = DeflateConfig::default().negotiate(&offers).unwrap();
        let client_params =
            client_config.accept_response(&parse_extensions(&response).unwrap()).unwrap().unwrap();
        assert_eq!(server_params, client_params);
        let (mut sc, mut sd) = server_params.codec(Role::Server, 6);
        let (mut cc, mut cd) = client_params.codec(Role::Client, 6);
        for text in ["first", "second message", "first"] {
            let mut wire = Vec::new();
            cc.compress(text.as_bytes(), &mut wire);
            assert_eq!(inflate(&mut sd, &[&wire]).unwrap(), text.as_bytes());
            wire.clear();
            sc.compress(text.as_bytes(), &mut wire);
            assert_eq!(inflate(&mut cd, &[&wire]).unwrap(), text.as_bytes());
        }
    }
}
