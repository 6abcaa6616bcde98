//! `JitRunner`: a series of runs in one environment gives each run a fresh state (a cancelled or
//! faulted run leaves nothing behind for the next), zeroes exactly the stack bytes the program
//! declares it can touch, and holds one guarded native stack for its lifetime.

mod common;

use common::program;
use kflex_isa::decode::{Instruction as I, Operand, Size, Width};
use kflex_jit::{JitEnv, JitFaultKind, JitOptions, JitProgram};
use kflex_runtime::exec::{self, CancelReason};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

fn load(size: Size, dst: u8, src: u8, off: i16) -> I {
    I::Load {
        size,
        dst,
        src,
        off,
        sign_extend: false,
    }
}

fn store_imm(off: i16, imm: i32) -> I {
    I::Store {
        size: Size::DW,
        dst: 10,
        off,
        src: Operand::Imm(imm),
    }
}

fn add_reg(dst: u8, src: u8) -> I {
    I::Alu {
        width: Width::W64,
        op: kflex_isa::decode::AluOp::Add,
        dst,
        src: Operand::Reg(src),
    }
}

/// `r0 = *(u64 *)(r1 + 0)` when r1 != 0, else `r0 = r10[-8] + r10[-16]` (both read before they
/// are written), then the two slots are set to 5 and 6; exit.
fn reader() -> kflex_isa::decode::Program {
    program(&[
        I::Jump {
            op: kflex_isa::decode::JmpOp::Eq,
            width: Width::W64,
            dst: 1,
            src: Operand::Imm(0),
            off: 2,
        },
        load(Size::DW, 0, 1, 0),
        I::Exit,
        load(Size::DW, 0, 10, -8),
        load(Size::DW, 2, 10, -16),
        add_reg(0, 2),
        store_imm(-8, 5),
        store_imm(-16, 6),
        I::Exit,
    ])
}

#[test]
fn each_run_of_a_runner_starts_fresh_after_a_cancelled_one() {
    let jit = JitProgram::compile(&reader(), &JitOptions::default()).unwrap();
    let helpers = HelperRegistry::empty();
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    let mut lease = jit.frame_lease(8);
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    let mut runner = jit.runner(&mut jenv, &mut lease).unwrap();
    let cell = 41u64;
    for round in 0..50 {
        // A run that faults on an unmapped address is cancelled ...
        let bad = runner.run([8, 0, 0, 0, 0]).unwrap_err();
        assert!(
            matches!(
                bad.kind,
                JitFaultKind::Cancelled {
                    reason: CancelReason::MemoryFault { addr: 8 }
                }
            ),
            "round {round}: {bad:?}"
        );
        // ... and the next runs see a zeroed frame and their own arguments.
        assert_eq!(runner.run([0, 0, 0, 0, 0]), Ok(0), "round {round}");
        assert_eq!(runner.run([0, 0, 0, 0, 0]), Ok(0), "frame zeroed again");
        assert_eq!(runner.run([&raw const cell as u64, 0, 0, 0, 0]), Ok(41));
    }
    drop(runner);
    lease.release(&mut mem);
    assert!(mem.regions().is_empty());
}

#[test]
fn only_the_declared_stack_depth_is_zeroed_between_runs() {
    let helpers = HelperRegistry::empty();
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    // Without a declared depth (and with one covering both slots) every slot is zeroed.
    for depth in [None, Some(16), Some(4096)] {
        let options = JitOptions {
            stack_depth: depth,
            ..JitOptions::default()
        };
        let jit = JitProgram::compile(&reader(), &options).unwrap();
        let mut lease = jit.frame_lease(8);
        let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
        let mut runner = jit.runner(&mut jenv, &mut lease).unwrap();
        assert_eq!(runner.run([0; 5]), Ok(0), "{depth:?}");
        assert_eq!(runner.run([0; 5]), Ok(0), "{depth:?}");
        drop(runner);
        lease.release(&mut mem);
    }
    // With a declared depth of 8 the slot at r10-16 is outside what the program says it
    // touches: its value survives into the next run (the declared depth is trusted, as the
    // verifier's facts are), while r10-8 is zeroed. (Last: it leaves that byte behind.)
    let options = JitOptions {
        stack_depth: Some(8),
        ..JitOptions::default()
    };
    let jit = JitProgram::compile(&reader(), &options).unwrap();
    let mut lease = jit.frame_lease(8);
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    let mut runner = jit.runner(&mut jenv, &mut lease).unwrap();
    assert_eq!(runner.run([0; 5]), Ok(0));
    assert_eq!(runner.run([0; 5]), Ok(6), "r10-8 zeroed, r10-16 kept");
    drop(runner);
    lease.release(&mut mem);
}

#[test]
fn a_runner_holds_one_guarded_stack_and_gives_it_back() {
    let jit = JitProgram::compile(&reader(), &JitOptions::default()).unwrap();
    let helpers = HelperRegistry::empty();
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    // Warm the cache with a stack of the runner's size.
    exec::with_guarded_stack(exec::DEFAULT_STACK_SIZE, || ()).unwrap();
    let before = exec::stack::cached();
    assert!(before >= 1);
    let mut lease = jit.frame_lease(8);
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    let mut runner = jit.runner(&mut jenv, &mut lease).unwrap();
    assert_eq!(exec::stack::cached(), before - 1, "taken once");
    for _ in 0..10 {
        runner.run([0; 5]).unwrap();
    }
    assert_eq!(exec::stack::cached(), before - 1, "not per run");
    drop(runner);
    assert_eq!(exec::stack::cached(), before, "given back");
    lease.release(&mut mem);
}
