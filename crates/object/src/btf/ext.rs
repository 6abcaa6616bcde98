//! The `.BTF.ext` section: per-section function info, line info and CO-RE relocation records.
//!
//! Instruction offsets are kept as in the file (bytes from the start of the ELF section); the
//! loader converts them to instruction indices of each linked program.

use super::reader::{Reader, sub_slice};
use super::strings::StringTable;
use crate::error::LoadError;

/// Name of the ELF section holding BTF.ext.
pub const BTF_EXT_SECTION: &str = ".BTF.ext";

/// Largest record size accepted (the kernel's records are 8 to 16 bytes).
const MAX_REC_SIZE: u32 = 256;

/// Records of one kind for one ELF section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtSection<T> {
    /// The ELF section the records describe.
    pub section: String,
    /// The records, in file order.
    pub records: Vec<T>,
}

/// A `bpf_func_info` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtFuncInfo {
    /// Byte offset of the function's first instruction in its section.
    pub insn_off: u32,
    /// The `FUNC` type id.
    pub type_id: u32,
}

/// A `bpf_line_info` record with its strings looked up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtLineInfo {
    /// Byte offset of the instruction in its section.
    pub insn_off: u32,
    /// Source file name.
    pub file: String,
    /// The source line text.
    pub source: String,
    /// Line number (1-based).
    pub line: u32,
    /// Column number.
    pub column: u32,
}

/// A parsed `.BTF.ext` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfExt {
    /// Function info, per section.
    pub func_info: Vec<ExtSection<ExtFuncInfo>>,
    /// Line info, per section.
    pub line_info: Vec<ExtSection<ExtLineInfo>>,
    /// Number of CO-RE relocation records, per section (kflex does not apply them yet).
    pub core_relos: Vec<ExtSection<()>>,
}

impl BtfExt {
    /// Parses a `.BTF.ext` section whose strings live in `strings` (the `.BTF` string table).
    pub fn parse(bytes: &[u8], strings: &StringTable) -> Result<BtfExt, LoadError> {
        Self::parse_inner(bytes, strings).map_err(|e| LoadError::in_section(BTF_EXT_SECTION, e))
    }

    fn parse_inner(bytes: &[u8], strings: &StringTable) -> Result<BtfExt, String> {
        let mut r = Reader::new(bytes);
        let head = |e: String| format!("bad BTF.ext header: {e}");
        let magic = r.u16().map_err(head)?;
        if magic != super::BTF_MAGIC {
            return Err(format!("bad BTF.ext header: magic {magic:#06x}"));
        }
        let version = r.u8().map_err(head)?;
        if version != 1 {
            return Err(format!("bad BTF.ext header: unsupported version {version}"));
        }
        let _flags = r.u8().map_err(head)?;
        let hdr_len = r.u32().map_err(head)?;
        if hdr_len < 24 || hdr_len as usize > bytes.len() {
            return Err(format!(
                "bad BTF.ext header: header length {hdr_len} (section has {} bytes)",
                bytes.len()
            ));
        }
        let mut field = || r.u32().map_err(head);
        let (fi_off, fi_len, li_off, li_len) = (field()?, field()?, field()?, field()?);
        let (cr_off, cr_len) = if hdr_len >= 32 {
            (field()?, field()?)
        } else {
            (0, 0)
        };
        let body = bytes.get(hdr_len as usize..).unwrap_or_default();

        let func_info = parse_info(body, fi_off, fi_len, "func_info", 8, strings, |r| {
            Ok(ExtFuncInfo {
                insn_off: r.u32()?,
                type_id: r.u32()?,
            })
        })?;
        let line_info = parse_info(body, li_off, li_len, "line_info", 16, strings, |r| {
            let insn_off = r.u32()?;
            let file = strings.get(r.u32()?)?.to_string();
            let source = strings.get(r.u32()?)?.to_string();
            let line_col = r.u32()?;
            Ok(ExtLineInfo {
                insn_off,
                file,
                source,
                line: line_col >> 10,
                column: line_col & 0x3ff,
            })
        })?;
        let core_relos = parse_info(body, cr_off, cr_len, "core_relo", 16, strings, |_| Ok(()))?;
        Ok(BtfExt {
            func_info,
            line_info,
            core_relos,
        })
    }

    /// Line info records for ELF section `section` (empty if none).
    pub fn lines_for(&self, section: &str) -> &[ExtLineInfo] {
        self.line_info
            .iter()
            .find(|s| s.section == section)
            .map_or(&[], |s| &s.records)
    }
}

/// Parses one info block: `rec_size`, then per section `{name_off, count, records...}`.
fn parse_info<T>(
    body: &[u8],
    off: u32,
    len: u32,
    what: &str,
    min_rec: u32,
    strings: &StringTable,
    mut record: impl FnMut(&mut Reader<'_>) -> Result<T, String>,
) -> Result<Vec<ExtSection<T>>, String> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let bytes = sub_slice(body, off, len, what)?;
    let mut r = Reader::new(bytes);
    let rec_size = r.u32().map_err(|e| format!("{what}: {e}"))?;
    if !(min_rec..=MAX_REC_SIZE).contains(&rec_size) {
        return Err(format!(
            "{what}: record size {rec_size} not in {min_rec}..={MAX_REC_SIZE}"
        ));
    }
    let mut out = Vec::new();
    while r.remaining() > 0 {
        let at = r.pos();
        let ctx = |e: String| format!("{what} block at offset {at}: {e}");
        let section = strings.get(r.u32().map_err(ctx)?).map_err(ctx)?.to_string();
        let count = r.u32().map_err(ctx)?;
        let total = (count as usize)
            .checked_mul(rec_size as usize)
            .filter(|&t| t <= r.remaining());
        let Some(total) = total else {
            return Err(ctx(format!(
                "{count} records of {rec_size} bytes run past the end"
            )));
        };
        let mut recs = Reader::new(r.take(total).map_err(ctx)?);
        let mut records = Vec::with_capacity(count as usize);
        for i in 0..count {
            let one = recs.take(rec_size as usize).map_err(ctx)?;
            let rec = record(&mut Reader::new(one))
                .map_err(|e| ctx(format!("record {i} of section {section}: {e}")))?;
            records.push(rec);
        }
        out.push(ExtSection { section, records });
    }
    Ok(out)
}
