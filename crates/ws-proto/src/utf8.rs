//! Incremental UTF-8 validation for text messages (RFC 6455 §5.6, §8.1).
//!
//! A text message may arrive in many frames and each frame in many reads, and a code point may
//! be split anywhere between them. [`Utf8Validator`] checks each piece as it arrives and fails
//! at the first byte that can no longer begin or continue a valid sequence, so an endpoint can
//! fail the connection before the rest of a bad message arrives ("fail fast").

use crate::error::ProtocolError;

/// Validates UTF-8 that arrives in pieces.
///
/// ```
/// use ws_proto::Utf8Validator;
///
/// let mut v = Utf8Validator::new();
/// let euro = "€".as_bytes(); // e2 82 ac
/// v.feed(&euro[..1]).unwrap();
/// v.feed(&euro[1..]).unwrap();
/// v.finish().unwrap();
///
/// // 0xc0 can never start a valid sequence: rejected at once.
/// assert!(v.feed(&[b'a', 0xc0]).is_err());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The bytes of a code point begun at the end of the last piece.
    pending: [u8; 4],
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece. Fails as soon as the input seen so far cannot be the prefix of
    /// valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ProtocolError> {
        while self.pending_len > 0 {
            let Some((&byte, rest)) = data.split_first() else {
                return Ok(());
            };
            self.pending[usize::from(self.pending_len)] = byte;
            self.pending_len += 1;
            data = rest;
            match simdutf8::compat::from_utf8(&self.pending[..usize::from(self.pending_len)]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {}
                Err(_) => return Err(ProtocolError::InvalidUtf8),
            }
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // The input ends inside a code point that may still be completed.
                let tail = &data[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }

    /// Ends the message: fails if it stopped in the middle of a code point. Resets the
    /// validator for the next message either way.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete { Ok(()) } else { Err(ProtocolError::InvalidUtf8) }
    }

    /// Whether the input so far ends in the middle of a code point.
    pub fn is_incomplete(&self) -> bool {
        self.pending_len > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(input: &[u8]) {
        let whole_valid = std::str::from_utf8(input).is_ok();
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&input[..a]).is_ok()
                    && v.feed(&input[a..b]).is_ok()
                    && v.feed(&input[b..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, whole_valid, "{input:x?} split at {a},{b}");
            }
        }
    }

    #[test]
    fn agrees_with_std_at_every_split() {
        let cases: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "𝄞 music".as_bytes(),
            b"\xed\xa0\x80",         // a UTF-16 surrogate
            b"\xf4\x90\x80\x80",     // above U+10FFFF
            b"\xc0\xaf",             // overlong '/'
            b"\xe0\x80\xaf",         // overlong
            b"abc\xe2\x82",          // truncated at the end
            b"\xf0\x9f\x98\x80\xff", // valid then invalid
            b"\xef\xbf\xbf",         // U+FFFF, valid
            b"",
        ];
        for case in cases {
            check_all_splits(case);
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        // Autobahn 6.4.x: the first bytes of a sequence that can never be valid are rejected
        // before the rest of the message arrives.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert!(v.feed(&[0xf4]).is_ok());
        assert!(v.feed(&[0x90]).is_err());
    }

    #[test]
    fn incomplete_at_end_fails_finish() {
        let mut v = Utf8Validator::new();
        v.feed(&[0xe2, 0x82]).unwrap();
        assert!(v.is_incomplete());
        assert!(v.finish().is_err());
        // Reset after finish.
        v.feed(b"ok").unwrap();
        v.finish().unwrap();
    }
}
