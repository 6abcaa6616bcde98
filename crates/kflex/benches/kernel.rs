//! kflex's JIT and interpreter beside the Linux kernel's JIT on the same bytes.
//!
//! The bundled `xdp_firewall`, `tc_classifier` and `syscall_events` examples, and the SFI
//! bench's heap workload `list_walk` (`crates/jit/benches/c/list_walk.c`, compiled at bench start) where the
//! kernel accepts it, are loaded into kflex (`kflex::Extension`, once per engine) and into the
//! running kernel (`kflex_linux::prog_load`, maps created to match). Each is then run on one
//! input through all three:
//!
//! * packet programs: `BPF_PROG_TEST_RUN` with `repeat` = [`REPEAT`], the kernel's own average
//!   duration per run, beside kflex's test-run with the same `repeat` (its `ns_per_run`). Both
//!   sides do the same work per run: the packet and context are set up once per call and **not**
//!   reset between the repeats (Linux's `bpf_test_run` loop; kflex's test-run loop since the
//!   per-run cost work), and neither counts time the thread spent preempted (Linux's test-run
//!   timer stops across `cond_resched`; kflex times the loop by the thread's CPU clock);
//! * syscall programs: Linux ignores `repeat` for them and reports no duration, so both sides are
//!   timed from user space per test-run call, by the thread's CPU clock (the kernel figure
//!   includes the `bpf(2)` entry and its copies of the context; kflex's includes its per-call
//!   setup: memory map, environment, context copy, result vectors).
//!
//! Criterion groups `kernel/<program>/{linux,kflex_jit,kflex_interp}` time the same calls; a
//! summary printed at the end gives ns/run for each and the ratio kflex-JIT / kernel, measured
//! interleaved in one pass. Reproduce with
//! `cargo bench -p kflex --bench kernel -- --warm-up-time 1 --measurement-time 2` (append a
//! filter matching no benchmark, e.g. `summary-only`, for the summary alone).
//! Without `bpf(2)` (not root, no kernel support) the bench prints `SKIPPED: <reason>` and
//! measures nothing.
//!
//! On the shared 2-core machine, Linux 6.18 (the kernel rejects `list_walk`: "The sequence of
//! 8193 jumps is too complex", its unbounded walk is a kflex relaxation), before and after the
//! per-run cost work (e1313bd vs. d6b995b; "before" figures were wall-clock, taken under a load
//! average of 4-7, and kflex's packet figure then included per-run packet preparation):
//!
//! ```text
//! program            linux ns   kflex jit before -> after   kflex interp   jit / linux
//! xdp_firewall           59.0       419.0 ->  115.0              483.0     6.9 -> 1.95
//! tc_classifier          68.0       374.0 ->  141.0              543.0     5.3 -> 2.07
//! syscall_events        852.0      1057.0 ->  912.0             7075.0     1.1 -> 1.07
//! ```
//!
//! The run-path work of the following session (JitRunner, map calls compiled against their map,
//! lock-free hash look-ups, termination points only on cycles, per-thread test-run setup; commits
//! 021d712 to cafc173), same command, quiet machine (load 0.6-0.7), two runs:
//!
//! ```text
//! program            linux ns   kflex jit     jit / linux
//! xdp_firewall          60-63          36     0.57-0.60
//! tc_classifier         68-69       52-54     0.75-0.79
//! syscall_events      844-881     561-707     0.66-0.80
//! ```
//!
//! Before it (perf, xdp_firewall on the JIT at 114-128 ns), the program's own code was about 5 %
//! of a run: the rest was per-run setup (frame registration checks, building the context plan,
//! taking and returning the guarded stack), the watchdog armed on every run because clang's
//! backward jumps to shared tails counted as loop back-edges, and the hash look-up through the
//! helper trampoline, the registry and the map's spin lock. For syscall programs the per-call
//! setup of a test-run (memory map, environment with a clock-seeded PRNG, context preparation,
//! two clock reads) dominated.

use std::hint::black_box;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kflex::packet;
use kflex::{Engine, Extension, ExtensionOptions, ProgType, TestRunOptions};
use kflex_linux::{LOG_LEVEL_1, LinuxMap, LoadedProg, bpf_available, prog_load, test_run};
use kflex_object::Object;

/// Runs per `BPF_PROG_TEST_RUN` / kflex test-run call for packet programs.
const REPEAT: u32 = 100_000;
/// Test-run calls per measurement for syscall programs.
const SYSCALL_CALLS: u32 = 200;
/// Measurements per engine in the summary (the median is printed).
const ROUNDS: usize = 9;

/// One program loaded in both places, with the input it runs on.
struct Workload {
    /// `object/program`.
    label: String,
    program: String,
    prog_type: ProgType,
    input: TestRunOptions,
    jit: Extension,
    interp: Extension,
    /// The kernel's maps (kept open while the program lives).
    _maps: Vec<LinuxMap>,
    kernel: LoadedProg,
}

fn options(engine: Engine) -> ExtensionOptions {
    ExtensionOptions {
        engine,
        ..ExtensionOptions::default()
    }
}

/// Loads `program` of the object `bytes` into kflex (both engines) and the kernel; `setup` runs
/// first on each side (e.g. to fill the heap). `Err` is the kernel's refusal.
fn workload(
    name: &str,
    bytes: &[u8],
    program: &str,
    input: TestRunOptions,
    setup: Option<&str>,
) -> Result<Workload, String> {
    let object = Object::parse(name, bytes).map_err(|e| format!("{name}: {e}"))?;
    let maps = object
        .maps
        .iter()
        .map(LinuxMap::create)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{name}: kernel map: {e}"))?;
    let fds: Vec<BorrowedFd<'_>> = maps.iter().map(LinuxMap::as_fd).collect();
    let license = object.license.as_deref().unwrap_or("GPL");
    let load = |prog: &str| -> Result<(LoadedProg, ProgType), String> {
        let p = object
            .program(prog)
            .ok_or_else(|| format!("{name}: no program {prog}"))?;
        let ty = p.prog_type.ok_or_else(|| format!("{prog}: no type"))?;
        let loaded = prog_load(ty, &p.insns, &fds, license, 0).map_err(|_| {
            // Load again with the verifier log for the reason.
            let why = prog_load(ty, &p.insns, &fds, license, LOG_LEVEL_1)
                .err()
                .map_or_else(String::new, |e| {
                    format!("errno {}: {}", e.errno, e.reason())
                });
            format!("Linux rejects {name}/{prog}: {why}")
        })?;
        Ok((loaded, ty))
    };
    let (kernel, prog_type) = load(program)?;
    let jit = Extension::load(name, bytes, options(Engine::Jit)).map_err(|e| e.to_string())?;
    let interp =
        Extension::load(name, bytes, options(Engine::Interp)).map_err(|e| e.to_string())?;
    if let Some(setup) = setup {
        let (prepared, _) = load(setup)?;
        let ctx = TestRunOptions::context(Vec::new());
        kernel_call(prepared.fd.as_fd(), &ctx, 1).map_err(|e| format!("{setup}: {e}"))?;
        for ext in [&jit, &interp] {
            ext.test_run(setup, &ctx)
                .map_err(|e| format!("{setup}: {e}"))?;
        }
    }
    Ok(Workload {
        label: if name == program {
            name.to_string()
        } else {
            format!("{name}/{program}")
        },
        program: program.to_string(),
        prog_type,
        input,
        jit,
        interp,
        _maps: maps,
        kernel,
    })
}

fn kernel_call(
    fd: BorrowedFd<'_>,
    input: &TestRunOptions,
    repeat: u32,
) -> kflex_linux::Result<kflex_linux::TestRunOut> {
    let ctx = input.ctx_in.as_deref().unwrap_or(&[]);
    test_run(fd, &input.data_in, ctx, repeat)
}

/// Where a run executes.
#[derive(Clone, Copy)]
enum Side {
    Linux,
    Jit,
    Interp,
}

impl Workload {
    fn is_syscall(&self) -> bool {
        self.prog_type == ProgType::Syscall
    }

    /// One call on `side` with `repeat` runs (packet programs); its return value and the time
    /// of one run as the runtime itself reports it.
    fn call(&self, side: Side, repeat: u32) -> (u32, Duration) {
        let input = TestRunOptions {
            repeat,
            ..self.input.clone()
        };
        match side {
            Side::Linux => {
                let out = kernel_call(self.kernel.fd.as_fd(), &input, repeat)
                    .unwrap_or_else(|e| panic!("{}: linux: {e}", self.label));
                (out.retval, Duration::from_nanos(u64::from(out.duration_ns)))
            }
            Side::Jit | Side::Interp => {
                let ext = if matches!(side, Side::Jit) {
                    &self.jit
                } else {
                    &self.interp
                };
                let r = ext
                    .test_run(&self.program, &input)
                    .unwrap_or_else(|e| panic!("{}: kflex: {e}", self.label));
                (r.retval as u32, Duration::from_nanos(r.ns_per_run))
            }
        }
    }

    /// The time of one run on `side`: the runtime's own figure over [`REPEAT`] runs for packet
    /// programs, wall time per call over [`SYSCALL_CALLS`] calls for syscall programs.
    fn per_run(&self, side: Side) -> Duration {
        if self.is_syscall() {
            let start = thread_cpu();
            for _ in 0..SYSCALL_CALLS {
                black_box(self.call(side, 1));
            }
            thread_cpu().saturating_sub(start) / SYSCALL_CALLS
        } else {
            self.call(side, REPEAT).1
        }
    }
}

/// The calling thread's CPU time (user and system, so a `bpf(2)` call's kernel time counts):
/// unlike wall time it leaves out time the thread spent preempted on a loaded machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../jit/benches/c")
}

/// `list_walk.c` compiled for BPF, or why not.
fn list_walk_object() -> Result<Vec<u8>, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let out = dir.join("list_walk.bpf.o");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/include");
    let status = Command::new("clang-19")
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v4", "-I"])
        .arg(include)
        .arg("-c")
        .arg(source_dir().join("list_walk.c"))
        .arg("-o")
        .arg(&out)
        .output()
        .map_err(|e| format!("clang-19: {e}"))?;
    if !status.status.success() {
        return Err(String::from_utf8_lossy(&status.stderr).into_owned());
    }
    std::fs::read(&out).map_err(|e| e.to_string())
}

fn example(name: &str) -> &'static [u8] {
    kflex_examples::get(name)
        .unwrap_or_else(|| panic!("example {name} is bundled"))
        .object
}

fn workloads() -> Vec<Workload> {
    let client = [192, 168, 1, 10];
    let server = [10, 0, 0, 53];
    let dns = packet::udp4_frame(client, server, 40000, 53, b"query");
    let voice = packet::tcp4_frame(client, server, 40000, 80, 0xb8, b"voice");
    let collatz: Vec<u8> = [1000u64, 27, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let mut list = vec![
        workload(
            "xdp_firewall",
            example("xdp_firewall"),
            "xdp_firewall",
            TestRunOptions::packet(dns),
            None,
        ),
        workload(
            "tc_classifier",
            example("tc_classifier"),
            "tc_classifier",
            TestRunOptions::packet(voice),
            None,
        ),
        workload(
            "syscall_events",
            example("syscall_events"),
            "syscall_events",
            TestRunOptions::context(collatz),
            None,
        ),
    ]
    .into_iter()
    .map(|w| w.unwrap_or_else(|e| panic!("{e}")))
    .collect::<Vec<_>>();
    match list_walk_object().and_then(|bytes| {
        workload(
            "list_walk",
            &bytes,
            "list_walk",
            TestRunOptions::context(Vec::new()),
            Some("list_build"),
        )
    }) {
        Ok(w) => list.push(w),
        Err(e) => println!("list_walk left out: {e}"),
    }
    list
}

/// The median of `times` in nanoseconds.
fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times
        .get(times.len() / 2)
        .map_or(0.0, |d| d.as_nanos() as f64)
}

fn bench(c: &mut Criterion) {
    if let Err(reason) = bpf_available() {
        kflex_testutil::skip(&reason);
        return;
    }
    let list = workloads();
    // The three agree before anything is timed.
    for w in &list {
        let results = [Side::Linux, Side::Jit, Side::Interp].map(|s| w.call(s, 1).0);
        assert!(
            results.iter().all(|&r| r == results[0]),
            "{}: linux, jit, interp returned {results:?}",
            w.label
        );
    }
    for w in &list {
        let mut group = c.benchmark_group(format!("kernel/{}", w.label));
        for (name, side) in [
            ("linux", Side::Linux),
            ("kflex_jit", Side::Jit),
            ("kflex_interp", Side::Interp),
        ] {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    if w.is_syscall() {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(w.call(side, 1));
                        }
                        start.elapsed()
                    } else {
                        let repeat = u32::try_from(iters).unwrap_or(u32::MAX).max(1);
                        w.call(side, repeat).1 * repeat
                    }
                })
            });
        }
        group.finish();
    }

    println!(
        "\nkflex beside the Linux kernel JIT (median of {ROUNDS}; packet programs: each runtime's \
         own per-run figure over {REPEAT} runs; syscall programs: thread CPU time per test-run call)"
    );
    println!(
        "{:<32} {:>12} {:>12} {:>12} {:>14}",
        "program", "linux ns", "kflex jit", "kflex interp", "jit / linux"
    );
    for w in &list {
        let (mut linux, mut jit, mut interp) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            linux.push(w.per_run(Side::Linux));
            jit.push(w.per_run(Side::Jit));
            interp.push(w.per_run(Side::Interp));
        }
        let (l, j, i) = (median(linux), median(jit), median(interp));
        println!(
            "{:<32} {:>12.1} {:>12.1} {:>12.1} {:>14.2}",
            w.label,
            l,
            j,
            i,
            j / l.max(1.0)
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
