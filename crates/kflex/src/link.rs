//! Loading one program: verify it (on the unlinked instructions, so the verifier knows which map
//! each `lddw` names), resolve the object's map references into plain 64-bit immediates, then
//! decode. Errors name the program, the instruction, its text and the C source line.

use std::borrow::Cow;

use kflex_isa::Insn;
use kflex_isa::decode::Program;
use kflex_isa::op;
use kflex_object::{MapSpec, ProgType};
use kflex_runtime::helpers::{HelperDef, HelperRegistry};
use kflex_runtime::maps::MapTable;
use kflex_verify::{VerifiedProgram, VerifyError, VerifyInput, VerifyOptions};

use crate::error::{Rejection, Result};

/// A program ready to run: map references resolved against one map table, decoded.
#[derive(Debug)]
pub struct LoadedProgram {
    /// Program name (the C function name; `main` for bare bytecode).
    pub name: String,
    /// ELF section it came from (empty for bare bytecode).
    pub section: String,
    /// Program type, if the section (or the caller) names one kflex supports.
    pub prog_type: Option<ProgType>,
    /// Whether the program may sleep.
    pub sleepable: bool,
    /// The decoded, linked code.
    pub code: Program,
    /// Indices (into the extension's maps) of every map the program references, sorted.
    pub maps_used: Vec<usize>,
    /// The program as the object declared it (original instructions, line and function info).
    pub meta: Option<kflex_object::Program>,
    /// What the verifier proved about the program (guards, termination points, cancellation
    /// table, statistics); `None` when it was loaded without verification.
    pub verified: Option<VerifiedProgram>,
    /// The program compiled by the JIT (verified programs on x86-64 Linux), or why it could not
    /// be; `None` when it was not compiled (unverified, or no JIT on this host): it then runs on
    /// the interpreter whatever engine is asked for.
    pub jit: Option<std::result::Result<kflex_jit::JitProgram, kflex_jit::JitError>>,
}

impl LoadedProgram {
    /// Number of instruction slots.
    pub fn len(&self) -> usize {
        self.code.len()
    }

    /// True if the program has no instructions (never the case for a loaded program).
    pub fn is_empty(&self) -> bool {
        self.code.len() == 0
    }

    /// The C source line for instruction `pc`, as `file:line: text`, when line info has one.
    pub fn source_line(&self, pc: usize) -> Option<String> {
        let meta = self.meta.as_ref()?;
        let li = meta.line_at(pc)?;
        Some(format!("{}:{}: {}", li.file, li.line, li.source.trim()))
    }
}

/// The text of a raw slot that may not decode: its fields.
pub(crate) fn raw_slot_text(insn: &Insn) -> String {
    format!(
        "opcode {:#04x} dst r{} src r{} off {} imm {}",
        insn.opcode, insn.dst, insn.src, insn.off, insn.imm
    )
}

/// Loads an object program: links map references against `maps`, then decodes.
pub fn load_object_program(
    meta: &kflex_object::Program,
    maps: &MapTable,
) -> Result<LoadedProgram, Rejection> {
    let source_of = |pc: usize| {
        meta.line_at(pc)
            .map(|li| format!("{}:{}: {}", li.file, li.line, li.source.trim()))
    };
    let (slots, maps_used) = link(&meta.name, &meta.insns, Some(maps)).map_err(|mut r| {
        r.source = r.pc.and_then(source_of);
        r
    })?;
    let code = decode(&meta.name, &slots).map_err(|mut r| {
        r.source = r.pc.and_then(source_of);
        r
    })?;
    Ok(LoadedProgram {
        name: meta.name.clone(),
        section: meta.section.clone(),
        prog_type: meta.prog_type,
        sleepable: meta.sleepable,
        code,
        maps_used,
        meta: Some(meta.clone()),
        verified: None,
        jit: None,
    })
}

/// Loads bare bytecode (no maps, no line info).
pub fn load_raw_program(
    name: &str,
    insns: &[Insn],
    prog_type: Option<ProgType>,
) -> Result<LoadedProgram, Rejection> {
    let (slots, maps_used) = link(name, insns, None)?;
    let code = decode(name, &slots)?;
    Ok(LoadedProgram {
        name: name.to_string(),
        section: String::new(),
        prog_type,
        sleepable: prog_type == Some(ProgType::Syscall),
        code,
        maps_used,
        meta: None,
        verified: None,
        jit: None,
    })
}

/// The helper registry a program of `prog_type` is verified and runs with: the Linux helpers, the
/// program type's helpers, then the host's helpers. Without host helpers this borrows the
/// per-process registry of the type (built once); with them it is a new registry.
pub fn helper_registry(
    prog_type: ProgType,
    host: &[HelperDef],
) -> Result<Cow<'static, HelperRegistry>> {
    let base = crate::test_run::base_registry(prog_type)?;
    if host.is_empty() {
        return Ok(Cow::Borrowed(base));
    }
    let mut registry = base.clone();
    for h in host {
        registry.register(h.clone())?;
    }
    Ok(Cow::Owned(registry))
}

/// What the verifier needs besides the instructions: the object's maps (by the index `lddw`
/// names), the helpers, and the options.
#[derive(Clone, Copy, Debug)]
pub struct VerifyContext<'a> {
    /// Map specifications in index order (empty for bare bytecode).
    pub maps: &'a [MapSpec],
    /// Every helper the program may call.
    pub helpers: &'a HelperRegistry,
    /// Budget, log level, guard zone, privilege.
    pub options: &'a VerifyOptions,
}

/// Verifies one program *before* linking: the verifier sees the unlinked instructions, so it knows
/// which map each `lddw` names. Line and function info come from `meta` when the program has it.
/// A program that does not decode is rejected with the decoder's reason.
pub fn verify_program(
    name: &str,
    insns: &[Insn],
    prog_type: ProgType,
    meta: Option<&kflex_object::Program>,
    cx: &VerifyContext<'_>,
) -> Result<VerifiedProgram, Rejection> {
    let source_of = |pc: usize| {
        meta?
            .line_at(pc)
            .map(|li| format!("{}:{}: {}", li.file, li.line, li.source.trim()))
    };
    let code = decode(name, insns).map_err(|mut r| {
        r.source = r.pc.and_then(source_of);
        r
    })?;
    let input = VerifyInput {
        program: &code,
        prog_type,
        maps: cx.maps,
        helpers: cx.helpers,
        line_info: meta.map(|m| m.line_info.as_slice()).unwrap_or(&[]),
        func_info: meta.map(|m| m.func_info.as_slice()).unwrap_or(&[]),
    };
    kflex_verify::verify(&input, cx.options).map_err(|e| verifier_rejection(name, &e))
}

/// A verifier error as a load-time [`Rejection`]: the rule broken, then the hint (the one the
/// error carries, or one inferred from the rule) on its own line.
pub fn verifier_rejection(name: &str, e: &VerifyError) -> Rejection {
    let mut reason = format!("verifier: {}", e.rule);
    if let Some(hint) = e.effective_hint() {
        reason.push_str("\n  hint: ");
        reason.push_str(&hint);
    }
    Rejection {
        program: name.to_string(),
        pc: e.pc,
        insn: e.disasm.clone(),
        source: e.source.clone(),
        reason,
    }
}

fn decode(name: &str, slots: &[Insn]) -> Result<Program, Rejection> {
    Program::decode(slots).map_err(|e| Rejection {
        program: name.to_string(),
        pc: Some(e.pc),
        insn: slots.get(e.pc).map(raw_slot_text),
        source: None,
        reason: e.reason.clone(),
    })
}

/// Rewrites every `lddw` with a map pseudo source into a plain immediate load. `PSEUDO_FUNC` is left
/// for the interpreter. A `lddw` without a second slot is left for the decoder to report.
fn link(
    name: &str,
    insns: &[Insn],
    maps: Option<&MapTable>,
) -> Result<(Vec<Insn>, Vec<usize>), Rejection> {
    let mut slots = insns.to_vec();
    let mut used = Vec::new();
    let mut pc = 0usize;
    while pc < slots.len() {
        let insn = slots[pc];
        if !insn.is_lddw() || pc + 1 >= slots.len() {
            pc += 1;
            continue;
        }
        let reject = |reason: String| Rejection {
            program: name.to_string(),
            pc: Some(pc),
            insn: Some(raw_slot_text(&insn)),
            source: None,
            reason,
        };
        let index = insn.imm as u32 as usize;
        let offset = slots[pc + 1].imm as u32;
        let value = match insn.src {
            op::PSEUDO_MAP_FD | op::PSEUDO_MAP_IDX => {
                let table = maps.ok_or_else(|| {
                    reject("map reference in a program that has no maps".to_string())
                })?;
                if index >= table.len() {
                    return Err(reject(format!(
                        "reference to map #{index}, but the object has {} maps",
                        table.len()
                    )));
                }
                used.push(index);
                Some(table.handle(index))
            }
            op::PSEUDO_MAP_VALUE | op::PSEUDO_MAP_IDX_VALUE => {
                let table = maps.ok_or_else(|| {
                    reject("map value reference in a program that has no maps".to_string())
                })?;
                if index >= table.len() {
                    return Err(reject(format!(
                        "reference to a value of map #{index}, but the object has {} maps",
                        table.len()
                    )));
                }
                let addr = table
                    .value_address(index, u64::from(offset))
                    .ok_or_else(|| {
                        reject(format!(
                            "offset {offset} is outside the value of map #{index} ({})",
                            table.spec(index).map(|s| s.name.as_str()).unwrap_or("?")
                        ))
                    })?;
                used.push(index);
                Some(addr)
            }
            op::PSEUDO_BTF_ID => {
                return Err(reject(
                    "kernel variables (lddw src=3, ksym) are not supported".to_string(),
                ));
            }
            _ => None,
        };
        if let Some(v) = value {
            slots[pc].src = 0;
            slots[pc].imm = v as u32 as i32;
            slots[pc + 1].imm = (v >> 32) as u32 as i32;
        }
        pc += 2;
    }
    used.sort_unstable();
    used.dedup();
    Ok((slots, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lddw(dst: u8, src: u8, imm: i32, imm2: i32) -> [Insn; 2] {
        [
            Insn::new(op::LD | op::IMM | op::DW, dst, src, 0, imm),
            Insn::new(0, 0, 0, 0, imm2),
        ]
    }

    const EXIT: Insn = Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0);

    #[test]
    fn raw_program_without_maps_loads() {
        let [a, b] = lddw(0, 0, 0x5566_7788, 0x1122_3344);
        let p = load_raw_program("main", &[a, b, EXIT], None).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.maps_used.is_empty());
    }

    #[test]
    fn map_reference_without_maps_is_rejected_with_location() {
        let mov = Insn::new(op::ALU64 | op::MOV | op::K, 0, 0, 0, 0);
        let [a, b] = lddw(1, op::PSEUDO_MAP_FD, 0, 0);
        let err = load_raw_program("p", &[mov, a, b, EXIT], None).unwrap_err();
        assert_eq!(err.pc, Some(1));
        assert!(err.reason.contains("no maps"), "{}", err.reason);
        assert!(
            err.to_string()
                .contains("program p rejected at instruction 1")
        );
    }

    fn verify_raw(insns: &[Insn], prog_type: ProgType) -> Result<VerifiedProgram, Rejection> {
        let helpers = helper_registry(prog_type, &[]).unwrap();
        let options = VerifyOptions::default();
        let cx = VerifyContext {
            maps: &[],
            helpers: &helpers,
            options: &options,
        };
        verify_program("p", insns, prog_type, None, &cx)
    }

    #[test]
    fn verifier_rejections_carry_the_rule_instruction_and_hint() {
        // r0 = r2: r2 was never written.
        let mov = Insn::new(op::ALU64 | op::MOV | op::X, 0, 2, 0, 0);
        let r = verify_raw(&[mov, EXIT], ProgType::Xdp).unwrap_err();
        assert_eq!(r.program, "p");
        assert_eq!(r.pc, Some(0));
        assert_eq!(r.insn.as_deref(), Some("r0 = r2"));
        assert!(r.source.is_none(), "no line info");
        let (rule, hint) = r.reason.split_once("\n  hint: ").expect("a hint line");
        assert!(
            rule.starts_with("verifier: ") && rule.contains("R2"),
            "{rule}"
        );
        assert!(!hint.is_empty());
        assert!(
            r.to_string()
                .starts_with("program p rejected at instruction 0 (r0 = r2): verifier: ")
        );
    }

    #[test]
    fn accepted_programs_come_with_their_facts() {
        let mov = Insn::new(op::ALU64 | op::MOV | op::K, 0, 0, 0, 2);
        let v = verify_raw(&[mov, EXIT], ProgType::Xdp).unwrap();
        assert_eq!(v.insns.len(), 2);
        assert!(v.insns.iter().all(|f| f.reachable));
        assert_eq!(v.stats.insns_processed, 2);
        // Undecodable bytecode is refused before the verifier runs, at the bad slot.
        let r = verify_raw(&[mov, Insn::new(0xff, 0, 0, 0, 0), EXIT], ProgType::Xdp).unwrap_err();
        assert_eq!(r.pc, Some(1));
        assert!(!r.reason.starts_with("verifier: "), "{r}");
    }

    #[test]
    fn registries_are_shared_without_host_helpers() {
        assert!(matches!(
            helper_registry(ProgType::Xdp, &[]).unwrap(),
            Cow::Borrowed(_)
        ));
        let host = HelperDef {
            id: 0x1234,
            name: "host".into(),
            sig: kflex_runtime::helpers::Signature::new(
                &[],
                kflex_runtime::helpers::RetKind::Scalar,
            ),
            func: std::sync::Arc::new(|_| Ok(0)),
        };
        let own = helper_registry(ProgType::Xdp, std::slice::from_ref(&host)).unwrap();
        assert!(matches!(own, Cow::Owned(_)) && own.get(0x1234).is_some());
        // A host helper may not take a built-in number.
        let clash = HelperDef { id: 1, ..host };
        assert!(helper_registry(ProgType::Xdp, &[clash]).is_err());
    }

    #[test]
    fn decode_errors_name_the_instruction() {
        let bad = Insn::new(0xff, 0, 0, 0, 0);
        let err = load_raw_program("p", &[bad, EXIT], None).unwrap_err();
        assert_eq!(err.pc, Some(0));
        assert!(err.insn.unwrap().contains("0xff"));
    }
}
