//! The layout tables against the UAPI structs as clang-19 lays them out from `linux/bpf.h`.
//! Skipped (with a note) when clang-19 or the kernel headers are not installed.

use std::path::PathBuf;
use std::process::Command;

use kflex_hooks::{SK_BUFF_SIZE, XDP_MD_SIZE, context_layout};
use kflex_object::ProgType;

/// Compiles `offsetof`/`sizeof` values into a `.data` array and reads them back.
fn clang_values(tag: &str, exprs: &[String]) -> Option<Vec<u32>> {
    let dir = std::env::temp_dir().join(format!("kflex-hooks-uapi-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let src: PathBuf = dir.join("offsets.c");
    let obj: PathBuf = dir.join("offsets.o");
    let mut text =
        String::from("#include <linux/bpf.h>\n#include <stddef.h>\nunsigned int values[] = {\n");
    for e in exprs {
        text.push_str(&format!("  {e},\n"));
    }
    text.push_str("};\n");
    std::fs::write(&src, text).ok()?;
    let status = Command::new("clang-19")
        .args([
            "-O2",
            "-target",
            "bpf",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let dump = Command::new("llvm-objdump-19")
        .args(["-s", "-j", ".data"])
        .arg(&obj)
        .output()
        .ok()?;
    let text = String::from_utf8(dump.stdout).ok()?;
    let mut bytes = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(" 0")) {
        for word in line.split_whitespace().skip(1).take(4) {
            if word.len() != 8 || !word.chars().all(|c| c.is_ascii_hexdigit()) {
                break;
            }
            for i in (0..8).step_by(2) {
                bytes.push(u8::from_str_radix(&word[i..i + 2], 16).ok()?);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn check(prog_type: ProgType, c_struct: &str, size: usize) {
    let layout = context_layout(prog_type);
    let mut exprs: Vec<String> = layout
        .iter()
        .map(|f| format!("offsetof(struct {c_struct}, {})", f.name))
        .collect();
    exprs.push(format!("sizeof(struct {c_struct})"));
    let Some(values) = clang_values(c_struct, &exprs) else {
        eprintln!("note: clang-19 or linux/bpf.h unavailable; UAPI offsets not cross-checked");
        return;
    };
    assert_eq!(values.len(), exprs.len(), "objdump parse");
    for (f, v) in layout.iter().zip(&values) {
        assert_eq!(f.offset, *v, "offset of {c_struct}.{}", f.name);
    }
    assert_eq!(
        values.last().copied(),
        Some(size as u32),
        "sizeof(struct {c_struct})"
    );
}

#[test]
fn sk_buff_matches_clang() {
    check(ProgType::SchedCls, "__sk_buff", SK_BUFF_SIZE);
}

#[test]
fn xdp_md_matches_clang() {
    check(ProgType::Xdp, "xdp_md", XDP_MD_SIZE);
}
