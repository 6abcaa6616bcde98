//! kflex-object: loads eBPF ELF objects produced by clang in libbpf conventions.
//!
//! [`Object::parse`] reads the ELF file, the BTF and BTF.ext sections (with our own reader in
//! [`btf`]), the BTF-defined maps in `.maps`, the global-data sections and the arena globals,
//! and links one [`Program`] per entry function.
//!
//! # Relocation encoding
//!
//! In [`Program::insns`]:
//! * a map reference is an `lddw` with `src = PSEUDO_MAP_FD` and `imm` = index into
//!   [`Object::maps`];
//! * a global-data reference (`.data*`, `.rodata*`, `.bss*`, and `__arena` globals in
//!   `.addr_space.1`) is an `lddw` with `src = PSEUDO_MAP_VALUE`, `imm` = map index and the second
//!   slot's `imm` = byte offset into the map value (for the arena map: from the heap start);
//! * a function pointer is an `lddw` with `src = PSEUDO_FUNC` and `imm` = target pc - pc - 1;
//! * a BPF-to-BPF call keeps `src = PSEUDO_CALL` with `imm` = target pc - pc - 1.
//!
//! The entry function comes first, followed once by each function it transitively calls or
//! takes the address of.

#![warn(missing_docs)]

pub mod btf;
mod elf;
mod error;
mod link;
pub mod map;
mod map_loader;
pub mod prog_type;
mod program;
mod reloc;

pub use btf::{Btf, BtfExt};
pub use error::LoadError;
pub use map::{BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, GlobalKind, MapSpec, MapType};
pub use prog_type::{ProgType, SkSkbAttach};
pub use program::{FuncInfo, LineInfo, Program};

/// Name of the section holding the license string.
const LICENSE_SECTION: &str = "license";

/// A loaded object: its programs (linked and relocated), maps and BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The name given to [`Object::parse`] (usually the file name).
    pub name: String,
    /// Contents of the `license` section, if present.
    pub license: Option<String>,
    /// One program per entry function, in section order then address order.
    pub programs: Vec<Program>,
    /// BTF-defined maps (in `.maps` order), then one map per global-data section (in section
    /// order). The arena map's `initial_value` holds the `__arena` globals' initial image.
    pub maps: Vec<MapSpec>,
    /// The object's BTF, if it has a `.BTF` section.
    pub btf: Option<Btf>,
}

impl Object {
    /// Loads an object from the bytes of an ELF file.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Object, LoadError> {
        let elf = elf::Elf::parse(bytes)?;
        let license = elf.section_by_name(LICENSE_SECTION).map(|s| {
            let end = s.data.iter().position(|&b| b == 0).unwrap_or(s.data.len());
            String::from_utf8_lossy(s.data.get(..end).unwrap_or_default()).into_owned()
        });
        let btf = elf
            .section_by_name(btf::BTF_SECTION)
            .map(|s| Btf::parse(s.data))
            .transpose()?;
        let ext = match (&btf, elf.section_by_name(btf::ext::BTF_EXT_SECTION)) {
            (Some(b), Some(s)) => Some(BtfExt::parse(s.data, b.strings())?),
            _ => None,
        };
        if let Some(ext) = &ext
            && let Some(s) = ext.core_relos.iter().find(|s| !s.records.is_empty())
        {
            return Err(LoadError::in_section(
                btf::ext::BTF_EXT_SECTION,
                format!(
                    "CO-RE relocations are not supported yet ({} in section {})",
                    s.records.len(),
                    s.section
                ),
            ));
        }
        let maps = map_loader::load_maps(&elf, btf.as_ref())?;
        let programs = link::link_programs(&elf, &maps, ext.as_ref())?;
        Ok(Object {
            name: name.to_string(),
            license,
            programs,
            maps: maps.specs,
            btf,
        })
    }

    /// The program whose entry function is named `name`.
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// The index in [`Object::maps`] of the map named `name`.
    pub fn map_index(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }
}
