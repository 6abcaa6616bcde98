//! Checks that every bundled example is a little-endian BPF ELF object laid out the way the kflex
//! loader (and libbpf) expect: the right program section and function, BTF-defined maps, global
//! data sections, helper calls with their Linux numbers, and relocations only against known
//! sections.

use std::collections::BTreeSet;

use object::{
    Architecture, BinaryFormat, Object, ObjectKind, ObjectSection, ObjectSymbol, RelocationTarget,
    SectionIndex, SymbolSection,
};

/// What each example must contain.
struct Expect {
    name: &'static str,
    program_section: &'static str,
    sections: &'static [&'static str],
    maps: &'static [&'static str],
    helpers: &'static [i32],
}

const EXPECTED: &[Expect] = &[
    Expect {
        name: "sk_skb_verdict",
        program_section: "sk_skb/stream_verdict",
        sections: &[".rodata"],
        maps: &["verdicts"],
        helpers: &[1],
    },
    Expect {
        name: "socket_udp_filter",
        program_section: "socket",
        sections: &[],
        maps: &["filter_stats"],
        helpers: &[1, 26],
    },
    Expect {
        name: "syscall_events",
        program_section: "syscall",
        sections: &[".data", ".addr_space.1"],
        maps: &["events", "heap"],
        helpers: &[130, 131, 132],
    },
    Expect {
        name: "tc_classifier",
        program_section: "tc",
        sections: &[".data"],
        maps: &["flows"],
        helpers: &[1, 2],
    },
    Expect {
        name: "xdp_firewall",
        program_section: "xdp",
        sections: &[".text", ".rodata", ".bss"],
        maps: &["blocklist", "verdict_stats"],
        helpers: &[1, 6],
    },
];

/// Sections every example has: maps, license, BTF and its line/func info.
const COMMON_SECTIONS: &[&str] = &[".maps", "license", ".BTF", ".BTF.ext", ".symtab"];

/// Sections a code relocation may point into (besides code sections).
const DATA_SECTIONS: &[&str] = &[".maps", ".data", ".rodata", ".bss", ".addr_space.1"];

const OP_CALL: u8 = 0x85;
const OP_EXIT: u8 = 0x95;
const OP_MOV64_REG: u8 = 0xbf;
const OP_MAY_GOTO: u8 = 0xe5;
const PSEUDO_CALL: u8 = 1;

fn parse(name: &str) -> object::File<'static> {
    let example = kflex_examples::get(name).unwrap_or_else(|| panic!("{name} is not bundled"));
    object::File::parse(example.object).unwrap_or_else(|e| panic!("{name}: not an object: {e}"))
}

/// Decoded (opcode, src_reg, off, imm) of each 8-byte slot of a code section.
fn slots(data: &[u8]) -> Vec<(u8, u8, i16, i32)> {
    assert_eq!(data.len() % 8, 0, "code size is a multiple of 8");
    data.chunks_exact(8)
        .map(|s| {
            (
                s[0],
                s[1] >> 4,
                i16::from_le_bytes([s[2], s[3]]),
                i32::from_le_bytes([s[4], s[5], s[6], s[7]]),
            )
        })
        .collect()
}

fn section_names(file: &object::File<'_>) -> BTreeSet<String> {
    file.sections()
        .filter_map(|s| s.name().ok().map(str::to_owned))
        .collect()
}

#[test]
fn expectations_cover_every_example() {
    let bundled: Vec<&str> = kflex_examples::all().iter().map(|e| e.name).collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.name).collect();
    assert_eq!(bundled, expected);
}

#[test]
fn objects_are_little_endian_bpf_relocatables() {
    for e in EXPECTED {
        let file = parse(e.name);
        assert_eq!(file.format(), BinaryFormat::Elf, "{}", e.name);
        assert_eq!(file.architecture(), Architecture::Bpf, "{}", e.name);
        assert!(file.is_little_endian(), "{}", e.name);
        assert!(file.is_64(), "{}", e.name);
        assert_eq!(file.kind(), ObjectKind::Relocatable, "{}", e.name);
        // e_machine is EM_BPF (247) in the raw header too.
        let raw = kflex_examples::get(e.name).unwrap().object;
        assert_eq!(&raw[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([raw[18], raw[19]]), 247, "{}", e.name);
    }
}

#[test]
fn objects_have_the_expected_sections() {
    for e in EXPECTED {
        let names = section_names(&parse(e.name));
        for wanted in COMMON_SECTIONS
            .iter()
            .chain(e.sections)
            .chain([&e.program_section])
        {
            assert!(
                names.contains(*wanted),
                "{}: missing section {wanted}: {names:?}",
                e.name
            );
        }
    }
}

#[test]
fn program_function_lives_in_its_section() {
    for e in EXPECTED {
        let file = parse(e.name);
        let section = file
            .section_by_name(e.program_section)
            .unwrap_or_else(|| panic!("{}: no section {}", e.name, e.program_section));
        let sym = file
            .symbols()
            .find(|s| s.name() == Ok(e.name))
            .unwrap_or_else(|| panic!("{}: no symbol {}", e.name, e.name));
        assert_eq!(
            sym.section(),
            SymbolSection::Section(section.index()),
            "{}",
            e.name
        );
        assert_eq!(sym.address(), 0, "{}: program starts its section", e.name);
        assert!(sym.is_global(), "{}: program symbol is global", e.name);
        let code = slots(section.data().unwrap());
        assert!(
            code.iter().any(|s| s.0 == OP_EXIT),
            "{}: program has an exit",
            e.name
        );
    }
}

#[test]
fn maps_are_btf_defined_in_dot_maps() {
    for e in EXPECTED {
        let file = parse(e.name);
        let maps = file.section_by_name(".maps").unwrap().index();
        let found: BTreeSet<&str> = file
            .symbols()
            .filter(|s| s.section() == SymbolSection::Section(maps))
            .filter_map(|s| s.name().ok())
            .collect();
        let wanted: BTreeSet<&str> = e.maps.iter().copied().collect();
        assert_eq!(found, wanted, "{}", e.name);
    }
}

#[test]
fn helper_calls_use_linux_numbers() {
    for e in EXPECTED {
        let file = parse(e.name);
        let mut called = BTreeSet::new();
        for section in file
            .sections()
            .filter(|s| s.kind() == object::SectionKind::Text)
        {
            for (op, src, _, imm) in slots(section.data().unwrap()) {
                if op == OP_CALL && src == 0 {
                    called.insert(imm);
                }
            }
        }
        let wanted: BTreeSet<i32> = e.helpers.iter().copied().collect();
        assert!(
            called.is_superset(&wanted),
            "{}: calls {called:?}, wanted {wanted:?}",
            e.name
        );
    }
}

#[test]
fn xdp_firewall_calls_a_subprogram_in_text() {
    let file = parse("xdp_firewall");
    let xdp = file.section_by_name("xdp").unwrap();
    let text = file.section_by_name(".text").unwrap();
    let calls = slots(xdp.data().unwrap())
        .into_iter()
        .filter(|s| s.0 == OP_CALL && s.1 == PSEUDO_CALL)
        .count();
    assert!(calls >= 1, "xdp_firewall makes a bpf-to-bpf call");
    let account = file
        .symbols()
        .find(|s| s.name() == Ok("account"))
        .expect("account symbol");
    assert_eq!(account.section(), SymbolSection::Section(text.index()));
    assert!(xdp.relocations().any(|(_, r)| {
        match r.target() {
            RelocationTarget::Symbol(i) => file
                .symbol_by_index(i)
                .is_ok_and(|s| s.section_index() == Some(text.index())),
            _ => false,
        }
    }));
}

#[test]
fn syscall_events_uses_the_arena() {
    let file = parse("syscall_events");
    let code = slots(file.section_by_name("syscall").unwrap().data().unwrap());
    // addr_space_cast: ALU64 MOV (register) with off = 1.
    assert!(code.iter().any(|s| s.0 == OP_MOV64_REG && s.2 == 1));
    // The Collatz loop is bounded for Linux by one may_goto (JMP | JCOND).
    assert_eq!(code.iter().filter(|s| s.0 == OP_MAY_GOTO).count(), 1);
    let arena = file.section_by_name(".addr_space.1").unwrap().index();
    let heap_vars: BTreeSet<&str> = file
        .symbols()
        .filter(|s| s.section() == SymbolSection::Section(arena))
        .filter_map(|s| s.name().ok())
        .collect();
    assert_eq!(heap_vars, BTreeSet::from(["peak_value", "steps_histogram"]));
}

#[test]
fn code_relocations_target_known_sections() {
    for e in EXPECTED {
        let file = parse(e.name);
        let code_sections: Vec<SectionIndex> = file
            .sections()
            .filter(|s| s.kind() == object::SectionKind::Text)
            .map(|s| s.index())
            .collect();
        for section in file
            .sections()
            .filter(|s| code_sections.contains(&s.index()))
        {
            let size = section.size();
            for (offset, reloc) in section.relocations() {
                assert!(
                    offset % 8 == 0 && offset < size,
                    "{}: relocation at {offset}",
                    e.name
                );
                let RelocationTarget::Symbol(i) = reloc.target() else {
                    panic!("{}: relocation at {offset} has no symbol", e.name);
                };
                let target = file
                    .symbol_by_index(i)
                    .unwrap()
                    .section_index()
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: relocation at {offset} targets an undefined symbol",
                            e.name
                        )
                    });
                let target_name = file.section_by_index(target).unwrap().name().unwrap();
                assert!(
                    code_sections.contains(&target) || DATA_SECTIONS.contains(&target_name),
                    "{}: relocation at {offset} into {target_name}",
                    e.name
                );
            }
        }
    }
}

#[test]
fn sources_declare_their_section_and_expected_results() {
    for e in EXPECTED {
        let source = kflex_examples::get(e.name).unwrap().source;
        assert!(
            source.contains(&format!("SEC(\"{}\")", e.program_section)),
            "{}",
            e.name
        );
        assert!(source.contains("Expected test-run results"), "{}", e.name);
        assert!(source.contains("#include <kflex/helpers.h>"), "{}", e.name);
    }
}
