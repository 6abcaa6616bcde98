//! `kflex run --backend linux`: the bundled xdp, tc and syscall examples give the same return
//! value, packet and context in the Linux kernel as on kflex's JIT and interpreter; options that
//! only mean something to kflex are refused; a rejected program exits 1 with the verifier's log;
//! an unprivileged user gets a clear explanation and exit status 3. Tests that need the kernel
//! print `SKIPPED: <reason>` when the back end is unavailable.

mod common;
use common::cases::{collatz_ctx, tc_frames, xdp_cases};
use common::cli::{example_object, kflex, stderr, stdout, tmp};

use std::path::Path;
use std::process::{Command, Output};

use kflex_linux::backend::backend_available;
use serde_json::Value;

fn linux_or_skip() -> bool {
    match backend_available() {
        Ok(()) => true,
        Err(reason) => {
            kflex_testutil::skip(&reason);
            false
        }
    }
}

/// The one JSON line of a successful `kflex run --json`.
fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    let text = stdout(o);
    let mut lines = text.lines();
    let line = lines.next().expect("one JSON line");
    assert!(lines.next().is_none(), "one run, one line: {text}");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// What must agree between back ends: r0's low 32 bits (all Linux reports), the packet, and,
/// when a context was passed in (`with_ctx`), the context handed back (Linux returns none for a
/// packet program run without one, where kflex reports the default context it built).
fn observed(v: &Value, with_ctx: bool) -> (u64, String, Value) {
    (
        v["retval"].as_u64().expect("retval") & 0xffff_ffff,
        v["data_out"].as_str().expect("data_out").to_string(),
        if with_ctx {
            v["ctx_out"].clone()
        } else {
            Value::Null
        },
    )
}

/// Example name, input kind (`--packet` or `--ctx`) and inputs.
fn cases() -> Vec<(&'static str, &'static str, Vec<Vec<u8>>)> {
    vec![
        (
            "xdp_firewall",
            "--packet",
            xdp_cases().into_iter().map(|(_, f)| f).collect(),
        ),
        ("tc_classifier", "--packet", tc_frames()),
        (
            "syscall_events",
            "--ctx",
            vec![
                collatz_ctx(1000, 27),
                collatz_ctx(10, 27),
                collatz_ctx(1000, 1),
            ],
        ),
    ]
}

#[test]
fn examples_agree_with_both_kflex_engines() {
    if !linux_or_skip() {
        return;
    }
    let mut compared = 0;
    for (example, flag, inputs) in cases() {
        let obj = example_object(example);
        let obj = obj.to_str().unwrap();
        for (i, input) in inputs.iter().enumerate() {
            let file = tmp(&format!("{example}-{i}.in"), input);
            let file = file.to_str().unwrap();
            let linux = json(&kflex(&[
                "run",
                obj,
                flag,
                file,
                "--json",
                "--backend",
                "linux",
            ]));
            assert_eq!(linux["backend"], "linux");
            assert_eq!(linux["engine"], "linux");
            let with_ctx = flag == "--ctx";
            if with_ctx {
                assert!(linux["ctx_out"].is_string(), "syscall ctx comes back");
            } else {
                assert!(linux["ctx_out"].is_null(), "no ctx in, none out");
            }
            for engine in ["jit", "interp"] {
                let ours = json(&kflex(&[
                    "run", obj, flag, file, "--json", "--engine", engine,
                ]));
                assert_eq!(ours["backend"], "kflex");
                assert_eq!(
                    observed(&ours, with_ctx),
                    observed(&linux, with_ctx),
                    "{example} input {i}: kflex {engine} vs linux"
                );
                compared += 1;
            }
        }
    }
    assert!(compared >= 30, "only {compared} comparisons");
}

#[test]
fn sk_skb_which_linux_cannot_test_run_exits_1_saying_so() {
    if !linux_or_skip() {
        return;
    }
    let obj = example_object("sk_skb_verdict");
    let packet = tmp("sk_skb.pkt", &[0u8; 100]);
    let o = kflex(&[
        "run",
        obj.to_str().unwrap(),
        "--packet",
        packet.to_str().unwrap(),
        "--backend",
        "linux",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("ENOTSUPP"), "{}", stderr(&o));
}

#[test]
fn text_output_names_the_verdict_and_the_kernel() {
    if !linux_or_skip() {
        return;
    }
    let obj = example_object("xdp_firewall");
    let dns = &xdp_cases()[0];
    assert_eq!(dns.0, "dns");
    let packet = tmp("dns.pkt", &dns.1);
    let o = kflex(&[
        "run",
        obj.to_str().unwrap(),
        "--packet",
        packet.to_str().unwrap(),
        "--backend",
        "linux",
        "--repeat",
        "50",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("XDP_PASS"), "{text}");
    assert!(
        text.contains("over 50 run(s) in the Linux kernel (timed by BPF_PROG_TEST_RUN)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("data_out ({} bytes)", dns.1.len())),
        "{text}"
    );
}

#[test]
fn kflex_only_options_are_refused_for_the_linux_backend() {
    let obj = example_object("xdp_firewall");
    let obj = obj.to_str().unwrap();
    for extra in [
        &["--engine", "jit"][..],
        &["--sfi", "base"],
        &["--heap", "1M"],
        &["--budget", "5ms"],
        &["--no-verify"],
    ] {
        let mut args = vec!["run", obj, "--backend", "linux"];
        args.extend_from_slice(extra);
        let o = kflex(&args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(extra[0]) && stderr(&o).contains("kflex back end only"),
            "{extra:?}: {}",
            stderr(&o)
        );
    }
    let o = kflex(&[
        "run",
        "--hex",
        "b7000000000000009500000000000000",
        "--backend",
        "linux",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = kflex(&["run", obj, "--backend", "bpftrace"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("linux") && stderr(&o).contains("kflex"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_program_the_kernel_rejects_exits_1_with_the_verifier_log() {
    if !linux_or_skip() {
        return;
    }
    let src = kflex_testutil::repo_root().join("crates/linux/tests/c/rejected.c");
    let Some(bytes) = kflex_testutil::compile_c(&src) else {
        return;
    };
    let obj = tmp("rejected.o", &bytes);
    let o = kflex(&[
        "run",
        obj.to_str().unwrap(),
        "--program",
        "fine",
        "--backend",
        "linux",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("rejected program unchecked"), "{err}");
    assert!(err.contains("invalid access to packet"), "{err}");
}

#[test]
fn an_unprivileged_user_is_told_why_and_gets_exit_3() {
    // Needs root to drop to another user; runs the binary as `nobody` without capabilities.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new("/usr/bin/setpriv").exists() {
        kflex_testutil::skip("needs root and setpriv to run kflex as an unprivileged user");
        return;
    }
    let obj = example_object("xdp_firewall");
    // The scratch object must be readable by `nobody`.
    let o = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            env!("CARGO_BIN_EXE_kflex"),
            "run",
            obj.to_str().unwrap(),
            "--backend",
            "linux",
        ])
        .output()
        .expect("setpriv runs");
    let err = stderr(&o);
    if err.contains("Permission denied") && !err.contains("Linux back end") {
        kflex_testutil::skip(&format!("nobody cannot execute the test binary: {err}"));
        return;
    }
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("the Linux back end cannot run here"), "{err}");
    assert!(err.contains("CAP_BPF"), "{err}");
}
