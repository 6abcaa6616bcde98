//! The `.BTF` section header (`struct btf_header`).

use super::reader::Reader;

/// The BTF magic number (`0xeB9F`, little endian on disk).
pub const BTF_MAGIC: u16 = 0xeb9f;

/// The fixed part of a `.BTF` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BtfHeader {
    /// Format version (1).
    pub version: u8,
    /// Flags (0).
    pub flags: u8,
    /// Header length; the offsets below are relative to its end.
    pub hdr_len: u32,
    /// Offset of the type section.
    pub type_off: u32,
    /// Length of the type section.
    pub type_len: u32,
    /// Offset of the string section.
    pub str_off: u32,
    /// Length of the string section.
    pub str_len: u32,
}

impl BtfHeader {
    /// Size of the header this reader understands.
    pub const MIN_LEN: u32 = 24;

    /// Parses and checks the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader::new(bytes);
        let magic = r.u16().map_err(|e| format!("bad BTF header: {e}"))?;
        if magic != BTF_MAGIC {
            return Err(format!(
                "bad BTF header: magic {magic:#06x}, expected {BTF_MAGIC:#06x}"
            ));
        }
        let h = (|| -> Result<Self, String> {
            Ok(BtfHeader {
                version: r.u8()?,
                flags: r.u8()?,
                hdr_len: r.u32()?,
                type_off: r.u32()?,
                type_len: r.u32()?,
                str_off: r.u32()?,
                str_len: r.u32()?,
            })
        })()
        .map_err(|e| format!("bad BTF header: {e}"))?;
        if h.version != 1 {
            return Err(format!("bad BTF header: unsupported version {}", h.version));
        }
        if h.hdr_len < Self::MIN_LEN || h.hdr_len as usize > bytes.len() {
            return Err(format!(
                "bad BTF header: header length {} (section has {} bytes)",
                h.hdr_len,
                bytes.len()
            ));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u16, version: u8, hdr_len: u32) -> Vec<u8> {
        let mut v = magic.to_le_bytes().to_vec();
        v.extend([version, 0]);
        for x in [hdr_len, 0, 0, 0, 1] {
            v.extend(x.to_le_bytes());
        }
        v
    }

    #[test]
    fn parses_valid_header() {
        let h = BtfHeader::parse(&header(BTF_MAGIC, 1, 24)).unwrap();
        assert_eq!((h.hdr_len, h.str_len), (24, 1));
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(
            BtfHeader::parse(&header(0x1234, 1, 24))
                .unwrap_err()
                .contains("magic 0x1234")
        );
        assert!(
            BtfHeader::parse(&header(BTF_MAGIC, 2, 24))
                .unwrap_err()
                .contains("version 2")
        );
        assert!(
            BtfHeader::parse(&header(BTF_MAGIC, 1, 99))
                .unwrap_err()
                .contains("header length 99")
        );
        assert!(
            BtfHeader::parse(&[0x9f, 0xeb, 1])
                .unwrap_err()
                .contains("truncated")
        );
    }
}
