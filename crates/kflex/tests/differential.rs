//! Every bundled example's test-run cases (the inputs of `examples.rs`) run through the JIT and
//! the interpreter, each engine in its own extension instance: return values, packets, contexts,
//! trace output, ring-buffer records after every run, and the contents of every map at the end
//! must be identical.

use kflex::packet::{self, ETH_P_ARP, ETH_P_IP};
use kflex::{Engine, Extension, ExtensionOptions, MapType, TestRunOptions, TestRunResult};

mod common;
use common::cases::*;

fn load(name: &str, engine: Engine) -> Extension {
    let ex = kflex_examples::get(name).unwrap_or_else(|| panic!("example {name} is bundled"));
    Extension::load(
        name,
        ex.object,
        ExtensionOptions {
            engine,
            ..ExtensionOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

/// Every example's program with the inputs its tests use.
fn cases() -> Vec<(&'static str, Vec<TestRunOptions>)> {
    let packets = |frames: Vec<Vec<u8>>| -> Vec<TestRunOptions> {
        frames.into_iter().map(TestRunOptions::packet).collect()
    };
    let mut xdp: Vec<Vec<u8>> = xdp_cases().into_iter().map(|(_, f)| f).collect();
    // The header check: a frame shorter than Ethernet.
    xdp.push(vec![0xff; 10]);
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
    syscall.push(TestRunOptions::context(collatz_ctx(10_001, 27)));
    syscall.push(TestRunOptions::context(collatz_ctx(100, 0)));
    let sk_skb = vec![
        packet::ethernet(packet::DST_MAC, packet::SRC_MAC, ETH_P_IP, &[0u8; 86]),
        packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"query"),
        packet::tcp4_frame(CLIENT, SERVER, 40000, 80, 0, b"GET /"),
        packet::ethernet(packet::DST_MAC, packet::SRC_MAC, ETH_P_ARP, &[0u8; 28]),
    ];
    let repeated = TestRunOptions {
        repeat: 7,
        ..TestRunOptions::packet(packet::udp4_frame(CLIENT, SERVER, 1, 53, b"x"))
    };
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
        ("tc_classifier", packets(tc)),
        ("syscall_events", syscall),
        ("sk_skb_verdict", {
            let mut v = packets(sk_skb);
            v.push(repeated);
            v
        }),
    ]
}

/// The observable results of one run (timing and instruction counts differ by design).
fn observable(r: &TestRunResult) -> impl PartialEq + std::fmt::Debug {
    (
        r.retval,
        r.data_out.clone(),
        r.ctx_out.clone(),
        r.trace.clone(),
        r.trace_dropped,
        r.resources_released,
        r.cancelled,
    )
}

/// A key and its value (one per CPU for per-CPU maps; records for ring buffers).
type MapEntry = (Vec<u8>, Vec<Vec<u8>>);

/// Every map's contents: sorted (key, per-CPU values) entries, drained ring-buffer records, the
/// first bytes of the heap.
fn map_contents(ext: &Extension) -> Vec<(String, Vec<MapEntry>)> {
    ext.maps()
        .map(|m| {
            let entries = match m.spec().map_type {
                MapType::Ringbuf => vec![(Vec::new(), m.ringbuf_records().unwrap())],
                MapType::Arena => vec![(Vec::new(), vec![m.heap_read(0, 4096).unwrap()])],
                MapType::PercpuArray => {
                    let mut keys = m.keys().unwrap();
                    keys.sort();
                    keys.into_iter()
                        .map(|k| {
                            let v = m.lookup_percpu(&k).unwrap();
                            (k, v)
                        })
                        .collect()
                }
                _ => {
                    let mut keys = m.keys().unwrap();
                    keys.sort();
                    keys.into_iter()
                        .map(|k| {
                            let v = m.lookup(&k).unwrap().into_iter().collect();
                            (k, v)
                        })
                        .collect()
                }
            };
            (m.name().to_string(), entries)
        })
        .collect()
}

#[test]
fn jit_and_interpreter_agree_on_every_example() {
    if !Engine::JIT_SUPPORTED {
        return;
    }
    let cases = cases();
    let (mut programs, mut on_jit) = (0, 0);
    for ex in kflex_examples::all() {
        let (_, inputs) = cases
            .iter()
            .find(|(name, _)| *name == ex.name)
            .unwrap_or_else(|| panic!("no differential inputs for example {}", ex.name));
        let jit = load(ex.name, Engine::Jit);
        let interp = load(ex.name, Engine::Interp);
        if ex.name == "xdp_firewall" {
            for ext in [&jit, &interp] {
                ext.map("blocklist")
                    .unwrap()
                    .update(&ATTACKER, &0u64.to_ne_bytes(), 0)
                    .unwrap();
            }
        }
        for program in jit.program_names() {
            programs += 1;
            let compiled = jit.program(program).unwrap().jit.is_some();
            on_jit += usize::from(compiled);
            for (i, input) in inputs.iter().enumerate() {
                let a = jit.test_run(program, &unhurried(input));
                let b = interp.test_run(program, input);
                let (a, b) = match (a, b) {
                    (Ok(a), Ok(b)) => (a, b),
                    // Input the program type refuses is refused the same way by both.
                    (Err(a), Err(b)) if a.to_string() == b.to_string() => continue,
                    (a, b) => panic!("{program} case {i}: jit {a:?}, interp {b:?}"),
                };
                // Programs reading context packet pointers stay on the interpreter for now
                // (`engine::jit_unsupported`).
                let expected = if compiled {
                    Engine::Jit
                } else {
                    Engine::Interp
                };
                assert_eq!(a.engine, expected, "{program}");
                assert_eq!(b.engine, Engine::Interp);
                assert_eq!(observable(&a), observable(&b), "{program} case {i}");
                assert_eq!(
                    map_contents(&jit),
                    map_contents(&interp),
                    "{program} case {i}: maps (and ring-buffer records) differ"
                );
            }
        }
    }
    assert!(programs >= 5, "ran {programs} programs");
    assert!(on_jit >= 2, "only {on_jit} programs ran on the JIT");
}

#[test]
fn a_test_run_can_override_the_extensions_engine() {
    if !Engine::JIT_SUPPORTED {
        return;
    }
    let ext = load("syscall_events", Engine::Interp);
    let input = TestRunOptions::context(collatz_ctx(1000, 27));
    let default = ext.test_run("syscall_events", &input).unwrap();
    assert_eq!(default.engine, Engine::Interp);
    assert!(default.instructions_per_run > 0);
    let jit = ext
        .test_run(
            "syscall_events",
            &TestRunOptions {
                engine: Some(Engine::Jit),
                ..input
            },
        )
        .unwrap();
    assert_eq!(jit.engine, Engine::Jit);
    assert_eq!(jit.retval, default.retval);
    assert_eq!(
        jit.instructions_per_run, 0,
        "the JIT does not count instructions"
    );
}

#[test]
fn unverified_programs_fall_back_to_the_interpreter() {
    let ex = kflex_examples::get("xdp_firewall").unwrap();
    let ext = Extension::load(
        "xdp_firewall",
        ex.object,
        ExtensionOptions {
            verify: false,
            engine: Engine::Jit,
            ..ExtensionOptions::default()
        },
    )
    .unwrap();
    let p = ext.program("xdp_firewall").unwrap();
    assert!(p.jit.is_none(), "unverified programs are not compiled");
    let r = ext
        .test_run("xdp_firewall", &TestRunOptions::packet(syn_fin_frame()))
        .unwrap();
    assert_eq!(r.engine, Engine::Interp);
    assert_eq!(r.retval, 1, "SYN+FIN is dropped");
}

#[test]
fn programs_reading_packet_pointers_run_on_the_jit() {
    let ext = load("xdp_firewall", Engine::Jit);
    let p = ext.program("xdp_firewall").unwrap();
    assert!(
        matches!(p.jit, Some(Ok(_))),
        "verified programs are compiled"
    );
    let r = ext
        .test_run("xdp_firewall", &TestRunOptions::packet(syn_fin_frame()))
        .unwrap();
    assert_eq!(
        (r.engine, r.retval),
        (Engine::Jit, 1),
        "SYN+FIN is dropped on the JIT"
    );
}
