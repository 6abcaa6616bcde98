//! Splits code sections into functions and links each entry function with the subprograms it
//! uses ("append used subprograms", as libbpf does), applying relocations on the way.

use std::collections::HashMap;

use kflex_isa::{Insn, op};

use crate::btf::BtfExt;
use crate::elf::{Elf, Rel};
use crate::error::LoadError;
use crate::map_loader::LoadedMaps;
use crate::prog_type::ProgType;
use crate::program::{FuncInfo, LineInfo, Program};
use crate::reloc::{self, Target};

/// Section holding subprograms.
pub(crate) const TEXT_SECTION: &str = ".text";

/// A function: a range of instructions in a code section.
#[derive(Debug)]
struct Func {
    start: usize,
    len: usize,
    name: String,
    global: bool,
}

/// An executable section, decoded.
#[derive(Debug)]
struct CodeSection {
    index: usize,
    name: String,
    insns: Vec<Insn>,
    rels: HashMap<usize, Rel>,
    funcs: Vec<Func>,
}

impl CodeSection {
    fn func_starting_at(&self, insn: usize) -> Option<usize> {
        self.funcs.binary_search_by_key(&insn, |f| f.start).ok()
    }
}

/// Decodes every code section and links one program per entry function.
pub(crate) fn link_programs(
    elf: &Elf<'_>,
    maps: &LoadedMaps,
    ext: Option<&BtfExt>,
) -> Result<Vec<Program>, LoadError> {
    let code = elf
        .sections
        .iter()
        .filter(|s| s.is_exec())
        .map(|s| decode_section(elf, s))
        .collect::<Result<Vec<_>, _>>()?;
    let by_index: HashMap<usize, usize> =
        code.iter().enumerate().map(|(i, c)| (c.index, i)).collect();
    let mut programs = Vec::new();
    for (si, sec) in code.iter().enumerate() {
        if sec.name == TEXT_SECTION {
            continue;
        }
        for (fi, f) in sec.funcs.iter().enumerate().filter(|(_, f)| f.global) {
            let linker = Linker {
                elf,
                maps,
                code: &code,
                by_index: &by_index,
            };
            let (insns, placed) = linker.link((si, fi))?;
            let func_info = placed
                .iter()
                .map(|&((s, f), at)| FuncInfo {
                    insn: at,
                    name: code[s].funcs[f].name.clone(),
                })
                .collect();
            let line_info = ext.map_or_else(Vec::new, |ext| line_info(ext, &code, &placed));
            programs.push(Program {
                name: f.name.clone(),
                section: sec.name.clone(),
                prog_type: ProgType::from_section(&sec.name),
                sleepable: Program::is_sleepable_section(&sec.name),
                insns,
                line_info,
                func_info,
            });
        }
    }
    Ok(programs)
}

fn decode_section(elf: &Elf<'_>, s: &crate::elf::Section<'_>) -> Result<CodeSection, LoadError> {
    let insns = Insn::slice_from_bytes(s.data).ok_or_else(|| {
        LoadError::in_section(
            &s.name,
            format!(
                "size {} is not a multiple of the 8-byte instruction size",
                s.data.len()
            ),
        )
    })?;
    let mut rels = HashMap::new();
    for r in elf.rels.get(&s.index).into_iter().flatten() {
        let idx = usize::try_from(r.offset / 8).unwrap_or(usize::MAX);
        if r.offset % 8 != 0 || idx >= insns.len() {
            return Err(LoadError::in_section(
                &s.name,
                format!(
                    "relocation at byte offset {} is not on an instruction",
                    r.offset
                ),
            ));
        }
        if rels.insert(idx, *r).is_some() {
            return Err(LoadError::at_insn(
                &s.name,
                idx,
                "two relocations on one instruction",
            ));
        }
    }
    let mut funcs: Vec<Func> = Vec::new();
    for sym in &elf.symbols {
        if sym.section != Some(s.index) || sym.kind != object::elf::STT_FUNC {
            continue;
        }
        if sym.value % 8 != 0 || sym.value >= s.data.len() as u64 {
            return Err(LoadError::in_section(
                &s.name,
                format!(
                    "function {} at byte offset {} is not on an instruction",
                    sym.name, sym.value
                ),
            ));
        }
        funcs.push(Func {
            start: (sym.value / 8) as usize,
            len: 0,
            name: sym.name.clone(),
            global: sym.is_global(),
        });
    }
    if funcs.is_empty() && !insns.is_empty() {
        funcs.push(Func {
            start: 0,
            len: 0,
            name: s.name.clone(),
            global: s.name != TEXT_SECTION,
        });
    }
    // Aliases at one address: keep one, preferring a global symbol.
    funcs.sort_by_key(|f| (f.start, !f.global));
    funcs.dedup_by_key(|f| f.start);
    let ends: Vec<usize> = funcs
        .iter()
        .skip(1)
        .map(|f| f.start)
        .chain([insns.len()])
        .collect();
    for (f, end) in funcs.iter_mut().zip(ends) {
        f.len = end - f.start;
    }
    Ok(CodeSection {
        index: s.index,
        name: s.name.clone(),
        insns,
        rels,
        funcs,
    })
}

/// A function identified by (code section position, function position).
type FuncKey = (usize, usize);

/// Where each function of a linked program starts, in placement order.
type Layout = Vec<(FuncKey, usize)>;

struct Linker<'l, 'a> {
    elf: &'l Elf<'a>,
    maps: &'l LoadedMaps,
    code: &'l [CodeSection],
    by_index: &'l HashMap<usize, usize>,
}

impl Linker<'_, '_> {
    /// Links the entry function `entry`; returns the instructions and where each function landed.
    fn link(&self, entry: FuncKey) -> Result<(Vec<Insn>, Layout), LoadError> {
        let mut placed: Layout = vec![(entry, 0)];
        let mut at: HashMap<FuncKey, usize> = HashMap::from([(entry, 0)]);
        let mut next_free = self.func(entry).len;
        let mut out: Vec<Insn> = Vec::new();
        let mut i = 0;
        while let Some(&(key, start)) = placed.get(i) {
            i += 1;
            let sec = &self.code[key.0];
            let f = self.func(key);
            out.extend_from_slice(sec.insns.get(f.start..f.start + f.len).unwrap_or_default());
            let mut j = 0;
            while j < f.len {
                let abs = f.start + j;
                let pc = start + j;
                let insn = sec.insns[abs];
                j += 1;
                let target = self.target_of(sec, abs, insn)?;
                if insn.is_lddw() {
                    if j >= f.len {
                        return Err(LoadError::at_insn(
                            &sec.name,
                            abs,
                            "lddw is missing its second slot",
                        ));
                    }
                    j += 1;
                }
                let Some(target) = target else { continue };
                let (src, imm, imm2) = match target {
                    Target::Map(m) => (op::PSEUDO_MAP_FD, to_i32(m), 0),
                    Target::MapValue { map, offset } => {
                        (op::PSEUDO_MAP_VALUE, to_i32(map), offset as i32)
                    }
                    Target::Code { section, insn: t } => {
                        let key = self.func_key(section, t).ok_or_else(|| {
                            LoadError::at_insn(
                                &sec.name,
                                abs,
                                format!("target instruction {t} is not the start of a function"),
                            )
                        })?;
                        let dest = *at.entry(key).or_insert_with(|| {
                            placed.push((key, next_free));
                            next_free += self.func(key).len;
                            next_free - self.func(key).len
                        });
                        let rel = dest as i64 - pc as i64 - 1;
                        let rel = i32::try_from(rel).map_err(|_| {
                            LoadError::at_insn(
                                &sec.name,
                                abs,
                                "program too large for a call offset",
                            )
                        })?;
                        let src = if insn.is_lddw() {
                            op::PSEUDO_FUNC
                        } else {
                            op::PSEUDO_CALL
                        };
                        (src, rel, 0)
                    }
                };
                if insn.is_lddw() {
                    out[pc].src = src;
                    out[pc].imm = imm;
                    out[pc + 1].imm = imm2;
                } else if matches!(target, Target::Code { .. }) {
                    out[pc].imm = imm;
                } else {
                    return Err(LoadError::at_insn(
                        &sec.name,
                        abs,
                        "a call cannot refer to a map",
                    ));
                }
            }
        }
        Ok((out, placed))
    }

    /// What instruction `abs` of `sec` refers to: through its relocation, or, for a call
    /// without one, the pc-relative target in the same section.
    fn target_of(
        &self,
        sec: &CodeSection,
        abs: usize,
        insn: Insn,
    ) -> Result<Option<Target>, LoadError> {
        if let Some(rel) = sec.rels.get(&abs) {
            return reloc::resolve(self.elf, self.maps, &sec.name, abs, insn, rel).map(Some);
        }
        if insn.opcode != op::JMP | op::CALL || insn.src != op::PSEUDO_CALL {
            return Ok(None);
        }
        let t = (abs as i64)
            .checked_add(i64::from(insn.imm) + 1)
            .and_then(|t| usize::try_from(t).ok())
            .filter(|&t| t < sec.insns.len())
            .ok_or_else(|| {
                LoadError::at_insn(
                    &sec.name,
                    abs,
                    format!("call target {:+} leaves the section", insn.imm),
                )
            })?;
        Ok(Some(Target::Code {
            section: sec.index,
            insn: t,
        }))
    }

    fn func(&self, key: FuncKey) -> &Func {
        &self.code[key.0].funcs[key.1]
    }

    fn func_key(&self, section: usize, insn: usize) -> Option<FuncKey> {
        let s = *self.by_index.get(&section)?;
        Some((s, self.code.get(s)?.func_starting_at(insn)?))
    }
}

fn to_i32(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Line records of every placed function, moved to program instruction indices.
fn line_info(ext: &BtfExt, code: &[CodeSection], placed: &[(FuncKey, usize)]) -> Vec<LineInfo> {
    let mut out = Vec::new();
    for &((s, f), at) in placed {
        let sec = &code[s];
        let func = &sec.funcs[f];
        for l in ext.lines_for(&sec.name) {
            let idx = (l.insn_off / 8) as usize;
            if l.insn_off % 8 == 0 && idx >= func.start && idx < func.start + func.len {
                out.push(LineInfo {
                    insn: at + (idx - func.start),
                    file: l.file.clone(),
                    line: l.line,
                    column: l.column,
                    source: l.source.clone(),
                });
            }
        }
    }
    out.sort_by_key(|l| l.insn);
    out
}
