//! What each BPF function's native frame must save, so that a BPF-to-BPF call costs as little
//! as the callee needs.
//!
//! BPF r6..r9 (x86 rbx, r13, r14, r15) are callee-saved across BPF-to-BPF calls. A function
//! saves only those its own body can change: registers it writes, the base registers an SFI
//! guard masks in place (in the modes that have guard instructions), and the source register of
//! an atomic (fetch forms write it back). Helper and context calls preserve them (System V
//! callee-saved registers), and calls to other BPF functions preserve them by the same rule.
//!
//! BPF r10 (rbp) is read-only in every program the verifier accepts, so frames are relative:
//! a prologue moves rbp one frame stride down and its epilogue moves it back, instead of
//! computing `frame_base - depth * stride` from the state block. A program that writes r10
//! anyway keeps the absolute computation (`relative_rbp` is false).
//!
//! Per-function save sets need every `exit` to leave through the epilogue of its own function.
//! When a jump crosses from one function's slots into another's, or a function can run off its
//! end into the next one (only unverified programs do either), every function saves all four
//! registers, so any epilogue matches any prologue, as with a single shared epilogue.

use std::collections::BTreeSet;

use kflex_isa::decode::{Instruction, Program};

use super::x86;

/// x86 registers of BPF r6..r9, in push order.
pub(super) const CALLEE_SAVED: [u8; 4] = [x86::RBX, x86::R13, x86::R14, x86::R15];

/// The frame plan of one compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FramePlan {
    /// `(entry slot, x86 registers its prologue saves, in push order)`, ascending by slot.
    pub functions: Vec<(usize, Vec<u8>)>,
    /// Frames are found by moving rbp (no instruction writes r10).
    pub relative_rbp: bool,
    /// Per function (same order): it calls no BPF function, so nothing reads the depth counter
    /// while it runs and its prologue and epilogue need not move it (they still record the
    /// deepest frame). Only set when every function is self-contained.
    pub leaf: Vec<bool>,
}

impl FramePlan {
    /// The plan for `program` with functions starting at `entries`; `guards_write_bases` says
    /// whether SFI guard instructions may mask base registers in place.
    pub fn new(program: &Program, entries: &BTreeSet<usize>, guards_write_bases: bool) -> Self {
        let starts: Vec<usize> = entries.iter().copied().collect();
        let bounds: Vec<(usize, usize)> = starts
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(program.len())))
            .collect();
        let separable = bounds
            .iter()
            .all(|&(start, end)| self_contained(program, start, end));
        let mut relative_rbp = true;
        let functions = bounds
            .iter()
            .map(|&(start, end)| {
                let written = written(program, start, end, guards_write_bases);
                relative_rbp &= !written.contains(&10);
                let saved = CALLEE_SAVED
                    .iter()
                    .zip(6u8..)
                    .filter(|&(_, r)| !separable || written.contains(&r))
                    .map(|(&x, _)| x)
                    .collect();
                (start, saved)
            })
            .collect();
        let leaf = bounds
            .iter()
            .map(|&(start, end)| separable && !calls(program, start, end))
            .collect();
        FramePlan {
            functions,
            relative_rbp,
            leaf,
        }
    }

    /// Index of the function that slot `pc` belongs to.
    pub fn function_of(&self, pc: usize) -> usize {
        self.functions
            .partition_point(|&(start, _)| start <= pc)
            .saturating_sub(1)
    }
}

/// True if no jump in `start..end` leaves the range and its last instruction cannot fall
/// through past `end`.
fn self_contained(program: &Program, start: usize, end: usize) -> bool {
    let mut last = None;
    for pc in start..end {
        let Some(insn) = program.get(pc) else {
            continue;
        };
        last = Some(insn);
        let jumps = matches!(
            insn,
            Instruction::Ja { .. } | Instruction::Jump { .. } | Instruction::MayGoto { .. }
        );
        if jumps && insn.target(pc).is_none_or(|t| t < start || t >= end) {
            return false;
        }
    }
    matches!(last, Some(Instruction::Exit | Instruction::Ja { .. }))
}

/// True if `start..end` holds a BPF-to-BPF call or a `callx`.
fn calls(program: &Program, start: usize, end: usize) -> bool {
    (start..end).any(|pc| {
        matches!(
            program.get(pc),
            Some(Instruction::CallLocal { .. } | Instruction::Callx { .. })
        )
    })
}

/// BPF registers the instructions in `start..end` may change.
fn written(program: &Program, start: usize, end: usize, guards_write_bases: bool) -> BTreeSet<u8> {
    let mut out = BTreeSet::new();
    for pc in start..end {
        let Some(insn) = program.get(pc) else {
            continue;
        };
        match *insn {
            Instruction::Alu { dst, .. }
            | Instruction::Neg { dst, .. }
            | Instruction::Mov { dst, .. }
            | Instruction::MovSx { dst, .. }
            | Instruction::AddrSpaceCast { dst, .. }
            | Instruction::Endian { dst, .. }
            | Instruction::LoadImm64 { dst, .. } => {
                out.insert(dst);
            }
            Instruction::Load { dst, src, .. } | Instruction::LoadAcquire { dst, src, .. } => {
                out.insert(dst);
                if guards_write_bases {
                    out.insert(src);
                }
            }
            Instruction::Store { dst, .. } | Instruction::StoreRelease { dst, .. }
                if guards_write_bases =>
            {
                out.insert(dst);
            }
            Instruction::Atomic { dst, src, .. } => {
                out.insert(src);
                out.insert(0);
                if guards_write_bases {
                    out.insert(dst);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use kflex_isa::decode::{AluOp, JmpOp, Operand, Size, Width, encode_all};

    use super::*;

    fn program(insns: &[Instruction]) -> Program {
        Program::decode(&encode_all(insns)).unwrap()
    }

    fn mov(dst: u8, imm: i32) -> Instruction {
        Instruction::Mov {
            width: Width::W64,
            dst,
            src: Operand::Imm(imm),
        }
    }

    #[test]
    fn each_function_saves_only_what_it_writes() {
        // 0: r6 = 1; 1: call +1 (to 3); 2: exit; 3: r8 = *(u64 *)(r7 + 0); 4: exit
        let p = program(&[
            mov(6, 1),
            Instruction::CallLocal { imm: 1 },
            Instruction::Exit,
            Instruction::Load {
                size: Size::DW,
                dst: 8,
                src: 7,
                off: 0,
                sign_extend: false,
            },
            Instruction::Exit,
        ]);
        let entries = BTreeSet::from([0, 3]);
        let plan = FramePlan::new(&p, &entries, false);
        assert!(plan.relative_rbp);
        assert_eq!(plan.functions, [(0, vec![x86::RBX]), (3, vec![x86::R14])]);
        assert_eq!(plan.function_of(2), 0);
        assert_eq!(plan.function_of(4), 1);
        assert_eq!(plan.leaf, [false, true], "main calls, the callee does not");
        // With in-place guards, r7 (a load's base) may change too.
        let guarded = FramePlan::new(&p, &entries, true);
        assert_eq!(guarded.functions[1].1, [x86::R13, x86::R14]);
    }

    #[test]
    fn a_jump_between_functions_makes_every_function_save_everything() {
        // 0: call +2 (to 3); 1: if r0 == 0 goto 4 (into the callee); 2: exit; 3: r0 = 0; 4: exit
        let p = program(&[
            Instruction::CallLocal { imm: 2 },
            Instruction::Jump {
                width: Width::W64,
                op: JmpOp::Eq,
                dst: 0,
                src: Operand::Imm(0),
                off: 2,
            },
            Instruction::Exit,
            mov(0, 0),
            Instruction::Exit,
        ]);
        let plan = FramePlan::new(&p, &BTreeSet::from([0, 3]), false);
        for (_, saved) in &plan.functions {
            assert_eq!(saved, &CALLEE_SAVED);
        }
        assert_eq!(plan.leaf, [false, false], "no leaf shortcut either");
    }

    #[test]
    fn falling_into_the_next_function_makes_every_function_save_everything() {
        // 0: call +1 (to 2); 1: r0 += 1 (falls into 2); 2: r9 = 0; 3: exit
        let p = program(&[
            Instruction::CallLocal { imm: 1 },
            Instruction::Alu {
                width: Width::W64,
                op: AluOp::Add,
                dst: 0,
                src: Operand::Imm(1),
            },
            mov(9, 0),
            Instruction::Exit,
        ]);
        let plan = FramePlan::new(&p, &BTreeSet::from([0, 2]), false);
        assert_eq!(plan.functions[0].1, CALLEE_SAVED);
    }

    #[test]
    fn writing_r10_keeps_absolute_frames_and_atomics_write_their_source() {
        let p = program(&[
            Instruction::Atomic {
                size: Size::DW,
                op: kflex_isa::decode::AtomicOp::Add,
                fetch: true,
                dst: 10,
                src: 9,
                off: -8,
            },
            mov(10, 0),
            Instruction::Exit,
        ]);
        let plan = FramePlan::new(&p, &BTreeSet::from([0]), false);
        assert!(!plan.relative_rbp);
        assert_eq!(plan.functions[0].1, [x86::R15]);
    }
}
