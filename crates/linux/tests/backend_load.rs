//! The libbpf back end: maps by key, packet test runs, verifier rejections and bad input
//! (`c/maps_and_packets.c`, `c/rejected.c`). Each test prints `SKIPPED: <reason>` and returns
//! when the back end or clang is unavailable.

use std::path::Path;

use kflex_linux::backend::{BackendError, LinuxExtension, TestRunInput, backend_available};

fn compile(name: &str) -> Option<Vec<u8>> {
    if let Err(reason) = backend_available() {
        kflex_testutil::skip(&reason);
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    kflex_testutil::compile_c_with(&src, &["-Werror"])
}

fn bump(ext: &LinuxExtension, key: u32, add: u64) -> (u32, u64) {
    let mut ctx = Vec::new();
    ctx.extend_from_slice(&key.to_ne_bytes());
    ctx.extend_from_slice(&0u32.to_ne_bytes());
    ctx.extend_from_slice(&add.to_ne_bytes());
    ctx.extend_from_slice(&0u64.to_ne_bytes());
    let ret = ext.run_syscall("bump", &mut ctx).expect("bump runs");
    (ret, u64::from_ne_bytes(ctx[16..24].try_into().unwrap()))
}

#[test]
fn maps_are_read_and_written_by_key_from_both_sides() {
    let Some(bytes) = compile("maps_and_packets") else {
        return;
    };
    let ext = LinuxExtension::load("maps_and_packets", &bytes).unwrap();
    assert!(ext.arena().is_none());
    let key = 7u32.to_ne_bytes();
    assert_eq!(ext.map_lookup("totals", &key).unwrap(), None);
    assert_eq!(bump(&ext, 7, 5), (5, 5));
    assert_eq!(bump(&ext, 7, 10), (15, 15));
    assert_eq!(
        ext.map_lookup("totals", &key).unwrap(),
        Some(15u64.to_ne_bytes().to_vec())
    );
    // A value written here is what the program adds to.
    ext.map_update("totals", &key, &1000u64.to_ne_bytes())
        .unwrap();
    assert_eq!(bump(&ext, 7, 1), (1001, 1001));
    assert!(ext.map_delete("totals", &key).unwrap());
    assert!(!ext.map_delete("totals", &key).unwrap());
    assert_eq!(bump(&ext, 7, 2), (2, 2));
    // Global data: `calls` started at 100 and was bumped four times.
    assert_eq!(
        ext.map_lookup(".data", &0u32.to_ne_bytes()).unwrap(),
        Some(104u64.to_ne_bytes().to_vec())
    );
}

#[test]
fn wrong_sizes_and_unknown_names_are_refused_with_what_exists() {
    let Some(bytes) = compile("maps_and_packets") else {
        return;
    };
    let ext = LinuxExtension::load("maps_and_packets", &bytes).unwrap();
    let err = ext.map_lookup("totals", &[0u8; 8]).unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err}");
    let err = ext.map_update("totals", &[0u8; 4], &[0u8; 4]).unwrap_err();
    assert!(err.to_string().contains("8-byte values"), "{err}");
    match ext.map_lookup("nope", &[0u8; 4]).unwrap_err() {
        BackendError::NotFound {
            kind, available, ..
        } => {
            assert_eq!(kind, "map");
            assert!(available.iter().any(|m| m == "totals"), "{available:?}");
        }
        other => panic!("{other}"),
    }
    let err = ext
        .test_run("missing", &TestRunInput::default())
        .unwrap_err();
    assert!(err.to_string().contains("bump") && err.to_string().contains("swap"));
    // A packet for a syscall program is a usage error, not a kernel call.
    let err = ext
        .test_run(
            "bump",
            &TestRunInput {
                data_in: &[1, 2, 3],
                ctx_in: None,
                repeat: 1,
            },
        )
        .unwrap_err();
    assert!(matches!(err, BackendError::Invalid(_)), "{err}");
}

#[test]
fn packet_programs_return_data_out_and_kernel_timing() {
    let Some(bytes) = compile("maps_and_packets") else {
        return;
    };
    let ext = LinuxExtension::load("maps_and_packets", &bytes).unwrap();
    let mut packet = vec![0u8; 64];
    packet[0] = 0xaa;
    packet[1] = 0xbb;
    packet[63] = 0xcc;
    let input = TestRunInput {
        data_in: &packet,
        ctx_in: None,
        repeat: 100,
    };
    let out = ext.test_run("swap", &input).unwrap();
    assert_eq!(out.retval, 3, "XDP_TX");
    assert!(out.kernel_timed);
    assert_eq!(out.ctx_out, None);
    // The kernel runs every repetition of an XDP program on the same packet buffer, so 100
    // swaps give the input back and an odd number of runs leaves it swapped.
    assert_eq!(out.data_out, packet);
    let mut swapped = packet.clone();
    swapped.swap(0, 1);
    for repeat in [1, 3] {
        let out = ext
            .test_run(
                "swap",
                &TestRunInput {
                    repeat,
                    ..input.clone()
                },
            )
            .unwrap();
        assert_eq!(out.data_out, swapped, "repeat {repeat}");
    }
    let short = ext.test_run(
        "swap",
        &TestRunInput {
            data_in: &[1u8; 14][..1],
            ..input.clone()
        },
    );
    // The kernel refuses packets shorter than an Ethernet header before the program runs.
    assert!(short.is_err(), "{short:?}");
    // An xdp_md context in and out (data 0, data_end = the packet's length).
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&64u32.to_ne_bytes());
    let with_ctx = TestRunInput {
        data_in: &packet,
        ctx_in: Some(&ctx),
        repeat: 1,
    };
    let out = ext.test_run("swap", &with_ctx).unwrap();
    assert_eq!(out.ctx_out.as_ref().map(Vec::len), Some(24));
    assert_eq!(out.retval, 3);
}

#[test]
fn a_rejected_program_fails_the_load_with_its_verifier_log() {
    let Some(bytes) = compile("rejected") else {
        return;
    };
    match LinuxExtension::load("rejected", &bytes).unwrap_err() {
        BackendError::Rejected {
            object,
            program,
            log,
            ..
        } => {
            assert_eq!(object, "rejected");
            assert_eq!(program, "unchecked");
            assert!(log.contains("invalid access to packet"), "{log}");
        }
        other => panic!("expected a rejection, got {other}"),
    }
}

#[test]
fn garbage_is_an_open_error_not_a_panic() {
    if let Err(reason) = backend_available() {
        kflex_testutil::skip(&reason);
        return;
    }
    for bytes in [&b""[..], b"\x7fELF", &[0u8; 64], b"not an object at all"] {
        let err = LinuxExtension::load("junk", bytes).unwrap_err();
        assert!(matches!(err, BackendError::Open { .. }), "{err}");
    }
}
