//! Our own reader for BTF (`.BTF`) and its companion `.BTF.ext`.
//!
//! [`Btf::parse`] checks the header, the string section and every type record, and that every
//! type id a record refers to exists, so later lookups only fail on semantic problems (such as
//! the size of a function), never on malformed input.

pub mod ext;
mod header;
pub(crate) mod reader;
mod size;
mod strings;
mod types;

pub use ext::{BtfExt, ExtFuncInfo, ExtLineInfo, ExtSection};
pub use header::{BTF_MAGIC, BtfHeader};
pub use strings::StringTable;
pub use types::{BtfKind, BtfType, Enumerator, Member, Param, TypeId, VarSecInfo};

use crate::error::LoadError;
use reader::{Reader, sub_slice};

/// Name of the ELF section holding BTF.
pub const BTF_SECTION: &str = ".BTF";

/// Parsed BTF: types indexed by id (id 0 is `void`) and the string section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Btf {
    types: Vec<BtfType>,
    strings: StringTable,
}

impl Btf {
    /// Parses a `.BTF` section.
    pub fn parse(bytes: &[u8]) -> Result<Btf, LoadError> {
        Self::parse_inner(bytes).map_err(|e| LoadError::in_section(BTF_SECTION, e))
    }

    fn parse_inner(bytes: &[u8]) -> Result<Btf, String> {
        let h = BtfHeader::parse(bytes)?;
        let body = bytes.get(h.hdr_len as usize..).unwrap_or_default();
        let strings = StringTable::new(sub_slice(body, h.str_off, h.str_len, "string section")?)?;
        let type_bytes = sub_slice(body, h.type_off, h.type_len, "type section")?;
        let mut types = vec![BtfType {
            name: String::new(),
            kind: BtfKind::Void,
        }];
        let mut r = Reader::new(type_bytes);
        while r.remaining() > 0 {
            let at = r.pos();
            let id = types.len();
            let t = types::parse_type(&mut r, &strings)
                .map_err(|e| format!("type {id} at offset {at}: {e}"))?;
            types.push(t);
        }
        let count = types.len();
        for (id, t) in types.iter().enumerate() {
            if let Some(bad) = t.referenced().into_iter().find(|&r| r as usize >= count) {
                return Err(format!(
                    "type {id} ({}) refers to type {bad}, but only {count} types exist",
                    t.name
                ));
            }
        }
        Ok(Btf { types, strings })
    }

    /// The type with id `id`.
    pub fn ty(&self, id: TypeId) -> Option<&BtfType> {
        self.types.get(id as usize)
    }

    /// Number of types including `void` (valid ids are `0..len()`).
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// True if there are no types besides `void`.
    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }

    /// All types, indexed by id.
    pub fn types(&self) -> &[BtfType] {
        &self.types
    }

    /// The string section.
    pub fn strings(&self) -> &StringTable {
        &self.strings
    }

    /// The first type named `name` that satisfies `pred`, with its id.
    pub fn find(&self, name: &str, pred: impl Fn(&BtfKind) -> bool) -> Option<(TypeId, &BtfType)> {
        self.types
            .iter()
            .enumerate()
            .find(|(_, t)| t.name == name && pred(&t.kind))
            .map(|(i, t)| (i as TypeId, t))
    }

    /// The `DATASEC` named `name` (e.g. `.maps`), with its variables.
    pub fn datasec(&self, name: &str) -> Option<&[VarSecInfo]> {
        match self.find(name, |k| matches!(k, BtfKind::Datasec { .. }))?.1 {
            BtfType {
                kind: BtfKind::Datasec { vars, .. },
                ..
            } => Some(vars),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
