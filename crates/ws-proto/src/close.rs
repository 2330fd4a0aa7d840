//! Close codes and close frame bodies (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use crate::error::ProtocolError;
use crate::vocab::MessageKind;

/// A close status code (§7.4).
///
/// Any `u16` can be held; [`is_valid_on_wire`](Self::is_valid_on_wire) says whether a peer may
/// send it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: message data inconsistent with its type (invalid UTF-8 in a text message).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message that violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: TLS handshake failure. Never sent on the wire.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Whether a close frame may carry this code (§7.4.1, §7.4.2 and the IANA registry):
    /// 1000–1003, 1007–1014 and 3000–4999.
    ///
    /// ```
    /// use ws_proto::CloseCode;
    /// assert!(CloseCode::NORMAL.is_valid_on_wire());
    /// assert!(CloseCode(4000).is_valid_on_wire());
    /// assert!(!CloseCode::NO_STATUS.is_valid_on_wire());
    /// assert!(!CloseCode(999).is_valid_on_wire());
    /// ```
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

/// The longest close reason: a control payload is at most 125 bytes, two of them the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// A close frame's body: a code and a UTF-8 reason, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code; [`CloseCode::NO_STATUS`] when the frame had no body.
    pub code: CloseCode,
    /// The reason, possibly empty.
    pub reason: &'a str,
}

impl<'a> CloseFrame<'a> {
    /// Parses and validates a close frame payload (§5.5.1).
    ///
    /// An empty payload means no status code. A one-byte payload, or a code that may not appear
    /// on the wire, is a protocol error; a reason that is not UTF-8 is invalid data.
    pub fn parse(payload: &'a [u8]) -> Result<Self, ProtocolError> {
        match payload {
            [] => Ok(Self { code: CloseCode::NO_STATUS, reason: "" }),
            [_] => Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason =
                    simdutf8::basic::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Self { code, reason })
            }
        }
    }
}

impl ProtocolError {
    /// The close code to send for this error: 1007 for bad UTF-8, 1009 for size limits, 1002 for
    /// the rest.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCompressedData(MessageKind::Text) => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::FrameTooLarge | Self::MessageTooLarge => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7_4_validity_over_the_whole_range() {
        for raw in 0..=u16::MAX {
            let expected = matches!(raw, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(raw).is_valid_on_wire(), expected, "{raw}");
        }
    }

    #[test]
    fn rfc_5_5_1_close_bodies() {
        assert_eq!(CloseFrame::parse(&[]).unwrap().code, CloseCode::NO_STATUS);
        assert_eq!(CloseFrame::parse(&[0x03]), Err(ProtocolError::InvalidClosePayload));
        let f = CloseFrame::parse(&[0x03, 0xe8, b'b', b'y', b'e']).unwrap();
        assert_eq!((f.code, f.reason), (CloseCode::NORMAL, "bye"));
        assert_eq!(CloseFrame::parse(&[0x03, 0xed]), Err(ProtocolError::InvalidCloseCode(1005)));
        assert_eq!(CloseFrame::parse(&[0x03, 0xe8, 0xff]), Err(ProtocolError::InvalidUtf8));
        assert_eq!(CloseFrame::parse(&[0x0f, 0xa0]).unwrap().code, CloseCode(4000));
    }
}
