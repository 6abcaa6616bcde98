//! Differential test against the running Linux kernel: the same bytes run on kflex's interpreter,
//! kflex's JIT and the kernel (`BPF_PROG_LOAD` + `BPF_PROG_TEST_RUN`) must give identical results.
//!
//! * Every bundled example on every input of `common/cases.rs`: return value, packet out, context
//!   out (where Linux hands one back) and the contents of every map readable from both sides
//!   (arrays and hashes; per-CPU maps, ring buffers and arenas are not readable through the raw
//!   kernel wrappers) after every run.
//! * A stream of generated programs (`kflex_verify::progen`, xdp/sched_cls/syscall) that both
//!   verifiers accept: identical `r0` (its low 32 bits: the kernel reports no more).
//!
//! Without `bpf(2)` each test prints `SKIPPED: <reason>` and passes.

use std::os::fd::{AsFd, BorrowedFd};

use kflex::packet::{self, ETH_P_ARP, ETH_P_IP};
use kflex::{Engine, Extension, ExtensionOptions, MapType, ProgType, TestRunOptions};
use kflex_isa::decode::Program as Decoded;
use kflex_isa::disasm::listing;
use kflex_isa::{Insn, op};
use kflex_linux::{LinuxMap, TestRunOut, bpf_available, prog_load, test_run};
use kflex_object::{Object, Program};
use kflex_verify::progen::{self, TAG_HEAP, TAG_UNBOUNDED_LOOP};

mod common;
use common::cases::*;

/// Generated programs per program type.
const GENERATED_PER_TYPE: u64 = 400;

/// Helpers whose results differ between two runs or two runtimes by nature (time, randomness,
/// CPU number): generated programs have each call replaced by `r0 = <constant>` (see
/// [`determinise`]).
const NONDETERMINISTIC_HELPERS: [i32; 4] = [
    5,   // bpf_ktime_get_ns
    7,   // bpf_get_prandom_u32
    8,   // bpf_get_smp_processor_id
    125, // bpf_ktime_get_boot_ns
];

/// Whether the kernel is usable; prints the skip line if not.
fn kernel_ready() -> bool {
    match bpf_available() {
        Ok(()) => true,
        Err(reason) => {
            kflex_testutil::skip(&reason);
            false
        }
    }
}

fn disassembly(insns: &[Insn]) -> String {
    Decoded::decode(insns)
        .map(|p| listing(&p))
        .unwrap_or_else(|e| format!("(does not decode: {e:?})"))
}

/// One engine's result in the form all three share.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    /// The return value's low 32 bits.
    retval: u32,
    data_out: Vec<u8>,
    /// `None` where the kernel hands no context back (no `ctx_in` given for a packet type).
    ctx_out: Option<Vec<u8>>,
}

fn from_kflex(r: &kflex::TestRunResult, keep_ctx: bool) -> Observed {
    Observed {
        retval: r.retval as u32,
        data_out: r.data_out.clone(),
        ctx_out: if keep_ctx { r.ctx_out.clone() } else { None },
    }
}

fn from_kernel(r: TestRunOut, keep_ctx: bool) -> Observed {
    Observed {
        retval: r.retval,
        data_out: r.data_out,
        ctx_out: keep_ctx.then_some(r.ctx_out),
    }
}

/// Runs `input` in the kernel as `BPF_PROG_TEST_RUN` expresses it.
fn kernel_run(fd: BorrowedFd<'_>, input: &TestRunOptions) -> kflex_linux::Result<TestRunOut> {
    let ctx = input.ctx_in.as_deref().unwrap_or(&[]);
    test_run(fd, &input.data_in, ctx, input.repeat)
}

/// Every example's program inputs (those of `differential.rs`, minus nothing: all are runnable
/// in Linux except `sk_skb`, which Linux cannot test-run and is left out by program type).
fn cases() -> Vec<(&'static str, Vec<TestRunOptions>)> {
    let packets = |frames: Vec<Vec<u8>>| -> Vec<TestRunOptions> {
        frames.into_iter().map(TestRunOptions::packet).collect()
    };
    let mut xdp: Vec<Vec<u8>> = xdp_cases().into_iter().map(|(_, f)| f).collect();
    xdp.push(packet::udp4_frame(CLIENT, SERVER, 40000, 53, b""));
    let mut tc = tc_frames();
    tc.push(packet::tcp4_frame(CLIENT, SERVER, 40000, 23, 0, b""));
    tc.push(packet::ethernet(
        packet::DST_MAC,
        packet::SRC_MAC,
        ETH_P_ARP,
        &[0u8; 28],
    ));
    tc.push(tc_frames()[0].clone());
    let mut syscall: Vec<TestRunOptions> = COLLATZ_RUNS
        .iter()
        .map(|&(n, seed)| TestRunOptions::context(collatz_ctx(n, seed)))
        .collect();
    syscall.push(TestRunOptions::context(collatz_ctx(100, 0)));
    let repeated = TestRunOptions {
        repeat: 7,
        ..TestRunOptions::packet(packet::udp4_frame(CLIENT, SERVER, 1, 53, b"x"))
    };
    let sk_skb = vec![packet::ethernet(
        packet::DST_MAC,
        packet::SRC_MAC,
        ETH_P_IP,
        &[0u8; 86],
    )];
    vec![
        ("xdp_firewall", {
            let mut v = packets(xdp);
            v.push(repeated.clone());
            v
        }),
        (
            "socket_udp_filter",
            packets(socket_cases().into_iter().map(|(f, _)| f).collect()),
        ),
        ("tc_classifier", {
            let mut v = packets(tc);
            v.push(repeated);
            v
        }),
        ("syscall_events", syscall),
        ("sk_skb_verdict", packets(sk_skb)),
    ]
}

fn load(name: &str, engine: Engine) -> Extension {
    let ex = kflex_examples::get(name).unwrap_or_else(|| panic!("example {name} is bundled"));
    let options = ExtensionOptions {
        engine,
        ..ExtensionOptions::default()
    };
    Extension::load(name, ex.object, options).unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

/// The contents of every map both sides can read: (map, key, kflex value, kernel value) for
/// every array index and every key kflex's hash maps hold.
fn map_differences(ext: &Extension, kernel: &[LinuxMap]) -> Vec<String> {
    let mut diffs = Vec::new();
    for (m, k) in ext.maps().zip(kernel) {
        let spec = m.spec();
        let keys: Vec<Vec<u8>> = match spec.map_type {
            MapType::Array => (0..spec.max_entries)
                .map(|i| i.to_ne_bytes().to_vec())
                .collect(),
            MapType::Hash => m.keys().expect("kflex map keys"),
            // LRU eviction is per-CPU in Linux; per-CPU, ring-buffer and arena contents are not
            // readable through kflex-linux.
            _ => continue,
        };
        for key in keys {
            let ours = m.lookup(&key).expect("kflex map lookup");
            let theirs = k.lookup(&key).expect("kernel map lookup");
            if ours != theirs {
                diffs.push(format!(
                    "map {} key {key:02x?}: kflex {ours:02x?}, linux {theirs:02x?}",
                    m.name()
                ));
            }
        }
    }
    diffs
}

#[test]
fn every_example_agrees_with_linux_on_both_engines() {
    if !kernel_ready() || !Engine::JIT_SUPPORTED {
        return;
    }
    let cases = cases();
    let mut compared = 0;
    for ex in kflex_examples::all() {
        let (_, inputs) = cases
            .iter()
            .find(|(name, _)| *name == ex.name)
            .unwrap_or_else(|| panic!("no inputs for example {}", ex.name));
        let obj = Object::parse(ex.name, ex.object).expect("example parses");
        let kernel_maps: Vec<LinuxMap> = obj
            .maps
            .iter()
            .map(|s| {
                LinuxMap::create(s).unwrap_or_else(|e| panic!("{}: map {}: {e}", ex.name, s.name))
            })
            .collect();
        let fds: Vec<BorrowedFd<'_>> = kernel_maps.iter().map(LinuxMap::as_fd).collect();
        let jit = load(ex.name, Engine::Jit);
        let interp = load(ex.name, Engine::Interp);
        if ex.name == "xdp_firewall" {
            let (key, value) = (ATTACKER, 0u64.to_ne_bytes());
            jit.map("blocklist")
                .unwrap()
                .update(&key, &value, 0)
                .unwrap();
            interp
                .map("blocklist")
                .unwrap()
                .update(&key, &value, 0)
                .unwrap();
            let i = obj.maps.iter().position(|m| m.name == "blocklist").unwrap();
            kernel_maps[i].update(&key, &value, 0).unwrap();
        }
        for prog in &obj.programs {
            let prog_type = prog.prog_type.expect("example program type");
            if prog_type == ProgType::SkSkb {
                // Linux has no BPF_PROG_TEST_RUN for sk_skb.
                continue;
            }
            let license = obj.license.as_deref().unwrap_or("GPL");
            let loaded = prog_load(prog_type, &prog.insns, &fds, license, 0)
                .unwrap_or_else(|e| panic!("Linux rejects {}/{}: {e}", ex.name, prog.name));
            for (i, input) in inputs.iter().enumerate() {
                let what = format!("{}/{} case {i}", ex.name, prog.name);
                let a = jit
                    .test_run(&prog.name, &unhurried(input))
                    .unwrap_or_else(|e| panic!("{what}: jit: {e}"));
                let b = interp
                    .test_run(&prog.name, input)
                    .unwrap_or_else(|e| panic!("{what}: interp: {e}"));
                let c = kernel_run(loaded.fd.as_fd(), input)
                    .unwrap_or_else(|e| panic!("{what}: linux: {e}"));
                // Linux copies a context back for packet types only when one was passed in.
                let keep_ctx = input.ctx_in.is_some();
                let (a, b, c) = (
                    from_kflex(&a, keep_ctx),
                    from_kflex(&b, keep_ctx),
                    from_kernel(c, keep_ctx),
                );
                assert!(
                    a == b && b == c,
                    "{what}: results differ\n  jit:    {a:?}\n  interp: {b:?}\n  linux:  {c:?}\n{}",
                    disassembly(&prog.insns)
                );
                let mut diffs = map_differences(&jit, &kernel_maps);
                diffs.extend(map_differences(&interp, &kernel_maps));
                assert!(
                    diffs.is_empty(),
                    "{what}: maps differ:\n{}",
                    diffs.join("\n")
                );
                compared += 1;
            }
        }
    }
    eprintln!("linux-differential: {compared} example runs identical on jit, interp and linux");
    assert!(compared >= 25, "only {compared} runs compared");
}

/// The input a generated program of `prog_type` runs on.
fn generated_input(prog_type: ProgType) -> TestRunOptions {
    match prog_type {
        ProgType::Syscall => TestRunOptions::context((0u8..64).collect()),
        _ => TestRunOptions::packet(packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"payload")),
    }
}

/// Replaces every call of a [`NONDETERMINISTIC_HELPERS`] helper by `r0 = <constant>` (one slot
/// for one slot, so jumps keep their targets), the constants drawn from `seed` and the slot, so
/// that all three runtimes see the same "random" values. Returns how many calls were replaced.
fn determinise(insns: &mut [Insn], seed: u64) -> usize {
    let mut replaced = 0;
    for (pc, i) in insns.iter_mut().enumerate() {
        if i.opcode == op::JMP | op::CALL && i.src == 0 && NONDETERMINISTIC_HELPERS.contains(&i.imm)
        {
            let mix = (seed ^ (pc as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .wrapping_mul(0xbf58_476d_1ce4_e5b9);
            // Small values half the time, so that loops and bounds on them stay short.
            let imm = if mix & 1 == 0 {
                (mix >> 33) as i32 & 0xff
            } else {
                (mix >> 32) as i32
            };
            *i = Insn::new(op::ALU64 | op::MOV | op::K, 0, 0, 0, imm);
            replaced += 1;
        }
    }
    replaced
}

#[test]
fn generated_verified_programs_agree_with_linux() {
    if !kernel_ready() || !Engine::JIT_SUPPORTED {
        return;
    }
    let start = std::time::Instant::now();
    let (mut generated, mut compared, mut rejected, mut skipped) = (0, 0, 0, 0);
    let mut determinised = 0;
    let mut failures = Vec::new();
    for prog_type in [ProgType::Xdp, ProgType::SchedCls, ProgType::Syscall] {
        for seed in 0..GENERATED_PER_TYPE {
            generated += 1;
            let mut g = progen::generate(seed, prog_type);
            // Heap programs need the arena in both places (kflex's heap layout differs from the
            // kernel's); unbounded loops spin on a helper's result.
            if g.has_tag(TAG_HEAP) || g.has_tag(TAG_UNBOUNDED_LOOP) {
                skipped += 1;
                continue;
            }
            determinised += usize::from(determinise(&mut g.insns, seed) > 0);
            let kernel_maps: Vec<LinuxMap> = g
                .maps
                .iter()
                .map(|s| LinuxMap::create(s).expect("kernel map"))
                .collect();
            let fds: Vec<BorrowedFd<'_>> = kernel_maps.iter().map(LinuxMap::as_fd).collect();
            let Ok(loaded) = prog_load(prog_type, &g.insns, &fds, "GPL", 0) else {
                rejected += 1;
                continue;
            };
            let object = Object {
                name: format!("gen{seed}"),
                license: Some("GPL".into()),
                programs: vec![Program {
                    name: "gen".into(),
                    section: prog_type.name().into(),
                    prog_type: Some(prog_type),
                    sleepable: prog_type == ProgType::Syscall,
                    insns: g.insns.clone(),
                    line_info: Vec::new(),
                    func_info: Vec::new(),
                }],
                maps: g.maps.clone(),
                btf: None,
            };
            let ext = |engine| {
                let options = ExtensionOptions {
                    engine,
                    ..ExtensionOptions::default()
                };
                Extension::from_object(object.clone(), options).expect("generated object loads")
            };
            let (jit, interp) = (ext(Engine::Jit), ext(Engine::Interp));
            if jit.program("gen").is_err() {
                rejected += 1;
                continue;
            }
            let input = generated_input(prog_type);
            let a = jit
                .test_run("gen", &unhurried(&input))
                .map(|r| r.retval as u32);
            let b = interp.test_run("gen", &input).map(|r| r.retval as u32);
            let c = kernel_run(loaded.fd.as_fd(), &input).map(|r| r.retval);
            let (a, b, c) = (
                a.map_err(|e| e.to_string()),
                b.map_err(|e| e.to_string()),
                c.map_err(|e| e.to_string()),
            );
            if !(a.is_ok() && a == b && b == c) {
                failures.push(format!(
                    "seed {seed} {} [{}]\n  jit:    {a:?}\n  interp: {b:?}\n  linux:  {c:?}\n{}",
                    prog_type.name(),
                    g.note,
                    disassembly(&g.insns)
                ));
            }
            compared += 1;
        }
    }
    eprintln!(
        "linux-differential: {generated} generated, {compared} compared, {rejected} rejected by a \
         verifier, {skipped} skipped (heap or unbounded loop), {determinised} with \
         helper calls made deterministic, {} disagreements ({:?})",
        failures.len(),
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} disagreements (first 3):\n{}",
        failures.len(),
        failures
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert!(compared >= 100, "only {compared} programs compared");
}
