//! A small owned view of the parts of an ELF file the loader needs: sections, symbols and the
//! `REL` relocations of code sections, read with the `object` crate and checked for BPF.

use std::collections::BTreeMap;

use object::LittleEndian as LE;
use object::elf;
use object::read::elf::{ElfFile64, FileHeader, SectionHeader, Sym};

use crate::error::LoadError;

/// One ELF section.
#[derive(Debug)]
pub(crate) struct Section<'a> {
    /// Section header index.
    pub index: usize,
    /// Section name.
    pub name: String,
    /// `sh_type`.
    pub sh_type: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_size` (also for `NOBITS` sections, whose `data` is empty).
    pub size: u64,
    /// File contents (empty for `NOBITS`).
    pub data: &'a [u8],
}

impl Section<'_> {
    /// True for sections holding instructions.
    pub fn is_exec(&self) -> bool {
        self.flags & u64::from(elf::SHF_EXECINSTR) != 0 && self.sh_type == elf::SHT_PROGBITS
    }
}

/// One symbol-table entry.
#[derive(Debug)]
pub(crate) struct Symbol {
    /// Name (empty for section symbols; see [`Elf::symbol_label`]).
    pub name: String,
    /// Defining section, if the symbol is defined in one.
    pub section: Option<usize>,
    /// `st_value` (offset in the section for relocatable objects).
    pub value: u64,
    /// `STT_*` type.
    pub kind: u8,
    /// `STB_*` binding.
    pub bind: u8,
}

impl Symbol {
    /// True for global or weak symbols.
    pub fn is_global(&self) -> bool {
        self.bind == elf::STB_GLOBAL || self.bind == elf::STB_WEAK
    }
}

/// One `REL` relocation entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rel {
    /// Byte offset in the target section.
    pub offset: u64,
    /// Symbol index.
    pub sym: u32,
    /// `R_BPF_*` type.
    pub r_type: u32,
}

/// The parsed ELF file.
#[derive(Debug)]
pub(crate) struct Elf<'a> {
    /// All sections by header index (index 0 is the null section).
    pub sections: Vec<Section<'a>>,
    /// All symbols by index (index 0 is the null symbol).
    pub symbols: Vec<Symbol>,
    /// Relocations per target section index, for executable sections.
    pub rels: BTreeMap<usize, Vec<Rel>>,
}

impl<'a> Elf<'a> {
    /// Parses a little-endian 64-bit BPF relocatable ELF object.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, LoadError> {
        check_ident(bytes)?;
        let file = ElfFile64::<LE>::parse(bytes)
            .map_err(|e| LoadError::new(format!("malformed ELF file: {e}")))?;
        let endian = file.endian();
        let machine = file.elf_header().e_machine(endian);
        if machine != elf::EM_BPF {
            return Err(LoadError::new(format!(
                "not a BPF object: ELF machine is {machine}, expected EM_BPF ({})",
                elf::EM_BPF
            )));
        }
        let table = file.elf_section_table();
        let mut sections = Vec::with_capacity(table.len());
        for (i, h) in table.iter().enumerate() {
            let name = table
                .section_name(endian, h)
                .map_err(|e| LoadError::new(format!("section {i}: bad section name: {e}")))?;
            let name = String::from_utf8_lossy(name).into_owned();
            let data = h.data(endian, bytes).map_err(|e| {
                LoadError::in_section(&name, format!("section contents lie outside the file: {e}"))
            })?;
            sections.push(Section {
                index: i,
                sh_type: h.sh_type(endian),
                flags: h.sh_flags(endian),
                size: h.sh_size(endian),
                data,
                name,
            });
        }

        let symtab = file.elf_symbol_table();
        let mut symbols = Vec::with_capacity(symtab.len());
        for (idx, sym) in symtab.enumerate() {
            let name = symtab.symbol_name(endian, sym).map_err(|e| {
                LoadError::in_section(".symtab", format!("symbol {}: bad name: {e}", idx.0))
            })?;
            let section = symtab
                .symbol_section(endian, sym, idx)
                .ok()
                .flatten()
                .map(|s| s.0)
                .filter(|&s| s < sections.len());
            symbols.push(Symbol {
                name: String::from_utf8_lossy(name).into_owned(),
                section,
                value: sym.st_value(endian),
                kind: sym.st_type(),
                bind: sym.st_bind(),
            });
        }

        let mut rels = BTreeMap::new();
        for (i, h) in table.iter().enumerate() {
            let sh_type = h.sh_type(endian);
            if sh_type != elf::SHT_REL && sh_type != elf::SHT_RELA {
                continue;
            }
            let target = h.sh_info(endian) as usize;
            let Some(t) = sections.get(target).filter(|t| t.is_exec()) else {
                continue;
            };
            let rel_name = sections.get(i).map_or("", |s| s.name.as_str());
            if sh_type == elf::SHT_RELA {
                return Err(LoadError::in_section(
                    rel_name,
                    format!("RELA relocations for section {} are not supported", t.name),
                ));
            }
            let entries: &[elf::Rel64<LE>] = h.data_as_array(endian, bytes).map_err(|e| {
                LoadError::in_section(rel_name, format!("bad relocation table: {e}"))
            })?;
            let list: &mut Vec<Rel> = rels.entry(target).or_default();
            list.extend(entries.iter().map(|r| Rel {
                offset: r.r_offset.get(endian),
                sym: r.r_sym(endian),
                r_type: r.r_type(endian),
            }));
        }
        Ok(Elf {
            sections,
            symbols,
            rels,
        })
    }

    /// The first section named `name`.
    pub fn section_by_name(&self, name: &str) -> Option<&Section<'a>> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// A printable name for a symbol: its own, or its section's for section symbols.
    pub fn symbol_label(&self, sym: &Symbol) -> String {
        if !sym.name.is_empty() {
            return sym.name.clone();
        }
        sym.section
            .and_then(|s| self.sections.get(s))
            .map_or_else(String::new, |s| s.name.clone())
    }
}

/// Checks the identification bytes so that common mistakes get a precise message.
fn check_ident(bytes: &[u8]) -> Result<(), LoadError> {
    let ident = bytes.get(..16).ok_or_else(|| {
        LoadError::new(format!(
            "truncated ELF file: {} bytes, shorter than the ELF header",
            bytes.len()
        ))
    })?;
    if ident.get(..4) != Some(&elf::ELFMAG[..]) {
        return Err(LoadError::new("not an ELF file: bad magic"));
    }
    if ident.get(4) != Some(&elf::ELFCLASS64) {
        return Err(LoadError::new("not a 64-bit ELF file"));
    }
    if ident.get(5) != Some(&elf::ELFDATA2LSB) {
        return Err(LoadError::new("big-endian BPF objects are not supported"));
    }
    Ok(())
}
