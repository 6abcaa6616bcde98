//! Shared helpers for the integration tests: compile C sources with clang-19 at test time.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kflex_isa::{Insn, op};
use kflex_object::{Object, Program};

/// The directory holding the test C sources.
pub fn c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c")
}

/// The source text of `tests/c/<name>.c`.
pub fn source(name: &str) -> String {
    std::fs::read_to_string(c_dir().join(format!("{name}.c"))).expect("test source")
}

/// A number distinct for every call in this process (tests compile in parallel).
fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Compiles `tests/c/<name>.c` and returns the object bytes, or `None` (after printing
/// `SKIPPED`) when clang-19 is not installed.
pub fn compile(name: &str) -> Option<Vec<u8>> {
    if !kflex_testutil::have_clang() {
        return None;
    }
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/include");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "kflex-object-{name}-{}-{}.o",
        std::process::id(),
        unique()
    ));
    let res = Command::new("clang-19")
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v4", "-c"])
        .arg("-I")
        .arg(&sdk)
        .arg(c_dir().join(format!("{name}.c")))
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run clang-19");
    assert!(
        res.status.success(),
        "clang-19 failed on {name}.c:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let bytes = std::fs::read(&out).expect("read object");
    let _ = std::fs::remove_file(&out);
    Some(bytes)
}

/// Compiles and loads `tests/c/<name>.c`.
pub fn load(name: &str) -> Option<Object> {
    let bytes = compile(name)?;
    Some(Object::parse(name, &bytes).unwrap_or_else(|e| panic!("loading {name}: {e}")))
}

/// The 1-based line number of the first source line containing `needle`.
pub fn line_of(src: &str, needle: &str) -> u32 {
    let idx = src
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle in source");
    idx as u32 + 1
}

/// Pcs and instructions of the BPF-to-BPF calls of `p`.
pub fn local_calls(p: &Program) -> Vec<(usize, Insn)> {
    p.insns
        .iter()
        .enumerate()
        .filter(|(_, i)| i.opcode == op::JMP | op::CALL && i.src == op::PSEUDO_CALL)
        .map(|(pc, i)| (pc, *i))
        .collect()
}

/// Pcs of the first slots of every `lddw` with source `src`.
pub fn lddws(p: &Program, src: u8) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pc = 0;
    while pc < p.insns.len() {
        let i = p.insns[pc];
        if i.is_lddw() {
            if i.src == src {
                out.push(pc);
            }
            pc += 2;
        } else {
            pc += 1;
        }
    }
    out
}

/// The pc a call or `PSEUDO_FUNC` lddw at `pc` transfers to.
pub fn target(p: &Program, pc: usize) -> usize {
    (pc as i64 + i64::from(p.insns[pc].imm) + 1) as usize
}

/// The name of the function starting exactly at `pc`.
pub fn func_starting_at(p: &Program, pc: usize) -> Option<&str> {
    p.func_info
        .iter()
        .find(|f| f.insn == pc)
        .map(|f| f.name.as_str())
}
