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
