//! Interpreter throughput: instructions per second on an ALU-heavy loop, a stack-memory-heavy
//! loop and a helper-call-heavy loop.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kflex_interp::{Vm, run};
use kflex_isa::decode::Program;
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

mod workloads;
use workloads::{alu_heavy, helper_heavy, memory_heavy, registry};
/// Runs `program` once and returns the instructions it executed.
fn execute(
    program: &Program,
    helpers: &HelperRegistry,
    mem: &mut MemoryMap,
    env: &mut ExecEnv,
) -> u64 {
    let mut vm = Vm::new(mem, helpers, env);
    run(program, [0; 5], &mut vm)
        .expect("benchmark program runs")
        .instructions
}

fn bench(c: &mut Criterion) {
    let helpers = registry();
    let mut mem = MemoryMap::new();
    let mut env = ExecEnv::default();
    let mut group = c.benchmark_group("interp");
    for (name, program) in [
        ("alu", alu_heavy()),
        ("stack_memory", memory_heavy()),
        ("helper_calls", helper_heavy()),
    ] {
        let insns = execute(&program, &helpers, &mut mem, &mut env);
        // A direct measurement, printed as instructions per second.
        let start = Instant::now();
        let rounds = 20;
        for _ in 0..rounds {
            black_box(execute(black_box(&program), &helpers, &mut mem, &mut env));
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = (insns * rounds) as f64 / secs;
        println!(
            "interp/{name}: {insns} instructions per run, {:.1} M instructions/s",
            rate / 1e6
        );
        group.throughput(Throughput::Elements(insns));
        group.bench_function(name, |b| {
            b.iter(|| execute(black_box(&program), &helpers, &mut mem, &mut env))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
