//! Helper calls, BPF-to-BPF calls, `callx`, `may_goto` and run-time faults, each checked against
//! the expected value and, where the interpreter defines the same behaviour, against it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{interp_run, jit_run, program};
use kflex_isa::decode::{AluOp, Instruction as I, JmpOp, Operand, Width};
use kflex_isa::op;
use kflex_jit::{JitEnv, JitFaultKind, JitOptions, JitProgram, MAY_GOTO_BUDGET};
use kflex_runtime::helpers::{ArgKind, RetKind};
use kflex_runtime::{
    ExecEnv, HelperDef, HelperError, HelperFn, HelperRegistry, MemoryMap, Signature,
};

fn mov(dst: u8, imm: i32) -> I {
    I::Mov {
        width: Width::W64,
        dst,
        src: Operand::Imm(imm),
    }
}
fn movr(dst: u8, src: u8) -> I {
    I::Mov {
        width: Width::W64,
        dst,
        src: Operand::Reg(src),
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

fn registry(helpers: Vec<(u32, Arc<HelperFn>)>) -> HelperRegistry {
    let mut r = HelperRegistry::empty();
    for (id, func) in helpers {
        r.register(HelperDef {
            id,
            name: format!("test_helper_{id}"),
            sig: Signature::new(&[ArgKind::Any; 5], RetKind::Scalar),
            func,
        })
        .expect("helper registers");
    }
    r
}

/// Helper 7 returns a weighted sum of its five arguments (so argument order matters).
fn weighted_sum() -> Arc<HelperFn> {
    Arc::new(|c| {
        Ok(c.args
            .iter()
            .enumerate()
            .map(|(i, a)| a.wrapping_mul(10u64.pow(i as u32)))
            .sum())
    })
}

#[test]
fn helper_receives_r1_to_r5_and_returns_in_r0_and_r1_r5_survive() {
    let p = program(&[
        mov(1, 1),
        mov(2, 2),
        mov(3, 3),
        mov(4, 4),
        mov(5, 5),
        mov(6, 1000),
        I::Call { helper: 7 },
        // r0 = result + r1..r5 + r6 (r1..r5 keep their values, r6 is callee-saved).
        add(0, Operand::Reg(1)),
        add(0, Operand::Reg(2)),
        add(0, Operand::Reg(3)),
        add(0, Operand::Reg(4)),
        add(0, Operand::Reg(5)),
        add(0, Operand::Reg(6)),
        I::Exit,
    ]);
    let helpers = registry(vec![(7, weighted_sum())]);
    let expected = 54321 + 15 + 1000;
    assert_eq!(jit_run(&p, [0; 5], &helpers), Ok(expected));
    assert_eq!(interp_run(&p, [0; 5], &helpers).unwrap(), expected);
}

#[test]
fn helper_error_stops_the_program() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let failing: Arc<HelperFn> = Arc::new(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Err(HelperError::BadArgument {
            arg: 1,
            reason: "no".into(),
        })
    });
    let p = program(&[
        mov(6, 0),
        I::Call { helper: 3 },
        mov(6, 1),
        I::Call { helper: 3 },
        mov(0, 99),
        I::Exit,
    ]);
    let helpers = registry(vec![(3, failing)]);
    let fault = jit_run(&p, [0; 5], &helpers).unwrap_err();
    assert_eq!(fault.pc, 1);
    assert!(
        matches!(fault.kind, JitFaultKind::Helper { id: 3, .. }),
        "{fault}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "nothing ran after the failing call"
    );
}

#[test]
fn helper_panic_is_caught_at_the_trampoline() {
    let panicking: Arc<HelperFn> = Arc::new(|_| panic!("helper exploded"));
    let p = program(&[I::Call { helper: 9 }, I::Exit]);
    let helpers = registry(vec![(9, panicking)]);
    let fault = jit_run(&p, [0; 5], &helpers).unwrap_err();
    match fault.kind {
        JitFaultKind::HelperPanic { id: 9, message } => assert!(message.contains("exploded")),
        other => panic!("unexpected fault {other:?}"),
    }
}

#[test]
fn unknown_helper_faults_with_its_number() {
    let p = program(&[mov(0, 0), I::Call { helper: 4242 }, I::Exit]);
    let fault = jit_run(&p, [0; 5], &HelperRegistry::empty()).unwrap_err();
    assert_eq!(
        (fault.pc, fault.kind),
        (1, JitFaultKind::UnknownHelper(4242))
    );
}

#[test]
fn helper_sees_the_stack_frame_through_the_memory_map() {
    // The helper reads 8 bytes at r1 (a stack address) through the memory map.
    let read: Arc<HelperFn> = Arc::new(|c| Ok(c.mem.load(c.args[0], 8)?));
    let p = program(&[
        I::LoadImm64 {
            dst: 2,
            pseudo: 0,
            imm: 0x1122_3344_5566_7788,
        },
        I::Store {
            size: kflex_isa::decode::Size::DW,
            dst: 10,
            off: -16,
            src: Operand::Reg(2),
        },
        movr(1, 10),
        add(1, Operand::Imm(-16)),
        I::Call { helper: 2 },
        I::Exit,
    ]);
    let helpers = registry(vec![(2, read)]);
    assert_eq!(jit_run(&p, [0; 5], &helpers), Ok(0x1122_3344_5566_7788));
}

/// `r0 = f(r1)` where the subprogram at slot 3 computes `r1 * 2 + 1` on its own frame and
/// clobbers r6, which the caller must see restored.
#[test]
fn bpf_to_bpf_call_gets_its_own_frame_and_preserves_r6_to_r10() {
    let p = program(&[
        mov(6, 5),
        I::Store {
            size: kflex_isa::decode::Size::DW,
            dst: 10,
            off: -8,
            src: Operand::Imm(77),
        },
        I::CallLocal { imm: 4 },
        add(0, Operand::Reg(6)),
        // r0 += caller's stack slot (untouched by the callee's store at the same offset).
        I::Load {
            size: kflex_isa::decode::Size::DW,
            dst: 1,
            src: 10,
            off: -8,
            sign_extend: false,
        },
        add(0, Operand::Reg(1)),
        I::Exit,
        // subprogram
        mov(6, 1000),
        I::Store {
            size: kflex_isa::decode::Size::DW,
            dst: 10,
            off: -8,
            src: Operand::Imm(1),
        },
        movr(0, 1),
        I::Alu {
            width: Width::W64,
            op: AluOp::Mul,
            dst: 0,
            src: Operand::Imm(2),
        },
        add(0, Operand::Imm(1)),
        I::Exit,
    ]);
    let helpers = HelperRegistry::empty();
    let expected = 21 * 2 + 1 + 5 + 77;
    assert_eq!(jit_run(&p, [21, 0, 0, 0, 0], &helpers), Ok(expected));
    assert_eq!(
        interp_run(&p, [21, 0, 0, 0, 0], &helpers).unwrap(),
        expected
    );
}

#[test]
fn recursion_works_up_to_the_frame_limit_and_faults_beyond() {
    // fact(n) by recursion: the subprogram at slot 3 is
    // `if r1 == 0 return 1; return r1 * fact(r1 - 1)`.
    let p = {
        let mut insns = vec![I::CallLocal { imm: 2 }, I::Exit, I::Exit];
        insns.extend_from_slice(&[
            I::Jump {
                width: Width::W64,
                op: JmpOp::Ne,
                dst: 1,
                src: Operand::Imm(0),
                off: 2,
            },
            mov(0, 1),
            I::Exit,
            movr(6, 1),
            add(1, Operand::Imm(-1)),
            I::CallLocal { imm: -6 },
            I::Alu {
                width: Width::W64,
                op: AluOp::Mul,
                dst: 0,
                src: Operand::Reg(6),
            },
            I::Exit,
        ]);
        program(&insns)
    };
    let helpers = HelperRegistry::empty();
    // main + fact(6) .. fact(0) = 8 frames: the default limit.
    assert_eq!(jit_run(&p, [6, 0, 0, 0, 0], &helpers), Ok(720));
    assert_eq!(interp_run(&p, [6, 0, 0, 0, 0], &helpers).unwrap(), 720);
    let fault = jit_run(&p, [7, 0, 0, 0, 0], &helpers).unwrap_err();
    assert_eq!(fault.kind, JitFaultKind::CallDepth { limit: 8 });
    assert_eq!(fault.pc, 8, "the call that would need a ninth frame");
    let ifault = interp_run(&p, [7, 0, 0, 0, 0], &helpers).unwrap_err();
    assert_eq!(ifault.pc, fault.pc);

    // A larger limit allows deeper recursion.
    let jit = JitProgram::compile(&p, &JitOptions::default()).unwrap();
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.max_call_depth = 64;
    assert_eq!(
        jit.run([20, 0, 0, 0, 0], &mut jenv),
        Ok(2_432_902_008_176_640_000)
    );
    assert!(
        mem.regions().is_empty(),
        "stack frames are unregistered after the run"
    );
}

#[test]
fn callx_reaches_helpers_and_subprograms() {
    let helpers = registry(vec![(7, weighted_sum())]);
    // r2 = &sub; callx r2 -> r0 = 40 + 2; then r3 = 7; callx r3 (helper 7 with r1=1,r2,r3..).
    let p = program(&[
        I::LoadImm64 {
            dst: 2,
            pseudo: op::PSEUDO_FUNC,
            imm: 9,
        }, // slot 0-1, target 0+1+9 = 10
        I::Callx { reg: 2 },     // 2
        movr(6, 0),              // 3
        mov(1, 1),               // 4
        mov(2, 0),               // 5
        mov(3, 7),               // 6
        I::Callx { reg: 3 },     // 7: helper 7 -> 1 + 700
        add(0, Operand::Reg(6)), // 8
        I::Exit,                 // 9
        mov(0, 40),              // 10
        add(0, Operand::Imm(2)), // 11
        I::Exit,                 // 12
    ]);
    let want = 42 + 1 + 7 * 100;
    assert_eq!(interp_run(&p, [0; 5], &helpers).unwrap(), want);
    assert_eq!(jit_run(&p, [0; 5], &helpers), Ok(want));
}

#[test]
fn callx_rejects_values_that_are_neither_helpers_nor_entries() {
    let helpers = registry(vec![(7, weighted_sum())]);
    for bad in [
        1u64 << 40,
        kflex_jit::CODE_ADDRESS_BASE + 3,
        kflex_jit::CODE_ADDRESS_BASE + 8 * 500,
    ] {
        let p = program(&[
            I::LoadImm64 {
                dst: 4,
                pseudo: 0,
                imm: bad,
            },
            I::Callx { reg: 4 },
            I::Exit,
        ]);
        let fault = jit_run(&p, [0; 5], &helpers).unwrap_err();
        assert_eq!(
            (fault.pc, fault.kind),
            (2, JitFaultKind::BadCallTarget(bad)),
            "{bad:#x}"
        );
    }
}

#[test]
fn code_addresses_match_the_interpreter_encoding() {
    assert_eq!(
        kflex_jit::CODE_ADDRESS_BASE,
        kflex_interp::code_addr::CODE_ADDRESS_BASE
    );
    let p = program(&[
        I::LoadImm64 {
            dst: 0,
            pseudo: op::PSEUDO_FUNC,
            imm: 1,
        },
        I::Exit,
        I::Exit,
    ]);
    let h = HelperRegistry::empty();
    // `lddw` targets are relative to the instruction's first slot: 0 + 1 + 1.
    let want = kflex_interp::code_addr::encode(2);
    assert_eq!(interp_run(&p, [0; 5], &h).unwrap(), want);
    assert_eq!(jit_run(&p, [0; 5], &h), Ok(want));
}

#[test]
fn may_goto_budget_is_per_frame_and_matches_linux() {
    // Count iterations of `for (;;) { may_goto out; r0++ }`.
    let p = program(&[
        mov(0, 0),
        I::MayGoto { off: 2 },
        add(0, Operand::Imm(1)),
        I::Ja { off: -3 },
        I::Exit,
    ]);
    let h = HelperRegistry::empty();
    assert_eq!(jit_run(&p, [0; 5], &h), Ok(MAY_GOTO_BUDGET));
    assert_eq!(MAY_GOTO_BUDGET, 8_388_608);

    // A callee gets a fresh budget and the caller's is restored after the call: the main
    // program spends 3, calls a subprogram that exhausts its own, then counts its remainder.
    let p2 = program(&[
        mov(7, 0),
        I::MayGoto { off: 0 },
        I::MayGoto { off: 0 },
        I::MayGoto { off: 0 },
        I::CallLocal { imm: 5 },
        I::MayGoto { off: 2 },
        add(7, Operand::Imm(1)),
        I::Ja { off: -3 },
        movr(0, 7),
        I::Exit,
        mov(0, 0),
        I::MayGoto { off: 2 },
        add(0, Operand::Imm(1)),
        I::Ja { off: -3 },
        I::Exit,
    ]);
    assert_eq!(jit_run(&p2, [0; 5], &h), Ok(MAY_GOTO_BUDGET - 3));
    assert_eq!(interp_run(&p2, [0; 5], &h).unwrap(), MAY_GOTO_BUDGET - 3);
}

#[test]
fn kfuncs_and_unresolved_pseudo_sources_fault_only_when_reached() {
    let h = HelperRegistry::empty();
    let p = program(&[
        I::Jump {
            width: Width::W64,
            op: JmpOp::Eq,
            dst: 1,
            src: Operand::Imm(0),
            off: 1,
        },
        I::CallKfunc { btf_id: 1234 },
        I::Jump {
            width: Width::W64,
            op: JmpOp::Eq,
            dst: 2,
            src: Operand::Imm(0),
            off: 2,
        },
        I::LoadImm64 {
            dst: 0,
            pseudo: op::PSEUDO_MAP_FD,
            imm: 5,
        },
        mov(0, 11),
        I::Exit,
    ]);
    assert_eq!(jit_run(&p, [0, 0, 0, 0, 0], &h), Ok(11));
    let f = jit_run(&p, [1, 0, 0, 0, 0], &h).unwrap_err();
    assert_eq!((f.pc, f.kind), (1, JitFaultKind::Kfunc { btf_id: 1234 }));
    let f = jit_run(&p, [0, 1, 0, 0, 0], &h).unwrap_err();
    assert_eq!(
        (f.pc, f.kind),
        (
            3,
            JitFaultKind::UnresolvedPseudo {
                pseudo: op::PSEUDO_MAP_FD,
                imm: 5
            }
        )
    );
}

#[test]
fn stack_starts_zeroed_on_every_run_even_after_a_fault() {
    let h = registry(vec![(
        3,
        Arc::new(|_| Err(HelperError::Unavailable("stop".into()))),
    )]);
    // Dirty the stack of frame 0 and a callee frame, then fault.
    let dirty = program(&[
        I::Store {
            size: kflex_isa::decode::Size::DW,
            dst: 10,
            off: -8,
            src: Operand::Imm(-1),
        },
        I::CallLocal { imm: 1 },
        I::Exit,
        I::Store {
            size: kflex_isa::decode::Size::DW,
            dst: 10,
            off: -512,
            src: Operand::Imm(-1),
        },
        I::Call { helper: 3 },
        I::Exit,
    ]);
    let read = program(&[
        I::Load {
            size: kflex_isa::decode::Size::DW,
            dst: 0,
            src: 10,
            off: -8,
            sign_extend: false,
        },
        I::CallLocal { imm: 1 },
        I::Exit,
        I::Load {
            size: kflex_isa::decode::Size::DW,
            dst: 1,
            src: 10,
            off: -512,
            sign_extend: false,
        },
        add(0, Operand::Reg(1)),
        I::Exit,
    ]);
    assert!(jit_run(&dirty, [0; 5], &h).is_err());
    assert_eq!(jit_run(&read, [0; 5], &h), Ok(0));
}

#[test]
fn one_program_runs_concurrently_on_many_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<JitProgram>();
    // Each thread computes sum(0..n) for its own n with a loop that spills to its stack.
    let p = program(&[
        mov(0, 0),
        I::Store {
            size: kflex_isa::decode::Size::DW,
            dst: 10,
            off: -8,
            src: Operand::Reg(1),
        },
        I::Jump {
            width: Width::W64,
            op: JmpOp::Eq,
            dst: 1,
            src: Operand::Imm(0),
            off: 3,
        },
        add(1, Operand::Imm(-1)),
        add(0, Operand::Reg(1)),
        I::Ja { off: -4 },
        I::Load {
            size: kflex_isa::decode::Size::DW,
            dst: 2,
            src: 10,
            off: -8,
            sign_extend: false,
        },
        add(0, Operand::Reg(2)),
        I::Exit,
    ]);
    let jit = Arc::new(JitProgram::compile(&p, &JitOptions::default()).unwrap());
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let jit = jit.clone();
            std::thread::spawn(move || {
                let h = HelperRegistry::empty();
                for round in 0..200u64 {
                    let n = 1000 * t + round;
                    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
                    let mut jenv = JitEnv::new(&mut mem, &h, &mut env);
                    assert_eq!(jit.run([n, 0, 0, 0, 0], &mut jenv), Ok(n * (n + 1) / 2));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread finished");
    }
}

/// Runs on a frame lease keep the frames registered in the memory map between runs, see zeroed
/// frames every time (the callee reads its slot before writing it), and give the same results as
/// plain runs; releasing the lease removes the frames again.
#[test]
fn leased_runs_reuse_registered_zeroed_frames() {
    let dw = kflex_isa::decode::Size::DW;
    let p = program(&[
        I::CallLocal { imm: 1 },
        I::Exit,
        // subprogram: r0 = old slot value + r1; slot = 99
        I::Load {
            size: dw,
            dst: 0,
            src: 10,
            off: -8,
            sign_extend: false,
        },
        add(0, Operand::Reg(1)),
        I::Store {
            size: dw,
            dst: 10,
            off: -8,
            src: Operand::Imm(99),
        },
        I::Exit,
    ]);
    let jit = JitProgram::compile(&p, &JitOptions::default()).unwrap();
    let helpers = HelperRegistry::empty();
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    let mut lease = jit.frame_lease(4);
    assert_eq!(lease.frames(), 4, "a program with calls leases every frame");
    for arg in [5u64, 6, 7] {
        let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
        jenv.max_call_depth = 4;
        assert_eq!(
            jit.run_leased([arg, 0, 0, 0, 0], &mut jenv, &mut lease),
            Ok(arg)
        );
        assert_eq!(mem.regions().len(), 4, "frames stay registered");
        let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
        jenv.max_call_depth = 4;
        assert_eq!(jit.run([arg, 0, 0, 0, 0], &mut jenv), Ok(arg));
    }
    // A run needing more frames than leased is refused, not overrun.
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.max_call_depth = 8;
    assert!(matches!(
        jit.run_leased([1, 0, 0, 0, 0], &mut jenv, &mut lease),
        Err(f) if matches!(f.kind, JitFaultKind::StackSetup(_))
    ));
    lease.release(&mut mem);
    assert!(mem.regions().is_empty());
    // A program without calls leases frame 0 alone.
    let flat = program(&[mov(0, 3), I::Exit]);
    let flat = JitProgram::compile(&flat, &JitOptions::default()).unwrap();
    assert_eq!(flat.frame_lease(8).frames(), 1);
}

/// Map helper calls served directly (`JitEnv::trust_map_helper_pointers`) give the registry
/// path's results and leave the same map contents, on hash, LRU hash, array and per-CPU array
/// maps: hits, misses, out-of-range array keys, update flags (`BPF_NOEXIST` on a present key,
/// `BPF_EXIST` on a missing one), a full hash map, LRU eviction, per-CPU slots of two CPUs.
#[test]
fn direct_map_helpers_equal_the_registry_path() {
    use kflex_isa::decode::Size;
    use kflex_object::{MapSpec, MapType};
    use kflex_runtime::maps::{MapOptions, MapTable};

    let dw = Size::DW;
    let store = |size, off, src| I::Store {
        size,
        dst: 10,
        off,
        src: Operand::Reg(src),
    };
    let key_ptr = [movr(2, 10), add(2, Operand::Imm(-4))];
    // lookup(r1 = map, r2 = key): the value's first u64, or u64::MAX when missing.
    let mut lookup = vec![store(Size::W, -4, 2)];
    lookup.extend(key_ptr);
    lookup.extend([
        I::Call { helper: 1 },
        I::Jump {
            width: Width::W64,
            op: JmpOp::Eq,
            dst: 0,
            src: Operand::Imm(0),
            off: 2,
        },
        I::Load {
            size: dw,
            dst: 0,
            src: 0,
            off: 0,
            sign_extend: false,
        },
        I::Exit,
        mov(0, -1),
        I::Exit,
    ]);
    // update(r1 = map, r2 = key, r3 = value, r4 = flags) and delete(r1 = map, r2 = key).
    let mut update = vec![store(Size::W, -4, 2), store(dw, -16, 3)];
    update.extend(key_ptr);
    update.extend([
        movr(3, 10),
        add(3, Operand::Imm(-16)),
        I::Call { helper: 2 },
        I::Exit,
    ]);
    let mut delete = vec![store(Size::W, -4, 2)];
    delete.extend(key_ptr);
    delete.extend([I::Call { helper: 3 }, I::Exit]);
    let compile =
        |insns: &[I]| JitProgram::compile(&program(insns), &JitOptions::default()).unwrap();
    let (lookup, update, delete) = (compile(&lookup), compile(&update), compile(&delete));

    let spec = |name: &str, map_type, max_entries| MapSpec::new(name, map_type, 4, 8, max_entries);
    let specs = [
        spec("hash", MapType::Hash, 3),
        spec("lru", MapType::LruHash, 2),
        spec("array", MapType::Array, 4),
        spec("percpu", MapType::PercpuArray, 4),
    ];
    let opts = MapOptions {
        num_cpus: Some(2),
        arena_init: None,
    };
    let helpers = HelperRegistry::linux_default();
    // (op, map, key, value, flags, cpu)
    let mut ops = Vec::new();
    for map in 0..4 {
        for cpu in [0u32, 1] {
            for key in 0..5u64 {
                ops.push((2, map, key, 100 + key + u64::from(cpu), 0, cpu));
                ops.push((2, map, key, 7, 1, cpu)); // BPF_NOEXIST
                ops.push((1, map, key, 0, 0, cpu));
                ops.push((1, map, key + 10, 0, 0, cpu));
                ops.push((2, map, key + 20, 9, 2, cpu)); // BPF_EXIST on a missing key
            }
            ops.push((3, map, 1, 0, 0, cpu));
            ops.push((3, map, 33, 0, 0, cpu));
            ops.push((1, map, 1, 0, 0, cpu));
        }
    }
    let run_all = |trusted: bool| {
        let table = Arc::new(MapTable::create(&specs, &opts).unwrap());
        let mut mem = MemoryMap::new();
        let mut results = Vec::new();
        for &(op, map, key, value, flags, cpu) in &ops {
            let mut env = ExecEnv::with_maps(Arc::clone(&table));
            env.cpu = cpu;
            let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
            if trusted {
                // SAFETY: the programs pass a map handle and key/value pointers to 4 and 8
                // bytes of their stack, as the maps' sizes require.
                unsafe { jenv.trust_map_helper_pointers() };
            }
            let handle = table.handle(map);
            let prog = match op {
                1 => &lookup,
                2 => &update,
                _ => &delete,
            };
            results.push(prog.run([handle, key, value, flags, 0], &mut jenv));
        }
        let contents: Vec<_> = (0..4)
            .map(|m| {
                (0..30u32)
                    .map(|k| {
                        let key = k.to_ne_bytes();
                        if m == 3 {
                            table.lookup_percpu(m, &key).ok()
                        } else {
                            table.lookup(m, &key).ok().flatten().map(|v| vec![v])
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        (results, contents)
    };
    let (direct, generic) = (run_all(true), run_all(false));
    assert_eq!(direct, generic);
    // The sequence exercised hits, misses and errors.
    let r0s: Vec<u64> = generic.0.iter().map(|r| *r.as_ref().unwrap()).collect();
    assert!(r0s.contains(&u64::MAX), "a missing key");
    assert!(r0s.contains(&101), "a per-CPU value of CPU 1");
    assert!(r0s.iter().any(|&r| r as i64 == -17), "EEXIST");
    assert!(r0s.iter().any(|&r| r as i64 == -2), "ENOENT");
    // The trusted calls really bypass the registry: without map helpers in it they still work.
    let table = Arc::new(MapTable::create(&specs, &opts).unwrap());
    let (mut mem, empty) = (MemoryMap::new(), HelperRegistry::empty());
    let mut env = ExecEnv::with_maps(Arc::clone(&table));
    let args = [table.handle(0), 1, 42, 0, 0];
    let mut jenv = JitEnv::new(&mut mem, &empty, &mut env);
    assert!(matches!(
        update.run(args, &mut jenv).unwrap_err().kind,
        JitFaultKind::UnknownHelper(2)
    ));
    // SAFETY: as above.
    unsafe { jenv.trust_map_helper_pointers() };
    assert_eq!(update.run(args, &mut jenv), Ok(0));
    assert_eq!(lookup.run(args, &mut jenv), Ok(42));
}
