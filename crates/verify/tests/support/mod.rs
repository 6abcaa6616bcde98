//! Shared helpers for the core verifier tests: assembly with a few kflex-specific pseudo
//! mnemonics, map specs, and one-call verification.
#![allow(dead_code, clippy::result_large_err)]

use kflex_isa::asm::assemble;
use kflex_isa::decode::Program;
use kflex_isa::op;
use kflex_object::{BPF_F_RDONLY_PROG, GlobalKind, MapSpec, MapType, Object, ProgType};
use kflex_runtime::HelperRegistry;
use kflex_verify::{VerifiedProgram, VerifyError, VerifyInput, VerifyOptions, verify};

/// Assembles the bpf_conformance dialect plus:
/// * `map_fd %rN, IDX` — `lddw` of map IDX (`PSEUDO_MAP_FD`);
/// * `map_value %rN, IDX, OFF` — `lddw` of map IDX's value at OFF (`PSEUDO_MAP_VALUE`);
/// * `may_goto LABEL` — Linux `may_goto`;
/// * `cast_kern %rD, %rS` — `addr_space_cast(dst, src, 0, 1)` (heap pointer from as1 to as0).
///
/// Labels must stand on their own line.
pub fn program(src: &str) -> Program {
    let mut lines = Vec::new();
    // (slot, patch)
    let mut patches: Vec<(usize, Patch)> = Vec::new();
    let mut slot = 0usize;
    for raw in src.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.ends_with(':') {
            lines.push(line.to_string());
            continue;
        }
        let (m, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let args: Vec<&str> = rest.split(',').map(str::trim).collect();
        let text = match m {
            "map_fd" => {
                patches.push((slot, Patch::Src(op::PSEUDO_MAP_FD)));
                format!("lddw {}, {}", args[0], args[1])
            }
            "map_value" => {
                let idx: u64 = args[1].parse().unwrap();
                let off: u64 = args[2].parse().unwrap();
                patches.push((slot, Patch::Src(op::PSEUDO_MAP_VALUE)));
                format!("lddw {}, {:#x}", args[0], idx | off << 32)
            }
            "may_goto" => {
                patches.push((slot, Patch::MayGoto));
                format!("ja {}", args[0])
            }
            "cast_kern" => {
                patches.push((slot, Patch::Cast));
                format!("mov {}, {}", args[0], args[1])
            }
            _ => line.to_string(),
        };
        slot += if text.starts_with("lddw") { 2 } else { 1 };
        lines.push(text);
    }
    let mut slots = assemble(&lines.join("\n")).unwrap_or_else(|e| panic!("assemble: {e}\n{src}"));
    for (at, patch) in patches {
        let insn = &mut slots[at];
        match patch {
            Patch::Src(s) => insn.src = s,
            Patch::MayGoto => insn.opcode = op::JMP | op::JCOND,
            Patch::Cast => {
                insn.off = op::ADDR_SPACE_CAST;
                insn.imm = 1;
            }
        }
    }
    Program::decode(&slots).unwrap_or_else(|e| panic!("decode: {e}\n{src}"))
}

enum Patch {
    Src(u8),
    MayGoto,
    Cast,
}

/// Verifies `src` as a program of `prog_type` with `maps` and default options.
pub fn check(
    src: &str,
    prog_type: ProgType,
    maps: &[MapSpec],
) -> Result<VerifiedProgram, VerifyError> {
    check_with(src, prog_type, maps, &VerifyOptions::default())
}

/// Verifies `src` with the given options.
pub fn check_with(
    src: &str,
    prog_type: ProgType,
    maps: &[MapSpec],
    options: &VerifyOptions,
) -> Result<VerifiedProgram, VerifyError> {
    let helpers = helpers_for(prog_type);
    verify_decoded(&program(src), prog_type, maps, &helpers, options)
}

/// The helpers a `prog_type` program may call: Linux's defaults and the program type's own.
pub fn helpers_for(prog_type: ProgType) -> HelperRegistry {
    let mut helpers = HelperRegistry::linux_default();
    kflex_hooks::register_extra_helpers(&mut helpers, prog_type).unwrap();
    helpers
}

/// Verifies decoded `code` (without line or function info) with `helpers`.
pub fn verify_decoded(
    code: &Program,
    prog_type: ProgType,
    maps: &[MapSpec],
    helpers: &HelperRegistry,
    options: &VerifyOptions,
) -> Result<VerifiedProgram, VerifyError> {
    let input = VerifyInput {
        program: code,
        prog_type,
        maps,
        helpers,
        line_info: &[],
        func_info: &[],
    };
    verify(&input, options)
}

/// Verifies `code`, the decoded instructions of `prog`, one of `obj`'s programs: with the
/// object's maps, the program's line and function info and the helpers of its type.
pub fn verify_object_program(
    obj: &Object,
    prog: &kflex_object::Program,
    code: &Program,
    options: &VerifyOptions,
) -> Result<VerifiedProgram, VerifyError> {
    let prog_type = prog.prog_type.expect("program type known");
    let helpers = helpers_for(prog_type);
    let input = VerifyInput {
        program: code,
        prog_type,
        maps: &obj.maps,
        helpers: &helpers,
        line_info: &prog.line_info,
        func_info: &prog.func_info,
    };
    verify(&input, options)
}

/// Accepts or panics with the error.
pub fn accept(src: &str, prog_type: ProgType, maps: &[MapSpec]) -> VerifiedProgram {
    check(src, prog_type, maps).unwrap_or_else(|e| panic!("rejected:\n{e}\n{src}"))
}

/// Rejects (or panics) and returns the rule text; asserts it contains `needle`.
pub fn reject(src: &str, prog_type: ProgType, maps: &[MapSpec], needle: &str) -> VerifyError {
    match check(src, prog_type, maps) {
        Ok(_) => panic!("accepted, expected a rejection containing {needle:?}:\n{src}"),
        Err(e) => {
            assert!(
                e.rule.contains(needle),
                "rule {:?} lacks {needle:?}\n{e}",
                e.rule
            );
            e
        }
    }
}

/// Options for an unprivileged load.
pub fn unprivileged() -> VerifyOptions {
    VerifyOptions {
        privileged: false,
        ..VerifyOptions::default()
    }
}

fn map(name: &str, map_type: MapType, key: u32, value: u32, entries: u32) -> MapSpec {
    MapSpec::new(name, map_type, key, value, entries)
}

/// A hash map with 4-byte keys and `value`-byte values.
pub fn hash(value: u32) -> MapSpec {
    map("counts", MapType::Hash, 4, value, 16)
}

/// An array map with `value`-byte values.
pub fn array(value: u32) -> MapSpec {
    map("table", MapType::Array, 4, value, 4)
}

/// A `.rodata` map with these initial bytes.
pub fn rodata(bytes: &[u8]) -> MapSpec {
    let mut m =
        map(".rodata", MapType::Array, 4, bytes.len() as u32, 1).with_flags(BPF_F_RDONLY_PROG);
    m.global = Some(GlobalKind::Rodata);
    m.initial_value = Some(bytes.to_vec());
    m
}

/// A ring buffer.
pub fn ringbuf() -> MapSpec {
    map("events", MapType::Ringbuf, 0, 0, 4096)
}

/// The heap.
pub fn arena() -> MapSpec {
    map("heap", MapType::Arena, 0, 0, 16)
}
