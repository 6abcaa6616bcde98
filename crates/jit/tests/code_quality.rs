//! Code-quality optimizations of the JIT, each pinned by the machine code it must (or must not)
//! produce, disassembled with iced-x86, and by runs that show the semantics are unchanged
//! (compared with the reference interpreter).

mod common;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use kflex_isa::decode::{AluOp, Instruction as I, Operand, Size, Width};
use kflex_jit::{JitOptions, JitProgram};
use kflex_runtime::HelperRegistry;

/// Disassembles `code[start..end]` (Intel syntax, one string per instruction).
fn disasm(jit: &JitProgram, start: usize, end: usize) -> Vec<String> {
    let mut decoder = Decoder::with_ip(64, &jit.code()[start..end], 0, DecoderOptions::NONE);
    let mut f = IntelFormatter::new();
    let mut out = Vec::new();
    for insn in &mut decoder {
        let mut s = String::new();
        f.format(&insn, &mut s);
        out.push(s);
    }
    out
}

/// The instructions of the prologue of the function starting at `slot`, up to its `jmp` into
/// the body.
fn prologue(jit: &JitProgram, slot: usize) -> Vec<String> {
    let f = jit.function_offset(slot).expect("a function starts there");
    let mut out = disasm(jit, f, jit.code().len());
    let end = out.iter().position(|s| s.starts_with("jmp")).expect("jmp");
    out.truncate(end);
    out
}

fn mov(dst: u8, src: Operand) -> I {
    I::Mov {
        width: Width::W64,
        dst,
        src,
    }
}

fn add(dst: u8, src: Operand) -> I {
    I::Alu {
        width: Width::W64,
        op: AluOp::Add,
        dst,
        src,
    }
}

/// main: r6..r9 = 1..4; *(r10 - 8) = 100; call f; r0 += r6 + r7 + r8 + r9 + *(r10 - 8); exit
/// f (slot 11): r7 = 1000; *(r10 - 8) = 7 (its own frame); r0 = r7 + 1; exit
fn caller_and_clobbering_callee() -> Vec<I> {
    vec![
        mov(6, Operand::Imm(1)),
        mov(7, Operand::Imm(2)),
        mov(8, Operand::Imm(3)),
        mov(9, Operand::Imm(4)),
        I::Store {
            size: Size::DW,
            dst: 10,
            off: -8,
            src: Operand::Imm(100),
        },
        I::CallLocal { imm: 5 },
        add(0, Operand::Reg(6)),
        add(0, Operand::Reg(7)),
        add(0, Operand::Reg(8)),
        add(0, Operand::Reg(9)),
        I::Exit,
        // slot 11: f
        mov(7, Operand::Imm(1000)),
        I::Store {
            size: Size::DW,
            dst: 10,
            off: -8,
            src: Operand::Imm(7),
        },
        mov(0, Operand::Reg(7)),
        add(0, Operand::Imm(1)),
        I::Exit,
    ]
}

#[test]
fn a_callee_saves_only_the_callee_saved_registers_it_writes() {
    let program = common::program(&caller_and_clobbering_callee());
    let jit = JitProgram::compile(&program, &JitOptions::default()).unwrap();
    let callee = prologue(&jit, 11);
    assert_eq!(callee[0], "push r13", "f writes r7 only: {callee:?}");
    assert!(!callee[1].starts_with("push"), "{callee:?}");
    // Frames are relative: rbp moves one stride, no depth multiplication.
    assert!(
        callee.iter().any(|s| s.starts_with("sub rbp,")),
        "{callee:?}"
    );
    assert!(!callee.iter().any(|s| s.starts_with("imul")), "{callee:?}");
    let main = prologue(&jit, 0);
    assert_eq!(
        main[..4],
        ["push rbx", "push r13", "push r14", "push r15"],
        "main writes r6..r9"
    );

    // The caller's r6..r9 and its stack frame survive the call.
    let helpers = HelperRegistry::empty();
    let jit_r0 = common::jit_run(&program, [0; 5], &helpers).unwrap();
    let interp_r0 = common::interp_run(&program, [0; 5], &helpers).unwrap();
    assert_eq!(jit_r0, interp_r0);
    assert_eq!(jit_r0, 1001 + 1 + 2 + 3 + 4);
}

#[test]
fn nested_calls_use_distinct_frames_and_restore_rbp() {
    // main: *(r10-8) = 5; call a; r0 += *(r10-8); exit
    // a: *(r10-8) = 50; call b; r0 += *(r10-8); exit
    // b: *(r10-8) = 500; r0 = *(r10-8); exit
    let store = |v| I::Store {
        size: Size::DW,
        dst: 10,
        off: -8,
        src: Operand::Imm(v),
    };
    let load_r1 = I::Load {
        size: Size::DW,
        dst: 1,
        src: 10,
        off: -8,
        sign_extend: false,
    };
    let program = common::program(&[
        store(5),
        I::CallLocal { imm: 3 },
        load_r1,
        add(0, Operand::Reg(1)),
        I::Exit,
        // slot 5: a
        store(50),
        I::CallLocal { imm: 3 },
        load_r1,
        add(0, Operand::Reg(1)),
        I::Exit,
        // slot 10: b
        store(500),
        I::Load {
            size: Size::DW,
            dst: 0,
            src: 10,
            off: -8,
            sign_extend: false,
        },
        I::Exit,
    ]);
    let helpers = HelperRegistry::empty();
    let jit_r0 = common::jit_run(&program, [0; 5], &helpers).unwrap();
    assert_eq!(jit_r0, 555);
    assert_eq!(
        jit_r0,
        common::interp_run(&program, [0; 5], &helpers).unwrap()
    );
    // Repeated runs start from the same frame again (the entry stub resets rbp).
    for _ in 0..3 {
        assert_eq!(common::jit_run(&program, [0; 5], &helpers).unwrap(), 555);
    }
}

#[test]
fn a_program_that_writes_r10_keeps_absolute_frames() {
    // r10 = r10 (a write the verifier would reject); call f; exit. f: r0 = 9; exit
    let program = common::program(&[
        mov(10, Operand::Reg(10)),
        I::CallLocal { imm: 1 },
        I::Exit,
        mov(0, Operand::Imm(9)),
        I::Exit,
    ]);
    let jit = JitProgram::compile(&program, &JitOptions::default()).unwrap();
    let f = prologue(&jit, 3);
    assert!(f.iter().any(|s| s == "push rbp"), "{f:?}");
    assert!(f.iter().any(|s| s.starts_with("imul")), "{f:?}");
    let helpers = HelperRegistry::empty();
    assert_eq!(common::jit_run(&program, [0; 5], &helpers).unwrap(), 9);
}

#[test]
fn stack_and_heap_style_accesses_use_short_encodings() {
    // *(u64 *)(r10 - 8) = r1; r0 = *(u64 *)(r10 - 8); exit
    let program = common::program(&[
        I::Store {
            size: Size::DW,
            dst: 10,
            off: -8,
            src: Operand::Reg(1),
        },
        I::Load {
            size: Size::DW,
            dst: 0,
            src: 10,
            off: -8,
            sign_extend: false,
        },
        I::Exit,
    ]);
    let jit = JitProgram::compile(&program, &JitOptions::default()).unwrap();
    let (a, b, c) = (
        jit.code_offset(0).unwrap(),
        jit.code_offset(1).unwrap(),
        jit.code_offset(2).unwrap(),
    );
    assert_eq!(disasm(&jit, a, b), ["mov [rbp-8],rdi"]);
    assert_eq!(b - a, 4, "REX.W 89 modrm disp8");
    assert_eq!(disasm(&jit, b, c), ["mov rax,[rbp-8]"]);
    assert_eq!(c - b, 4);
    let helpers = HelperRegistry::empty();
    assert_eq!(
        common::jit_run(&program, [77, 0, 0, 0, 0], &helpers).unwrap(),
        77
    );
}

#[test]
fn an_exit_returns_in_place_instead_of_jumping_to_a_shared_epilogue() {
    let program = common::program(&caller_and_clobbering_callee());
    let jit = JitProgram::compile(&program, &JitOptions::default()).unwrap();
    // The callee's exit (slot 15) ends its function: restore r13 (all it saved), return.
    let (a, b) = (jit.code_offset(15).unwrap(), jit.code().len());
    let exit = disasm(&jit, a, b);
    let ret = exit.iter().position(|s| s == "ret").expect("ret");
    assert!(
        !exit[..ret].iter().any(|s| s.starts_with("jmp")),
        "{exit:?}"
    );
    assert_eq!(exit[ret - 1], "pop r13");
    assert!(exit[..ret].iter().any(|s| s.starts_with("add rbp,")));
}

/// The code of slot `pc` alone.
fn slot_code(jit: &JitProgram, pc: usize) -> Vec<String> {
    disasm(
        jit,
        jit.code_offset(pc).unwrap(),
        jit.code_offset(pc + 1).unwrap(),
    )
}

#[test]
fn comparisons_with_zero_and_small_immediates_use_short_forms() {
    use kflex_isa::decode::JmpOp;
    let jump = |width, op, imm| I::Jump {
        width,
        op,
        dst: 3,
        src: Operand::Imm(imm),
        off: 1,
    };
    let cases = [
        (jump(Width::W64, JmpOp::Eq, 0), "test rdx,rdx", 3),
        (jump(Width::W32, JmpOp::Sgt, 0), "test edx,edx", 2),
        (
            jump(Width::W64, JmpOp::Lt, -16),
            "cmp rdx,0FFFFFFFFFFFFFFF0h",
            4,
        ),
        (jump(Width::W32, JmpOp::Le, 127), "cmp edx,7Fh", 3),
        (jump(Width::W64, JmpOp::Ne, 0x400), "cmp rdx,400h", 7),
    ];
    for (insn, text, len) in cases {
        let program = common::program(&[insn, mov(0, Operand::Imm(1)), I::Exit]);
        let jit = JitProgram::compile(&program, &JitOptions::default()).unwrap();
        let code = slot_code(&jit, 0);
        assert_eq!(code[0], text, "{insn:?}");
        let bytes = jit.code_offset(1).unwrap() - jit.code_offset(0).unwrap();
        // The compare, then a jcc with a 32-bit displacement (6 bytes).
        assert_eq!(bytes, len + 6, "{code:?}");
    }
    let alu = |width, op, imm| I::Alu {
        width,
        op,
        dst: 7,
        src: Operand::Imm(imm),
    };
    let cases = [
        (alu(Width::W64, AluOp::Add, 8), "add r13,8", 4),
        (alu(Width::W32, AluOp::And, 63), "and r13d,3Fh", 4),
        (
            alu(Width::W64, AluOp::Sub, -1),
            "sub r13,0FFFFFFFFFFFFFFFFh",
            4,
        ),
        (alu(Width::W64, AluOp::Or, 0x100), "or r13,100h", 7),
    ];
    for (insn, text, len) in cases {
        let program = common::program(&[insn, I::Exit]);
        let jit = JitProgram::compile(&program, &JitOptions::default()).unwrap();
        assert_eq!(slot_code(&jit, 0), [text], "{insn:?}");
        let bytes = jit.code_offset(1).unwrap() - jit.code_offset(0).unwrap();
        assert_eq!(bytes, len, "{insn:?}");
    }
}

#[test]
fn short_forms_compute_what_the_interpreter_computes() {
    use kflex_isa::decode::JmpOp;
    let helpers = HelperRegistry::empty();
    // For each value and immediate: r0 = 1 if (r1 op imm) else 0, for every condition and width,
    // and r1 op= imm for the ALU forms.
    let values = [
        0u64,
        1,
        127,
        128,
        u64::MAX,
        1 << 63,
        0xffff_ff80,
        0x1_0000_0000,
    ];
    let imms = [0, 1, -1, 127, -128, 0x7f, 0x400];
    for &v in &values {
        for &imm in &imms {
            for width in [Width::W64, Width::W32] {
                for op in JmpOp::ALL {
                    let program = common::program(&[
                        mov(0, Operand::Imm(1)),
                        I::Jump {
                            width,
                            op,
                            dst: 1,
                            src: Operand::Imm(imm),
                            off: 1,
                        },
                        mov(0, Operand::Imm(0)),
                        I::Exit,
                    ]);
                    let args = [v, 0, 0, 0, 0];
                    assert_eq!(
                        common::jit_run(&program, args, &helpers).unwrap(),
                        common::interp_run(&program, args, &helpers).unwrap(),
                        "{v:#x} {op:?} {imm} {width:?}"
                    );
                }
                for op in [AluOp::Add, AluOp::Sub, AluOp::And, AluOp::Or, AluOp::Xor] {
                    let program = common::program(&[
                        I::Alu {
                            width,
                            op,
                            dst: 1,
                            src: Operand::Imm(imm),
                        },
                        mov(0, Operand::Reg(1)),
                        I::Exit,
                    ]);
                    let args = [v, 0, 0, 0, 0];
                    assert_eq!(
                        common::jit_run(&program, args, &helpers).unwrap(),
                        common::interp_run(&program, args, &helpers).unwrap(),
                        "{v:#x} {op:?} {imm} {width:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn an_exhausted_may_goto_counter_stays_exhausted() {
    // Loop 1 exhausts the frame's budget; then r6 counts how many of 5 further may_gotos fall
    // through (none may: the counter must stay at zero, not wrap). r0 = r0 (loop count) + r6.
    let program = common::program(&[
        mov(0, Operand::Imm(0)),
        mov(6, Operand::Imm(0)),
        I::MayGoto { off: 2 },
        add(0, Operand::Imm(1)),
        I::Ja { off: -3 },
        // slot 5: five may_gotos, each skipping an increment of r6 only when exhausted
        I::MayGoto { off: 1 },
        add(6, Operand::Imm(1)),
        I::MayGoto { off: 1 },
        add(6, Operand::Imm(1)),
        I::MayGoto { off: 1 },
        add(6, Operand::Imm(1)),
        I::MayGoto { off: 1 },
        add(6, Operand::Imm(1)),
        I::MayGoto { off: 1 },
        add(6, Operand::Imm(1)),
        add(0, Operand::Reg(6)),
        I::Exit,
    ]);
    let helpers = HelperRegistry::empty();
    let jit_r0 = common::jit_run(&program, [0; 5], &helpers).unwrap();
    assert_eq!(jit_r0, kflex_jit::MAY_GOTO_BUDGET);
    assert_eq!(
        jit_r0,
        common::interp_run(&program, [0; 5], &helpers).unwrap()
    );
}

#[test]
fn a_leaf_function_leaves_the_depth_counter_alone_and_depth_limits_still_hold() {
    let program = common::program(&caller_and_clobbering_callee());
    let jit = JitProgram::compile(&program, &JitOptions::default()).unwrap();
    let stores_r11 = |code: &[String]| {
        code.iter()
            .filter(|s| s.starts_with("mov [r9+") && s.ends_with(",r11"))
            .count()
    };
    // main calls f: it counts its depth (one store; the deepest-frame store is behind a branch
    // and is the second). The leaf f only records the deepest frame.
    assert_eq!(stores_r11(&prologue(&jit, 0)), 2);
    assert_eq!(stores_r11(&prologue(&jit, 11)), 1);

    // Recursion past the frame limit still stops with a call-depth fault, in both engines.
    let recursive = common::program(&[I::CallLocal { imm: -1 }, I::Exit]);
    let helpers = HelperRegistry::empty();
    let err = common::jit_run(&recursive, [0; 5], &helpers).unwrap_err();
    assert!(
        matches!(err.kind, kflex_jit::JitFaultKind::CallDepth { .. }),
        "{err:?}"
    );
    assert!(common::interp_run(&recursive, [0; 5], &helpers).is_err());
}
