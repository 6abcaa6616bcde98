//! Differential property test: random straight-line and branchy ALU/JMP/stack programs run through
//! the reference interpreter and the JIT must end with the same r0 and the same stack bytes.
//!
//! Every program starts by loading random 64-bit values into r0..r9, ends by handing its stack
//! frame and r0 to a "snapshot" helper (which records the frame's 512 bytes and returns r0
//! unchanged), and only accesses its own frame. Jumps go forward, so every program terminates;
//! `may_goto` is included as well.

mod common;

use std::sync::{Arc, Mutex};

use kflex_isa::decode::{
    AluOp, AtomicOp, EndianKind, Instruction as I, JmpOp, Operand, Program, Size, Width,
};
use kflex_runtime::helpers::{ArgKind, RetKind};
use kflex_runtime::{HelperDef, HelperRegistry, Signature};
use proptest::prelude::*;

const SNAPSHOT: i32 = 1;

/// A registry whose helper 1 copies `r2` bytes at `r1` into `out` and returns `r3`.
fn snapshot_registry(out: Arc<Mutex<Vec<u8>>>) -> HelperRegistry {
    let mut r = HelperRegistry::empty();
    r.register(HelperDef {
        id: SNAPSHOT as u32,
        name: "snapshot".into(),
        sig: Signature::new(&[ArgKind::Any, ArgKind::Any, ArgKind::Any], RetKind::Scalar),
        func: Arc::new(move |c| {
            let bytes = c.mem.read_bytes(c.args[0], c.args[1])?;
            *out.lock().expect("snapshot lock") = bytes;
            Ok(c.args[2])
        }),
    })
    .expect("helper registers");
    r
}

fn width() -> impl Strategy<Value = Width> {
    prop_oneof![Just(Width::W64), Just(Width::W32)]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(i64::MIN as u64),
        Just(0x8000_0000),
        Just(0xffff_ffff),
        0u64..64,
        any::<u64>(),
    ]
}

fn imm() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(0i32),
        Just(-1),
        Just(i32::MIN),
        -64i32..64,
        any::<i32>()
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        (0u8..10).prop_map(Operand::Reg),
        imm().prop_map(Operand::Imm)
    ]
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![Just(Size::B), Just(Size::H), Just(Size::W), Just(Size::DW)]
}

/// An offset for an access of `bytes` bytes, aligned to its size, inside the 512-byte frame.
fn stack_off(bytes: u8, raw: u16) -> i16 {
    let slots = 512 / i16::from(bytes);
    -((raw as i16).rem_euclid(slots) + 1) * i16::from(bytes)
}

/// One body instruction; `jump` carries a raw offset fixed up once its position is known.
#[derive(Clone, Debug)]
enum Gen {
    Plain(I),
    Jump(I, u16),
}

fn body_insn() -> impl Strategy<Value = Gen> {
    let dst = 0u8..10;
    prop_oneof![
        4 => (width(), 0..AluOp::ALL.len(), dst.clone(), operand()).prop_map(|(width, op, dst, src)| {
            Gen::Plain(I::Alu { width, op: AluOp::ALL[op], dst, src })
        }),
        1 => (width(), dst.clone()).prop_map(|(width, dst)| Gen::Plain(I::Neg { width, dst })),
        2 => (width(), dst.clone(), operand()).prop_map(|(width, dst, src)| Gen::Plain(I::Mov { width, dst, src })),
        1 => (width(), dst.clone(), 0u8..10, prop_oneof![Just(8u8), Just(16), Just(32)]).prop_map(
            |(width, dst, src, bits)| {
                let width = if bits == 32 { Width::W64 } else { width };
                Gen::Plain(I::MovSx { width, dst, src, bits })
            }
        ),
        1 => (dst.clone(), prop_oneof![Just(16u8), Just(32), Just(64)],
              prop_oneof![Just(EndianKind::ToLe), Just(EndianKind::ToBe), Just(EndianKind::Swap)])
            .prop_map(|(dst, bits, kind)| Gen::Plain(I::Endian { dst, bits, kind })),
        2 => (size(), dst.clone(), any::<u16>(), any::<bool>()).prop_map(|(size, dst, raw, sign_extend)| {
            let sign_extend = sign_extend && size != Size::DW;
            Gen::Plain(I::Load { size, dst, src: 10, off: stack_off(size.bytes(), raw), sign_extend })
        }),
        2 => (size(), operand(), any::<u16>()).prop_map(|(size, src, raw)| {
            Gen::Plain(I::Store { size, dst: 10, off: stack_off(size.bytes(), raw), src })
        }),
        1 => (prop_oneof![Just(Size::W), Just(Size::DW)], 0..AtomicOp::ALL.len(), any::<bool>(), 0u8..10, any::<u16>())
            .prop_map(|(size, op, fetch, src, raw)| {
                let op = AtomicOp::ALL[op];
                let fetch = fetch || matches!(op, AtomicOp::Xchg | AtomicOp::Cmpxchg);
                Gen::Plain(I::Atomic { size, op, fetch, dst: 10, src, off: stack_off(size.bytes(), raw) })
            }),
        1 => (size(), dst.clone(), any::<u16>()).prop_map(|(size, dst, raw)| {
            Gen::Plain(I::LoadAcquire { size, dst, src: 10, off: stack_off(size.bytes(), raw) })
        }),
        1 => (size(), 0u8..10, any::<u16>()).prop_map(|(size, src, raw)| {
            Gen::Plain(I::StoreRelease { size, dst: 10, src, off: stack_off(size.bytes(), raw) })
        }),
        3 => (width(), 0..JmpOp::ALL.len(), dst.clone(), operand(), any::<u16>()).prop_map(
            |(width, op, dst, src, raw)| Gen::Jump(I::Jump { width, op: JmpOp::ALL[op], dst, src, off: 0 }, raw)
        ),
        1 => any::<u16>().prop_map(|raw| Gen::Jump(I::Ja { off: 0 }, raw)),
        1 => any::<u16>().prop_map(|raw| Gen::Jump(I::MayGoto { off: 0 }, raw)),
    ]
}

/// Builds the full program: register initialisation, the body with jump offsets fixed up to stay
/// inside the body (or land on the epilogue), and the snapshot epilogue.
fn build(regs: &[u64; 10], body: &[Gen]) -> Program {
    let mut insns: Vec<I> = regs
        .iter()
        .enumerate()
        .map(|(r, &imm)| I::LoadImm64 {
            dst: r as u8,
            pseudo: 0,
            imm,
        })
        .collect();
    let n = body.len();
    for (i, g) in body.iter().enumerate() {
        insns.push(match g {
            Gen::Plain(insn) => *insn,
            Gen::Jump(insn, raw) => {
                // Forward, at most to the first epilogue instruction.
                let room = (n - i) as u16; // targets i+1 ..= n (relative 0 ..= n-1-i)
                let off = (raw % room) as i16;
                match *insn {
                    I::Jump {
                        width,
                        op,
                        dst,
                        src,
                        ..
                    } => I::Jump {
                        width,
                        op,
                        dst,
                        src,
                        off,
                    },
                    I::Ja { .. } => I::Ja {
                        off: i32::from(off),
                    },
                    _ => I::MayGoto { off },
                }
            }
        });
    }
    insns.extend([
        I::Mov {
            width: Width::W64,
            dst: 3,
            src: Operand::Reg(0),
        },
        I::Mov {
            width: Width::W64,
            dst: 1,
            src: Operand::Reg(10),
        },
        I::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst: 1,
            src: Operand::Imm(-512),
        },
        I::Mov {
            width: Width::W64,
            dst: 2,
            src: Operand::Imm(512),
        },
        I::Call { helper: SNAPSHOT },
        I::Exit,
    ]);
    common::program(&insns)
}

fn check(regs: [u64; 10], body: Vec<Gen>) -> Result<(), TestCaseError> {
    let program = build(&regs, &body);
    let interp_stack = Arc::new(Mutex::new(Vec::new()));
    let jit_stack = Arc::new(Mutex::new(Vec::new()));
    let want = common::interp_run(&program, [0; 5], &snapshot_registry(interp_stack.clone()))
        .map_err(|f| TestCaseError::fail(format!("interpreter fault: {f}")))?;
    let got = common::jit_run(&program, [0; 5], &snapshot_registry(jit_stack.clone()))
        .map_err(|f| TestCaseError::fail(format!("jit fault: {f}")))?;
    let listing = kflex_isa::disasm::listing(&program);
    prop_assert_eq!(got, want, "r0 differs for\n{}", listing);
    let (a, b) = (
        interp_stack.lock().unwrap().clone(),
        jit_stack.lock().unwrap().clone(),
    );
    prop_assert_eq!(a.len(), 512);
    prop_assert!(a == b, "stack differs for\n{}", listing);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn straight_line_programs_agree(
        regs in proptest::array::uniform10(value()),
        body in proptest::collection::vec(body_insn().prop_filter("no jumps", |g| matches!(g, Gen::Plain(_))), 1..40),
    ) {
        check(regs, body)?;
    }

    #[test]
    fn branchy_programs_agree(
        regs in proptest::array::uniform10(value()),
        body in proptest::collection::vec(body_insn(), 1..60),
    ) {
        check(regs, body)?;
    }
}
