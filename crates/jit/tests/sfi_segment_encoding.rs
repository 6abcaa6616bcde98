//! The encodings of segment SFI mode: every heap access form the JIT emits (loads of every width,
//! zero- and sign-extending, stores of registers and immediates, load-acquire/store-release, and
//! every atomic with and without fetch) through every BPF register, at displacements that need
//! disp8 and disp32, decodes with iced-x86 as a single `gs:[r32 + disp]` operand (prefixes 0x65
//! and 0x67) with the expected x86 instruction, width and displacement, and no guard instruction.
//!
//! Prints `SKIPPED:` and passes when the CPU or kernel lacks user-space FSGSBASE.

mod sfi_support;

use iced_x86::{Formatter, IntelFormatter, MemorySizeOptions, Mnemonic, OpKind, Register};
use kflex_isa::decode::{AtomicOp, Instruction as I, Operand, Size};
use kflex_jit::{JitProgram, SfiMode};
use kflex_runtime::heap::SEGMENT_WINDOW;
use sfi_support::{HEAP_SIZE, Rng, body, guarded, options, supported};

/// BPF register -> the 32-bit x86 register segment-mode accesses address through.
const BASE32: [Register; 11] = [
    Register::EAX,
    Register::EDI,
    Register::ESI,
    Register::EDX,
    Register::ECX,
    Register::R8D,
    Register::EBX,
    Register::R13D,
    Register::R14D,
    Register::R15D,
    Register::EBP,
];

/// Bytes the memory operand of `i` accesses, from the Intel syntax with explicit size hints.
fn operand_bytes(i: &iced_x86::Instruction) -> usize {
    let mut f = IntelFormatter::new();
    f.options_mut()
        .set_memory_size_options(MemorySizeOptions::Always);
    let mut text = String::new();
    f.format(i, &mut text);
    [
        ("qword ptr", 8),
        ("dword ptr", 4),
        ("word ptr", 2),
        ("byte ptr", 1),
    ]
    .iter()
    .find(|(hint, _)| text.contains(hint))
    .map_or(0, |&(_, n)| n)
}

/// The x86 instructions that access the heap for `insn`, in order.
fn access_mnemonics(insn: &I) -> Vec<Mnemonic> {
    use Mnemonic as M;
    match *insn {
        I::Load {
            size, sign_extend, ..
        } => vec![match (size, sign_extend) {
            (Size::B | Size::H, false) => M::Movzx,
            (Size::B | Size::H, true) => M::Movsx,
            (Size::W, true) => M::Movsxd,
            _ => M::Mov,
        }],
        I::LoadAcquire { size, .. } => vec![match size {
            Size::B | Size::H => M::Movzx,
            _ => M::Mov,
        }],
        I::Store { .. } | I::StoreRelease { .. } => vec![M::Mov],
        I::Atomic { op, fetch, .. } => match (op, fetch) {
            (AtomicOp::Add, true) => vec![M::Xadd],
            (AtomicOp::Add, false) => vec![M::Add],
            (AtomicOp::Xchg, _) => vec![M::Xchg],
            (AtomicOp::Cmpxchg, _) => vec![M::Cmpxchg],
            (_, true) => vec![M::Mov, M::Cmpxchg],
            (AtomicOp::Or, false) => vec![M::Or],
            (AtomicOp::And, false) => vec![M::And],
            (AtomicOp::Xor, false) => vec![M::Xor],
        },
        _ => Vec::new(),
    }
}

#[test]
fn every_access_form_is_gs_relative_with_32_bit_addressing() {
    if !supported() {
        return;
    }
    let sizes = [Size::B, Size::H, Size::W, Size::DW];
    let ops = [
        AtomicOp::Add,
        AtomicOp::Or,
        AtomicOp::And,
        AtomicOp::Xor,
        AtomicOp::Xchg,
        AtomicOp::Cmpxchg,
    ];
    let offsets = [0i16, 8, -8, 127, 128, -129, 32767, -32768];
    let mut rng = Rng(0x5e6_0001);
    for (base, &base32) in BASE32.iter().enumerate() {
        let b = base as u8;
        // (instruction, memory operand bytes, expected GS-relative operands in the body)
        let mut cases: Vec<(I, usize, usize)> = Vec::new();
        for &off in &offsets {
            let other = (b + 1 + (rng.next() % 9) as u8) % 10;
            for &size in &sizes {
                let len = usize::from(size.bytes());
                for sign_extend in [false, true] {
                    if !(sign_extend && size == Size::DW) {
                        let ld = I::Load {
                            size,
                            dst: other,
                            src: b,
                            off,
                            sign_extend,
                        };
                        cases.push((ld, len, 1));
                    }
                }
                cases.push((
                    I::Store {
                        size,
                        dst: b,
                        off,
                        src: Operand::Reg(other),
                    },
                    len,
                    1,
                ));
                cases.push((
                    I::Store {
                        size,
                        dst: b,
                        off,
                        src: Operand::Imm(-5),
                    },
                    len,
                    1,
                ));
                cases.push((
                    I::LoadAcquire {
                        size,
                        dst: other,
                        src: b,
                        off,
                    },
                    len,
                    1,
                ));
                cases.push((
                    I::StoreRelease {
                        size,
                        dst: b,
                        src: other,
                        off,
                    },
                    len,
                    1,
                ));
            }
            for size in [Size::W, Size::DW] {
                for op in ops {
                    for fetch in [false, true] {
                        if !fetch && matches!(op, AtomicOp::Xchg | AtomicOp::Cmpxchg) {
                            continue;
                        }
                        // The fetch and/or/xor loop reads once, then retries a cmpxchg.
                        let operands = if fetch
                            && matches!(op, AtomicOp::Or | AtomicOp::And | AtomicOp::Xor)
                        {
                            2
                        } else {
                            1
                        };
                        let at = I::Atomic {
                            size,
                            op,
                            fetch,
                            dst: b,
                            src: other,
                            off,
                        };
                        cases.push((at, usize::from(size.bytes()), operands));
                    }
                }
            }
        }
        let insns: Vec<I> = cases.iter().map(|c| c.0).collect();
        let (program, facts) = guarded(&insns);
        let jit = JitProgram::compile(
            &program,
            &options(SfiMode::Segment, SEGMENT_WINDOW * 3, HEAP_SIZE, &facts),
        )
        .expect("compiles");
        assert_eq!(jit.guards(), (cases.len() as u64, 0));
        for (pc, &(insn, len, expected)) in cases.iter().enumerate() {
            let code = body(&jit, pc);
            let heap_operands: Vec<_> = code
                .iter()
                .filter(|i| (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory))
                .filter(|i| i.memory_base() != Register::RSP && i.mnemonic() != Mnemonic::Lea)
                .collect();
            assert_eq!(heap_operands.len(), expected, "{insn:?}: {code:?}");
            let mnemonics: Vec<_> = heap_operands.iter().map(|i| i.mnemonic()).collect();
            assert_eq!(mnemonics, access_mnemonics(&insn), "{insn:?}: {code:?}");
            for i in heap_operands {
                assert_eq!(i.segment_prefix(), Register::GS, "{insn:?}: {i}");
                assert_eq!(i.memory_index(), Register::None, "{insn:?}: {i}");
                assert_eq!(operand_bytes(i), len, "{insn:?}: {i}");
                if expected == 2 {
                    // Through the address formed in r10 first.
                    assert_eq!(i.memory_base(), Register::R10D, "{insn:?}: {i}");
                } else {
                    assert_eq!(i.memory_base(), base32, "{insn:?}: {i}");
                    let off = match insn {
                        I::Load { off, .. }
                        | I::Store { off, .. }
                        | I::LoadAcquire { off, .. }
                        | I::StoreRelease { off, .. }
                        | I::Atomic { off, .. } => off,
                        _ => unreachable!(),
                    };
                    assert_eq!(i.memory_displacement32() as i32, i32::from(off), "{i}");
                }
                let rmw = i.mnemonic() != Mnemonic::Mov;
                if rmw && matches!(insn, I::Atomic { op, .. } if op != AtomicOp::Xchg) {
                    assert!(i.has_lock_prefix(), "{insn:?}: {i}");
                }
            }
            // No guard instruction: loads and stores are the access alone.
            if matches!(insn, I::Load { .. } | I::Store { .. }) {
                assert_eq!(code.len(), 1, "{insn:?}: {code:?}");
            }
        }
    }
}
