//! JIT versus interpreter on the interpreter benchmark's loops (ALU-heavy, stack-memory-heavy,
//! helper-call-heavy; see `crates/interp/benches/interp.rs`), printing the speed-up.
//!
//! `fixed_cost` runs a 5-instruction straight-line program (`tiny`) and a 3-iteration loop whose
//! back-edge is a termination point (`tiny_loop`, so its runs arm the watchdog) through
//! `JitProgram::run` and the interpreter, printing ns per run: the JIT's fixed cost of a run.
//! Reproduce with `cargo bench -p kflex-jit --bench jit -- fixed_cost`. Before/after the
//! fixed-cost work (461068d vs. its successors, back to back on the shared 2-core machine):
//!
//! ```text
//!             interp    jit before -> after
//! tiny         32 ns      169 ns  ->  62 ns   (frame 0 only for call-free programs)
//! tiny_loop    49 ns      226 ns  -> 104 ns   (lock-free watchdog slot)
//! ```
//!
//! `jit_leased/<name>` runs on a `FrameLease` (frames registered in the memory map once, as
//! test-run loops and invokers do). After the per-run cost work (d6b995b, load average ~2):
//!
//! ```text
//!             interp    jit (run)   jit (leased)
//! tiny         33 ns      59 ns        43 ns
//! tiny_loop    59 ns      83 ns        63 ns     (watchdog armed: guard borrows the slot,
//!                                                 deadline bridged with the TSC)
//! ```
//! What remains of a leased run: arming and disarming the watchdog (two sequentially
//! consistent atomics and a time-stamp read), the guarded-stack switch, the invocation record,
//! and zeroing the 512-byte frame.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kflex_interp::{Vm, run};
use kflex_isa::decode::{AluOp, Instruction as I, JmpOp, Operand, Program, Width, encode_all};
use kflex_jit::{JitEnv, JitOptions, JitProgram};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

#[path = "../../interp/benches/workloads.rs"]
mod workloads;
use workloads::{alu, alu_heavy, helper_heavy, memory_heavy, mov, registry};
fn interp(p: &Program, h: &HelperRegistry, mem: &mut MemoryMap, env: &mut ExecEnv) -> (u64, u64) {
    let mut vm = Vm::new(mem, h, env);
    let out = run(p, [0; 5], &mut vm).expect("benchmark program runs");
    (out.retval, out.instructions)
}

/// Budget of the runs that arm the watchdog: generous, so that a run preempted on a loaded
/// machine (the budget is wall-clock time) is not cancelled in the middle of a measurement.
const BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

fn jit(p: &JitProgram, h: &HelperRegistry, mem: &mut MemoryMap, env: &mut ExecEnv) -> u64 {
    let mut jenv = JitEnv::new(mem, h, env);
    jenv.budget = Some(BUDGET);
    p.run([0; 5], &mut jenv).expect("benchmark program runs")
}

/// Seconds per run of `f`, averaged over `rounds` runs.
fn time(rounds: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..rounds {
        f();
    }
    start.elapsed().as_secs_f64() / f64::from(rounds)
}

fn bench(c: &mut Criterion) {
    let helpers = registry();
    let mut mem = MemoryMap::new();
    let mut env = ExecEnv::default();
    let mut group = c.benchmark_group("jit_vs_interp");
    for (name, program) in [
        ("alu", alu_heavy()),
        ("stack_memory", memory_heavy()),
        ("helper_calls", helper_heavy()),
    ] {
        let compiled = JitProgram::compile(&program, &JitOptions::default()).expect("compiles");
        let (want, insns) = interp(&program, &helpers, &mut mem, &mut env);
        assert_eq!(
            jit(&compiled, &helpers, &mut mem, &mut env),
            want,
            "{name}: engines agree"
        );
        // A direct measurement, printed as the speed-up.
        let ti = time(10, || {
            black_box(interp(black_box(&program), &helpers, &mut mem, &mut env));
        });
        let tj = time(50, || {
            black_box(jit(black_box(&compiled), &helpers, &mut mem, &mut env));
        });
        println!(
            "{name}: {insns} instructions per run; interp {:.1} M insn/s, jit {:.1} M insn/s, speed-up {:.1}x",
            insns as f64 / ti / 1e6,
            insns as f64 / tj / 1e6,
            ti / tj
        );
        group.throughput(Throughput::Elements(insns));
        group.bench_function(format!("interp/{name}"), |b| {
            b.iter(|| interp(black_box(&program), &helpers, &mut mem, &mut env))
        });
        group.bench_function(format!("jit/{name}"), |b| {
            b.iter(|| jit(black_box(&compiled), &helpers, &mut mem, &mut env))
        });
    }
    group.finish();
}

/// A straight-line 5-instruction program: its run time is the JIT's fixed cost per run.
fn tiny() -> Program {
    let insns = [
        mov(0, 7),
        alu(AluOp::Add, 0, Operand::Imm(3)),
        alu(AluOp::Mul, 0, Operand::Imm(5)),
        alu(AluOp::Xor, 0, Operand::Imm(1)),
        I::Exit,
    ];
    Program::decode(&encode_all(&insns)).expect("tiny program decodes")
}

/// A 3-iteration loop: short, but with a termination check (so the watchdog is armed).
fn tiny_loop() -> Program {
    let insns = [
        mov(0, 0),
        mov(9, 3),
        alu(AluOp::Add, 0, Operand::Imm(2)),
        alu(AluOp::Sub, 9, Operand::Imm(1)),
        I::Jump {
            width: Width::W64,
            op: JmpOp::Ne,
            dst: 9,
            src: Operand::Imm(0),
            off: -3,
        },
        I::Exit,
    ];
    Program::decode(&encode_all(&insns)).expect("tiny loop decodes")
}

/// Fixed cost of one run: the tiny programs on both engines, printed in ns per run.
fn fixed_cost(c: &mut Criterion) {
    let helpers = registry();
    let mut mem = MemoryMap::new();
    let mut env = ExecEnv::default();
    let mut group = c.benchmark_group("fixed_cost");
    // The loop's back-edge (slot 4) is a termination point: its runs arm the watchdog.
    for (name, program, want, points) in [
        ("tiny", tiny(), 51, vec![]),
        ("tiny_loop", tiny_loop(), 6, vec![4]),
    ] {
        let options = JitOptions {
            termination_points: points,
            ..JitOptions::default()
        };
        let compiled = JitProgram::compile(&program, &options).expect("compiles");
        assert_eq!(interp(&program, &helpers, &mut mem, &mut env).0, want);
        assert_eq!(jit(&compiled, &helpers, &mut mem, &mut env), want);
        let rounds = 200_000;
        let ti = time(rounds, || {
            black_box(interp(black_box(&program), &helpers, &mut mem, &mut env));
        });
        let tj = time(rounds, || {
            black_box(jit(black_box(&compiled), &helpers, &mut mem, &mut env));
        });
        let mut lease = compiled.frame_lease(8);
        let tl = time(rounds, || {
            let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
            jenv.budget = Some(BUDGET);
            black_box(
                compiled
                    .run_leased([0; 5], &mut jenv, &mut lease)
                    .expect("runs"),
            );
        });
        println!(
            "{name}: interp {:.0} ns/run, jit {:.0} ns/run, jit on a frame lease {:.0} ns/run",
            ti * 1e9,
            tj * 1e9,
            tl * 1e9
        );
        group.bench_function(format!("interp/{name}"), |b| {
            b.iter(|| interp(black_box(&program), &helpers, &mut mem, &mut env))
        });
        group.bench_function(format!("jit/{name}"), |b| {
            b.iter(|| jit(black_box(&compiled), &helpers, &mut mem, &mut env))
        });
        group.bench_function(format!("jit_leased/{name}"), |b| {
            b.iter(|| {
                let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
                jenv.budget = Some(BUDGET);
                compiled.run_leased([0; 5], &mut jenv, &mut lease)
            })
        });
        lease.release(&mut mem);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = fixed_cost, bench
}
criterion_main!(benches);
