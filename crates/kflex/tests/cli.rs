//! The `kflex` command end to end.

mod common;
use common::cli::{example_object, kflex, kflex_stdin, stderr, stdout, tmp};

use std::path::Path;

use kflex::packet;

#[test]
fn run_json_reports_retval_timing_and_outputs() {
    let obj = example_object("xdp_firewall");
    let frame = packet::udp4_frame([10, 1, 1, 1], [10, 2, 2, 2], 999, 11211, b"stats");
    let pkt = tmp("memcached.bin", &frame);
    for engine in ["jit", "interp"] {
        let o = kflex(&[
            "run",
            obj.to_str().unwrap(),
            "--program",
            "xdp_firewall",
            "--packet",
            pkt.to_str().unwrap(),
            "--repeat",
            "3",
            "--engine",
            engine,
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        assert_eq!(text.trim().lines().count(), 1, "one JSON object: {text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["engine"], engine);
        assert_eq!(v["retval"], 1, "port 11211 is dropped");
        assert!(v["ns_per_run"].as_u64().unwrap() > 0);
        if engine == "interp" {
            // Only the interpreter counts executed instructions.
            assert!(v["instructions"].as_u64().unwrap() > 10);
        }
        assert_eq!(v["data_out"], kflex::hex::encode(&frame));
        assert!(v["ctx_out"].is_null() || v["ctx_out"].is_string());
        let trace = v["trace"].as_array().unwrap();
        assert_eq!(trace.len(), 3, "one drop line per run: {trace:?}");
        assert!(trace[0].as_str().unwrap().contains("dport 11211"));
        assert_eq!(v["cancelled"], false);
        assert!(v["cancel_reason"].is_null());
        assert_eq!(v["resources_released"], 0);
        // The firewall has no heap: no guards either way.
        assert_eq!(v["guards_emitted"], 0);
        assert_eq!(v["guards_elided"], 0);
    }
}

#[test]
fn run_text_shows_verdict_and_ringbuf_records() {
    let obj = example_object("syscall_events");
    let ctx: Vec<u8> = [1000u64, 27, 0]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect();
    let ctx_path = tmp("collatz27.bin", &ctx);
    let o = kflex(&[
        "run",
        obj.to_str().unwrap(),
        "--ctx",
        ctx_path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("r0 = 0"), "{text}");
    assert!(text.contains("ctx_out (24 bytes)"), "{text}");
    assert!(text.contains("ringbuf events: 2 record(s)"), "{text}");
}

#[test]
fn disasm_lists_sections_maps_and_source_lines() {
    let obj = example_object("xdp_firewall");
    let o = kflex(&["disasm", obj.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("program xdp_firewall: section xdp, type xdp"),
        "{text}"
    );
    assert!(text.contains("maps used:"), "{text}");
    assert!(text.contains("blocklist (hash"), "{text}");
    assert!(
        text.contains("r1 = map[verdict_stats] ll") || text.contains("= map[verdict_stats] ll"),
        "{text}"
    );
    // Interleaved C source from line info.
    assert!(
        text.lines()
            .any(|l| l.starts_with("; ") && l.contains("data_end")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim_end().ends_with("exit")),
        "{text}"
    );
    // The listing has the entry label and the subprogram label.
    assert!(text.contains("<xdp_firewall>:"), "{text}");
    assert!(text.contains("<account>:"), "{text}");

    let o = kflex(&["disasm", obj.to_str().unwrap(), "--program", "missing"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn conformance_suite_passes() {
    let Some(dir) = kflex_testutil::conformance_dir() else {
        return;
    };
    let o = kflex(&["conformance", dir.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(text.contains("313 passed, 0 failed"), "{text}");
    assert!(o.status.success());
}

#[test]
fn conformance_reports_failures_and_exits_1() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kflex-conf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("good.data"),
        "-- asm\nmov %r0, 3\nexit\n-- result\n0x3\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("wrong.data"),
        "-- asm\nmov %r0, 3\nexit\n-- result\n0x4\n",
    )
    .unwrap();
    let o = kflex(&["conformance", dir.to_str().unwrap(), "--verbose"]);
    let text = stdout(&o);
    assert!(text.contains("PASS good.data"), "{text}");
    assert!(text.contains("FAIL wrong.data"), "{text}");
    assert!(text.contains("1 passed, 1 failed"), "{text}");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn conformance_plugin_protocol() {
    // mov r0, 42; exit
    let o = kflex_stdin(
        &["conformance-plugin"],
        "b7 00 00 00 2a 00 00 00 95 00 00 00 00 00 00 00",
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o).trim(), "2a");
    // r0 = *(u8 *)(r1 + 1) + r2, with memory given as the last argument.
    let prog = "71 10 01 00 00 00 00 00 0f 20 00 00 00 00 00 00 95 00 00 00 00 00 00 00";
    let o = kflex_stdin(&["conformance-plugin", "aa bb cc"], prog);
    assert!(o.status.success(), "{}", stdout(&o));
    assert_eq!(stdout(&o).trim(), format!("{:x}", 0xbb + 3));
    // Packed hex and runner options before the memory argument.
    let o = kflex_stdin(
        &["conformance-plugin", "--debug", "00ff"],
        &prog.replace(' ', ""),
    );
    assert_eq!(stdout(&o).trim(), format!("{:x}", 0xff + 2));
}

#[test]
fn conformance_plugin_rejects_malformed_programs() {
    // Unknown opcode 0xff.
    let o = kflex_stdin(
        &["conformance-plugin"],
        "ff 00 00 00 00 00 00 00 95 00 00 00 00 00 00 00",
    );
    assert!(!o.status.success());
    assert!(!stdout(&o).trim().is_empty(), "error on stdout");
    // Not a whole number of instructions.
    let o = kflex_stdin(&["conformance-plugin"], "95 00 00");
    assert!(!o.status.success());
    // A load outside the memory faults.
    let o = kflex_stdin(
        &["conformance-plugin"],
        "79 10 00 01 00 00 00 00 95 00 00 00 00 00 00 00",
    );
    assert!(!o.status.success());
    assert!(stdout(&o).contains("instruction 0"), "{}", stdout(&o));
}

#[test]
fn run_raw_bytecode() {
    // r0 = 7; exit — as --hex and as --raw.
    let hex = "b700000007000000 9500000000000000";
    let o = kflex(&["run", "--hex", hex, "--prog-type", "syscall", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["retval"], 7);
    let bin = tmp("seven.bin", &kflex::hex::decode(hex).unwrap());
    let o = kflex(&[
        "run",
        "--raw",
        bin.to_str().unwrap(),
        "--prog-type",
        "syscall",
    ]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("r0 = 7"), "{}", stdout(&o));
    // Rejected bytecode: exit status 1.
    let o = kflex(&[
        "run",
        "--hex",
        "ff00000000000000 9500000000000000",
        "--prog-type",
        "syscall",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("instruction 0"), "{}", stderr(&o));
    // Missing --prog-type and bad hex: usage errors.
    assert_eq!(kflex(&["run", "--hex", hex]).status.code(), Some(2));
    assert_eq!(
        kflex(&["run", "--hex", "zz", "--prog-type", "xdp"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn malformed_objects_exit_2_with_a_clear_error() {
    let junk = tmp("junk.o", b"this is not an ELF file");
    for args in [
        vec!["run", junk.to_str().unwrap(), "--program", "x"],
        vec!["disasm", junk.to_str().unwrap()],
    ] {
        let o = kflex(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains("junk.o"), "{}", stderr(&o));
    }
    // Truncated copy of a real object.
    let real = kflex_examples::get("xdp_firewall").unwrap().object;
    let cut = tmp("cut.o", &real[..real.len() / 3]);
    let o = kflex(&["run", cut.to_str().unwrap(), "--program", "xdp_firewall"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot load"), "{}", stderr(&o));
    let o = kflex(&["run", "/nonexistent/x.o"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_closed_output_pipe_ends_kflex_without_a_panic() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    // 10,000 trace lines: about 100 KB, more than a pipe buffer holds.
    let program = kflex_isa::asm::assemble(
        "mov %r6, 0
         lddw %r1, 0x007a7a7a7a7a7a7a
         stxdw [%r10-8], %r1
         loop:
         mov %r1, %r10
         add %r1, -8
         mov %r2, 8
         call 6
         add %r6, 1
         jlt %r6, 10000, loop
         mov %r0, 0
         exit",
    )
    .unwrap();
    let hex = kflex::hex::encode(&kflex_isa::Insn::slice_to_bytes(&program));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kflex"))
        .args([
            "run",
            "--hex",
            &hex,
            "--prog-type",
            "syscall",
            "--engine",
            "interp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kflex runs");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: the rest of the output goes to a closed pipe.
    let out = child.wait_with_output().unwrap();
    assert!(first.starts_with("program main"), "{first}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
