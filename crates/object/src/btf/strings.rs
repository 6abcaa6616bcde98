//! The BTF string section: NUL-terminated names addressed by byte offset.

/// A validated BTF string section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StringTable {
    bytes: Vec<u8>,
}

impl StringTable {
    /// Checks a string section: empty, or starting and ending with NUL.
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        if !bytes.is_empty() && (bytes.first() != Some(&0) || bytes.last() != Some(&0)) {
            return Err("string section must start and end with a NUL byte".into());
        }
        Ok(StringTable {
            bytes: bytes.to_vec(),
        })
    }

    /// The string at byte offset `off` (offset 0 is the empty string).
    pub fn get(&self, off: u32) -> Result<&str, String> {
        if off == 0 && self.bytes.is_empty() {
            return Ok("");
        }
        let tail = self
            .bytes
            .get(off as usize..)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                format!(
                    "string offset {off} out of range (string section has {} bytes)",
                    self.bytes.len()
                )
            })?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(tail.get(..end).unwrap_or_default())
            .map_err(|_| format!("string at offset {off} is not valid UTF-8"))
    }

    /// Size of the section in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True if the section is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_strings() {
        let t = StringTable::new(b"\0abc\0de\0").unwrap();
        assert_eq!(t.get(0).unwrap(), "");
        assert_eq!(t.get(1).unwrap(), "abc");
        assert_eq!(t.get(2).unwrap(), "bc");
        assert_eq!(t.get(5).unwrap(), "de");
        assert!(
            t.get(8)
                .unwrap_err()
                .contains("string offset 8 out of range")
        );
    }

    #[test]
    fn rejects_unterminated() {
        assert!(StringTable::new(b"\0abc").is_err());
        assert!(StringTable::new(b"abc\0").is_err());
        assert!(StringTable::new(b"").is_ok());
        assert!(StringTable::new(b"\0\xff\0").unwrap().get(1).is_err());
    }
}
