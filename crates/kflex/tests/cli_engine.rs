//! `--engine`, `--budget`, `--heap`, `--sfi` and repeated `--program` of the `kflex` command.

mod common;
use common::cli::{kflex, kflex_stdin, stderr, stdout, tmp};

use std::path::{Path, PathBuf};
use std::process::Output;

/// `tests/c/multi_program.c` compiled, or `None` when clang is missing.
fn multi_program() -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/multi_program.c");
    let obj = kflex_testutil::compile_c(&src)?;
    Some(tmp("multi_program.o", &obj))
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn conformance_suite_passes_on_both_engines() {
    let Some(dir) = kflex_testutil::conformance_dir() else {
        return;
    };
    for engine in ["jit", "interp"] {
        let o = kflex(&["conformance", dir.to_str().unwrap(), "--engine", engine]);
        let text = stdout(&o);
        assert!(text.contains("313 passed, 0 failed"), "{engine}: {text}");
        assert!(o.status.success());
    }
}

#[test]
fn conformance_plugin_runs_on_the_jit() {
    // r0 = *(u8 *)(r1 + 1) + r2, with memory given as the last argument.
    let prog = "71 10 01 00 00 00 00 00 0f 20 00 00 00 00 00 00 95 00 00 00 00 00 00 00";
    for engine in ["jit", "interp"] {
        let o = kflex_stdin(
            &["conformance-plugin", "--engine", engine, "aa bb cc"],
            prog,
        );
        assert!(o.status.success(), "{engine}: {}", stdout(&o));
        assert_eq!(stdout(&o).trim(), format!("{:x}", 0xbb + 3));
    }
    // Division by zero is defined (r0 = 0), on the JIT too: mov r0, 7; div r0, 0 (reg r1 = 0).
    let div = "b7 00 00 00 07 00 00 00 b7 01 00 00 00 00 00 00 3f 10 00 00 00 00 00 00 \
               95 00 00 00 00 00 00 00";
    let o = kflex_stdin(&["conformance-plugin", "--engine", "jit"], div);
    assert_eq!(stdout(&o).trim(), "0");
    let o = kflex_stdin(&["conformance-plugin", "--engine", "cpu"], div);
    assert_eq!(o.status.code(), Some(2), "unknown engine is a usage error");
}

#[test]
fn repeated_programs_share_maps_and_heap_in_one_instance() {
    let Some(obj) = multi_program() else {
        return;
    };
    for engine in ["jit", "interp"] {
        let o = kflex(&[
            "run",
            obj.to_str().unwrap(),
            "--program",
            "store",
            "--program",
            "bump",
            "--program",
            "bump",
            "--program",
            "load",
            "--engine",
            engine,
            "--json",
        ]);
        let runs = json_lines(&o);
        let programs: Vec<&str> = runs
            .iter()
            .map(|r| r["program"].as_str().unwrap())
            .collect();
        assert_eq!(programs, ["store", "bump", "bump", "load"]);
        for r in &runs {
            assert_eq!(r["engine"], engine);
            for field in [
                "cancelled",
                "cancel_reason",
                "resources_released",
                "guards_emitted",
                "guards_elided",
            ] {
                assert!(r.get(field).is_some(), "{field} missing: {r}");
            }
        }
        // store left 5 in the map and 3 in the heap; two bumps made them 7 and 5.
        assert_eq!(runs[3]["retval"], 7005, "{engine}");
    }
    // Separate invocations are separate instances: load alone finds nothing.
    let o = kflex(&["run", obj.to_str().unwrap(), "--program", "load", "--json"]);
    assert_eq!(
        json_lines(&o)[0]["retval"],
        u64::from(u32::MAX),
        "-1 as u32"
    );
}

#[test]
fn sfi_modes_change_the_guards_not_the_results() {
    let Some(obj) = multi_program() else {
        return;
    };
    let run = |sfi: &str| {
        let o = kflex(&[
            "run",
            obj.to_str().unwrap(),
            "--program",
            "store",
            "--program",
            "load",
            "--sfi",
            sfi,
            "--json",
        ]);
        json_lines(&o)
    };
    let mask = run("and-mask");
    let none = run("none");
    let writes = run("writes-only");
    let base = run("base");
    for runs in [&mask, &none, &writes, &base] {
        assert_eq!(runs[1]["retval"], 5003);
    }
    // `store` writes the heap, `load` reads it.
    assert!(mask[0]["guards_emitted"].as_u64().unwrap() >= 1);
    assert!(mask[1]["guards_emitted"].as_u64().unwrap() >= 1);
    assert_eq!(base[1]["guards_emitted"], mask[1]["guards_emitted"]);
    assert_eq!(none[0]["guards_emitted"], 0);
    assert_eq!(none[1]["guards_emitted"], 0);
    assert_eq!(writes[1]["guards_emitted"], 0, "loads are not guarded");
    assert!(writes[0]["guards_emitted"].as_u64().unwrap() >= 1);
    let o = kflex(&[
        "run",
        obj.to_str().unwrap(),
        "--program",
        "load",
        "--sfi",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn heap_size_overrides_the_arena_and_needs_one() {
    let Some(obj) = multi_program() else {
        return;
    };
    let o = kflex(&[
        "run",
        obj.to_str().unwrap(),
        "--program",
        "store",
        "--program",
        "load",
        "--heap",
        "64G",
        "--json",
    ]);
    assert_eq!(json_lines(&o)[1]["retval"], 5003);
    let fw = tmp(
        "xdp_firewall.o",
        kflex_examples::get("xdp_firewall").unwrap().object,
    );
    let pkt = tmp("frame.bin", &[0u8; 64]);
    let o = kflex(&[
        "run",
        fw.to_str().unwrap(),
        "--packet",
        pkt.to_str().unwrap(),
        "--heap",
        "1M",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no arena map"), "{}", stderr(&o));
}

#[test]
fn budget_cancels_an_endless_loop_on_the_jit() {
    // loop: goto loop; exit
    let hex = "05 00 ff ff 00 00 00 00 95 00 00 00 00 00 00 00";
    let start = std::time::Instant::now();
    let o = kflex(&[
        "run",
        "--hex",
        hex,
        "--prog-type",
        "syscall",
        "--engine",
        "jit",
        "--budget",
        "5ms",
        "--json",
    ]);
    let r = &json_lines(&o)[0];
    assert_eq!(r["engine"], "jit");
    assert_eq!(r["cancelled"], true);
    assert_eq!(r["cancel_reason"], "terminated");
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    let o = kflex(&[
        "run",
        "--hex",
        hex,
        "--prog-type",
        "syscall",
        "--budget",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(2), "a budget needs a unit");
}
