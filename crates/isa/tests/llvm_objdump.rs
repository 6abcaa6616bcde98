//! Compares our disassembly with llvm-objdump-19 on objects built by llvm-mc-19 and clang-19.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kflex_isa::decode::Program;
use kflex_isa::disasm::listing;
use kflex_isa::insn::Insn;

fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kflex-isa-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Parses `llvm-objdump -d --no-show-raw-insn` output into pc -> text, dropping `<label>` suffixes.
fn parse_objdump(text: &str) -> BTreeMap<usize, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let Some((pc, rest)) = line.split_once(":\t") else {
            continue;
        };
        let Ok(pc) = pc.trim().parse::<usize>() else {
            continue;
        };
        let rest = match rest.rfind(" <") {
            Some(i) if rest.ends_with('>') => &rest[..i],
            _ => rest,
        };
        map.insert(pc, rest.trim_end().to_string());
    }
    map
}

/// Disassembles the `.text` of `obj` with llvm and with kflex and compares every line.
fn compare(obj: &Path, dir: &Path) -> usize {
    let bin = dir.join("text.bin");
    run(Command::new("llvm-objcopy-19")
        .args(["-O", "binary", "--only-section=.text"])
        .arg(obj)
        .arg(&bin));
    let bytes = std::fs::read(&bin).unwrap();
    let slots = Insn::slice_from_bytes(&bytes).expect(".text is a whole number of slots");
    let program = Program::decode(&slots).unwrap_or_else(|e| panic!("{}: {e}", obj.display()));

    let plain = parse_objdump(&run(Command::new("llvm-objdump-19")
        .args(["-d", "--no-show-raw-insn"])
        .arg(obj)));
    let v4 = parse_objdump(&run(Command::new("llvm-objdump-19")
        .args(["-d", "--no-show-raw-insn", "--mcpu=v4"])
        .arg(obj)));
    let ours = parse_objdump(&listing(&program));

    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>(),
        "instruction boundaries differ"
    );
    for (pc, text) in &ours {
        // 32-bit atomics: llvm-objdump only decodes them with the alu32 feature (see disasm docs).
        let is_atomic32 = slots[*pc].opcode == 0xc3;
        let want = if is_atomic32 { &v4[pc] } else { &plain[pc] };
        assert_eq!(text, want, "slot {pc} of {}", obj.display());
    }
    ours.len()
}

#[test]
fn disassembly_matches_llvm_objdump() {
    if !tool_available("llvm-mc-19") || !tool_available("llvm-objdump-19") {
        kflex_testutil::skip("llvm-mc-19 not found");
        return;
    }
    let dir = scratch_dir("mc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llvm_forms.s");
    let obj = dir.join("forms.o");
    run(Command::new("llvm-mc-19")
        .args(["-triple", "bpfel", "-mcpu=v4", "-filetype=obj", "-o"])
        .arg(&obj)
        .arg(&src));
    let n = compare(&obj, &dir);
    assert!(n > 130, "only {n} instructions compared");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn disassembly_matches_llvm_objdump_on_clang_output() {
    if !tool_available("clang-19") || !tool_available("llvm-objdump-19") {
        kflex_testutil::skip("clang-19 not found");
        return;
    }
    let dir = scratch_dir("cc");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/prog.c");
    let obj = dir.join("prog.o");
    run(Command::new("clang-19")
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v4", "-c", "-o"])
        .arg(&obj)
        .arg(&src));
    let n = compare(&obj, &dir);
    assert!(n > 10, "only {n} instructions compared");
    std::fs::remove_dir_all(&dir).ok();
}
