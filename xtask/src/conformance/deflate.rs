//! The suite's own permessage-deflate codec (flate2 directly, not the implementation under
//! test), configured from the parameters of the handshake response.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The negotiated parameters, parsed from a `Sec-WebSocket-Extensions` element.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Params {
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: Option<u8>,
    pub(crate) client_max_window_bits: Option<u8>,
}

/// Parses `permessage-deflate; a; b=1`; `None` if it is not permessage-deflate.
pub(crate) fn parse(element: &str) -> Option<Params> {
    let mut parts = element.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut params = Params::default();
    for part in parts {
        let (name, value) = part
            .split_once('=')
            .map_or((part, None), |(n, v)| (n.trim(), Some(v.trim().trim_matches('"'))));
        let bits = value.and_then(|v| v.parse().ok());
        match name {
            "server_no_context_takeover" => params.server_no_context_takeover = true,
            "client_no_context_takeover" => params.client_no_context_takeover = true,
            "server_max_window_bits" => params.server_max_window_bits = bits,
            "client_max_window_bits" => params.client_max_window_bits = bits,
            _ => return None,
        }
    }
    Some(params)
}

/// One direction's compressor and the other's decompressor.
pub(crate) struct Codec {
    compress: Compress,
    reset_compressor: bool,
    decompress: Decompress,
    reset_decompressor: bool,
}

impl Codec {
    /// `suite_is_client`: the suite compresses with the client's parameters.
    pub(crate) fn new(params: Params, suite_is_client: bool) -> Self {
        let (own_bits, own_reset, peer_reset) = if suite_is_client {
            (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            )
        } else {
            (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            )
        };
        Self {
            compress: Compress::new_with_window_bits(
                Compression::default(),
                false,
                own_bits.unwrap_or(15).clamp(9, 15),
            ),
            reset_compressor: own_reset,
            // A 2^15 window inflates the output of any smaller one.
            decompress: Decompress::new_with_window_bits(false, 15),
            reset_decompressor: peer_reset,
        }
    }

    /// A message's compressed payload: sync flush, trailer removed (RFC 7692 §7.2.1).
    pub(crate) fn compress(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("compressing in memory");
            input = &input[(self.compress.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - 4);
        }
        if out.is_empty() {
            out.push(0x00);
        }
        if self.reset_compressor {
            self.compress.reset();
        }
        out
    }

    /// Inflates a whole compressed message (trailer restored), up to `limit` bytes.
    pub(crate) fn inflate(&mut self, data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
        let mut input = data.to_vec();
        input.extend_from_slice(&TRAILER);
        let mut out = Vec::with_capacity(data.len() * 4 + 64);
        let mut rest = &input[..];
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let before = self.decompress.total_in();
            let status = self
                .decompress
                .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                .map_err(|e| format!("peer sent data that does not inflate: {e}"))?;
            rest = &rest[(self.decompress.total_in() - before) as usize..];
            if out.len() > limit {
                return Err("peer's message inflates past the limit".into());
            }
            if matches!(status, flate2::Status::StreamEnd)
                || (rest.is_empty() && out.len() < out.capacity())
            {
                break;
            }
        }
        if self.reset_decompressor {
            self.decompress.reset(false);
        }
        Ok(out)
    }
}
