//! Decides what a relocation in a code section refers to: a map, a place in global data or the
//! arena, or an instruction in some code section.

use kflex_isa::{Insn, op};

use crate::elf::{Elf, Rel};
use crate::error::LoadError;
use crate::map_loader::{ARENA_SECTION, LoadedMaps, MAPS_SECTION};

/// `R_BPF_64_64`: the 64-bit immediate of an `lddw`.
pub(crate) const R_BPF_64_64: u32 = 1;
/// `R_BPF_64_32`: the 32-bit immediate of a call.
pub(crate) const R_BPF_64_32: u32 = 10;

/// What a relocated instruction refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A whole map (`lddw` with `PSEUDO_MAP_FD`).
    Map(usize),
    /// A byte offset in a map's value or the arena heap (`lddw` with `PSEUDO_MAP_VALUE`).
    MapValue {
        /// Map index.
        map: usize,
        /// Byte offset.
        offset: u32,
    },
    /// An instruction (call target or function pointer).
    Code {
        /// ELF section index.
        section: usize,
        /// Instruction index within that section.
        insn: usize,
    },
}

/// Resolves relocation `rel` on instruction `insn` (index `idx` in section `sec_name`).
pub(crate) fn resolve(
    elf: &Elf<'_>,
    maps: &LoadedMaps,
    sec_name: &str,
    idx: usize,
    insn: Insn,
    rel: &Rel,
) -> Result<Target, LoadError> {
    let err = |m: String| LoadError::at_insn(sec_name, idx, m);
    let sym = elf.symbols.get(rel.sym as usize).ok_or_else(|| {
        err(format!(
            "relocation against unknown symbol index {}",
            rel.sym
        ))
    })?;
    let label = elf.symbol_label(sym);
    let Some(target) = sym.section.and_then(|s| elf.sections.get(s)) else {
        return Err(err(format!("relocation against unknown symbol {label}")));
    };
    let is_call = insn.opcode == op::JMP | op::CALL;
    match (rel.r_type, is_call, insn.is_lddw()) {
        (R_BPF_64_32, true, _) | (R_BPF_64_64, _, true) => {}
        (t, _, _) => {
            return Err(err(format!(
                "unsupported relocation type {t} on instruction with opcode {:#04x}",
                insn.opcode
            )));
        }
    }
    let value =
        i64::try_from(sym.value).map_err(|_| err(format!("symbol {label} has a huge value")))?;
    if is_call {
        if insn.src != op::PSEUDO_CALL {
            return Err(err(format!(
                "relocated call to {label} is not a BPF-to-BPF call (src {})",
                insn.src
            )));
        }
        if !target.is_exec() {
            return Err(err(format!(
                "call target {label} is in non-code section {}",
                target.name
            )));
        }
        // libbpf convention: target = symbol offset / 8 + imm + 1.
        let byte = value.checked_add(8 * (i64::from(insn.imm) + 1));
        return code_target(byte, target.index, target.size)
            .map_err(|m| err(format!("call to {label}: {m}")));
    }
    let byte = value.checked_add(i64::from(insn.imm));
    if target.is_exec() {
        return code_target(byte, target.index, target.size)
            .map_err(|m| err(format!("function pointer to {label}: {m}")));
    }
    if target.name == MAPS_SECTION {
        let off = byte.and_then(|b| u64::try_from(b).ok());
        return maps
            .by_offset
            .iter()
            .find(|(o, _)| Some(*o) == off)
            .map(|&(_, i)| Target::Map(i))
            .ok_or_else(|| {
                err(format!(
                    "relocation against {label}, which is not a map defined in .maps"
                ))
            });
    }
    if let Some(&map) = maps.by_section.get(&target.index) {
        let offset = byte
            .filter(|&b| b >= 0 && b as u64 <= target.size)
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| {
                err(format!(
                    "reference to {label} at offset {byte:?} lies outside section {} ({} bytes)",
                    target.name, target.size
                ))
            })?;
        return Ok(Target::MapValue { map, offset });
    }
    let what = if target.name == ARENA_SECTION {
        "the arena"
    } else {
        "code, a map or global data"
    };
    Err(err(format!(
        "relocation against {label} in section {}, which is not {what}",
        target.name
    )))
}

/// An instruction target at byte offset `byte` of a code section of `size` bytes.
fn code_target(byte: Option<i64>, section: usize, size: u64) -> Result<Target, String> {
    let byte = byte.ok_or("target offset overflows")?;
    if byte < 0 || byte as u64 >= size || byte % 8 != 0 {
        return Err(format!(
            "target offset {byte} is not an instruction in a section of {size} bytes"
        ));
    }
    Ok(Target::Code {
        section,
        insn: (byte / 8) as usize,
    })
}
