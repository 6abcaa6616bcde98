//! Context accesses compiled inline (through the run's context plan) give exactly what the
//! trampoline and the context hook give: every readable field of every program type, every
//! writable field, sign-extending loads, accesses past the inline limit, and packet pointers
//! after the head moved.

mod common;

use kflex_hooks::{PreparedRun, TestRunInput, check_ctx_access, prepare};
use kflex_isa::decode::{Instruction as I, Operand, Size, Width};
use kflex_jit::{CtxAccess, CtxDirect, JitEnv, JitOptions, JitProgram};
use kflex_object::ProgType;
use kflex_runtime::{Access, ExecEnv, HelperRegistry, MemoryMap};

const TYPES: [ProgType; 5] = [
    ProgType::Xdp,
    ProgType::SocketFilter,
    ProgType::SchedCls,
    ProgType::SkSkb,
    ProgType::Syscall,
];

/// Bytes of the `syscall` context image the tests use.
const SYSCALL_CTX: usize = 64;

fn input(ty: ProgType) -> TestRunInput {
    if ty == ProgType::Syscall {
        let ctx: Vec<u8> = (0..SYSCALL_CTX as u8).map(|b| b.wrapping_mul(37)).collect();
        return TestRunInput {
            data_in: Vec::new(),
            ctx_in: Some(ctx),
        };
    }
    // Ethernet + IPv4 header bytes with distinct values, so every field reads something different.
    let frame: Vec<u8> = (0..96u8)
        .map(|b| b.wrapping_mul(29).wrapping_add(3))
        .collect();
    TestRunInput {
        data_in: frame,
        ctx_in: None,
    }
}

fn prepared(ty: ProgType) -> (PreparedRun, MemoryMap) {
    let mut run = prepare(ty, &input(ty)).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled by `finish` before the run is finished or dropped.
    unsafe { run.install(&mut mem).unwrap() };
    (run, mem)
}

fn finish(run: PreparedRun, mut mem: MemoryMap) -> kflex_hooks::TestRunOutput {
    run.uninstall(&mut mem);
    run.finish()
}

fn direct_of(run: &PreparedRun) -> CtxDirect {
    let d = run.direct_context();
    // SAFETY: the run stays installed (alive, unmoved) for as long as the test uses the result.
    unsafe { CtxDirect::new(d.image, d.len, d.pointers, d.loads, d.stores, d.uniform) }
}

/// `(offset, size)` of every access `ty`'s rules allow.
fn allowed(ty: ProgType, access: Access) -> Vec<(u32, u8)> {
    let limit = if ty == ProgType::Syscall {
        SYSCALL_CTX as u32
    } else {
        200
    };
    let mut out = Vec::new();
    for offset in 0..limit {
        for size in [1u8, 2, 4, 8] {
            if offset + u32::from(size) <= limit
                && check_ctx_access(ty, u64::from(offset), size, access).is_ok()
            {
                out.push((offset, size));
            }
        }
    }
    out
}

fn size_of(size: u8) -> Size {
    match size {
        1 => Size::B,
        2 => Size::H,
        4 => Size::W,
        _ => Size::DW,
    }
}

/// Runs `jit` on `run`'s context: with `direct` the plan (inline accesses) is in use.
fn run_on(jit: &JitProgram, run: &mut PreparedRun, mem: &mut MemoryMap, direct: bool) -> u64 {
    let d = direct_of(run);
    let ctx = run.ctx_address();
    let (helpers, mut env) = (HelperRegistry::empty(), ExecEnv::default());
    let mut jenv = JitEnv::new(mem, &helpers, &mut env);
    jenv.ctx = Some(run.context_access());
    if direct {
        jenv.ctx_direct = Some(&d);
    }
    jit.run([ctx, 0x5a5a_5a5a_1234_5678, 0, 0, 0], &mut jenv)
        .expect("run succeeds")
}

/// `rD = *(size *)(r1 + off); r0 = rD; exit` with the load rewritten as a context access.
fn load_program(offset: u32, size: u8, dst: u8, sign_extend: bool) -> JitProgram {
    let insns = [
        I::Load {
            size: size_of(size),
            dst,
            src: 1,
            off: offset as i16,
            sign_extend,
        },
        I::Mov {
            width: Width::W64,
            dst: 0,
            src: Operand::Reg(dst),
        },
        I::Exit,
    ];
    let options = JitOptions {
        ctx_accesses: vec![(0, offset, size, false).into()],
        ..JitOptions::default()
    };
    JitProgram::compile(&common::program(&insns), &options).unwrap()
}

#[test]
fn inline_loads_equal_the_hook_for_every_readable_field() {
    for ty in TYPES {
        let (mut run, mut mem) = prepared(ty);
        let direct = direct_of(&run);
        let fields = allowed(ty, Access::Read);
        assert!(!fields.is_empty(), "{ty:?}");
        let mut inline = 0;
        for (i, &(offset, size)) in fields.iter().enumerate() {
            // Every register a load may write except r1 (the context) and r10.
            let dst = [0u8, 2, 3, 4, 5, 6, 7, 8, 9][i % 9];
            let jit = load_program(offset, size, dst, false);
            let by_hook = run_on(&jit, &mut run, &mut mem, false);
            let expected = run.context_access().load(u64::from(offset), size).unwrap();
            assert_eq!(by_hook, expected, "{ty:?} trampoline {size}@{offset}");
            let by_plan = run_on(&jit, &mut run, &mut mem, true);
            assert_eq!(by_plan, expected, "{ty:?} inline {size}@{offset}");
            let access = CtxAccess::from((0, offset, size, false));
            inline += usize::from(direct.serve(&access, 0).is_some());
        }
        assert!(inline > 0, "{ty:?}: some loads are served directly");
        finish(run, mem);
    }
}

#[test]
fn sign_extending_loads_equal_the_hook() {
    for ty in TYPES {
        let (mut run, mut mem) = prepared(ty);
        // LDSX has no 8-byte form.
        for (offset, size) in allowed(ty, Access::Read).into_iter().filter(|a| a.1 < 8) {
            let jit = load_program(offset, size, 3, true);
            let by_hook = run_on(&jit, &mut run, &mut mem, false);
            let by_plan = run_on(&jit, &mut run, &mut mem, true);
            assert_eq!(by_plan, by_hook, "{ty:?} {size}@{offset}");
        }
        finish(run, mem);
    }
}

/// Stores the argument r2 (`Reg`) or an immediate to every writable field, then loads it back.
fn store_program(offset: u32, size: u8, imm: bool) -> JitProgram {
    let src = if imm {
        Operand::Imm(-0x3456_789a)
    } else {
        Operand::Reg(2)
    };
    let insns = [
        I::Store {
            size: size_of(size),
            dst: 1,
            off: offset as i16,
            src,
        },
        I::Mov {
            width: Width::W64,
            dst: 0,
            src: Operand::Imm(7),
        },
        I::Exit,
    ];
    let options = JitOptions {
        ctx_accesses: vec![(0, offset, size, true).into()],
        ..JitOptions::default()
    };
    JitProgram::compile(&common::program(&insns), &options).unwrap()
}

#[test]
fn inline_stores_leave_the_context_the_hook_would() {
    for ty in TYPES {
        for imm in [false, true] {
            let (mut by_hook, mut mem_h) = prepared(ty);
            let (mut by_plan, mut mem_p) = prepared(ty);
            for (offset, size) in allowed(ty, Access::Write) {
                let jit = store_program(offset, size, imm);
                assert_eq!(run_on(&jit, &mut by_hook, &mut mem_h, false), 7);
                assert_eq!(run_on(&jit, &mut by_plan, &mut mem_p, true), 7);
            }
            assert_eq!(
                finish(by_hook, mem_h),
                finish(by_plan, mem_p),
                "{ty:?} imm={imm}"
            );
        }
    }
}

#[test]
fn accesses_past_the_inline_limit_still_work() {
    // 40 loads of `data` (XDP offset 0, a pointer) and `ingress_ifindex` (12, plain), summed.
    let mut insns = vec![I::Mov {
        width: Width::W64,
        dst: 0,
        src: Operand::Imm(0),
    }];
    let mut accesses = Vec::new();
    for i in 0..40u32 {
        let offset = if i % 2 == 0 { 0 } else { 12 };
        accesses.push(CtxAccess::from((insns.len(), offset, 4, false)));
        insns.push(I::Load {
            size: Size::W,
            dst: 2,
            src: 1,
            off: offset as i16,
            sign_extend: false,
        });
        insns.push(I::Alu {
            width: Width::W64,
            op: kflex_isa::decode::AluOp::Add,
            dst: 0,
            src: Operand::Reg(2),
        });
    }
    insns.push(I::Exit);
    let options = JitOptions {
        ctx_accesses: accesses,
        ..JitOptions::default()
    };
    let jit = JitProgram::compile(&common::program(&insns), &options).unwrap();
    let (mut run, mut mem) = prepared(ProgType::Xdp);
    let data = run.context_access().load(0, 4).unwrap();
    let ifindex = run.context_access().load(12, 4).unwrap();
    let expected = 20u64
        .wrapping_mul(data)
        .wrapping_add(20u64.wrapping_mul(ifindex));
    assert_eq!(run_on(&jit, &mut run, &mut mem, false), expected);
    assert_eq!(run_on(&jit, &mut run, &mut mem, true), expected);
    finish(run, mem);
}

#[test]
fn inline_packet_pointers_follow_a_moved_head() {
    let (mut run, mut mem) = prepared(ProgType::Xdp);
    let jit = load_program(0, 4, 0, false);
    let before = run_on(&jit, &mut run, &mut mem, true);
    let registry = {
        let mut r = HelperRegistry::empty();
        for h in kflex_hooks::extra_helpers(ProgType::Xdp) {
            r.register(h).unwrap();
        }
        r
    };
    let adjust = registry.get(kflex_hooks::BPF_FUNC_XDP_ADJUST_HEAD).unwrap();
    let mut env = ExecEnv::default();
    let mut call = kflex_runtime::HelperCall {
        args: [run.ctx_address(), 4, 0, 0, 0],
        mem: &mut mem,
        env: &mut env,
    };
    assert_eq!((adjust.func)(&mut call).unwrap(), 0);
    let after = run_on(&jit, &mut run, &mut mem, true);
    assert_eq!(after, before + 4);
    assert_eq!(after, run.context_access().load(0, 4).unwrap());
    finish(run, mem);
}
