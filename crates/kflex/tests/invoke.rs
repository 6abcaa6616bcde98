//! `Extension::invoker`: runs through an invoker give the same results as test-runs — return
//! values, packets and contexts after the run, and the state left in every map — on both engines;
//! syscall programs read and write the caller's buffer in place; budgets cancel runaway runs.

use std::path::Path;
use std::time::Duration;

use kflex::packet;
use kflex::{Engine, Extension, ExtensionOptions, MapType, TestRunOptions};

const CLIENT: [u8; 4] = [192, 168, 1, 10];
const SERVER: [u8; 4] = [10, 0, 0, 53];

fn load(name: &str) -> Extension {
    let ex = kflex_examples::get(name).unwrap_or_else(|| panic!("example {name} is bundled"));
    Extension::load(name, ex.object, ExtensionOptions::default())
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

fn collatz(n: u64, seed: u64) -> Vec<u8> {
    [n, seed, 0].iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// Inputs for each example: packets for packet programs, contexts for syscall programs.
fn inputs(example: &str) -> Vec<Vec<u8>> {
    match example {
        "xdp_firewall" | "socket_udp_filter" => vec![
            packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"\x12\x34\x01\x00"),
            packet::udp4_frame(CLIENT, SERVER, 40000, 11211, b"get k"),
            packet::tcp4_frame(CLIENT, SERVER, 40000, 80, 0x03, b"x"),
            packet::ethernet(packet::DST_MAC, packet::SRC_MAC, 0x0800, &[0x45, 0, 0]),
        ],
        "tc_classifier" => vec![
            packet::tcp4_frame(CLIENT, SERVER, 40000, 80, 0xb8, b"voice"),
            packet::udp4_frame(CLIENT, SERVER, 5000, 5060, b"sip"),
        ],
        "sk_skb_verdict" => vec![
            packet::ethernet(packet::DST_MAC, packet::SRC_MAC, 0x0800, &[0u8; 86]),
            vec![7u8; 40],
        ],
        "syscall_events" => vec![
            collatz(1000, 27),
            collatz(10, 27),
            collatz(1000, 1),
            collatz(10001, 3),
        ],
        other => panic!("no inputs for {other}"),
    }
}

/// Every map's contents, in a comparable form.
fn dump(ext: &Extension) -> Vec<(String, Vec<Vec<u8>>)> {
    ext.maps()
        .map(|m| {
            let spec = m.spec();
            let contents = match spec.map_type {
                MapType::Ringbuf => m.ringbuf_records().unwrap(),
                MapType::Arena => vec![m.heap_read(0, 4096).unwrap()],
                MapType::PercpuArray => {
                    let mut keys = m.keys().unwrap();
                    keys.sort();
                    keys.into_iter()
                        .flat_map(|k| {
                            let mut slots = m.lookup_percpu(&k).unwrap();
                            slots.insert(0, k);
                            slots
                        })
                        .collect()
                }
                _ => {
                    let mut keys = m.keys().unwrap();
                    keys.sort();
                    keys.into_iter()
                        .flat_map(|k| {
                            let v = m.lookup(&k).unwrap().unwrap_or_default();
                            [k, v]
                        })
                        .collect()
                }
            };
            (m.name().to_string(), contents)
        })
        .collect()
}

#[test]
fn invoker_runs_equal_test_runs_on_every_example_and_engine() {
    for example in kflex_examples::all() {
        for engine in [Engine::Jit, Engine::Interp] {
            let by_test_run = load(example.name);
            let by_invoker = load(example.name);
            let program = by_test_run.program_names()[0].clone();
            let mut invoker = by_invoker.invoker(&program, engine).unwrap();
            if Engine::JIT_SUPPORTED {
                assert_eq!(invoker.engine(), engine);
            }
            let syscall = invoker.prog_type() == kflex::ProgType::Syscall;
            for input in inputs(example.name) {
                for _ in 0..3 {
                    let options = TestRunOptions {
                        engine: Some(engine),
                        ..if syscall {
                            TestRunOptions::context(input.clone())
                        } else {
                            TestRunOptions::packet(input.clone())
                        }
                    };
                    let expected = by_test_run.test_run(&program, &options).unwrap();
                    let mut buf = input.clone();
                    let got = invoker.run(&mut buf).unwrap();
                    let what = format!("{}/{engine} on {input:02x?}", example.name);
                    assert_eq!(got.retval, expected.retval, "{what}");
                    assert_eq!(got.cancelled, expected.cancelled, "{what}");
                    assert_eq!(
                        got.resources_released, expected.resources_released,
                        "{what}"
                    );
                    if syscall {
                        assert_eq!(Some(buf), expected.ctx_out, "{what}");
                        assert_eq!(got.data_len, None);
                    } else {
                        let out = &expected.data_out;
                        assert_eq!(got.data_len, Some(out.len()), "{what}");
                        let n = out.len().min(buf.len());
                        assert_eq!(buf[..n], out[..n], "{what}");
                    }
                }
            }
            assert_eq!(dump(&by_invoker), dump(&by_test_run), "{}", example.name);
            let (trace, _) = invoker.take_trace();
            let mut expected_trace = 0;
            for input in inputs(example.name) {
                let options = if syscall {
                    TestRunOptions::context(input)
                } else {
                    TestRunOptions::packet(input)
                };
                let r = by_test_run
                    .test_run(
                        &program,
                        &TestRunOptions {
                            repeat: 3,
                            engine: Some(engine),
                            ..options
                        },
                    )
                    .unwrap();
                expected_trace += r.trace.len();
            }
            assert_eq!(trace.len(), expected_trace, "{} trace", example.name);
        }
    }
}

#[test]
fn a_syscall_program_writes_the_callers_buffer_in_place() {
    let ext = load("syscall_events");
    for engine in [Engine::Jit, Engine::Interp] {
        let mut invoker = ext.invoker("syscall_events", engine).unwrap();
        let mut ctx = collatz(1000, 27);
        let r = invoker.run(&mut ctx).unwrap();
        assert_eq!(r.retval, 0);
        // 27 reaches 1 after 111 Collatz steps (a well-known value).
        assert_eq!(ctx[16..24], 111u64.to_ne_bytes(), "{engine}");
        assert_eq!(ctx[..16], collatz(1000, 27)[..16], "inputs untouched");
        // Rejected input leaves the buffer as it was.
        let mut bad = collatz(10001, 3);
        let r = invoker.run(&mut bad).unwrap();
        assert_eq!(r.retval as i64 as i32, -22);
        assert_eq!(bad, collatz(10001, 3));
    }
}

#[test]
fn an_oversized_syscall_context_is_refused() {
    let ext = load("syscall_events");
    let mut invoker = ext.invoker("syscall_events", Engine::Interp).unwrap();
    let mut huge = vec![0u8; usize::from(u16::MAX) + 1];
    assert!(invoker.run(&mut huge).is_err());
}

#[test]
fn unknown_programs_are_named() {
    let ext = load("xdp_firewall");
    let err = ext.invoker("nope", Engine::Jit).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn the_budget_cancels_a_runaway_run_and_the_invoker_keeps_working() {
    if !Engine::JIT_SUPPORTED {
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/spin_holding.c");
    let Some(obj) = kflex_testutil::compile_c(&src) else {
        return;
    };
    let mut ext = Extension::load("spin_holding.o", &obj, ExtensionOptions::default()).unwrap();
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = told.clone();
    ext.on_cancel(move |info| {
        log.lock()
            .unwrap()
            .push((info.program.clone(), info.reason.clone()))
    });
    let mut invoker = ext
        .invoker("spin", Engine::Jit)
        .unwrap()
        .with_budget(Some(Duration::from_millis(2)));
    let r = invoker.run(&mut 0u64.to_ne_bytes()).unwrap();
    assert!(r.cancelled);
    assert_eq!(r.cancel_reason.as_deref(), Some("terminated"));
    assert_eq!(
        r.resources_released, 1,
        "the ringbuf reservation was discarded"
    );
    assert_eq!(
        *told.lock().unwrap(),
        vec![("spin".to_string(), "terminated".to_string())],
        "the cancel hooks hear of the cancelled run"
    );
    let r = invoker.run(&mut 1u64.to_ne_bytes()).unwrap();
    assert!(!r.cancelled);
    assert_eq!((r.retval, r.resources_released), (0, 0));
    assert_eq!(
        told.lock().unwrap().len(),
        1,
        "a normal run is not reported"
    );
    assert_eq!(
        ext.map("events").unwrap().ringbuf_records().unwrap(),
        vec![42u64.to_ne_bytes().to_vec()]
    );
}

#[test]
fn runs_alternate_between_caller_buffers() {
    let ext = load("syscall_events");
    for engine in [Engine::Jit, Engine::Interp] {
        let mut invoker = ext.invoker("syscall_events", engine).unwrap();
        let mut a = collatz(1000, 27);
        let mut b = collatz(10, 27);
        let mut c = collatz(1000, 6);
        c.extend_from_slice(&[0u8; 8]); // a longer buffer: the extra bytes stay untouched
        for _ in 0..3 {
            assert_eq!(invoker.run(&mut a).unwrap().retval, 0);
            assert_eq!(
                invoker.run(&mut b).unwrap().retval,
                1,
                "not at 1 after 10 steps"
            );
            assert_eq!(invoker.run(&mut c).unwrap().retval, 0);
            // An empty context is a NULL pointer: the program's first load faults.
            assert!(invoker.run(&mut []).is_err());
        }
        assert_eq!(a[16..24], 111u64.to_ne_bytes());
        assert_eq!(b[16..24], 10u64.to_ne_bytes());
        // 6 -> 3 -> 10 -> 5 -> 16 -> 8 -> 4 -> 2 -> 1: 8 steps.
        assert_eq!(c[16..24], 8u64.to_ne_bytes());
        assert_eq!(c[24..], [0u8; 8]);
    }
}
