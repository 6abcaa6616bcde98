//! `kflex disasm`: per program, its section, type and maps, then a listing in llvm-objdump syntax
//! with the C source lines from line info interleaved (like `llvm-objdump -S`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use kflex_isa::decode::{Instruction, Program};
use kflex_isa::op;
use kflex_object::{MapSpec, Object};

use super::{CliError, EXIT_PROGRAM, read_file};

/// Runs the subcommand.
pub fn run(file: &Path, only: Option<&str>) -> Result<ExitCode, CliError> {
    let bytes = read_file(file)?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let object = Object::parse(&name, &bytes)
        .map_err(|e| CliError::usage(format!("cannot load {}: {e}", file.display())))?;
    let programs: Vec<&kflex_object::Program> = match only {
        Some(n) => vec![
            object
                .programs
                .iter()
                .find(|p| p.name == n)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        object.programs.iter().map(|p| p.name.as_str()).collect();
                    CliError::usage(format!(
                        "no program named {n:?} in {} (programs: {})",
                        file.display(),
                        names.join(", ")
                    ))
                })?,
        ],
        None => object.programs.iter().collect(),
    };
    let mut failed = false;
    let mut out = String::new();
    for (i, p) in programs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match render_program(p, &object.maps) {
            Ok(text) => out.push_str(&text),
            Err(text) => {
                out.push_str(&text);
                failed = true;
            }
        }
    }
    print!("{out}");
    Ok(if failed {
        ExitCode::from(EXIT_PROGRAM)
    } else {
        ExitCode::SUCCESS
    })
}

/// Every map index a program's `lddw` instructions reference, sorted and deduplicated.
fn maps_referenced(insns: &[kflex_isa::Insn]) -> Vec<usize> {
    let mut used: Vec<usize> = insns
        .iter()
        .filter(|i| {
            i.is_lddw()
                && matches!(
                    i.src,
                    op::PSEUDO_MAP_FD
                        | op::PSEUDO_MAP_VALUE
                        | op::PSEUDO_MAP_IDX
                        | op::PSEUDO_MAP_IDX_VALUE
                )
        })
        .map(|i| i.imm as u32 as usize)
        .collect();
    used.sort_unstable();
    used.dedup();
    used
}

/// Describes a map in one line: `name (type, key K, value V, max M)`.
pub fn describe_map(spec: &MapSpec) -> String {
    let mut s = format!("{} ({}", spec.name, spec.map_type.name());
    if spec.global.is_some() {
        let _ = write!(s, ", global data, {} bytes", spec.value_size);
    } else if spec.key_size > 0 || spec.value_size > 0 {
        let _ = write!(
            s,
            ", key {} B, value {} B, max {}",
            spec.key_size, spec.value_size, spec.max_entries
        );
    } else {
        let _ = write!(s, ", max {}", spec.max_entries);
    }
    s.push(')');
    s
}

/// The text of one instruction, with map references shown by name.
fn instruction_text(
    insn: &Instruction,
    slot: &kflex_isa::Insn,
    next: Option<&kflex_isa::Insn>,
    maps: &[MapSpec],
) -> String {
    if let Instruction::LoadImm64 { dst, pseudo, .. } = insn {
        let index = slot.imm as u32 as usize;
        let map_name = maps
            .get(index)
            .map(|m| m.name.clone())
            .unwrap_or_else(|| format!("#{index}"));
        let offset = next.map(|n| n.imm as u32).unwrap_or(0);
        match *pseudo {
            op::PSEUDO_MAP_FD | op::PSEUDO_MAP_IDX => {
                return format!("r{dst} = map[{map_name}] ll");
            }
            op::PSEUDO_MAP_VALUE | op::PSEUDO_MAP_IDX_VALUE => {
                return format!("r{dst} = map_value[{map_name}] + {offset:#x} ll");
            }
            _ => {}
        }
    }
    kflex_isa::disasm::format(insn)
}

fn slot_bytes(slot: &kflex_isa::Insn) -> String {
    slot.to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders one program; `Err` holds the text to print when the program does not decode.
fn render_program(p: &kflex_object::Program, maps: &[MapSpec]) -> Result<String, String> {
    let mut out = String::new();
    let kind = p.prog_type.map(|t| t.name()).unwrap_or("unknown");
    let _ = writeln!(
        out,
        "program {}: section {}, type {}{}, {} instructions",
        p.name,
        p.section,
        kind,
        if p.sleepable { " (sleepable)" } else { "" },
        p.insns.len()
    );
    let used = maps_referenced(&p.insns);
    if used.is_empty() {
        let _ = writeln!(out, "maps used: none");
    } else {
        let names: Vec<String> = used
            .iter()
            .map(|&i| {
                maps.get(i)
                    .map(describe_map)
                    .unwrap_or_else(|| format!("#{i} (missing)"))
            })
            .collect();
        let _ = writeln!(out, "maps used: {}", names.join(", "));
    }
    let program = match Program::decode(&p.insns) {
        Ok(prog) => prog,
        Err(e) => {
            let _ = writeln!(out, "cannot decode: {e}");
            return Err(out);
        }
    };
    let lines: HashMap<usize, &kflex_object::LineInfo> =
        p.line_info.iter().map(|l| (l.insn, l)).collect();
    let funcs: HashMap<usize, &str> = p
        .func_info
        .iter()
        .map(|f| (f.insn, f.name.as_str()))
        .collect();
    let mut last_line: Option<(&str, u32)> = None;
    let slots = program.slots();
    for (pc, slot) in slots.iter().enumerate() {
        if let Some(name) = funcs.get(&pc) {
            let _ = writeln!(out, "\n{pc:016x} <{name}>:");
        } else if pc == 0 {
            let _ = writeln!(out, "\n{pc:016x} <{}>:", p.name);
        }
        if let Some(li) = lines.get(&pc) {
            let key = (li.file.as_str(), li.line);
            if last_line != Some(key) && !li.source.trim().is_empty() {
                let _ = writeln!(out, "; {}", li.source.trim_end());
            }
            last_line = Some(key);
        }
        match program.get(pc) {
            Some(insn) => {
                let text = instruction_text(insn, slot, slots.get(pc + 1), maps);
                let _ = writeln!(out, "{pc:>8}:\t{}\t{text}", slot_bytes(slot));
            }
            None => {
                let _ = writeln!(out, "{pc:>8}:\t{}", slot_bytes(slot));
            }
        }
    }
    Ok(out)
}
