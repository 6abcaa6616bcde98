//! `kflex verify` end to end: verdicts, exit codes, JSON, source lines and hints, bare bytecode,
//! and `kflex run` refusing rejected programs.

mod common;
use common::cli::{example_object, kflex, stderr, stdout, tmp};

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn json(o: &Output) -> Value {
    serde_json::from_str(stdout(o).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// `tests/c/verify_two.c` compiled, or `None` when clang is missing (the skip is reported).
fn two_programs() -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/verify_two.c");
    let obj = kflex_testutil::compile_c(&src)?;
    Some(tmp("verify_two.o", &obj))
}

/// `r0 = 2; exit`.
const ACCEPT_HEX: &str = "b7 00 00 00 02 00 00 00 95 00 00 00 00 00 00 00";
/// `r0 = r2; exit`: r2 is never initialised.
const UNINIT_HEX: &str = "bf 20 00 00 00 00 00 00 95 00 00 00 00 00 00 00";

const STAT_FIELDS: [&str; 8] = [
    "insns_processed",
    "states_explored",
    "states_pruned",
    "peak_states",
    "guards_emitted",
    "guards_elided",
    "back_edges",
    "time_us",
];

#[test]
fn every_bundled_example_verifies() {
    for example in kflex_examples::all() {
        let obj = example_object(example.name);
        let o = kflex(&["verify", obj.to_str().unwrap()]);
        assert_eq!(
            code(&o),
            0,
            "{}: {}{}",
            example.name,
            stdout(&o),
            stderr(&o)
        );
        let out = stdout(&o);
        assert!(out.contains("accepted"), "{out}");
        assert!(out.contains("insns processed"), "{out}");

        let o = kflex(&["verify", obj.to_str().unwrap(), "--json"]);
        assert_eq!(code(&o), 0, "{}: {}", example.name, stderr(&o));
        let v = json(&o);
        let all = match v.as_array() {
            Some(many) => many.clone(),
            None => vec![v],
        };
        assert!(!all.is_empty());
        for p in &all {
            assert_eq!(p["verdict"], "accept", "{}: {p}", example.name);
            assert!(p["error"].is_null() && p["pc"].is_null(), "{p}");
            assert!(p["insns_processed"].as_u64().unwrap() > 0, "{p}");
        }
    }
}

#[test]
fn json_for_an_accepted_program_has_the_statistics() {
    let obj = example_object("xdp_firewall");
    let o = kflex(&["verify", obj.to_str().unwrap(), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["verdict"], "accept");
    assert_eq!(v["program"], "xdp_firewall");
    assert!(v["error"].is_null());
    for f in STAT_FIELDS {
        assert!(v[f].is_u64(), "{f} missing in {v}");
    }
    assert!(v["insns_processed"].as_u64().unwrap() > 0);
    assert!(v["states_explored"].as_u64().unwrap() > 0);
}

#[test]
fn object_with_a_rejected_program_exits_1_with_source_and_hint() {
    let Some(obj) = two_programs() else { return };
    let path = obj.to_str().unwrap();

    let o = kflex(&["verify", path]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("program count_ok: accepted"), "{out}");
    assert!(out.contains("program count_unchecked: rejected"), "{out}");
    assert!(out.contains("at instruction"), "{out}");
    assert!(out.contains("verify_two.c:"), "{out}");
    assert!(out.contains("hint:"), "{out}");

    let o = kflex(&["verify", path, "--json"]);
    assert_eq!(code(&o), 1);
    let v = json(&o);
    let all = v.as_array().expect("several programs give an array");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["verdict"], "accept");
    let bad = &all[1];
    assert_eq!(bad["program"], "count_unchecked");
    assert_eq!(bad["verdict"], "reject");
    assert!(bad["error"].as_str().unwrap().contains("at instruction"));
    // The dereference of the unchecked value is instruction 6 of the program.
    assert_eq!(bad["pc"], 6, "{bad}");
    let source = bad["source"].as_str().unwrap();
    assert!(
        source.contains("verify_two.c:") && source.contains("*v += 1"),
        "{source}"
    );
    assert!(bad["hint"].as_str().unwrap().contains("NULL"), "{bad}");

    let o = kflex(&["verify", path, "--program", "count_ok", "--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        json(&o)["verdict"],
        "accept",
        "one program gives one object"
    );

    let o = kflex(&["verify", path, "--program", "nope"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("count_unchecked"), "{}", stderr(&o));
}

#[test]
fn run_refuses_a_rejected_program() {
    let Some(obj) = two_programs() else { return };
    let o = kflex(&["run", obj.to_str().unwrap(), "--program", "count_unchecked"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("count_unchecked rejected"), "{err}");
    assert!(err.contains("NULL"), "{err}");
    // XDP programs need at least an Ethernet header.
    let packet = tmp("frame.bin", &[0u8; 64]);
    let (obj, packet) = (obj.to_str().unwrap(), packet.to_str().unwrap());
    let o = kflex(&["run", obj, "--program", "count_ok", "--packet", packet]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Deliberately unverified it runs, and the runtime's checked memory stops the NULL
    // dereference (the hash map is empty) at the same instruction.
    let o = kflex(&[
        "run",
        obj,
        "--program",
        "count_unchecked",
        "--packet",
        packet,
        "--no-verify",
    ]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("count_unchecked faulted"), "{err}");
    assert!(err.contains("instruction 6"), "{err}");
}

#[test]
fn run_verifies_bare_bytecode_unless_told_not_to() {
    let o = kflex(&["run", "--hex", UNINIT_HEX, "--prog-type", "syscall"]);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("main rejected at instruction 0"), "{err}");
    assert!(err.contains("r2") || err.contains("R2"), "{err}");
    // Unverified, the interpreter runs it (registers start at zero).
    let o = kflex(&[
        "run",
        "--hex",
        UNINIT_HEX,
        "--prog-type",
        "syscall",
        "--no-verify",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("r0 = "), "{}", stdout(&o));
}

#[test]
fn bare_bytecode_from_hex_raw_and_hex_file() {
    let o = kflex(&[
        "verify",
        "--hex",
        ACCEPT_HEX,
        "--prog-type",
        "xdp",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(json(&o)["verdict"], "accept");

    let o = kflex(&[
        "verify",
        "--hex",
        UNINIT_HEX,
        "--prog-type",
        "xdp",
        "--json",
    ]);
    assert_eq!(code(&o), 1);
    let v = json(&o);
    assert_eq!(v["verdict"], "reject");
    assert_eq!(v["pc"], 0);
    assert!(v["source"].is_null(), "no line info in bare bytecode");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("r2") || error.contains("R2"), "{error}");
    assert!(error.contains("at instruction 0: r0 = r2"), "{error}");
    assert!(v["hint"].as_str().is_some_and(|h| !h.is_empty()), "{v}");

    let bytes = kflex::hex::decode(UNINIT_HEX).unwrap();
    let raw = tmp("uninit.bin", &bytes);
    let o = kflex(&[
        "verify",
        "--raw",
        raw.to_str().unwrap(),
        "--prog-type",
        "socket_filter",
    ]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("rejected"), "{}", stdout(&o));

    let hex_file = tmp("accept.hex", format!("{ACCEPT_HEX}\n").as_bytes());
    let o = kflex(&[
        "verify",
        "--hex-file",
        hex_file.to_str().unwrap(),
        "--prog-type",
        "sched_cls",
    ]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn log_level_2_prints_the_log_to_stderr() {
    let obj = example_object("xdp_firewall");
    let o = kflex(&["verify", obj.to_str().unwrap(), "--log-level", "2"]);
    assert_eq!(code(&o), 0);
    let err = stderr(&o);
    assert!(err.contains("verifier log: program xdp_firewall"), "{err}");
    // One line per processed instruction: `PC: disassembly ; abstract state`.
    let insn_lines: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.split_once(": ").is_some_and(|(pc, rest)| {
                pc.parse::<usize>().is_ok() && rest.contains(" ; ") && rest.contains("R10=fp0")
            })
        })
        .collect();
    assert!(insn_lines.len() > 50, "{err}");
    assert!(err.lines().any(|l| l.starts_with("0: ")), "{err}");
    assert!(
        insn_lines
            .iter()
            .any(|l| l.contains("= *(u32 *)(r1 + 0x4)")),
        "the first packet-end load is logged: {err}"
    );
    let o = kflex(&["verify", obj.to_str().unwrap(), "--log-level", "0"]);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn bad_input_and_usage_exit_2() {
    let cases: [&[&str]; 7] = [
        &["verify"],
        &["verify", "--hex", "zz", "--prog-type", "xdp"],
        &["verify", "--hex", ACCEPT_HEX],
        &["verify", "--hex", ACCEPT_HEX, "--prog-type", "nosuch"],
        &["verify", "--hex", "b7 00 00", "--prog-type", "xdp"],
        &["verify", "/nonexistent/file.o"],
        &[
            "verify",
            "--hex",
            ACCEPT_HEX,
            "--hex-file",
            "x",
            "--prog-type",
            "xdp",
        ],
    ];
    for args in cases {
        let o = kflex(args);
        assert_eq!(code(&o), 2, "{args:?}: {}{}", stdout(&o), stderr(&o));
    }
    let not_elf = tmp("not-elf.o", b"hello");
    let o = kflex(&["verify", not_elf.to_str().unwrap()]);
    assert_eq!(code(&o), 2);
}

#[test]
fn undecodable_bytecode_is_a_rejection() {
    // opcode 0xff does not exist.
    let o = kflex(&[
        "verify",
        "--hex",
        "ff 00 00 00 00 00 00 00 95 00 00 00 00 00 00 00",
        "--prog-type",
        "xdp",
        "--json",
    ]);
    assert_eq!(code(&o), 1);
    let v = json(&o);
    assert_eq!(v["verdict"], "reject");
    assert_eq!(v["pc"], 0);
}

#[test]
fn xdp_egress_ifindex_read_is_rejected_as_in_linux() {
    // r0 = *(u32 *)(r1 + 20); exit — only devmap programs may read xdp_md.egress_ifindex.
    let hex = "61 10 14 00 00 00 00 00 95 00 00 00 00 00 00 00";
    let o = kflex(&["verify", "--hex", hex, "--prog-type", "xdp", "--json"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["pc"], 0);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("egress_ifindex") && error.contains("devmap"),
        "{error}"
    );
    // rx_queue_index (offset 16) stays readable.
    let hex = "61 10 10 00 00 00 00 00 95 00 00 00 00 00 00 00";
    let o = kflex(&["verify", "--hex", hex, "--prog-type", "xdp", "--json"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}
