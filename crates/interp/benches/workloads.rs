//! The benchmark workloads shared by the interpreter benchmark (`interp.rs`) and the JIT
//! benchmark (`crates/jit/benches/jit.rs`, which includes this file), so both measure the same
//! programs: an ALU-heavy loop, a stack-memory-heavy loop and a helper-call-heavy loop.

#![allow(dead_code)]

use std::sync::Arc;

use kflex_isa::decode::{
    AluOp, Instruction as I, JmpOp, Operand, Program, Size, Width, encode_all,
};
use kflex_runtime::helpers::{ArgKind, RetKind};
use kflex_runtime::{HelperDef, HelperRegistry, Signature};

/// Loop iterations of each workload.
pub const ITERATIONS: i32 = 100_000;

/// A 64-bit ALU instruction.
pub fn alu(op: AluOp, dst: u8, src: Operand) -> I {
    I::Alu {
        width: Width::W64,
        op,
        dst,
        src,
    }
}

/// `dst = imm` (64-bit).
pub fn mov(dst: u8, imm: i32) -> I {
    I::Mov {
        width: Width::W64,
        dst,
        src: Operand::Imm(imm),
    }
}

/// Wraps `body` in `for r9 = ITERATIONS; r9 != 0; r9--`.
pub fn looped(body: &[I]) -> Program {
    let mut insns = vec![mov(0, 0), mov(1, 1), mov(2, 3), mov(9, ITERATIONS)];
    insns.extend_from_slice(body);
    insns.push(alu(AluOp::Sub, 9, Operand::Imm(1)));
    insns.push(I::Jump {
        width: Width::W64,
        op: JmpOp::Ne,
        dst: 9,
        src: Operand::Imm(0),
        off: -(body.len() as i16) - 2,
    });
    insns.push(I::Exit);
    Program::decode(&encode_all(&insns)).expect("benchmark program decodes")
}

/// Arithmetic only.
pub fn alu_heavy() -> Program {
    looped(&[
        alu(AluOp::Add, 0, Operand::Reg(1)),
        alu(AluOp::Mul, 1, Operand::Imm(3)),
        alu(AluOp::Xor, 0, Operand::Reg(1)),
        alu(AluOp::Rsh, 1, Operand::Imm(1)),
        alu(AluOp::Or, 1, Operand::Imm(1)),
        alu(AluOp::Mod, 2, Operand::Imm(7)),
        alu(AluOp::Add, 2, Operand::Reg(0)),
        I::Alu {
            width: Width::W32,
            op: AluOp::Lsh,
            dst: 2,
            src: Operand::Imm(2),
        },
    ])
}

/// Stack loads and stores.
pub fn memory_heavy() -> Program {
    let st = |off, src| I::Store {
        size: Size::DW,
        dst: 10,
        off,
        src: Operand::Reg(src),
    };
    let ld = |dst, off| I::Load {
        size: Size::DW,
        dst,
        src: 10,
        off,
        sign_extend: false,
    };
    looped(&[
        st(-8, 0),
        st(-16, 9),
        ld(3, -8),
        ld(4, -16),
        alu(AluOp::Add, 3, Operand::Reg(4)),
        st(-256, 3),
        ld(0, -256),
        I::Store {
            size: Size::W,
            dst: 10,
            off: -512,
            src: Operand::Imm(7),
        },
    ])
}

/// A helper call per iteration.
pub fn helper_heavy() -> Program {
    looped(&[
        I::Mov {
            width: Width::W64,
            dst: 1,
            src: Operand::Reg(9),
        },
        I::Call { helper: 1 },
        alu(AluOp::Add, 6, Operand::Reg(0)),
    ])
}

/// The registry with helper 1 (returns its argument) that `helper_heavy` calls.
pub fn registry() -> HelperRegistry {
    let mut r = HelperRegistry::empty();
    r.register(HelperDef {
        id: 1,
        name: "bench_identity".into(),
        sig: Signature::new(&[ArgKind::Scalar], RetKind::Scalar),
        func: Arc::new(|c| Ok(c.args[0])),
    })
    .expect("helper registers");
    r
}
