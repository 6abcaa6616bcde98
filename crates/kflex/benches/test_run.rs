//! Fixed cost of a test-run.
//!
//! Reproduce with `cargo bench -p kflex --bench test_run`.
//!
//! For every bundled example this measures `Extension::test_run` with `repeat = 1` on a realistic
//! input (criterion: wall-clock time of the whole call, preparation of the context and packet
//! included), and prints the time the call itself reports per run (`ns_per_run`: the interpreter
//! call only) with the instructions per second that implies, for `repeat = 1` and `repeat = 1000`.
//! `interp/tiny5` runs a 5-instruction program directly through `kflex_interp::run` to expose the
//! interpreter's own entry/exit cost.
//!
//! Before/after the fixed-cost work (commit 2e13701 vs. 09282c3, built and run back to back on the
//! same 2-core machine while other builds were running, so expect +-20% noise). "call" is the
//! criterion median of a whole `test_run(repeat = 1)` call; "run" is its reported `ns_per_run`
//! (interpreter call only, mean of 2000 calls).
//!
//! ```text
//!                      insns   call before -> after   run before -> after   M insns/s (run)
//! interp/tiny5             5      116 ns ->   45 ns        (same)            43 -> 111
//! sk_skb_verdict          17     2.88 us -> 0.94 us     552 ns -> 311 ns      31 -> 55
//! socket_udp_filter       40     2.75 us -> 1.00 us     636 ns -> 443 ns      63 -> 90
//! syscall_events         308     4.18 us -> 1.53 us    1090 ns -> 917 ns     283 -> 336
//! tc_classifier           76     5.36 us -> 2.39 us    1390 ns -> 1224 ns     55 -> 62
//! xdp_firewall            80     4.33 us -> 1.20 us     885 ns -> 807 ns      90 -> 99
//! ```
//! (socket_udp_filter "call": mean of the 2000-call loop; its criterion sample was disturbed.)
//! What is left of "run" for the examples is mostly context loads through the program type's hook
//! and helper calls; of "call", preparing the packet/context copies (kflex-hooks) and `ExecEnv`.
//!
//! `engines/<example>` prints `ns_per_run` on the interpreter and on the JIT, measured alternately
//! in one process. Before/after the JIT fixed-cost work (461068d vs. its successors, same
//! machine, back to back; +-10% noise):
//!
//! ```text
//!                      interp before -> after    jit before -> after
//! sk_skb_verdict          335 ns -> 198 ns        531 ns -> 177 ns
//! socket_udp_filter       506 ns -> 355 ns        909 ns -> 406 ns
//! syscall_events          977 ns -> 964 ns        641 ns -> 350 ns
//! tc_classifier          1292 ns -> 701 ns       1281 ns -> 368 ns
//! xdp_firewall            884 ns -> 590 ns        885 ns -> 416 ns
//! ```
//! (The interpreter gains too: context loads no longer format a field name on success.)
//!
//! `invoke/<example>` compares, per call on the JIT, a whole `test_run` (`repeat = 1`) with
//! `Invoker::run` on the same input, and `invoke/tiny_syscall` gives the invoker's own fixed
//! cost (a 3-instruction verified syscall program; compare `fixed_cost/jit_leased/tiny` in
//! `cargo bench -p kflex-jit --bench jit`, the bare JIT run on a frame lease: about 40 ns). After
//! the per-run cost work (d6b995b, load average ~2):
//!
//! ```text
//!                      test_run(repeat=1)   invoker     (ns per call, wall time)
//! sk_skb_verdict              644              371
//! socket_udp_filter          1031             1003
//! syscall_events              811              347
//! tc_classifier               838              506
//! xdp_firewall                827              367
//! tiny_syscall                  -               59
//! ```
//! A syscall invoker run works on the caller's buffer in place; a packet invoker run still
//! prepares a packet and context per call (`kflex_hooks::prepare`) and copies the packet back,
//! which is most of its cost. A single test-run's fixed overhead (call time minus the run's own
//! `ns_per_run`) is about 0.5 us.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use kflex::packet;
use kflex::{Engine, Extension, ExtensionOptions, TestRunOptions};
use kflex_interp::{Vm, run};
use kflex_isa::decode::{AluOp, Instruction as I, Operand, Program, Width, encode_all};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

const CLIENT: [u8; 4] = [192, 168, 1, 10];
const SERVER: [u8; 4] = [10, 0, 0, 53];

/// The `syscall_events` context: `n`, `seed`, and the result slot.
fn collatz_ctx(n: u64, seed: u64) -> Vec<u8> {
    [n, seed, 0].iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// A realistic input for each bundled example.
fn input(example: &str) -> Option<TestRunOptions> {
    Some(match example {
        "xdp_firewall" | "socket_udp_filter" => TestRunOptions::packet(packet::udp4_frame(
            CLIENT,
            SERVER,
            40000,
            53,
            b"\x12\x34\x01\x00",
        )),
        "tc_classifier" => TestRunOptions::packet(packet::tcp4_frame(
            CLIENT, SERVER, 40000, 80, 0xb8, b"voice",
        )),
        "sk_skb_verdict" => TestRunOptions::packet(packet::ethernet(
            packet::DST_MAC,
            packet::SRC_MAC,
            0x0800,
            &[0u8; 86],
        )),
        "syscall_events" => TestRunOptions::context(collatz_ctx(10, 27)),
        _ => return None,
    })
}

/// Mean `ns_per_run` reported over `calls` test-runs of `repeat` runs each, and the
/// instructions of one run.
fn reported(ext: &Extension, prog: &str, options: &TestRunOptions, calls: u32) -> (f64, u64) {
    let mut total = 0u64;
    let mut insns = 0;
    for _ in 0..calls {
        let r = ext.test_run(prog, options).expect("benchmark input runs");
        total += r.ns_per_run;
        insns = r.instructions_per_run;
    }
    (total as f64 / f64::from(calls), insns)
}

fn bench_examples(c: &mut Criterion) {
    let mut group = c.benchmark_group("test_run");
    for example in kflex_examples::all() {
        let Some(options) = input(example.name) else {
            continue;
        };
        let ext = Extension::load(example.name, example.object, ExtensionOptions::default())
            .expect("bundled example loads");
        let prog = ext.program_names().first().cloned().expect("a program");
        let (single, insns) = reported(&ext, &prog, &options, 2000);
        let many = TestRunOptions {
            repeat: 1000,
            ..options.clone()
        };
        let (looped, _) = reported(&ext, &prog, &many, 5);
        let start = Instant::now();
        let calls = 2000u32;
        for _ in 0..calls {
            black_box(ext.test_run(&prog, black_box(&options)).expect("runs"));
        }
        let call_ns = start.elapsed().as_nanos() as f64 / f64::from(calls);
        println!(
            "test_run/{}: {insns} insns; call {call_ns:.0} ns; ns_per_run {single:.0} (repeat=1) \
             {looped:.0} (repeat=1000); {:.1} / {:.1} M insns/s",
            example.name,
            insns as f64 * 1e3 / single.max(1.0),
            insns as f64 * 1e3 / looped.max(1.0),
        );
        group.bench_function(example.name, |b| {
            b.iter(|| ext.test_run(&prog, black_box(&options)).expect("runs"))
        });
    }
    group.finish();
}

/// `r0 = r1; r0 += 1; r0 *= 3; r0 ^= 5; exit`.
fn tiny() -> Program {
    let alu = |op, imm| I::Alu {
        width: Width::W64,
        op,
        dst: 0,
        src: Operand::Imm(imm),
    };
    let insns = [
        I::Mov {
            width: Width::W64,
            dst: 0,
            src: Operand::Reg(1),
        },
        alu(AluOp::Add, 1),
        alu(AluOp::Mul, 3),
        alu(AluOp::Xor, 5),
        I::Exit,
    ];
    Program::decode(&encode_all(&insns)).expect("tiny program decodes")
}

fn bench_interp(c: &mut Criterion) {
    let program = tiny();
    let helpers = HelperRegistry::empty();
    let mut mem = MemoryMap::new();
    let mut env = ExecEnv::default();
    let mut once = || {
        let mut vm = Vm::new(&mut mem, &helpers, &mut env);
        run(&program, [black_box(1), 0, 0, 0, 0], &mut vm)
            .expect("tiny program runs")
            .retval
    };
    assert_eq!(once(), ((1 + 1) * 3) ^ 5);
    let rounds = 200_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(once());
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(rounds);
    println!(
        "interp/tiny5: {ns:.0} ns per run, {:.1} M insns/s",
        5e3 / ns
    );
    c.bench_function("interp/tiny5", |b| b.iter(&mut once));
}

/// Every example's reported `ns_per_run` on both engines, measured alternately in one process
/// (`repeat = 1`, mean of 2000 calls each), so the two columns share the machine's conditions.
fn engines_side_by_side(c: &mut Criterion) {
    let mut group = c.benchmark_group("engines");
    for example in kflex_examples::all() {
        let Some(options) = input(example.name) else {
            continue;
        };
        let ext = Extension::load(example.name, example.object, ExtensionOptions::default())
            .expect("bundled example loads");
        let prog = ext.program_names().first().cloned().expect("a program");
        let on = |engine| TestRunOptions {
            engine: Some(engine),
            ..options.clone()
        };
        let (interp, jit) = (on(Engine::Interp), on(Engine::Jit));
        let (mut ti, mut tj) = (0.0, 0.0);
        for _ in 0..4 {
            ti += reported(&ext, &prog, &interp, 500).0;
            tj += reported(&ext, &prog, &jit, 500).0;
        }
        let engine = ext.test_run(&prog, &jit).expect("runs").engine;
        println!(
            "engines/{}: interp {:.0} ns/run, jit {:.0} ns/run (ran on {engine:?})",
            example.name,
            ti / 4.0,
            tj / 4.0
        );
        for (name, o) in [("interp", &interp), ("jit", &jit)] {
            group.bench_function(format!("{name}/{}", example.name), |b| {
                b.iter(|| ext.test_run(&prog, black_box(o)).expect("runs"))
            });
        }
    }
    group.finish();
}

/// Per call: a whole `Extension::test_run` (`repeat = 1`) beside `Invoker::run` on the same
/// input, on the JIT (wall time per call, mean of 20,000 calls, alternated in 4 rounds): what a
/// host pays per invocation on each path.
fn invoker_vs_test_run(c: &mut Criterion) {
    let mut group = c.benchmark_group("invoke");
    for example in kflex_examples::all() {
        let Some(options) = input(example.name) else {
            continue;
        };
        let ext = Extension::load(example.name, example.object, ExtensionOptions::default())
            .expect("bundled example loads");
        let prog = ext.program_names().first().cloned().expect("a program");
        let mut invoker = ext.invoker(&prog, Engine::Jit).expect("invoker");
        let syscall = invoker.prog_type() == kflex::ProgType::Syscall;
        let input = if syscall {
            options.ctx_in.clone().unwrap_or_default()
        } else {
            options.data_in.clone()
        };
        let calls = 5_000u32;
        let (mut t_run, mut t_inv) = (0.0, 0.0);
        for _ in 0..4 {
            let start = Instant::now();
            for _ in 0..calls {
                black_box(ext.test_run(&prog, black_box(&options)).expect("runs"));
            }
            t_run += start.elapsed().as_nanos() as f64 / f64::from(calls);
            let mut buf = input.clone();
            let start = Instant::now();
            for _ in 0..calls {
                buf.copy_from_slice(&input);
                black_box(invoker.run(black_box(&mut buf)).expect("runs"));
            }
            t_inv += start.elapsed().as_nanos() as f64 / f64::from(calls);
        }
        println!(
            "invoke/{}: test_run(repeat=1) {:.0} ns/call, invoker {:.0} ns/call",
            example.name,
            t_run / 4.0,
            t_inv / 4.0
        );
        let mut buf = input.clone();
        group.bench_function(format!("invoker/{}", example.name), |b| {
            b.iter(|| {
                buf.copy_from_slice(&input);
                invoker.run(black_box(&mut buf)).expect("runs")
            })
        });
    }
    // The invoker's fixed cost: `tiny` (5 instructions, no context access) as a verified
    // syscall program, on the JIT, beside the bare JIT run of the same code.
    let insns: Vec<kflex_isa::Insn> = kflex_isa::decode::encode_all(&[
        I::Mov {
            width: Width::W64,
            dst: 0,
            src: Operand::Imm(1),
        },
        I::Alu {
            width: Width::W64,
            op: AluOp::Add,
            dst: 0,
            src: Operand::Imm(1),
        },
        I::Exit,
    ]);
    let ext = Extension::from_raw(
        &insns,
        Some(kflex::ProgType::Syscall),
        ExtensionOptions::default(),
    )
    .expect("tiny syscall program loads");
    let mut invoker = ext
        .invoker(kflex::RAW_PROGRAM_NAME, Engine::Jit)
        .expect("invoker");
    let mut ctx = [0u8; 8];
    assert_eq!(invoker.run(&mut ctx).expect("runs").retval, 2);
    let calls = 200_000u32;
    let start = Instant::now();
    for _ in 0..calls {
        black_box(invoker.run(black_box(&mut ctx)).expect("runs"));
    }
    let per_call = start.elapsed().as_nanos() as f64 / f64::from(calls);
    println!("invoke/tiny_syscall: invoker {per_call:.0} ns/call (3 instructions)");
    group.bench_function("invoker/tiny_syscall", |b| {
        b.iter(|| invoker.run(black_box(&mut ctx)).expect("runs"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = invoker_vs_test_run, engines_side_by_side, bench_interp, bench_examples
}
criterion_main!(benches);
