//! Consecutive `Extension::test_run` calls on one thread reuse their set-up (memory map,
//! environment, prepared packet and context): every call must still give what a call on a fresh
//! thread gives, whatever the calls before it ran — other programs, other program types, other
//! extensions, other inputs, rejected inputs.

use std::path::Path;
use std::sync::Arc;

use kflex::packet;
use kflex::{Engine, Extension, ExtensionOptions, TestRunOptions, TestRunResult};

const CLIENT: [u8; 4] = [192, 168, 1, 10];
const SERVER: [u8; 4] = [10, 0, 0, 53];

fn load(name: &str) -> Extension {
    let ex = kflex_examples::get(name).unwrap_or_else(|| panic!("example {name} is bundled"));
    Extension::load(name, ex.object, ExtensionOptions::default()).unwrap()
}

fn probes() -> Option<Vec<u8>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/reset_probe.c");
    kflex_testutil::compile_c(&src)
}

/// What a call returns, less its timing.
fn untimed(r: kflex::Result<TestRunResult>) -> String {
    match r {
        Ok(r) => format!("{:?}", TestRunResult { ns_per_run: 0, ..r }),
        Err(e) => format!("error: {e}"),
    }
}

/// A `__sk_buff` context with `mark` and `cb[0]` set.
fn skb_ctx(mark: u32, cb0: u32) -> Vec<u8> {
    let mut c = vec![0u8; 192];
    c[8..12].copy_from_slice(&mark.to_le_bytes());
    c[48..52].copy_from_slice(&cb0.to_le_bytes());
    c
}

/// `(extension, program, options)` calls mixing program types, extensions, inputs with and
/// without `ctx_in`, packet lengths, repeats, engines and rejected inputs. The probe programs
/// (no maps: their results do not depend on earlier calls) share one extension instance, so
/// that their calls reuse one another's set-up; each example call has an instance of its own.
fn calls(probe: &[u8]) -> Vec<(Arc<Extension>, String, TestRunOptions)> {
    let mut out = Vec::new();
    let probe_ext =
        Arc::new(Extension::load("reset_probe.o", probe, ExtensionOptions::default()).unwrap());
    let udp = |len: usize| packet::udp4_frame(CLIENT, SERVER, 40000, 53, &vec![7u8; len]);
    for (round, engine) in [Engine::Jit, Engine::Interp].into_iter().enumerate() {
        let with = |o: TestRunOptions| TestRunOptions {
            engine: Some(engine),
            repeat: 1 + round as u32 * 2,
            ..o
        };
        let mut named = |prog: &str, o| {
            out.push((Arc::clone(&probe_ext), prog.to_string(), with(o)));
        };
        named("tc_probe", TestRunOptions::packet(udp(100)));
        named(
            "tc_probe",
            TestRunOptions {
                ctx_in: Some(skb_ctx(5, 9)),
                ..TestRunOptions::packet(udp(40))
            },
        );
        named("tc_probe", TestRunOptions::packet(udp(3000)));
        let xdp_frame = udp(10);
        let mut xdp_ctx = vec![0u8; 24];
        xdp_ctx[4..8].copy_from_slice(&(xdp_frame.len() as u32).to_le_bytes());
        xdp_ctx[12..16].copy_from_slice(&3u32.to_le_bytes()); // ingress_ifindex
        named(
            "xdp_probe",
            TestRunOptions {
                ctx_in: Some(xdp_ctx),
                ..TestRunOptions::packet(xdp_frame)
            },
        );
        named("xdp_probe", TestRunOptions::packet(udp(10)));
        named("xdp_probe", TestRunOptions::packet(vec![0x02; 10]));
        named("xdp_probe", TestRunOptions::packet(udp(1400)));
        named(
            "tc_probe",
            TestRunOptions {
                ctx_in: Some(skb_ctx(0, 0x77)),
                ..TestRunOptions::packet(udp(20))
            },
        );
        named("tc_probe", TestRunOptions::packet(udp(20)));
        for example in kflex_examples::all() {
            let ext = load(example.name);
            let prog = ext.program_names()[0].clone();
            let options = if example.name == "syscall_events" {
                let ctx: Vec<u8> = [50u64, 27, 0]
                    .iter()
                    .flat_map(|v| v.to_ne_bytes())
                    .collect();
                TestRunOptions::context(ctx)
            } else {
                TestRunOptions::packet(udp(64))
            };
            out.push((Arc::new(ext), prog, with(options)));
        }
    }
    out
}

#[test]
fn calls_after_other_calls_equal_calls_on_a_fresh_thread() {
    let Some(probe) = probes() else {
        kflex_testutil::skip("clang-19 is not available to build tests/c/reset_probe.c");
        return;
    };
    // The same sequence twice: once on this thread (each call after all the earlier ones), once
    // with every call on a thread of its own (nothing to reuse). Each sequence has its own
    // extension instances, so map state evolves the same way in both.
    let here: Vec<String> = calls(&probe)
        .iter()
        .map(|(ext, prog, o)| untimed(ext.test_run(prog, o)))
        .collect();
    let fresh: Vec<String> = calls(&probe)
        .into_iter()
        .map(|(ext, prog, o)| {
            std::thread::spawn(move || untimed(ext.test_run(&prog, &o)))
                .join()
                .unwrap()
        })
        .collect();
    assert_eq!(here.len(), fresh.len());
    for (i, (h, f)) in here.iter().zip(&fresh).enumerate() {
        assert_eq!(h, f, "call {i}");
    }
    assert!(
        here.iter().any(|r| r.starts_with("error")),
        "a rejected input is among them"
    );
}

#[test]
fn one_extension_alternating_programs_inputs_and_cpus() {
    let Some(probe) = probes() else {
        kflex_testutil::skip("clang-19 is not available to build tests/c/reset_probe.c");
        return;
    };
    let ext = Extension::load("reset_probe.o", &probe, ExtensionOptions::default()).unwrap();
    let frame = packet::udp4_frame(CLIENT, SERVER, 1, 2, b"payload");
    let tc = |ctx_in: Option<Vec<u8>>, cpu| TestRunOptions {
        ctx_in,
        cpu,
        ..TestRunOptions::packet(frame.clone())
    };
    for round in 0..3 {
        // A run with ctx_in sets mark/cb; the probe reports what it found in bytes 6..10.
        let r = ext
            .test_run("tc_probe", &tc(Some(skb_ctx(5, 9)), round))
            .unwrap();
        assert_eq!(r.data_out[6..10], [5, 0, 9, 0], "round {round}");
        let ctx_out = r.ctx_out.unwrap();
        assert_eq!(ctx_out[8..12], 0x55u32.to_le_bytes(), "mark written back");
        // Without ctx_in nothing of the earlier context is left.
        let r = ext.test_run("tc_probe", &tc(None, round)).unwrap();
        assert_eq!(r.data_out[6..10], [0, 0, 0, 0], "round {round}");
        // An XDP run in between replaces the prepared run; its headroom is clean.
        let r = ext
            .test_run("xdp_probe", &TestRunOptions::packet(frame.clone()))
            .unwrap();
        assert_eq!((r.data_out[0], r.data_out[41]), (0, 0), "round {round}");
        // Rejected input: an error, and the next call is unaffected.
        assert!(
            ext.test_run("xdp_probe", &TestRunOptions::packet(vec![0; 3]))
                .is_err()
        );
    }
}

#[test]
fn extensions_dropped_between_calls_do_not_disturb_later_ones() {
    for _ in 0..6 {
        let ext = load("xdp_firewall");
        let frame = packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"\x12\x34\x01\x00");
        let r = ext
            .test_run("xdp_firewall", &TestRunOptions::packet(frame.clone()))
            .unwrap();
        let fresh = std::thread::spawn(move || {
            load("xdp_firewall")
                .test_run("xdp_firewall", &TestRunOptions::packet(frame))
                .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!((r.retval, &r.data_out), (fresh.retval, &fresh.data_out));
        drop(ext);
        // Another extension whose table may land at the dropped one's address.
        let other = load("tc_classifier");
        let frame = packet::tcp4_frame(CLIENT, SERVER, 40000, 80, 0xb8, b"voice");
        assert_eq!(
            other
                .test_run("tc_classifier", &TestRunOptions::packet(frame))
                .unwrap()
                .retval,
            0
        );
    }
}

/// A test-run made while its thread exits (from a thread-local destructor that runs after the
/// thread's test-run state is gone) fails with an error saying so, instead of aborting the
/// process; the thread exits cleanly.
#[test]
fn a_test_run_during_thread_exit_fails_cleanly() {
    struct RunsAtExit(Option<(Extension, TestRunOptions, String)>);
    impl Drop for RunsAtExit {
        fn drop(&mut self) {
            if let Some((ext, input, _)) = self.0.take() {
                let got = untimed(ext.test_run("xdp_firewall", &input));
                assert!(got.contains("the thread is exiting"), "{got}");
            }
        }
    }
    thread_local! {
        static AT_EXIT: std::cell::RefCell<RunsAtExit> =
            const { std::cell::RefCell::new(RunsAtExit(None)) };
    }
    let input = TestRunOptions::packet(packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"query"));
    let expected = {
        let input = input.clone();
        std::thread::spawn(move || untimed(load("xdp_firewall").test_run("xdp_firewall", &input)))
            .join()
            .unwrap()
    };
    std::thread::spawn(move || {
        // Thread-local destructors run in reverse order of first use: registering this one
        // before the test-run cache makes the cache go first.
        AT_EXIT.with(|_| {});
        let ext = load("xdp_firewall");
        assert_eq!(untimed(ext.test_run("xdp_firewall", &input)), expected);
        AT_EXIT.with(|a| a.borrow_mut().0 = Some((ext, input, expected)));
    })
    .join()
    .expect("the thread exits cleanly");
}
