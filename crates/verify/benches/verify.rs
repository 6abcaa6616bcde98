//! Verification cost: time and instructions processed by kflex for every bundled example, the
//! red-black tree and skip list programs (the data-structure extensions kflex's verifier spends
//! the most on), and a large generated program (about 50,000 instructions of straight-line code
//! with forward branches), side by side with the Linux kernel's own `verification time` for the same bytes
//! (from a `BPF_LOG_STATS` log, averaged over several loads) when this process may use `bpf(2)`.
//!
//! Run with `cargo bench -p kflex-verify --bench verify`; the table is printed after the
//! criterion measurements.

use std::hint::black_box;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use kflex_datastructures::Structure;
use kflex_isa::Insn;
use kflex_isa::decode::Program;
use kflex_linux::{LOG_STATS, LinuxMap, bpf_available, prog_load};
use kflex_object::{MapSpec, Object, ProgType};
use kflex_runtime::HelperRegistry;
use kflex_verify::{VerifyInput, VerifyOptions, progen, verify};

/// Kernel loads averaged per program.
const KERNEL_LOADS: u32 = 5;
/// kflex verifications averaged per program for the table.
const KFLEX_RUNS: u32 = 10;
/// Size of the large generated program.
const LARGE_INSNS: usize = 50_000;

/// One program to measure.
struct Subject {
    name: String,
    prog_type: ProgType,
    insns: Vec<Insn>,
    program: Program,
    maps: Vec<MapSpec>,
    helpers: HelperRegistry,
}

impl Subject {
    fn new(name: String, prog_type: ProgType, insns: Vec<Insn>, maps: Vec<MapSpec>) -> Self {
        let program = Program::decode(&insns).expect("benchmark program decodes");
        let mut helpers = HelperRegistry::linux_default();
        kflex_hooks::register_extra_helpers(&mut helpers, prog_type).expect("hook helpers");
        Subject {
            name,
            prog_type,
            insns,
            program,
            maps,
            helpers,
        }
    }

    /// Verifies once; returns (instructions processed, time) or the error.
    fn verify(&self) -> Result<(u64, Duration), String> {
        let input = VerifyInput {
            program: &self.program,
            prog_type: self.prog_type,
            maps: &self.maps,
            helpers: &self.helpers,
            line_info: &[],
            func_info: &[],
        };
        verify(&input, &VerifyOptions::default())
            .map(|v| (v.stats.insns_processed, v.stats.time))
            .map_err(|e| e.rule)
    }
}

fn subjects() -> Vec<Subject> {
    let mut out = Vec::new();
    for ex in kflex_examples::all() {
        let obj = Object::parse(ex.name, ex.object).expect("example parses");
        for prog in &obj.programs {
            let prog_type = prog.prog_type.expect("example has a program type");
            out.push(Subject::new(
                ex.name.to_string(),
                prog_type,
                prog.insns.clone(),
                obj.maps.clone(),
            ));
        }
    }
    for ds in [Structure::Rbtree, Structure::Skiplist] {
        let Ok(obj) = Object::parse(ds.name(), ds.object()) else {
            eprintln!("{}: object not built; not measured", ds.name());
            continue;
        };
        for prog in obj.programs.iter().filter(|p| p.name != "init") {
            let Some(prog_type) = prog.prog_type else {
                continue;
            };
            out.push(Subject::new(
                format!("{}/{}", ds.name(), prog.name),
                prog_type,
                prog.insns.clone(),
                obj.maps.clone(),
            ));
        }
    }
    let large = progen::straight_line(1, LARGE_INSNS, ProgType::Xdp);
    out.push(Subject::new(
        format!("generated-{LARGE_INSNS}"),
        large.prog_type,
        large.insns,
        large.maps,
    ));
    out
}

fn bench_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    for s in subjects() {
        if let Err(e) = s.verify() {
            eprintln!("verify/{}: rejected ({e}); not measured", s.name);
            continue;
        }
        group.bench_function(&s.name, |b| b.iter(|| black_box(s.verify())));
    }
    group.finish();
}

/// The kernel's (instructions processed, mean verification time in µs), or why not.
fn kernel_stats(s: &Subject) -> Result<(u64, f64), String> {
    bpf_available()?;
    let maps: Vec<LinuxMap> = s
        .maps
        .iter()
        .map(|m| LinuxMap::create(m).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let fds: Vec<BorrowedFd<'_>> = maps.iter().map(LinuxMap::as_fd).collect();
    let mut total_us = 0u64;
    let mut processed = 0;
    for _ in 0..KERNEL_LOADS {
        let loaded = prog_load(s.prog_type, &s.insns, &fds, "GPL", LOG_STATS)
            .map_err(|e| format!("rejected: {}", e.reason()))?;
        total_us += loaded
            .verification_time_us
            .ok_or("no statistics in the log")?;
        processed = loaded.insns_processed.unwrap_or(0);
    }
    Ok((processed, total_us as f64 / f64::from(KERNEL_LOADS)))
}

/// Prints kflex's and the kernel's numbers for every subject.
fn table() {
    println!();
    println!(
        "{:<26} {:>7} {:>12} {:>11} {:>12} {:>11} {:>14}",
        "program", "insns", "kflex insns", "kflex µs", "linux insns", "linux µs", "linux/kflex"
    );
    for s in subjects() {
        let mut processed = 0;
        let mut total = Duration::ZERO;
        let mut error = None;
        for _ in 0..KFLEX_RUNS {
            let start = Instant::now();
            match s.verify() {
                Ok((p, _)) => processed = p,
                Err(e) => error = Some(e),
            }
            total += start.elapsed();
        }
        let kflex_us = total.as_secs_f64() * 1e6 / f64::from(KFLEX_RUNS);
        let (kflex_insns, kflex_time) = match &error {
            None => (processed.to_string(), format!("{kflex_us:.1}")),
            Some(_) => ("rejected".to_string(), "-".to_string()),
        };
        let (linux_insns, linux_time, ratio) = match kernel_stats(&s) {
            Ok((p, us)) => (
                p.to_string(),
                format!("{us:.1}"),
                if error.is_none() && kflex_us > 0.0 {
                    format!("{:.2}", us / kflex_us)
                } else {
                    "-".into()
                },
            ),
            Err(e) => {
                eprintln!("{}: no kernel numbers: {e}", s.name);
                ("-".into(), "-".into(), "-".into())
            }
        };
        println!(
            "{:<26} {:>7} {:>12} {:>11} {:>12} {:>11} {:>14}",
            s.name,
            s.insns.len(),
            kflex_insns,
            kflex_time,
            linux_insns,
            linux_time,
            ratio
        );
        if let Some(e) = error {
            println!("  kflex rejected {}: {e}", s.name);
        }
    }
}

criterion_group!(benches, bench_verify);

fn main() {
    benches();
    table();
    Criterion::default().configure_from_args().final_summary();
}
