//! The `Sec-WebSocket-Extensions` header (RFC 6455 §9.1), parsed into offers.
//!
//! This is the seam where extensions plug in: the server sees every offer and answers the ones
//! it supports; the client checks that the server accepted only what was offered.
//! The `deflate` module (feature `deflate`) negotiates permessage-deflate and provides its codec; the
//! connection does not use it yet, so servers decline every offer and RSV bits stay invalid.
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension
//! extension = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```

use thiserror::Error;

#[cfg(feature = "deflate")]
mod deflate;
#[cfg(feature = "deflate")]
pub use deflate::{
    Compressor, Decompressor, DeflateConfig, DeflateNegotiationError, DeflateParams, INFLATE_STEP,
    InflateError, Inflated, PERMESSAGE_DEFLATE,
};

/// One extension in a `Sec-WebSocket-Extensions` list, with its parameters in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOffer {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters, each with an optional value (quotes removed).
    pub params: Vec<(String, Option<String>)>,
}

/// A `Sec-WebSocket-Extensions` value that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed Sec-WebSocket-Extensions header")]
pub struct ExtensionSyntaxError;

fn is_tchar(b: u8) -> bool {
    // RFC 7230 §3.2.6 token characters.
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn token(&mut self) -> Result<String, ExtensionSyntaxError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(ExtensionSyntaxError);
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, ExtensionSyntaxError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ExtensionSyntaxError),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out).map_err(|_| ExtensionSyntaxError);
                }
                Some(b'\\') => {
                    let escaped = self.s.get(self.pos + 1).ok_or(ExtensionSyntaxError)?;
                    out.push(*escaped);
                    self.pos += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Parses one `Sec-WebSocket-Extensions` header value into its offers, in order.
///
/// ```
/// use ws_proto::parse_extensions;
///
/// let offers = parse_extensions("permessage-deflate; client_max_window_bits, x-foo")?;
/// assert_eq!(offers[0].name, "permessage-deflate");
/// assert_eq!(offers[0].params, [("client_max_window_bits".to_string(), None)]);
/// assert_eq!(offers[1].name, "x-foo");
/// # Ok::<(), ws_proto::ExtensionSyntaxError>(())
/// ```
pub fn parse_extensions(value: &str) -> Result<Vec<ExtensionOffer>, ExtensionSyntaxError> {
    let mut c = Cursor { s: value.as_bytes(), pos: 0 };
    let mut offers = Vec::new();
    loop {
        c.skip_ws();
        match c.peek() {
            None => break,
            // Empty list elements are allowed by the `#rule` (RFC 7230 §7).
            Some(b',') => {
                c.pos += 1;
                continue;
            }
            _ => {}
        }
        let name = c.token()?;
        let mut params = Vec::new();
        loop {
            c.skip_ws();
            match c.peek() {
                Some(b';') => {
                    c.pos += 1;
                    c.skip_ws();
                    let param = c.token()?;
                    c.skip_ws();
                    let value = if c.peek() == Some(b'=') {
                        c.pos += 1;
                        c.skip_ws();
                        Some(if c.peek() == Some(b'"') { c.quoted()? } else { c.token()? })
                    } else {
                        None
                    };
                    params.push((param, value));
                }
                Some(b',') | None => break,
                Some(_) => return Err(ExtensionSyntaxError),
            }
        }
        offers.push(ExtensionOffer { name, params });
    }
    Ok(offers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7692_offers() {
        let offers = parse_extensions(
            "permessage-deflate; client_max_window_bits=10; server_no_context_takeover, \
             permessage-deflate; server_max_window_bits=\"12\"",
        )
        .unwrap();
        assert_eq!(offers.len(), 2);
        assert_eq!(
            offers[0].params,
            [
                ("client_max_window_bits".into(), Some("10".into())),
                ("server_no_context_takeover".into(), None)
            ]
        );
        assert_eq!(offers[1].params, [("server_max_window_bits".into(), Some("12".into()))]);
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in ["; x", "a; =1", "a b", "a; b=\"unterminated", "a; b=", "é"] {
            assert_eq!(parse_extensions(bad), Err(ExtensionSyntaxError), "{bad}");
        }
        assert_eq!(parse_extensions("").unwrap(), []);
        assert_eq!(parse_extensions(" , a ,").unwrap().len(), 1);
    }
}
