//! Lower-case hex, the one encoder and decoder for digests, salts and keys in messages and on
//! the command line.

use std::fmt;

/// `bytes` as lower-case hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    Hex(bytes).to_string()
}

/// The bytes of an even-length hex string (either case); `None` if it is not one.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    // Digits only: `from_str_radix` alone would take a sign ("+1").
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
        })
        .collect()
}

/// Shows its bytes as lower-case hex without building a string.
#[derive(Clone, Copy, Debug)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(encode(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(decode("00AB7f"), Some(vec![0x00, 0xab, 0x7f]));
        assert_eq!(decode(""), Some(vec![]));
        for bad in ["0", "0g", "+1", "é0", "abc"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
