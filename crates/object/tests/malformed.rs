//! Objects the loader must reject, each with a precise error.

mod common;

use common::*;
use kflex_object::{LoadError, Object};

fn err(name: &str) -> Option<LoadError> {
    let bytes = compile(name)?;
    Some(Object::parse(name, &bytes).expect_err("object must be rejected"))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Offset of the section header of the section named `name` (independent ELF parsing).
fn shdr(b: &[u8], name: &str) -> usize {
    let shoff = u64_at(b, 0x28) as usize;
    let (entsize, num, strndx) = (
        u16_at(b, 0x3a) as usize,
        u16_at(b, 0x3c) as usize,
        u16_at(b, 0x3e) as usize,
    );
    let strtab = u64_at(b, shoff + strndx * entsize + 24) as usize;
    (0..num)
        .map(|i| shoff + i * entsize)
        .find(|&h| {
            let n = strtab + u32_at(b, h) as usize;
            let end = n + b[n..].iter().position(|&c| c == 0).unwrap();
            &b[n..end] == name.as_bytes()
        })
        .unwrap_or_else(|| panic!("no section {name}"))
}

/// File offset of the contents of section `name`.
fn contents(b: &[u8], name: &str) -> usize {
    u64_at(b, shdr(b, name) + 24) as usize
}

#[test]
fn truncated_elf() {
    let Some(bytes) = compile("programs") else {
        return;
    };
    let e = Object::parse("t", &bytes[..10]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "truncated ELF file: 10 bytes, shorter than the ELF header"
    );
    // Cut inside the section header table: object reports the problem, we do not panic.
    let e = Object::parse("t", &bytes[..bytes.len() - 100]).unwrap_err();
    assert!(e.to_string().starts_with("malformed ELF file:"), "{e}");
    assert!(
        Object::parse("t", b"not an elf file at all")
            .unwrap_err()
            .to_string()
            .contains("bad magic")
    );
}

#[test]
fn wrong_machine() {
    let Some(mut bytes) = compile("programs") else {
        return;
    };
    bytes[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    let e = Object::parse("t", &bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a BPF object: ELF machine is 62, expected EM_BPF (247)"
    );
    bytes[5] = 2;
    assert_eq!(
        Object::parse("t", &bytes).unwrap_err().to_string(),
        "big-endian BPF objects are not supported"
    );
}

#[test]
fn bad_btf_header() {
    let Some(mut bytes) = compile("programs") else {
        return;
    };
    let btf = contents(&bytes, ".BTF");
    bytes[btf] = 0x12;
    bytes[btf + 1] = 0x34;
    let e = Object::parse("t", &bytes).unwrap_err();
    assert_eq!(e.section.as_deref(), Some(".BTF"));
    assert_eq!(
        e.to_string(),
        "section .BTF: bad BTF header: magic 0x3412, expected 0xeb9f"
    );
}

#[test]
fn btf_string_offset_out_of_range() {
    let Some(mut bytes) = compile("programs") else {
        return;
    };
    let btf = contents(&bytes, ".BTF");
    // Shrink the string section to its leading NUL: every name now points outside it.
    bytes[btf + 20..btf + 24].copy_from_slice(&1u32.to_le_bytes());
    let e = Object::parse("t", &bytes).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("section .BTF: type "), "{s}");
    assert!(
        s.contains("out of range (string section has 1 bytes)"),
        "{s}"
    );
}

#[test]
fn relocation_to_missing_symbol() {
    let Some(e) = err("extern_var") else { return };
    assert_eq!(e.section.as_deref(), Some("xdp"));
    assert_eq!(e.insn, Some(0));
    assert_eq!(
        e.to_string(),
        "section xdp, instruction 0: relocation against unknown symbol missing_value"
    );

    let Some(mut bytes) = compile("programs") else {
        return;
    };
    // Point the first relocation of xdp (prog_a's call, instruction 1) at symbol index 999.
    let rel = contents(&bytes, ".relxdp");
    let r_type = u32_at(&bytes, rel + 8);
    bytes[rel + 8..rel + 16].copy_from_slice(&((999u64 << 32) | u64::from(r_type)).to_le_bytes());
    let e = Object::parse("t", &bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "section xdp, instruction 1: relocation against unknown symbol index 999"
    );
}

#[test]
fn code_size_not_multiple_of_eight() {
    let Some(mut bytes) = compile("programs") else {
        return;
    };
    let h = shdr(&bytes, "tc");
    let size = u64_at(&bytes, h + 32);
    bytes[h + 32..h + 40].copy_from_slice(&(size - 3).to_le_bytes());
    let e = Object::parse("t", &bytes).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "section tc: size {} is not a multiple of the 8-byte instruction size",
            size - 3
        )
    );
}

#[test]
fn legacy_maps_are_rejected() {
    let Some(e) = err("legacy_maps") else { return };
    assert_eq!(e.section.as_deref(), Some("maps"));
    assert!(
        e.reason
            .contains("legacy struct bpf_map_def maps are not supported"),
        "{e}"
    );
    assert!(e.reason.contains("SEC(\".maps\")"), "{e}");
}

#[test]
fn unsupported_map_type_names_the_map() {
    let Some(e) = err("bad_map_type") else { return };
    assert_eq!(
        e.to_string(),
        "section .maps: map jumps: unsupported map type 3"
    );
}

#[test]
fn arena_globals_need_an_arena() {
    let Some(e) = err("arena_without_map") else {
        return;
    };
    assert_eq!(
        e.to_string(),
        "section .addr_space.1: __arena globals need an arena map (BPF_MAP_TYPE_ARENA) in the object"
    );
}

#[test]
fn core_relocations_are_rejected() {
    let Some(e) = err("core_relo") else { return };
    assert_eq!(
        e.to_string(),
        "section .BTF.ext: CO-RE relocations are not supported yet (1 in section syscall)"
    );
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_not_a_panic() {
    let Some(bytes) = compile("maps") else { return };
    for len in (0..bytes.len()).step_by(7) {
        let _ = Object::parse("t", &bytes[..len]);
    }
    let mut b = bytes.clone();
    for i in (0..b.len()).step_by(3) {
        let old = b[i];
        b[i] = old ^ 0xff;
        let _ = Object::parse("t", &b);
        b[i] = old.wrapping_add(0x41);
        let _ = Object::parse("t", &b);
        b[i] = old;
    }
}
