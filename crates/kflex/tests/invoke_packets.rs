//! `Invoker::run` on packet program types reuses one prepared packet run across calls: every call
//! must still see exactly what a fresh test-run prepares — for the bundled examples and for probe
//! programs that read headroom, metadata and context fields an earlier run dirtied — over
//! streams of packets that grow and shrink, with cancelled runs in the middle.

use std::path::Path;
use std::time::Duration;

use kflex::packet;
use kflex::{Engine, Extension, ExtensionOptions, TestRunOptions};

const CLIENT: [u8; 4] = [192, 168, 1, 10];
const SERVER: [u8; 4] = [10, 0, 0, 53];

fn engines() -> Vec<Engine> {
    if Engine::JIT_SUPPORTED {
        vec![Engine::Jit, Engine::Interp]
    } else {
        vec![Engine::Interp]
    }
}

/// Packets of many lengths for the examples: real UDP/TCP frames with payloads of growing and
/// shrinking size, and raw frames down to the shortest a test-run accepts.
fn stream() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, len) in [4usize, 0, 600, 1, 1400, 30, 8000, 2, 64]
        .into_iter()
        .enumerate()
    {
        let payload: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
        out.push(packet::udp4_frame(CLIENT, SERVER, 40000, 53, &payload));
        out.push(packet::tcp4_frame(
            CLIENT, SERVER, 40000, 80, 0xb8, &payload,
        ));
    }
    out.push(packet::ethernet(
        packet::DST_MAC,
        packet::SRC_MAC,
        0x0800,
        &[0x45, 0, 0],
    ));
    out.push(vec![0x02; 14]);
    out.push(vec![0x02; 9000]);
    out.push(packet::udp4_frame(
        CLIENT,
        SERVER,
        1,
        2,
        b"after the big one",
    ));
    out
}

/// Runs `program` of `ext` through one invoker over `packets`, each beside a fresh test-run of a
/// second instance of the extension, and compares everything observable.
fn compare_stream(
    name: &str,
    ext: &Extension,
    twin: &Extension,
    program: &str,
    engine: Engine,
    packets: &[Vec<u8>],
) {
    let mut invoker = ext.invoker(program, engine).unwrap();
    for (i, input) in packets.iter().enumerate() {
        let what = format!(
            "{name}/{program} on {engine}, packet {i} ({} bytes)",
            input.len()
        );
        let options = TestRunOptions {
            engine: Some(engine),
            ..TestRunOptions::packet(input.clone())
        };
        let expected = twin.test_run(program, &options);
        // A caller buffer a little longer than the input: bytes past what the run leaves are
        // the caller's and stay as they are.
        let mut buf = input.clone();
        buf.extend_from_slice(&[0x5a; 48]);
        let got = invoker.run(&mut buf[..input.len()]);
        let (got, expected) = match (got, expected) {
            (Ok(g), Ok(e)) => (g, e),
            (Err(g), Err(e)) => {
                assert_eq!(g.to_string(), e.to_string(), "{what}");
                continue;
            }
            (g, e) => panic!("{what}: invoker {g:?}, test-run {e:?}"),
        };
        assert_eq!(got.retval, expected.retval, "{what}");
        assert_eq!(got.cancelled, expected.cancelled, "{what}");
        assert_eq!(
            got.resources_released, expected.resources_released,
            "{what}"
        );
        let out = &expected.data_out;
        assert_eq!(got.data_len, Some(out.len()), "{what}");
        let n = out.len().min(input.len());
        assert_eq!(buf[..n], out[..n], "{what}");
        assert!(buf[input.len()..].iter().all(|&b| b == 0x5a), "{what}");
    }
}

fn load(name: &str) -> Extension {
    let ex = kflex_examples::get(name).unwrap_or_else(|| panic!("example {name} is bundled"));
    Extension::load(name, ex.object, ExtensionOptions::default())
        .unwrap_or_else(|e| panic!("{name} loads: {e}"))
}

#[test]
fn example_packet_streams_equal_fresh_test_runs() {
    let packets = stream();
    for example in kflex_examples::all() {
        let (ext, twin) = (load(example.name), load(example.name));
        let program = ext.program_names()[0].clone();
        let invoker = ext.invoker(&program, Engine::Interp).unwrap();
        if invoker.prog_type() == kflex::ProgType::Syscall {
            continue;
        }
        drop(invoker);
        for engine in engines() {
            compare_stream(example.name, &ext, &twin, &program, engine, &packets);
        }
    }
}

/// The probe programs of `tests/c/reset_probe.c`, if clang is available.
fn probes() -> Option<(Extension, Extension)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/reset_probe.c");
    let obj = kflex_testutil::compile_c(&src)?;
    let load = || Extension::load("reset_probe.o", &obj, ExtensionOptions::default()).unwrap();
    Some((load(), load()))
}

#[test]
fn nothing_a_run_writes_to_headroom_metadata_or_context_reaches_the_next() {
    let Some((ext, twin)) = probes() else {
        kflex_testutil::skip("clang-19 is not available to build tests/c/reset_probe.c");
        return;
    };
    let packets = stream();
    for engine in engines() {
        for program in ["xdp_probe", "tc_probe"] {
            compare_stream("reset_probe", &ext, &twin, program, engine, &packets);
        }
        // The probes see a clean run every time: the headroom and metadata they read are zero
        // (XDP), the context fields they read are unset (tc).
        let mut invoker = ext.invoker("xdp_probe", engine).unwrap();
        for input in &packets {
            // Room for the 40 bytes the run adds in front: the copy back holds its first
            // bytes.
            let mut buf = input.clone();
            buf.resize(input.len() + 64, 0);
            let r = invoker.run(&mut buf).unwrap();
            assert_eq!(r.data_len, Some(input.len() + 64 + 32 + 8));
            assert_eq!(buf[0], 0, "metadata seen by the run");
            assert_eq!(buf[8..40], [0xab; 32], "headroom written by the run");
            assert_eq!(buf[40], 0x77);
            assert_eq!(buf[41], 0, "headroom seen by the run");
        }
        let mut invoker = ext.invoker("tc_probe", engine).unwrap();
        for input in &packets {
            let mut buf = input.clone();
            assert_eq!(invoker.run(&mut buf).unwrap().retval, 0);
            assert_eq!(buf[0], 0x11);
            assert_eq!(
                buf[6..10],
                [0, 0, 0, 0],
                "mark, priority, cb seen by the run"
            );
        }
    }
}

#[test]
fn a_cancelled_run_in_a_stream_leaves_the_next_runs_clean() {
    if !Engine::JIT_SUPPORTED {
        return;
    }
    let Some((ext, twin)) = probes() else {
        kflex_testutil::skip("clang-19 is not available to build tests/c/reset_probe.c");
        return;
    };
    let mut invoker = ext
        .invoker("xdp_probe", Engine::Jit)
        .unwrap()
        .with_budget(Some(Duration::from_millis(2)));
    let spin = {
        let mut f = packet::udp4_frame(CLIENT, SERVER, 1, 2, &[0u8; 300]);
        f[0] = 0xee;
        f
    };
    for (i, input) in stream().iter().enumerate() {
        if i % 3 == 1 {
            let mut buf = spin.clone();
            let r = invoker.run(&mut buf).unwrap();
            assert!(r.cancelled, "packet {i}");
            assert_eq!(r.cancel_reason.as_deref(), Some("terminated"));
            assert_eq!(r.retval, 0);
        }
        let mut buf = input.clone();
        let got = invoker.run(&mut buf).unwrap();
        let expected = twin
            .test_run("xdp_probe", &TestRunOptions::packet(input.clone()))
            .unwrap();
        assert!(!got.cancelled);
        assert_eq!(got.retval, expected.retval, "packet {i}");
        assert_eq!(got.data_len, Some(expected.data_out.len()), "packet {i}");
        assert_eq!(buf[..], expected.data_out[..input.len()], "packet {i}");
    }
}

#[test]
fn rejected_packets_leave_the_invoker_usable() {
    for engine in engines() {
        let ext = load("xdp_firewall");
        let mut invoker = ext.invoker("xdp_firewall", engine).unwrap();
        let good = packet::udp4_frame(CLIENT, SERVER, 40000, 53, b"\x12\x34\x01\x00");
        let mut buf = good.clone();
        let first = invoker.run(&mut buf).unwrap();
        let mut short = vec![0u8; 10];
        let err = invoker.run(&mut short).unwrap_err();
        assert!(err.to_string().contains("at least 14"), "{err}");
        assert_eq!(short, vec![0u8; 10], "a rejected packet is not written");
        let mut big = vec![0u8; 70_000];
        assert!(invoker.run(&mut big).is_err());
        let mut buf = good.clone();
        assert_eq!(invoker.run(&mut buf).unwrap(), first);
    }
}
