//! Prints, for one program of an ELF object, every heap access with the verifier's decision
//! (guard or elided), the instruction and its source line, and the exploration statistics.
//!
//! `cargo run -p kflex-verify --example heap_facts -- OBJECT PROGRAM [--guards-only]`

use std::process::ExitCode;

use kflex_isa::decode::Program;
use kflex_isa::disasm;
use kflex_object::Object;
use kflex_runtime::HelperRegistry;
use kflex_verify::{HeapAccess, VerifyInput, VerifyOptions, verify};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, name, rest @ ..] = args.as_slice() else {
        eprintln!("usage: heap_facts OBJECT PROGRAM [--guards-only]");
        return ExitCode::from(2);
    };
    let guards_only = rest.iter().any(|a| a == "--guards-only");
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let object = match Object::parse(path, &bytes) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(prog) = object.program(name) else {
        eprintln!("{path}: no program {name}");
        return ExitCode::from(2);
    };
    let Some(prog_type) = prog.prog_type else {
        eprintln!("{name}: no program type");
        return ExitCode::from(2);
    };
    let code = match Program::decode(&prog.insns) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {}", e.reason);
            return ExitCode::from(2);
        }
    };
    let mut helpers = HelperRegistry::linux_default();
    if let Err(e) = kflex_hooks::register_extra_helpers(&mut helpers, prog_type) {
        eprintln!("helpers: {e}");
        return ExitCode::from(2);
    }
    let input = VerifyInput {
        program: &code,
        prog_type,
        maps: &object.maps,
        helpers: &helpers,
        line_info: &prog.line_info,
        func_info: &prog.func_info,
    };
    let verified = match verify(&input, &VerifyOptions::default()) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("rejected at {:?}: {}", e.pc, e.rule);
            return ExitCode::from(1);
        }
    };
    let line_of = |pc: usize| {
        let n = prog.line_info.partition_point(|l| l.insn <= pc);
        n.checked_sub(1)
            .and_then(|i| prog.line_info.get(i))
            .map(|l| format!("{}: {}", l.line, l.source.trim()))
            .unwrap_or_default()
    };
    let (mut guarded, mut elided) = (0, 0);
    for (pc, facts) in verified.insns.iter().enumerate() {
        let Some(h) = facts.heap else { continue };
        let tag = match h {
            HeapAccess::Guard { .. } => {
                guarded += 1;
                "GUARD ".to_string()
            }
            HeapAccess::Elided { max_offset, .. } => {
                elided += 1;
                if guards_only {
                    continue;
                }
                format!("elided({max_offset})")
            }
        };
        let text = code.get(pc).map(disasm::format).unwrap_or_default();
        println!("{pc:5} {tag:12} {text:40} ; {}", line_of(pc));
    }
    println!("{guarded} guarded, {elided} elided; {:?}", verified.stats);
    ExitCode::SUCCESS
}
