//! Code addresses: the value `lddw rX, <subprogram>` (`PSEUDO_FUNC`) loads and `callx` accepts.
//!
//! The interpreter has no machine code, so a subprogram's address is a tagged value:
//! [`CODE_ADDRESS_BASE`] plus 8 times its slot index. The base lies in the upper (kernel) half of
//! the 64-bit address space, where no user-space memory — and therefore no region of a memory map
//! — can ever be, so a code address is never accessible memory, and it is far above every helper
//! number, so `callx` can tell the two apart.

use kflex_isa::decode::Program;

/// Base of the interpreter's code addresses.
pub const CODE_ADDRESS_BASE: u64 = 0xffff_c0de_0000_0000;

/// Mask selecting the tag bits of a code address.
const TAG_MASK: u64 = 0xffff_ffff_0000_0000;

/// The code address of the instruction at slot `pc`.
pub fn encode(pc: usize) -> u64 {
    CODE_ADDRESS_BASE | ((pc as u64 & 0x1fff_ffff) << 3)
}

/// True if `value` carries the code-address tag (whether or not it names a valid instruction).
pub fn is_code(value: u64) -> bool {
    value & TAG_MASK == CODE_ADDRESS_BASE
}

/// The slot a code address names, if it is a code address of an instruction of `program`.
pub fn decode(value: u64, program: &Program) -> Option<usize> {
    if !is_code(value) || value & 7 != 0 {
        return None;
    }
    let pc = usize::try_from((value & !TAG_MASK) >> 3).ok()?;
    program.get(pc).map(|_| pc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_isa::decode::{Instruction, encode_all};

    fn program() -> Program {
        let insns = [
            Instruction::LoadImm64 {
                dst: 0,
                pseudo: 0,
                imm: 1,
            },
            Instruction::Exit,
        ];
        Program::decode(&encode_all(&insns)).unwrap()
    }

    #[test]
    fn round_trip_and_rejections() {
        let p = program();
        assert_eq!(decode(encode(0), &p), Some(0));
        assert_eq!(decode(encode(2), &p), Some(2));
        assert_eq!(decode(encode(1), &p), None, "second slot of lddw");
        assert_eq!(decode(encode(3), &p), None, "past the end");
        assert_eq!(decode(encode(2) + 1, &p), None, "not slot aligned");
        assert_eq!(decode(5, &p), None, "helper numbers are not code");
        assert!(is_code(encode(7)));
        assert!(!is_code(u64::from(u32::MAX)));
        // Far above every user-space address (x86-64 and aarch64 user space ends below 2^48).
        assert!(encode(0) > 1 << 48);
    }
}
