//! A bounds-checked little-endian cursor over a byte slice.

/// Reads little-endian integers from a slice, failing instead of panicking at the end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Current offset from the start.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "truncated at offset {}: need {} bytes, {} left",
                    self.pos,
                    n,
                    self.remaining()
                )
            })?;
        let s = self.bytes.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    /// Reads a little-endian u16.
    pub(crate) fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    /// Reads a little-endian u32.
    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    /// Reads a little-endian i32.
    pub(crate) fn i32(&mut self) -> Result<i32, String> {
        Ok(self.u32()? as i32)
    }
}

/// The sub-slice `[off, off + len)` of `bytes`, or an error naming `what`.
pub(crate) fn sub_slice<'a>(
    bytes: &'a [u8],
    off: u32,
    len: u32,
    what: &str,
) -> Result<&'a [u8], String> {
    let start = off as usize;
    let end = start.checked_add(len as usize);
    end.and_then(|end| bytes.get(start..end)).ok_or_else(|| {
        format!(
            "{what} at offset {off} with length {len} lies outside the {} bytes available",
            bytes.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_stops_at_end() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 0, 9]);
        assert_eq!(r.u16().unwrap(), 1);
        assert_eq!(r.u32().unwrap(), 2);
        assert_eq!(r.remaining(), 1);
        assert!(r.u16().unwrap_err().contains("truncated at offset 6"));
        assert_eq!(r.u8().unwrap(), 9);
    }

    #[test]
    fn sub_slice_bounds() {
        assert_eq!(sub_slice(&[1, 2, 3], 1, 2, "x").unwrap(), &[2, 3]);
        assert!(sub_slice(&[1, 2, 3], 2, 2, "x").is_err());
        assert!(sub_slice(&[1, 2, 3], u32::MAX, u32::MAX, "x").is_err());
    }
}
