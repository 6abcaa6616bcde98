//! Fuzzes the bpf_conformance assembler: arbitrary text must never panic, and whatever it accepts
//! must be safe to hand to `Program::decode`.
#![no_main]

use kflex_isa::asm::assemble;
use kflex_isa::decode::Program;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(slots) = assemble(text) {
        let _ = Program::decode(&slots);
    }
});
