//! Hex text in the bpf_conformance plugin format: two hex digits per byte, optionally separated by
//! white space (`b7 00 00 00 02 00 00 00` or `b70000000200000`...).

use thiserror::Error;

/// Why hex text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HexError {
    /// A character that is neither a hex digit nor white space.
    #[error("invalid hex digit {found:?} at character {position}")]
    BadDigit {
        /// The offending character.
        found: char,
        /// Its character index in the input.
        position: usize,
    },
    /// An odd number of hex digits (the last byte is incomplete).
    #[error("odd number of hex digits ({digits}): every byte needs two")]
    OddLength {
        /// Number of hex digits found.
        digits: usize,
    },
}

/// Decodes hex text; white space anywhere (including between the two digits of a byte) is ignored.
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::with_capacity(text.len() / 2);
    let mut high: Option<u8> = None;
    let mut digits = 0usize;
    for (position, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            continue;
        }
        let Some(v) = c.to_digit(16) else {
            return Err(HexError::BadDigit { found: c, position });
        };
        digits += 1;
        // `to_digit(16)` returns at most 15, so the narrowing is lossless.
        let v = v as u8;
        match high.take() {
            Some(h) => out.push((h << 4) | v),
            None => high = Some(v),
        }
    }
    if high.is_some() {
        return Err(HexError::OddLength { digits });
    }
    Ok(out)
}

/// Encodes bytes as lower-case hex without separators.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Formats bytes as a hex dump, 16 bytes per line, each line prefixed by `indent` and its offset.
pub fn dump(bytes: &[u8], indent: &str) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        out.push_str(&format!("{indent}{:04x}: {}\n", i * 16, hex.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_spaced_and_packed_forms() {
        assert_eq!(decode("b7 00 01 ff").unwrap(), vec![0xb7, 0x00, 0x01, 0xff]);
        assert_eq!(decode("B70001FF\n").unwrap(), vec![0xb7, 0x00, 0x01, 0xff]);
        assert_eq!(decode("  ").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn rejects_bad_digits_and_odd_length() {
        assert_eq!(
            decode("b7 0g"),
            Err(HexError::BadDigit {
                found: 'g',
                position: 4
            })
        );
        assert_eq!(decode("b7 0"), Err(HexError::OddLength { digits: 3 }));
        assert!(decode("é1").is_err());
    }

    #[test]
    fn encode_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        assert_eq!(encode(&[0xab, 0x01]), "ab01");
    }

    #[test]
    fn dump_has_offsets() {
        let d = dump(&[0u8; 17], "  ");
        let lines: Vec<&str> = d.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("  0010: 00"));
    }
}
