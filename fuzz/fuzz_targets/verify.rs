//! Fuzzes the verifier and checks what it accepts: arbitrary bytes become either raw instructions
//! or a program-generator seed, are verified for one program type with a small map set, and every
//! accepted program is test-run in the interpreter (with a small packet, or a zeroed `syscall`
//! context) under an instruction budget.
//!
//! Bugs reported by panicking: the verifier panics; it accepts a program the loader then refuses;
//! or an accepted program faults at run time anywhere except at a heap access (heap accesses are
//! allowed to fault: their guards are added by later stages) or by running out of instructions.
#![no_main]

use std::sync::OnceLock;

use kflex::{Extension, ExtensionOptions, Limits, TestRunOptions};
use kflex_isa::Insn;
use kflex_isa::decode::Program;
use kflex_isa::disasm::listing;
use kflex_object::{MapSpec, Object, ProgType};
use kflex_runtime::HelperRegistry;
use kflex_verify::progen::{self, Options, PROG_TYPES};
use kflex_verify::{VerifyInput, VerifyOptions, verify};
use libfuzzer_sys::fuzz_target;

/// Longest raw program tried (longer inputs only slow the fuzzer down).
const MAX_SLOTS: usize = 4096;
/// Instruction budget of one test run.
const MAX_INSTRUCTIONS: u64 = 200_000;

fn helpers(prog_type: ProgType) -> &'static HelperRegistry {
    static REGISTRIES: [OnceLock<HelperRegistry>; 4] = [const { OnceLock::new() }; 4];
    let i = PROG_TYPES.iter().position(|&t| t == prog_type).unwrap_or(0);
    REGISTRIES[i].get_or_init(|| {
        let mut registry = HelperRegistry::linux_default();
        kflex_hooks::register_extra_helpers(&mut registry, prog_type).expect("hook helpers");
        registry
    })
}

/// Raw slots from the bytes, or a generated program from a seed, and its maps.
fn program_from(mode: u8, rest: &[u8], prog_type: ProgType) -> Option<(Vec<Insn>, Vec<MapSpec>)> {
    if mode & 0x04 == 0 {
        let usable = rest.len() - rest.len() % Insn::SIZE;
        let slots = Insn::slice_from_bytes(&rest[..usable])?;
        if slots.is_empty() || slots.len() > MAX_SLOTS {
            return None;
        }
        return Some((slots, progen::maps(mode & 0x08 != 0)));
    }
    let mut seed = [0u8; 8];
    for (dst, src) in seed.iter_mut().zip(rest) {
        *dst = *src;
    }
    let mut opts = Options::new(prog_type);
    opts.fragments = 1 + usize::from(rest.get(8).copied().unwrap_or(12) % 40);
    opts.mutation_percent = u32::from(rest.get(9).copied().unwrap_or(30) % 101);
    opts.unbounded_loops = mode & 0x08 != 0;
    opts.heap = mode & 0x10 != 0;
    let g = progen::generate_with(u64::from_le_bytes(seed), &opts);
    Some((g.insns, g.maps))
}

fn run_options(prog_type: ProgType) -> TestRunOptions {
    match prog_type {
        ProgType::Syscall => TestRunOptions::context(vec![0; 64]),
        _ => TestRunOptions::packet(kflex::packet::udp4_frame(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            4242,
            53,
            b"fuzz",
        )),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let prog_type = PROG_TYPES[usize::from(mode & 0x03)];
    let Some((insns, maps)) = program_from(mode, rest, prog_type) else {
        return;
    };
    let Ok(program) = Program::decode(&insns) else {
        return;
    };
    let input = VerifyInput {
        program: &program,
        prog_type,
        maps: &maps,
        helpers: helpers(prog_type),
        line_info: &[],
        func_info: &[],
    };
    let options = VerifyOptions {
        max_processed: 200_000,
        ..VerifyOptions::default()
    };
    let verified = match verify(&input, &options) {
        Ok(v) => v,
        Err(e) => {
            // The error must render (Display walks the state and the log).
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(verified.insns.len(), program.len(), "one fact per slot");

    let object = Object {
        name: "fuzz".into(),
        license: Some("GPL".into()),
        programs: vec![kflex_object::Program {
            name: "prog".into(),
            section: prog_type.name().into(),
            prog_type: Some(prog_type),
            sleepable: prog_type == ProgType::Syscall,
            insns: insns.clone(),
            line_info: Vec::new(),
            func_info: Vec::new(),
        }],
        maps,
        btf: None,
    };
    let ext_options = ExtensionOptions {
        cpus: Some(2),
        limits: Some(Limits {
            max_instructions: MAX_INSTRUCTIONS,
            max_call_depth: 8,
        }),
        ..ExtensionOptions::default()
    };
    let ext = Extension::from_object(object, ext_options).expect("maps of the fuzz map set create");
    match ext.test_run("prog", &run_options(prog_type)) {
        Ok(_) => {}
        Err(kflex::Error::Fault(fault)) => {
            if fault.message.contains("instruction limit") {
                return;
            }
            if verified
                .insns
                .get(fault.pc)
                .is_some_and(|f| f.heap.is_some())
            {
                return;
            }
            panic!(
                "verified {} program faulted: {fault}\n{}",
                prog_type.name(),
                listing(&program)
            );
        }
        Err(other) => panic!(
            "verified {} program could not run: {other}\n{}",
            prog_type.name(),
            listing(&program)
        ),
    }
});
