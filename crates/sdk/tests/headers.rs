//! The SDK headers compile warning-free for BPF (`clang-19 -O2 -g -target bpf -mcpu=v4 -Wall
//! -Werror`) and natively (`gcc -O2 -Wall -Wextra -Werror`), with every macro and function used
//! (tests/c/sdk_all.c). Whether the BPF object verifies is checked where it runs: kflex in
//! crates/kflex/tests/sdk_cancel.rs, Linux in crates/kflex/tests/sdk_linux.rs.

mod support;

use std::process::Command;

#[test]
fn every_sdk_macro_compiles_for_bpf() {
    if !kflex_testutil::have_clang() {
        return;
    }
    let obj =
        kflex_testutil::compile_c_with(&support::c_file("sdk_all.c"), &["-Werror"]).expect("clang");
    assert_eq!(&obj[..4], b"\x7fELF");
    // The arena map and the heap globals are there under the names the SDK promises.
    let text = String::from_utf8_lossy(&obj);
    for name in [
        "kflex_heap",
        "kflex_alloc_state",
        ".addr_space.1",
        "sdk_all",
    ] {
        assert!(text.contains(name), "{name} missing from the object");
    }
}

#[test]
fn every_sdk_macro_compiles_natively() {
    if !support::have_gcc() {
        return;
    }
    let out = std::env::temp_dir().join(format!("kflex-sdk-all-{}.o", std::process::id()));
    let res = Command::new("gcc")
        .args([
            "-O2",
            "-Wall",
            "-Wextra",
            "-Wno-unused-parameter",
            "-Werror",
            "-c",
            "-I",
        ])
        .arg(kflex_testutil::sdk_include())
        .arg(support::c_file("sdk_all.c"))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run gcc");
    let _ = std::fs::remove_file(&out);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
}
