//! Fuzzes `Program::decode`: arbitrary bytes must never panic; accepted programs must re-encode to
//! the same slots and disassemble without panicking.
#![no_main]

use kflex_isa::decode::{Instruction, Program};
use kflex_isa::disasm::listing;
use kflex_isa::insn::{Insn, op};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let usable = data.len() - data.len() % Insn::SIZE;
    let Some(slots) = Insn::slice_from_bytes(&data[..usable]) else {
        return;
    };
    let Ok(program) = Program::decode(&slots) else {
        return;
    };
    for (pc, insn) in program.iter() {
        let encoded = insn.encode();
        let again = Instruction::decode(encoded[0], encoded.get(1).copied());
        assert_eq!(again.as_ref(), Ok(insn), "re-decode at {pc}");
        let original = &program.slots()[pc..pc + insn.slot_count()];
        // `gotol` with a small offset re-encodes as the 16-bit `ja`; everything else is exact.
        let is_gotol = original[0].opcode == op::JMP32 | op::JA;
        if !is_gotol {
            assert_eq!(&encoded[..], original, "encode at {pc}");
        }
    }
    let text = listing(&program);
    assert_eq!(text.lines().count(), program.iter().count());
});
