//! Cost of the termination checks: a tight counting loop compiled with no checks, with
//! `OneLoad` checks and with `CompareBranch` checks at its back-edge, and the same loop headed by
//! a `may_goto` (its per-frame counter is there in every mode; the modes add the poisoned-word
//! test). No watchdog is armed, so only the checks themselves are measured. Prints the overhead
//! of each mode over no checks.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kflex_isa::decode::{AluOp, Instruction as I, JmpOp, Operand, Program, Width, encode_all};
use kflex_jit::{JitEnv, JitOptions, JitProgram, TerminationMode};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

const ITERATIONS: i32 = 1_000_000;

const ADD1: I = I::Alu {
    width: Width::W64,
    op: AluOp::Add,
    dst: 0,
    src: Operand::Imm(1),
};

const ZERO_R0: I = I::Mov {
    width: Width::W64,
    dst: 0,
    src: Operand::Imm(0),
};

/// `if r0 < N goto off`.
const fn below_n(off: i16) -> I {
    I::Jump {
        width: Width::W64,
        op: JmpOp::Lt,
        dst: 0,
        src: Operand::Imm(ITERATIONS),
        off,
    }
}

/// The loop's instructions and its termination points.
fn workload(may_goto: bool) -> (Vec<I>, Vec<usize>) {
    if may_goto {
        // r0 = 0; loop: may_goto +2; r0 += 1; if r0 < N goto loop; exit
        let insns = vec![ZERO_R0, I::MayGoto { off: 2 }, ADD1, below_n(-3), I::Exit];
        (insns, vec![1, 3])
    } else {
        // r0 = 0; loop: r0 += 1; if r0 < N goto loop; exit — the back-edge is slot 2.
        (vec![ZERO_R0, ADD1, below_n(-2), I::Exit], vec![2])
    }
}

fn compile(mode: TerminationMode, may_goto: bool) -> JitProgram {
    let (insns, points) = workload(may_goto);
    let program = Program::decode(&encode_all(&insns)).expect("bench program decodes");
    let options = JitOptions {
        termination: mode,
        termination_points: points,
        ..JitOptions::default()
    };
    JitProgram::compile(&program, &options).expect("bench program compiles")
}

fn run(jit: &JitProgram) -> u64 {
    let (mut mem, helpers, mut env) = (
        MemoryMap::new(),
        HelperRegistry::empty(),
        ExecEnv::default(),
    );
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.budget = None;
    jit.run(black_box([0; 5]), &mut jenv).expect("loop runs")
}

/// Median wall time of `runs` runs.
fn median(jit: &JitProgram, runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(run(jit), ITERATIONS as u64);
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn termination(c: &mut Criterion) {
    let modes = [
        ("none", TerminationMode::None),
        ("one_load", TerminationMode::OneLoad),
        ("compare_branch", TerminationMode::CompareBranch),
    ];
    for (group_name, may_goto) in [("termination_check", false), ("may_goto_check", true)] {
        let jits: Vec<_> = modes
            .iter()
            .map(|&(name, m)| (name, compile(m, may_goto)))
            .collect();
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(ITERATIONS as u64));
        for (name, jit) in &jits {
            group.bench_function(*name, |b| b.iter(|| run(jit)));
        }
        group.finish();
        let base = median(&jits[0].1, 101).as_secs_f64();
        for (name, jit) in &jits {
            let t = median(jit, 101).as_secs_f64();
            println!(
                "{group_name} {name:>15}: {:8.3} ms per {ITERATIONS} iterations, {:+6.1} % over no checks",
                t * 1e3,
                (t / base - 1.0) * 100.0
            );
        }
    }
}

criterion_group!(benches, termination);
criterion_main!(benches);
