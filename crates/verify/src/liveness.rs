//! Register liveness, for state pruning: a register is *live* at an instruction when some path
//! from there reads it before writing it. A register that is dead at a prune point cannot
//! influence anything that happens later on the path, so two states that differ only in dead
//! registers behave the same (Linux's `REG_LIVE_READ` marks serve the same purpose).
//!
//! The analysis is static and conservative (it may call a dead register live, never the
//! reverse): helper calls read r1-r5, BPF-to-BPF calls read r1-r5 and leave every register the
//! caller had (the callee's own registers are another frame), atomics read r0 as well as their
//! operands and are taken to write nothing, and `exit` reads r0.

use kflex_isa::decode::{Instruction, Operand, Program};

/// A set of registers r0..r10, bit `i` for register `i`.
pub type RegSet = u16;

/// Every register r0..r10.
pub const ALL_REGS: RegSet = (1 << 11) - 1;

/// r0..r5: the registers a return from a BPF-to-BPF call overwrites in the caller (r0 with the
/// return value, r1-r5 scratched).
pub const CALL_CLOBBERED: RegSet = 0b11_1111;

/// Registers live on entry to each instruction slot.
#[derive(Clone, Debug)]
pub struct Liveness {
    live_in: Vec<RegSet>,
}

fn bit(r: u8) -> RegSet {
    1u16.checked_shl(u32::from(r)).unwrap_or(0) & ALL_REGS
}

fn operand(src: Operand) -> RegSet {
    match src {
        Operand::Reg(r) => bit(r),
        Operand::Imm(_) => 0,
    }
}

/// (registers read, registers written) by one instruction.
fn uses_defs(insn: &Instruction) -> (RegSet, RegSet) {
    const ARGS: RegSet = 0b11_1110;
    match *insn {
        Instruction::Alu { dst, src, .. } => (bit(dst) | operand(src), bit(dst)),
        Instruction::Neg { dst, .. } | Instruction::Endian { dst, .. } => (bit(dst), bit(dst)),
        Instruction::Mov { dst, src, .. } => (operand(src), bit(dst)),
        Instruction::MovSx { dst, src, .. }
        | Instruction::AddrSpaceCast { dst, src, .. }
        | Instruction::Load { dst, src, .. }
        | Instruction::LoadAcquire { dst, src, .. } => (bit(src), bit(dst)),
        Instruction::LoadImm64 { dst, .. } => (0, bit(dst)),
        Instruction::Store { dst, src, .. } => (bit(dst) | operand(src), 0),
        Instruction::StoreRelease { dst, src, .. } => (bit(dst) | bit(src), 0),
        Instruction::Atomic { dst, src, .. } => (bit(dst) | bit(src) | bit(0), 0),
        Instruction::Jump { dst, src, .. } => (bit(dst) | operand(src), 0),
        Instruction::Ja { .. } | Instruction::MayGoto { .. } => (0, 0),
        Instruction::Call { .. } => (ARGS, CALL_CLOBBERED),
        Instruction::CallLocal { .. } => (ARGS, 0),
        // Rejected by the verifier; everything is taken as read.
        Instruction::CallKfunc { .. } | Instruction::Callx { .. } => (ALL_REGS, 0),
        Instruction::Exit => (bit(0), 0),
    }
}

/// The instructions control may reach right after `insn` at `pc` in the same function.
pub(crate) fn successors(pc: usize, insn: &Instruction) -> [Option<usize>; 2] {
    let next = Some(pc + insn.slot_count());
    match insn {
        Instruction::Exit | Instruction::CallKfunc { .. } | Instruction::Callx { .. } => {
            [None, None]
        }
        Instruction::Ja { .. } => [insn.target(pc), None],
        Instruction::Jump { .. } | Instruction::MayGoto { .. } => [next, insn.target(pc)],
        // A call returns to the next instruction (the callee is its own function).
        _ => [next, None],
    }
}

impl Liveness {
    /// Computes the registers live at every instruction of `program` (a backward fixpoint).
    pub fn of(program: &Program) -> Self {
        let len = program.len();
        let insns: Vec<(usize, Instruction)> = program.iter().map(|(pc, i)| (pc, *i)).collect();
        let mut live_in = vec![0 as RegSet; len];
        let mut changed = true;
        while changed {
            changed = false;
            for (pc, insn) in insns.iter().rev() {
                let out = successors(*pc, insn)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| live_in.get(s))
                    .fold(0, |acc, l| acc | l);
                let (uses, defs) = uses_defs(insn);
                let new = uses | (out & !defs);
                if let Some(slot) = live_in.get_mut(*pc)
                    && *slot != new
                {
                    *slot = new;
                    changed = true;
                }
            }
        }
        Liveness { live_in }
    }

    /// Registers live on entry to `pc` (every register for a pc outside the program).
    pub fn at(&self, pc: usize) -> RegSet {
        self.live_in.get(pc).copied().unwrap_or(ALL_REGS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::program;

    #[test]
    fn a_register_is_live_until_its_last_read() {
        // 0: r1 = 1; 1: r2 = r1; 2: r1 = 5; 3: r0 = r2; 4: exit
        let p = program("mov %r1, 1\nmov %r2, %r1\nmov %r1, 5\nmov %r0, %r2\nexit");
        let l = Liveness::of(&p);
        assert_eq!(l.at(1) & bit(1), bit(1), "r1 read at 1");
        assert_eq!(l.at(2) & bit(1), 0, "r1 overwritten at 2 without a read");
        assert_eq!(l.at(3), bit(2));
        assert_eq!(l.at(4), bit(0));
    }

    #[test]
    fn branches_join_and_loops_carry_liveness_back() {
        // r6 is read after the loop; r7 only on one branch.
        let p = program(
            "mov %r6, 1\nmov %r7, 2\nloop:\nadd %r6, 1\njlt %r6, 10, loop\njeq %r6, 3, out\n\
             mov %r0, %r7\nexit\nout:\nmov %r0, 0\nexit",
        );
        let l = Liveness::of(&p);
        assert_eq!(l.at(2) & (bit(6) | bit(7)), bit(6) | bit(7));
        assert_eq!(
            l.at(7) & bit(7),
            0,
            "r7 dead on the branch that does not read it"
        );
    }

    #[test]
    fn calls_read_their_arguments_and_helpers_clobber_them() {
        let p = program("mov %r1, 1\nmov %r6, 2\ncall 7\nmov %r0, %r6\nexit");
        let l = Liveness::of(&p);
        assert_eq!(l.at(2), ARGS_FOR_TEST | bit(6));
        assert_eq!(l.at(3), bit(6));
        let p = program("mov %r6, 2\ncall local f\nadd %r0, %r6\nexit\nf:\nmov %r0, %r1\nexit");
        let l = Liveness::of(&p);
        assert_eq!(
            l.at(1) & bit(6),
            bit(6),
            "callee-saved r6 live across the call"
        );
        assert_eq!(l.at(4), bit(1), "the callee reads its argument");
    }

    const ARGS_FOR_TEST: RegSet = 0b11_1110;
}
