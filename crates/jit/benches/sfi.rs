//! Cost of each SFI mode on a pointer-chasing heap workload, relative to the same C compiled
//! natively.
//!
//! `benches/c/list_walk.c` is compiled twice at bench start: with `clang-19 -O2 -target bpf
//! -mcpu=v4` (loaded with `kflex_object`, verified with `kflex_verify`, its heap facts handed to
//! the JIT, run against a real extension heap) and with `gcc -O2 -shared` (loaded with `dlopen`).
//! `list_build` links 100k heap nodes in a scrambled order, `list_walk` sums them by following the
//! `next` pointers (every pointer loaded from the heap is untrusted, so each step is guarded).
//! Criterion reports per-walk times (throughput in nodes); a summary table printed at the end
//! gives ns per node for native and each mode and the ratio to native measured in the same run.
//! A second table gives the fixed per-run cost of a one-store heap program per mode (segment mode
//! switches the GS base twice per run), both inside one `JitRunner` (what test-runs and the
//! invoker use) and through `JitProgram::run` alone (which sets up frames, native stack and state
//! for that one run). On this 2-vCPU machine (load ~1): and-mask 24.1 ns/run in a runner,
//! 71.4 alone; segment 48.8 / 97.3; no guards 24.0 / 71.1. The last three configurations add the default termination check (one load through the
//! terminate word at the walk loop's back-edge), i.e. the full run-time safety cost. The segment
//! configurations run only when the CPU has user-space FSGSBASE (otherwise they would measure the
//! and-mask fallback and are left out).

use std::ffi::{CStr, CString, c_void};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kflex_isa::decode::Program;
use kflex_isa::op;
use kflex_jit::{HeapLayout, JitEnv, JitOptions, JitProgram, SfiMode, TerminationMode};
use kflex_object::{MapType, Object};
use kflex_runtime::heap::{Heap, HeapConfig};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};
use kflex_verify::{VerifyInput, VerifyOptions, verify};

/// Nodes in the list (`NODES` in the C source).
const NODES: u64 = 100_000;
/// The sum `list_walk` returns: values 3i+1 for i in 0..NODES.
const SUM: u64 = 3 * (NODES * (NODES - 1) / 2) + NODES;

/// The configurations measured: SFI mode, termination check at the loop's back-edge, name.
const MODES: [(SfiMode, TerminationMode, &str); 8] = [
    (SfiMode::Segment, TerminationMode::None, "segment"),
    (SfiMode::AndMask, TerminationMode::None, "and_mask"),
    (SfiMode::Base, TerminationMode::None, "base"),
    (SfiMode::WritesOnly, TerminationMode::None, "writes_only"),
    (SfiMode::None, TerminationMode::None, "none"),
    (
        SfiMode::Segment,
        TerminationMode::OneLoad,
        "segment+one_load",
    ),
    (
        SfiMode::AndMask,
        TerminationMode::OneLoad,
        "and_mask+one_load",
    ),
    (
        SfiMode::WritesOnly,
        TerminationMode::OneLoad,
        "writes_only+one_load",
    ),
];

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/c/list_walk.c")
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sfi-bench");
    std::fs::create_dir_all(&dir).expect("bench output directory");
    dir
}

fn run_tool(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The native build: `list_build` and `list_walk` from a gcc -O2 shared object.
struct Native {
    build: unsafe extern "C" fn(*mut c_void) -> i32,
    walk: unsafe extern "C" fn(*mut c_void) -> u64,
}

fn native() -> Native {
    let lib = out_dir().join("liblist_walk.so");
    run_tool(
        Command::new("gcc")
            .args(["-O2", "-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(source()),
    );
    let path = CString::new(lib.to_str().expect("utf-8 path")).unwrap();
    // SAFETY: dlopen of a library we just built; the handle is never closed (it lives for the
    // whole benchmark process).
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    assert!(!handle.is_null(), "dlopen {lib:?}");
    let sym = |name: &CStr| {
        // SAFETY: `handle` is a live library handle and `name` a NUL-terminated symbol name.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        assert!(!p.is_null(), "dlsym {name:?}");
        p
    };
    let (build, walk) = (sym(c"list_build"), sym(c"list_walk"));
    // SAFETY: both symbols are the C functions of list_walk.c with exactly these signatures.
    unsafe {
        Native {
            build: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> i32>(
                build,
            ),
            walk: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> u64>(
                walk,
            ),
        }
    }
}

/// The kflex build: the object, its heap, and the linked programs with their heap facts.
struct Kflex {
    heap: Heap,
    build: Linked,
    walk: Linked,
}

struct Linked {
    program: Program,
    facts: Vec<(usize, kflex_jit::HeapAccess)>,
    termination_points: Vec<usize>,
}

fn kflex() -> Kflex {
    let obj_path = out_dir().join("list_walk.bpf.o");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/include");
    run_tool(
        Command::new("clang-19")
            .args(["-O2", "-g", "-target", "bpf", "-mcpu=v4", "-I"])
            .arg(include)
            .arg("-c")
            .arg(source())
            .arg("-o")
            .arg(&obj_path),
    );
    let bytes = std::fs::read(&obj_path).expect("read object");
    let object = Object::parse("list_walk.bpf.o", &bytes).expect("object parses");
    let arena = object
        .maps
        .iter()
        .position(|m| m.map_type == MapType::Arena)
        .expect("arena map");
    let spec = &object.maps[arena];
    let size = (u64::from(spec.max_entries) * 4096).next_power_of_two();
    let heap = Heap::create(HeapConfig {
        init: spec.initial_value.as_deref(),
        ..HeapConfig::new(size)
    })
    .expect("heap");
    let helpers = HelperRegistry::linux_default();
    let link = |name: &str| {
        let p = object.program(name).expect("program");
        let decoded = Program::decode(&p.insns).expect("decodes");
        let input = VerifyInput {
            program: &decoded,
            prog_type: p.prog_type.expect("known program type"),
            maps: &object.maps,
            helpers: &helpers,
            line_info: &p.line_info,
            func_info: &p.func_info,
        };
        let verified =
            verify(&input, &VerifyOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let facts = verified
            .insns
            .iter()
            .enumerate()
            .filter_map(|(pc, f)| f.heap.map(|h| (pc, h)))
            .collect();
        let termination_points = verified.termination_points.iter().map(|t| t.pc).collect();
        let mut insns = p.insns.clone();
        for i in 0..insns.len().saturating_sub(1) {
            let is_arena_value = insns[i].opcode == op::LD | op::IMM | op::DW
                && insns[i].src == op::PSEUDO_MAP_VALUE
                && insns[i].imm as usize == arena;
            if is_arena_value {
                let addr = heap.base() + u64::from(insns[i + 1].imm as u32);
                insns[i].src = 0;
                insns[i].imm = addr as u32 as i32;
                insns[i + 1].imm = (addr >> 32) as u32 as i32;
            }
        }
        Linked {
            program: Program::decode(&insns).expect("linked program decodes"),
            facts,
            termination_points,
        }
    };
    Kflex {
        build: link("list_build"),
        walk: link("list_walk"),
        heap,
    }
}

impl Kflex {
    fn compile(&self, which: &Linked, mode: SfiMode, termination: TerminationMode) -> JitProgram {
        let options = JitOptions {
            sfi: mode,
            heap: Some(HeapLayout {
                base: self.heap.base(),
                size: self.heap.size(),
            }),
            heap_facts: which.facts.clone(),
            termination,
            termination_points: which.termination_points.clone(),
            ..JitOptions::default()
        };
        JitProgram::compile(&which.program, &options).expect("compiles")
    }

    fn run(&self, jit: &JitProgram) -> u64 {
        let (mut mem, helpers, mut env) = (
            MemoryMap::new(),
            HelperRegistry::empty(),
            ExecEnv::default(),
        );
        let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
        jenv.heap_base = self.heap.base();
        jenv.budget = Some(Duration::from_secs(10));
        jit.run([0; 5], &mut jenv).expect("run")
    }
}

/// Median time of one call of `f` over `rounds` calls.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn bench(c: &mut Criterion) {
    let native = native();
    let kflex = kflex();
    // SAFETY: the native functions ignore their context argument.
    unsafe { (native.build)(std::ptr::null_mut()) };
    kflex.run(&kflex.compile(&kflex.build, SfiMode::AndMask, TerminationMode::None));
    // SAFETY: as above.
    assert_eq!(unsafe { (native.walk)(std::ptr::null_mut()) }, SUM);
    let walks: Vec<_> = MODES
        .iter()
        .filter(|&&(mode, ..)| mode != SfiMode::Segment || kflex_jit::sfi::segment::available())
        .map(|&(mode, termination, name)| {
            let jit = kflex.compile(&kflex.walk, mode, termination);
            assert_eq!(kflex.run(&jit), SUM, "{name}");
            (name, jit)
        })
        .collect();

    let mut group = c.benchmark_group("sfi_list_walk");
    group.throughput(Throughput::Elements(NODES));
    group.bench_function("native_gcc_O2", |b| {
        // SAFETY: as above.
        b.iter(|| black_box(unsafe { (native.walk)(std::ptr::null_mut()) }))
    });
    for (name, jit) in &walks {
        group.bench_function(*name, |b| b.iter(|| black_box(kflex.run(jit))));
    }
    group.finish();

    // Side-by-side summary measured in one pass, interleaved so drift affects all equally.
    let rounds = 41;
    let per_node = |d: Duration| d.as_nanos() as f64 / NODES as f64;
    // SAFETY: as above.
    let native_ns = per_node(median(rounds, || {
        black_box(unsafe { (native.walk)(std::ptr::null_mut()) });
    }));
    println!("\nSFI on a 100k-node pointer-chasing walk (median of {rounds} walks):");
    println!("{:<26} {:>10} {:>10}", "engine", "ns/node", "x native");
    println!("{:<26} {:>10.3} {:>10.3}", "native gcc -O2", native_ns, 1.0);
    for (name, jit) in &walks {
        let ns = per_node(median(rounds, || {
            black_box(kflex.run(jit));
        }));
        let (emitted, elided) = jit.guards();
        println!(
            "{:<26} {:>10.3} {:>10.3}   (guards emitted {emitted}, elided {elided})",
            format!("jit {name}"),
            ns,
            ns / native_ns
        );
    }
}

/// Fixed per-run cost of each mode on a program with a single guarded heap store (where segment
/// mode's GS switch, two `wrgsbase` per run, is not amortised over a long walk).
fn per_run(kflex: &Kflex) {
    use kflex_isa::decode::{Instruction as I, Operand, Size, encode_all};
    let insns = [
        I::LoadImm64 {
            dst: 1,
            pseudo: 0,
            imm: kflex.heap.base() + 64,
        },
        I::Store {
            size: Size::DW,
            dst: 1,
            off: 0,
            src: Operand::Imm(1),
        },
        I::Mov {
            width: kflex_isa::decode::Width::W64,
            dst: 0,
            src: Operand::Imm(0),
        },
        I::Exit,
    ];
    let program = Linked {
        program: Program::decode(&encode_all(&insns)).expect("decodes"),
        facts: vec![(2, kflex_jit::HeapAccess::Guard { reg: 1 })],
        termination_points: Vec::new(),
    };
    let (mut mem, helpers, mut env) = (
        MemoryMap::new(),
        HelperRegistry::empty(),
        ExecEnv::default(),
    );
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.heap_base = kflex.heap.base();
    let runs = 20_000u32;
    let modes = [SfiMode::AndMask, SfiMode::Segment, SfiMode::None];
    let jits: Vec<_> = modes
        .iter()
        .map(|&m| kflex.compile(&program, m, TerminationMode::None))
        .collect();
    println!(
        "\nPer-run cost, one guarded heap store (median of 21 batches of {runs} runs; \
         runner: one JitRunner for the batch, run: JitProgram::run, set up per run):"
    );
    for (mode, jit) in modes.iter().zip(&jits) {
        let mut lease = jit.frame_lease(jenv.max_call_depth);
        let in_runner = median(21, || {
            let mut runner = jit.runner(&mut jenv, &mut lease).expect("runner");
            for _ in 0..runs {
                black_box(runner.run([0; 5]).expect("run"));
            }
        });
        lease.release(jenv.mem);
        let alone = median(21, || {
            for _ in 0..runs {
                black_box(jit.run([0; 5], &mut jenv).expect("run"));
            }
        });
        let ns = |batch: std::time::Duration| batch.as_nanos() as f64 / f64::from(runs);
        println!(
            "{:<26} {:>8.1} ns/run in a runner {:>8.1} ns/run alone",
            format!("jit {mode:?}"),
            ns(in_runner),
            ns(alone)
        );
    }
}

fn bench_per_run(_: &mut Criterion) {
    per_run(&kflex());
}

criterion_group!(benches, bench, bench_per_run);
criterion_main!(benches);
