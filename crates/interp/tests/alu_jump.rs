//! ALU, move, byte-order and jump semantics, run through whole programs.

mod common;
use common::*;

fn alu_result(width: Width, op: AluOp, dst: u64, src: Operand) -> u64 {
    r0(&[lddw(0, dst), alu(width, op, 0, src), I::Exit])
}

fn alu_reg(width: Width, op: AluOp, dst: u64, src: u64) -> u64 {
    r0(&[
        lddw(0, dst),
        lddw(1, src),
        alu(width, op, 0, Reg(1)),
        I::Exit,
    ])
}

#[test]
fn immediates_are_sign_extended_for_64_bit_and_zero_extended_for_32_bit() {
    assert_eq!(r0(&[mov(0, -1), I::Exit]), u64::MAX);
    let mov32 = I::Mov {
        width: W32,
        dst: 0,
        src: Imm(-1),
    };
    assert_eq!(r0(&[mov(0, 5), mov32, I::Exit]), 0xffff_ffff);
    assert_eq!(alu_result(W64, AluOp::Add, 0, Imm(-2)), (-2i64) as u64);
    assert_eq!(alu_result(W32, AluOp::Add, 0, Imm(-2)), 0xffff_fffe);
    assert_eq!(
        alu_result(W32, AluOp::And, 0x1_2345_6789, Imm(-1)),
        0x2345_6789
    );
    assert_eq!(
        alu_result(W64, AluOp::And, 0x1_2345_6789, Imm(-1)),
        0x1_2345_6789
    );
}

#[test]
fn alu32_results_are_zero_extended() {
    assert_eq!(alu_result(W32, AluOp::Add, u64::MAX, Imm(1)), 0);
    assert_eq!(
        alu_reg(W32, AluOp::Sub, 0xffff_0000_0000_0000, 1),
        0xffff_ffff
    );
    assert_eq!(alu_reg(W32, AluOp::Or, 0xaaaa_0000_0000_0001, 2), 3);
    let mov32 = I::Mov {
        width: W32,
        dst: 0,
        src: Reg(1),
    };
    assert_eq!(
        r0(&[lddw(1, 0x1234_5678_9abc_def0), mov32, I::Exit]),
        0x9abc_def0
    );
}

#[test]
fn division_and_modulo_edge_cases() {
    let min64 = i64::MIN as u64;
    let min32 = 0x8000_0000u64;
    // Unsigned.
    assert_eq!(alu_reg(W64, AluOp::Div, 42, 0), 0);
    assert_eq!(alu_reg(W64, AluOp::Mod, 42, 0), 42);
    assert_eq!(alu_reg(W32, AluOp::Div, 42, 0), 0);
    assert_eq!(alu_reg(W32, AluOp::Mod, 0xdead_0000_0000_002a, 0), 42);
    assert_eq!(alu_result(W64, AluOp::Div, u64::MAX, Imm(-1)), 1);
    assert_eq!(alu_result(W32, AluOp::Div, 0xffff_fffe, Imm(-1)), 0);
    // Signed.
    assert_eq!(alu_reg(W64, AluOp::SDiv, 42, 0), 0);
    assert_eq!(alu_reg(W64, AluOp::SMod, 42, 0), 42);
    assert_eq!(alu_reg(W32, AluOp::SDiv, 42, 0), 0);
    assert_eq!(
        alu_reg(W32, AluOp::SMod, 0xdead_0000_ffff_ffd6, 0),
        0xffff_ffd6
    );
    assert_eq!(alu_result(W64, AluOp::SDiv, min64, Imm(-1)), min64);
    assert_eq!(alu_result(W64, AluOp::SMod, min64, Imm(-1)), 0);
    assert_eq!(alu_result(W32, AluOp::SDiv, min32, Imm(-1)), min32);
    assert_eq!(alu_result(W32, AluOp::SMod, min32, Imm(-1)), 0);
    // Signed modulo takes the sign of the dividend.
    assert_eq!(
        alu_result(W64, AluOp::SMod, (-13i64) as u64, Imm(4)),
        (-1i64) as u64
    );
    assert_eq!(alu_result(W64, AluOp::SMod, 13, Imm(-4)), 1);
    assert_eq!(
        alu_result(W32, AluOp::SMod, 0xffff_fff3, Imm(4)),
        0xffff_ffff
    );
    assert_eq!(
        alu_result(W64, AluOp::SDiv, (-13i64) as u64, Imm(4)),
        (-3i64) as u64
    );
}

#[test]
fn shift_amounts_are_masked() {
    assert_eq!(alu_reg(W64, AluOp::Lsh, 1, 64 + 4), 16);
    assert_eq!(alu_reg(W64, AluOp::Rsh, 1 << 63, 127), 1);
    assert_eq!(alu_reg(W64, AluOp::Arsh, 1 << 63, 63), u64::MAX);
    assert_eq!(alu_reg(W32, AluOp::Lsh, 1, 32 + 4), 16);
    assert_eq!(alu_reg(W32, AluOp::Rsh, 0x8000_0000, 31 + 32), 1);
    assert_eq!(
        alu_reg(W32, AluOp::Arsh, 0xffff_ffff_8000_0000, 4),
        0xf800_0000
    );
}

#[test]
fn neg_movsx_and_byte_order() {
    assert_eq!(
        r0(&[mov(0, 3), I::Neg { width: W64, dst: 0 }, I::Exit]),
        (-3i64) as u64
    );
    assert_eq!(
        r0(&[mov(0, 3), I::Neg { width: W32, dst: 0 }, I::Exit]),
        0xffff_fffd
    );
    let movsx = |width, bits| {
        r0(&[
            lddw(1, 0x0000_0001_8000_8080),
            I::MovSx {
                width,
                dst: 0,
                src: 1,
                bits,
            },
            I::Exit,
        ])
    };
    assert_eq!(movsx(W64, 8), 0xffff_ffff_ffff_ff80);
    assert_eq!(movsx(W64, 16), 0xffff_ffff_ffff_8080);
    assert_eq!(movsx(W64, 32), 0xffff_ffff_8000_8080);
    assert_eq!(movsx(W32, 8), 0xffff_ff80);
    assert_eq!(movsx(W32, 16), 0xffff_8080);
    let end = |kind, bits| {
        r0(&[
            lddw(0, 0x1122_3344_5566_7788),
            I::Endian { dst: 0, bits, kind },
            I::Exit,
        ])
    };
    assert_eq!(end(EndianKind::ToLe, 16), 0x7788);
    assert_eq!(end(EndianKind::ToLe, 32), 0x5566_7788);
    assert_eq!(end(EndianKind::ToLe, 64), 0x1122_3344_5566_7788);
    assert_eq!(end(EndianKind::ToBe, 16), 0x8877);
    assert_eq!(end(EndianKind::ToBe, 32), 0x8877_6655);
    assert_eq!(end(EndianKind::ToBe, 64), 0x8877_6655_4433_2211);
    assert_eq!(end(EndianKind::Swap, 16), 0x8877);
    assert_eq!(end(EndianKind::Swap, 64), 0x8877_6655_4433_2211);
}

#[test]
fn addr_space_cast_keeps_the_value_both_ways() {
    for (dst_as, src_as) in [(0, 1), (1, 0)] {
        for v in [0u64, 0x7f00_1234_5678, u64::MAX] {
            let got = r0(&[
                lddw(1, v),
                mov(0, 99),
                I::AddrSpaceCast {
                    dst: 0,
                    src: 1,
                    dst_as,
                    src_as,
                },
                I::Exit,
            ]);
            assert_eq!(got, v, "cast as{src_as} -> as{dst_as} of {v:#x}");
        }
    }
}

#[test]
fn lddw_loads_the_immediate_and_rejects_unresolved_map_references() {
    assert_eq!(
        r0(&[lddw(0, 0x8000_0000_0000_0001), I::Exit]),
        0x8000_0000_0000_0001
    );
    let f = fault(&[
        mov(0, 0),
        I::LoadImm64 {
            dst: 1,
            pseudo: 1,
            imm: 3,
        },
        I::Exit,
    ]);
    assert_eq!(f.pc, 1);
    assert!(matches!(
        f.kind,
        FaultKind::UnresolvedPseudo { pseudo: 1, imm: 3 }
    ));
    assert!(
        f.to_string()
            .contains("unresolved map reference: the loader must resolve lddw src=1 first"),
        "{f}"
    );
}

#[test]
fn conditional_jumps_signed_unsigned_and_jmp32() {
    // r0 = 1 if the jump is taken, 0 otherwise.
    let taken = |width, op, a: u64, b: Operand| {
        r0(&[
            lddw(1, a),
            mov(2, 7),
            mov(0, 1),
            I::Jump {
                width,
                op,
                dst: 1,
                src: b,
                off: 1,
            },
            mov(0, 0),
            I::Exit,
        ]) == 1
    };
    assert!(taken(W64, JmpOp::Gt, u64::MAX, Imm(1)));
    assert!(!taken(W64, JmpOp::Sgt, u64::MAX, Imm(1)));
    assert!(
        taken(W64, JmpOp::Eq, u64::MAX, Imm(-1)),
        "imm sign-extended"
    );
    assert!(!taken(W64, JmpOp::Eq, 0xffff_ffff, Imm(-1)));
    assert!(taken(W32, JmpOp::Eq, 0xffff_ffff, Imm(-1)));
    assert!(
        taken(W32, JmpOp::Eq, 0x5_0000_0007, Reg(2)),
        "jmp32 low halves"
    );
    assert!(!taken(W64, JmpOp::Eq, 0x5_0000_0007, Reg(2)));
    assert!(taken(W32, JmpOp::Slt, 0x8000_0000, Imm(0)));
    assert!(!taken(W64, JmpOp::Slt, 0x8000_0000, Imm(0)));
    assert!(taken(W64, JmpOp::Set, 0b1010, Imm(0b0010)));
    assert!(!taken(W64, JmpOp::Set, 0b1010, Imm(0b0101)));
    assert!(taken(W64, JmpOp::Le, 7, Reg(2)));
    assert!(!taken(W64, JmpOp::Lt, 7, Reg(2)));
    assert!(taken(W64, JmpOp::Sge, (-1i64) as u64, Imm(-1)));
    assert!(taken(W64, JmpOp::Sle, (-2i64) as u64, Imm(-1)));
    assert!(taken(W64, JmpOp::Ne, 1, Imm(2)));
    assert!(taken(W64, JmpOp::Ge, 2, Imm(2)));
}

#[test]
fn backward_jumps_and_gotol() {
    // r0 = sum of 1..=10 with a backward branch.
    let sum = r0(&[
        mov(0, 0),
        mov(1, 10),
        alu(W64, AluOp::Add, 0, Reg(1)),
        alu(W64, AluOp::Sub, 1, Imm(1)),
        jmp(JmpOp::Ne, 1, Imm(0), -3),
        I::Exit,
    ]);
    assert_eq!(sum, 55);
    // Ja with a 32-bit offset skips forward.
    let v = r0(&[mov(0, 1), I::Ja { off: 1 }, mov(0, 2), I::Exit]);
    assert_eq!(v, 1);
}

#[test]
fn instruction_count_and_budget() {
    let out = Harness::new()
        .run(&[lddw(0, 1), mov(1, 2), I::Exit], [0; 5])
        .unwrap();
    assert_eq!(out.instructions, 3, "lddw counts once");
    let mut h = Harness::new();
    h.limits.max_instructions = 1000;
    let f = h.run(&[mov(0, 0), I::Ja { off: -1 }], [0; 5]).unwrap_err();
    assert_eq!(f.kind, FaultKind::InstructionLimit { limit: 1000 });
    assert_eq!(f.pc, 1);
    assert!(f.to_string().starts_with("instruction 1 ("), "{f}");
}

#[test]
fn may_goto_counts_per_frame() {
    // main loops on may_goto until its counter is exhausted, counting in r6, then calls `sub`,
    // whose fresh counter lets its may_goto fall through (r0 = 1); back in main the restored,
    // exhausted counter takes the branch at once (r7 stays 0).
    let insns = [
        mov(6, 0),                       // 0
        I::MayGoto { off: 2 },           // 1
        alu(W64, AluOp::Add, 6, Imm(1)), // 2
        I::Ja { off: -3 },               // 3
        I::CallLocal { imm: 8 },         // 4 -> 13
        mov(7, 0),                       // 5
        I::MayGoto { off: 1 },           // 6
        mov(7, 1),                       // 7
        alu(W64, AluOp::Lsh, 6, Imm(8)), // 8
        alu(W64, AluOp::Or, 0, Reg(6)),  // 9
        alu(W64, AluOp::Lsh, 7, Imm(4)), // 10
        alu(W64, AluOp::Or, 0, Reg(7)),  // 11
        I::Exit,                         // 12
        mov(0, 0),                       // 13: sub
        I::MayGoto { off: 1 },           // 14
        mov(0, 1),                       // 15
        I::Exit,                         // 16
    ];
    assert_eq!(kflex_interp::MAY_GOTO_BUDGET, 8_388_608);
    assert_eq!(r0(&insns), (8_388_608 << 8) | 1);
}
