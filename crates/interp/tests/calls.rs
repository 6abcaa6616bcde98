//! Helper calls, BPF-to-BPF calls, callx, frames and call-depth limits.

mod common;
use common::*;
use kflex_isa::op;

fn sum_helper() -> HelperDef {
    helper(1, "sum", |c| {
        Ok(c.args.iter().fold(0u64, |a, b| a.wrapping_add(*b)))
    })
}

/// Reads the 8 bytes r1 points at, through the checked memory map.
fn deref_helper() -> HelperDef {
    helper(2, "deref", |c| Ok(c.mem.load(c.args[0], 8)?))
}

fn failing_helper() -> HelperDef {
    helper(3, "refuse", |_| {
        Err(HelperError::BadArgument {
            arg: 1,
            reason: "not a map".into(),
        })
    })
}

#[test]
fn helper_result_in_r0_and_arguments_kept() {
    let mut h = Harness::new().with_helper(sum_helper());
    let out = h
        .run(
            &[
                mov(1, 1),
                mov(2, 2),
                mov(3, 3),
                mov(4, 4),
                mov(5, 5),
                I::Call { helper: 1 },
                // r0 = 15 * 1000 + r1 + r2 + r3 + r4 + r5 (still 1..5)
                alu(W64, AluOp::Mul, 0, Imm(1000)),
                alu(W64, AluOp::Add, 0, Reg(1)),
                alu(W64, AluOp::Add, 0, Reg(2)),
                alu(W64, AluOp::Add, 0, Reg(3)),
                alu(W64, AluOp::Add, 0, Reg(4)),
                alu(W64, AluOp::Add, 0, Reg(5)),
                I::Exit,
            ],
            [0; 5],
        )
        .unwrap();
    assert_eq!(out.retval, 15_015);
}

#[test]
fn helpers_see_the_stack_through_the_memory_map() {
    let mut h = Harness::new().with_helper(deref_helper());
    let out = h
        .run(
            &[
                lddw(1, 0xfeed_f00d),
                st(Size::DW, 10, -8, Reg(1)),
                movr(1, 10),
                alu(W64, AluOp::Add, 1, Imm(-8)),
                I::Call { helper: 2 },
                I::Exit,
            ],
            [0; 5],
        )
        .unwrap();
    assert_eq!(out.retval, 0xfeed_f00d);
    // A bad pointer makes the helper fail, which stops the program.
    let f = h
        .run(&[mov(1, 16), I::Call { helper: 2 }, I::Exit], [0; 5])
        .unwrap_err();
    assert_eq!(f.pc, 1);
    assert!(matches!(f.kind, FaultKind::Helper { id: 2, .. }), "{f}");
    assert!(h.mem.regions().is_empty());
}

#[test]
fn unknown_and_failing_helpers_fault() {
    let mut h = Harness::new().with_helper(failing_helper());
    let f = h
        .run(&[mov(0, 0), I::Call { helper: 99 }, I::Exit], [0; 5])
        .unwrap_err();
    assert_eq!(f.pc, 1);
    assert_eq!(f.kind, FaultKind::UnknownHelper(99));
    assert!(f.to_string().contains("unknown helper #99"), "{f}");
    let f = h
        .run(&[I::Call { helper: 3 }, I::Exit], [0; 5])
        .unwrap_err();
    assert_eq!(
        f.to_string(),
        format!(
            "instruction 0 ({}): helper #3 (refuse) failed: bad argument r1: not a map",
            f.disasm
        )
    );
}

#[test]
fn kfunc_calls_fault() {
    let f = fault(&[I::CallKfunc { btf_id: 1234 }, I::Exit]);
    assert_eq!(f.kind, FaultKind::Kfunc { btf_id: 1234 });
    assert!(f.to_string().contains("kfuncs are not supported"));
}

#[test]
fn local_calls_preserve_callee_saved_registers_and_get_a_fresh_frame() {
    // main stores a marker on its stack, passes r1 = &marker and r2 = its r10 to `sub`.
    // sub returns (r10_sub != r10_main) + 2 * (*r1 == marker), writes 99 through r1, and
    // clobbers r6..r9 (restored on return).
    let insns = [
        mov(6, 6),                        // 0
        mov(7, 7),                        // 1
        mov(8, 8),                        // 2
        mov(9, 9),                        // 3
        st(Size::DW, 10, -8, Imm(0x55)),  // 4
        movr(1, 10),                      // 5
        alu(W64, AluOp::Add, 1, Imm(-8)), // 6
        movr(2, 10),                      // 7
        I::CallLocal { imm: 12 },         // 8 -> 21
        // r0 += 10 * (r6 + r7 + r8 + r9 == 30) ; r0 += 100 * (*(r10-8) == 99)
        movr(3, 6),                         // 9
        alu(W64, AluOp::Add, 3, Reg(7)),    // 10
        alu(W64, AluOp::Add, 3, Reg(8)),    // 11
        alu(W64, AluOp::Add, 3, Reg(9)),    // 12
        jmp(JmpOp::Ne, 3, Imm(30), 1),      // 13
        alu(W64, AluOp::Add, 0, Imm(10)),   // 14
        ld(Size::DW, 3, 10, -8),            // 15
        jmp(JmpOp::Ne, 3, Imm(99), 1),      // 16
        alu(W64, AluOp::Add, 0, Imm(100)),  // 17
        jmp(JmpOp::Ne, 10, Reg(2), 1),      // 18: r10 restored
        alu(W64, AluOp::Add, 0, Imm(1000)), // 19
        I::Exit,                            // 20
        mov(0, 0),                          // 21: sub
        jmp(JmpOp::Eq, 10, Reg(2), 1),      // 22
        alu(W64, AluOp::Add, 0, Imm(1)),    // 23
        ld(Size::DW, 3, 1, 0),              // 24
        jmp(JmpOp::Ne, 3, Imm(0x55), 1),    // 25
        alu(W64, AluOp::Add, 0, Imm(2)),    // 26
        st(Size::DW, 1, 0, Imm(99)),        // 27
        st(Size::DW, 10, -8, Imm(-1)),      // 28: own frame, not main's
        mov(6, 0),                          // 29
        mov(7, 0),                          // 30
        mov(8, 0),                          // 31
        mov(9, 0),                          // 32
        I::Exit,                            // 33
    ];
    assert_eq!(r0(&insns), 1113);
}

/// `f(n) = n == 0 ? 0 : f(n - 1) + 1`, called from main with r1 = n.
const RECURSIVE: [Instruction; 9] = [
    I::CallLocal { imm: 1 }, // 0 -> 2
    I::Exit,                 // 1
    I::Jump {
        width: W64,
        op: JmpOp::Ne,
        dst: 1,
        src: Imm(0),
        off: 2,
    }, // 2
    I::Mov {
        width: W64,
        dst: 0,
        src: Imm(0),
    }, // 3
    I::Exit,                 // 4
    I::Alu {
        width: W64,
        op: AluOp::Sub,
        dst: 1,
        src: Imm(1),
    }, // 5
    I::CallLocal { imm: -5 }, // 6 -> 2
    I::Alu {
        width: W64,
        op: AluOp::Add,
        dst: 0,
        src: Imm(1),
    }, // 7
    I::Exit,                 // 8
];

#[test]
fn call_depth_is_limited_to_max_call_depth_frames() {
    let mut h = Harness::new();
    // f(6) uses main + 7 frames of f = 8 frames: allowed.
    assert_eq!(h.run(&RECURSIVE, [6, 0, 0, 0, 0]).unwrap().retval, 6);
    // f(7) needs 9 frames.
    let f = h.run(&RECURSIVE, [7, 0, 0, 0, 0]).unwrap_err();
    assert_eq!(f.kind, FaultKind::CallDepth { limit: 8 });
    assert_eq!(f.pc, 6);
    assert!(
        h.mem.regions().is_empty(),
        "every frame removed after the fault"
    );
    // A larger limit allows deeper recursion.
    h.limits.max_call_depth = 40;
    assert_eq!(h.run(&RECURSIVE, [38, 0, 0, 0, 0]).unwrap().retval, 38);
    assert!(h.run(&RECURSIVE, [39, 0, 0, 0, 0]).is_err());
    assert!(h.mem.regions().is_empty());
}

#[test]
fn callx_dispatches_helpers_and_subprogram_addresses() {
    let mut h = Harness::new().with_helper(sum_helper());
    // callx through a helper number.
    let out = h
        .run(
            &[
                mov(1, 20),
                mov(2, 22),
                mov(3, 0),
                mov(4, 0),
                mov(5, 0),
                mov(6, 1),
                I::Callx { reg: 6 },
                I::Exit,
            ],
            [0; 5],
        )
        .unwrap();
    assert_eq!(out.retval, 42);
    // callx through a PSEUDO_FUNC address: lddw r6, sub ; callx r6.
    let prog = [
        I::LoadImm64 {
            dst: 6,
            pseudo: op::PSEUDO_FUNC,
            imm: 3, // 0 + 1 + 3 = slot 4
        }, // 0, 1
        I::Callx { reg: 6 }, // 2
        I::Exit,             // 3
        mov(0, 77),          // 4: sub
        I::Exit,             // 5
    ];
    assert_eq!(h.run(&prog, [0; 5]).unwrap().retval, 77);
}

#[test]
fn bad_callx_targets_and_code_addresses_fault() {
    let mut h = Harness::new();
    let f = h
        .run(
            &[lddw(6, 0x1_0000_0000), I::Callx { reg: 6 }, I::Exit],
            [0; 5],
        )
        .unwrap_err();
    assert_eq!(f.kind, FaultKind::BadCallTarget(0x1_0000_0000));
    let f = h
        .run(&[mov(6, 12345), I::Callx { reg: 6 }, I::Exit], [0; 5])
        .unwrap_err();
    assert_eq!(f.kind, FaultKind::UnknownHelper(12345));
    // A code address past the end of the program.
    let bogus = kflex_interp::code_addr::encode(500);
    let f = h
        .run(&[lddw(6, bogus), I::Callx { reg: 6 }, I::Exit], [0; 5])
        .unwrap_err();
    assert_eq!(f.kind, FaultKind::BadCallTarget(bogus));
    // A code address is not accessible memory.
    let f = h
        .run(
            &[
                I::LoadImm64 {
                    dst: 1,
                    pseudo: op::PSEUDO_FUNC,
                    imm: 2,
                },
                ld(Size::B, 0, 1, 0),
                I::Exit,
                I::Exit,
            ],
            [0; 5],
        )
        .unwrap_err();
    assert!(matches!(f.kind, FaultKind::Memory(_)), "{f}");
    assert!(h.mem.regions().is_empty());
}
