//! The shape of the generated code (disassembled with iced-x86), W^X code memory, the code
//! offset -> slot table and the context-access rewrite.

mod common;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use kflex_isa::decode::{AluOp, Instruction as I, Operand, Size, Width};
use kflex_jit::{CtxAccess, JitEnv, JitError, JitFaultKind, JitOptions, JitProgram};
use kflex_runtime::{ContextAccess, ExecEnv, HelperRegistry, MemoryMap};

/// Disassembles `code[range]` (Intel syntax, one string per instruction).
fn disasm(jit: &JitProgram, start: usize, end: usize) -> Vec<String> {
    let bytes = &jit.code()[start..end];
    let mut decoder = Decoder::with_ip(
        64,
        bytes,
        (jit.code_addr() + start) as u64,
        DecoderOptions::NONE,
    );
    let mut f = IntelFormatter::new();
    let mut out = Vec::new();
    for insn in &mut decoder {
        let mut s = String::new();
        f.format(&insn, &mut s);
        out.push(s);
    }
    out
}

fn compile(insns: &[I]) -> JitProgram {
    JitProgram::compile(&common::program(insns), &JitOptions::default()).expect("compiles")
}

fn add_r0_r1() -> Vec<I> {
    vec![
        I::Mov {
            width: Width::W64,
            dst: 0,
            src: Operand::Imm(1),
        },
        I::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst: 0,
            src: Operand::Reg(1),
        },
        I::Exit,
    ]
}

#[test]
fn one_bpf_alu_instruction_is_one_x86_instruction() {
    let jit = compile(&add_r0_r1());
    let (a, b) = (jit.code_offset(1).unwrap(), jit.code_offset(2).unwrap());
    assert_eq!(disasm(&jit, a, b), ["add rax,rdi"]);

    let jit = compile(&[
        I::Alu {
            width: Width::W32,
            op: AluOp::Xor,
            dst: 6,
            src: Operand::Reg(9),
        },
        I::Alu {
            width: Width::W64,
            op: AluOp::Sub,
            dst: 7,
            src: Operand::Imm(5),
        },
        I::Exit,
    ]);
    let (a, b, c) = (
        jit.code_offset(0).unwrap(),
        jit.code_offset(1).unwrap(),
        jit.code_offset(2).unwrap(),
    );
    assert_eq!(disasm(&jit, a, b), ["xor ebx,r15d"]);
    assert_eq!(disasm(&jit, b, c), ["sub r13,5"]);
}

#[test]
fn entry_stub_and_prologue_save_callee_saved_registers() {
    let jit = compile(&add_r0_r1());
    let head = disasm(&jit, 0, 16);
    assert_eq!(
        &head[..6],
        [
            "push rbx", "push rbp", "push r12", "push r13", "push r14", "push r15"
        ],
        "the entry stub saves every callee-saved register of the host ABI"
    );
    let f = jit.function_offset(0).expect("slot 0 starts a function");
    let prologue = disasm(&jit, f, f + 12);
    assert!(
        !prologue[0].starts_with("push"),
        "a function that writes none of r6..r9 saves none of them: {prologue:?}"
    );
    // The stub's matching pops restore them in reverse order before `ret`.
    let all = disasm(&jit, 0, jit.code().len());
    let ret = all.iter().position(|s| s == "ret").expect("a ret");
    assert_eq!(
        &all[ret - 6..ret],
        [
            "pop r15", "pop r14", "pop r13", "pop r12", "pop rbp", "pop rbx"
        ]
    );
}

#[test]
fn code_memory_is_never_writable_after_compile() {
    let jit = compile(&add_r0_r1());
    let addr = jit.code_addr() as u64;
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    let line = maps
        .lines()
        .find(|l| {
            let range = l.split_whitespace().next().unwrap_or("");
            let (lo, hi) = range.split_once('-').unwrap_or(("0", "0"));
            let lo = u64::from_str_radix(lo, 16).unwrap_or(0);
            let hi = u64::from_str_radix(hi, 16).unwrap_or(0);
            (lo..hi).contains(&addr)
        })
        .expect("the code is mapped");
    let perms = line.split_whitespace().nth(1).unwrap();
    assert_eq!(&perms[..3], "r-x", "mapping {line}");
}

#[test]
fn code_offsets_map_back_to_slots() {
    let insns = vec![
        I::LoadImm64 {
            dst: 1,
            pseudo: 0,
            imm: u64::MAX,
        },
        I::Alu {
            width: Width::W64,
            op: AluOp::Div,
            dst: 1,
            src: Operand::Imm(3),
        },
        I::Mov {
            width: Width::W64,
            dst: 0,
            src: Operand::Reg(1),
        },
        I::Exit,
    ];
    let jit = compile(&insns);
    let slots = [0usize, 2, 3, 4];
    for w in slots.windows(2) {
        let (a, b) = (
            jit.code_offset(w[0]).unwrap(),
            jit.code_offset(w[1]).unwrap(),
        );
        assert!(a < b);
        for off in a..b {
            assert_eq!(jit.pc_at(off), Some(w[0]), "offset {off}");
        }
    }
    assert_eq!(jit.code_offset(1), None, "second slot of lddw has no code");
    assert_eq!(jit.pc_at(0), None, "the entry stub is no instruction");
}

/// A context of 16 bytes whose loads return `offset * 0x100 + size` and whose stores are
/// recorded; offsets of 8 and more are refused.
#[derive(Default)]
struct FakeCtx {
    stores: Vec<(u64, u8, u64)>,
}

impl ContextAccess for FakeCtx {
    fn load(&mut self, offset: u64, size: u8) -> Result<u64, String> {
        if offset >= 8 {
            return Err(format!("offset {offset} is private"));
        }
        Ok(offset * 0x100 + u64::from(size) + 0xff00_0000_0000_0000)
    }
    fn store(&mut self, offset: u64, size: u8, value: u64) -> Result<(), String> {
        self.stores.push((offset, size, value));
        Ok(())
    }
}

fn ctx_program() -> Vec<I> {
    vec![
        I::Load {
            size: Size::W,
            dst: 0,
            src: 1,
            off: 4,
            sign_extend: false,
        },
        I::Mov {
            width: Width::W64,
            dst: 3,
            src: Operand::Imm(9),
        },
        I::Store {
            size: Size::H,
            dst: 1,
            off: 2,
            src: Operand::Reg(3),
        },
        I::Load {
            size: Size::B,
            dst: 2,
            src: 1,
            off: 8,
            sign_extend: false,
        },
        I::Exit,
    ]
}

#[test]
fn context_accesses_in_the_rewrite_table_call_the_hook() {
    let program = common::program(&ctx_program());
    let options = JitOptions {
        ctx_accesses: vec![
            (0, 4, 4, false).into(),
            CtxAccess {
                pc: 2,
                offset: 2,
                size: 2,
                write: true,
            },
        ],
        ..JitOptions::default()
    };
    let jit = JitProgram::compile(&program, &options).unwrap();
    let (mut mem, mut env, helpers) = (
        MemoryMap::new(),
        ExecEnv::default(),
        HelperRegistry::empty(),
    );
    let mut ctx = FakeCtx::default();
    {
        let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
        jenv.ctx = Some(&mut ctx);
        // Slot 3 is not rewritten and reads the buffer r1 points to.
        let buf = [0x5au8; 16];
        let r0 = jit
            .run([buf.as_ptr() as u64, 0, 0, 0, 0], &mut jenv)
            .unwrap();
        // As in the interpreter, the hook's value is taken whole: pointer fields such as
        // `xdp_md.data` are 4-byte loads that produce 64-bit addresses.
        assert_eq!(r0, 0xff00_0000_0000_0404, "the hook's value is kept whole");
    }
    assert_eq!(ctx.stores, [(2, 2, 9)]);

    // Without a hook the rewritten access faults.
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    let f = jit.run([0; 5], &mut jenv).unwrap_err();
    assert_eq!(f.pc, 0);
    assert!(
        matches!(
            f.kind,
            JitFaultKind::Context {
                offset: 4,
                size: 4,
                ..
            }
        ),
        "{f}"
    );
}

#[test]
fn refused_context_access_stops_the_run() {
    let program = common::program(&ctx_program());
    let options = JitOptions {
        ctx_accesses: vec![(3, 8, 1, false).into()],
        ..JitOptions::default()
    };
    let jit = JitProgram::compile(&program, &options).unwrap();
    let (mut mem, mut env, helpers) = (
        MemoryMap::new(),
        ExecEnv::default(),
        HelperRegistry::empty(),
    );
    let mut ctx = FakeCtx::default();
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.ctx = Some(&mut ctx);
    let mut buf = [0u8; 16];
    let f = jit
        .run([buf.as_mut_ptr() as u64, 0, 0, 0, 0], &mut jenv)
        .unwrap_err();
    assert_eq!(f.pc, 3);
    match f.kind {
        JitFaultKind::Context {
            offset: 8,
            size: 1,
            reason,
        } => assert!(reason.contains("private")),
        other => panic!("unexpected {other:?}"),
    }
    // Slot 2 was a plain store into the buffer: 9 at offset 2.
    assert_eq!(&buf[2..4], &[9, 0]);
}

#[test]
fn bad_rewrite_tables_are_rejected_naming_the_instruction() {
    let program = common::program(&ctx_program());
    for (entry, pc) in [
        (
            CtxAccess {
                pc: 1,
                offset: 0,
                size: 4,
                write: false,
            },
            1,
        ), // a mov
        (
            CtxAccess {
                pc: 0,
                offset: 4,
                size: 4,
                write: true,
            },
            0,
        ), // a load marked write
        (
            CtxAccess {
                pc: 0,
                offset: 4,
                size: 3,
                write: false,
            },
            0,
        ), // bad size
        (
            CtxAccess {
                pc: 99,
                offset: 0,
                size: 4,
                write: false,
            },
            99,
        ),
    ] {
        let err = JitProgram::compile(
            &program,
            &JitOptions {
                ctx_accesses: vec![entry],
                ..JitOptions::default()
            },
        )
        .unwrap_err();
        match err {
            JitError::Instruction { pc: got, .. } => assert_eq!(got, pc, "{err}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with(&format!("instruction {pc}: ")));
    }
}
