//! BTF-defined maps, global-data sections and arena globals, from real clang output.

mod common;

use common::*;
use kflex_isa::op;
use kflex_object::{GlobalKind, MapSpec, MapType};

fn spec(name: &str, t: MapType, key: u32, value: u32, max: u32, flags: u32) -> MapSpec {
    MapSpec::new(name, t, key, value, max).with_flags(flags)
}

#[test]
fn btf_maps_of_every_type() {
    let Some(obj) = load("maps") else { return };
    let mut heap = spec("heap", MapType::Arena, 0, 0, 16, 0x400);
    heap.map_extra = 0x1_0000_0000;
    // arena_counter = 42, arena_other = 0x01020304, little endian, from the heap start.
    heap.initial_value = Some(vec![42, 0, 0, 0, 4, 3, 2, 1]);
    assert_eq!(
        obj.maps,
        vec![
            spec("counters", MapType::Hash, 4, 8, 128, 0),
            spec("table", MapType::Array, 4, 24, 4, 0),
            spec("percpu", MapType::PercpuArray, 4, 16, 1, 0),
            spec("lru", MapType::LruHash, 32, 64, 1000, 1),
            spec("events", MapType::Ringbuf, 0, 0, 16384, 0),
            heap,
        ]
    );
    assert_eq!(obj.map_index("events"), Some(4));
    assert_eq!(obj.map_index("nope"), None);
    assert_eq!(obj.license.as_deref(), Some("GPL"));
}

#[test]
fn map_references_become_pseudo_map_fd() {
    let Some(obj) = load("maps") else { return };
    let p = obj.program("use_maps").unwrap();
    let src = source("maps");
    let refs = lddws(p, op::PSEUDO_MAP_FD);
    // Each lookup's lddw sits on the source line naming its map.
    let mut seen = Vec::new();
    for pc in refs {
        let (a, b) = (p.insns[pc], p.insns[pc + 1]);
        assert_eq!(a.dst, 1);
        assert_eq!(b.imm, 0);
        let name = &obj.maps[a.imm as usize].name;
        let line = p.line_at(pc).unwrap().line;
        assert_eq!(
            line,
            line_of(&src, &format!("(&{name},")),
            "lddw at {pc} for {name}"
        );
        seen.push(a.imm);
    }
    assert_eq!(seen, [0, 1, 2, 3, 4]);
    assert_eq!(obj.map_index("counters"), Some(0));
}

#[test]
fn arena_globals_become_heap_offsets() {
    let Some(obj) = load("maps") else { return };
    let p = obj.program("use_maps").unwrap();
    let heap = obj.map_index("heap").unwrap() as i32;
    let src = source("maps");
    let vals: Vec<(i32, i32, u32)> = lddws(p, op::PSEUDO_MAP_VALUE)
        .into_iter()
        .map(|pc| {
            (
                p.insns[pc].imm,
                p.insns[pc + 1].imm,
                p.line_at(pc).unwrap().line,
            )
        })
        .collect();
    assert_eq!(
        vals,
        [
            (heap, 0, line_of(&src, "arena_counter++")),
            (heap, 4, line_of(&src, "arena_other += k")),
        ]
    );
    // Each is followed by addr_space_cast.
    for pc in lddws(p, op::PSEUDO_MAP_VALUE) {
        let cast = p.insns[pc + 2];
        assert_eq!(
            (cast.opcode, cast.off),
            (op::ALU64 | op::MOV | op::X, op::ADDR_SPACE_CAST)
        );
    }
}

#[test]
fn every_global_section_becomes_an_array() {
    let Some(obj) = load("globals") else { return };
    let names: Vec<&str> = obj.maps.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [".data", ".rodata", ".data.custom", ".rodata.str1.1", ".bss"]
    );
    for m in &obj.maps {
        assert_eq!(
            (m.map_type, m.key_size, m.max_entries),
            (MapType::Array, 4, 1),
            "{}",
            m.name
        );
        let init = m.initial_value.as_ref().unwrap();
        assert_eq!(init.len(), m.value_size as usize, "{}", m.name);
        let ro = m.global == Some(GlobalKind::Rodata);
        assert_eq!(m.flags, if ro { 0x80 } else { 0 }, "{}", m.name);
    }
    let by = |n: &str| &obj.maps[obj.map_index(n).unwrap()];
    assert_eq!(by(".data").global, Some(GlobalKind::Data));
    assert_eq!(
        by(".data").initial_value.as_deref(),
        Some(&7u32.to_le_bytes()[..])
    );
    assert_eq!(by(".data.custom").global, Some(GlobalKind::Data));
    assert_eq!(
        by(".data.custom").initial_value.as_deref(),
        Some(&3u32.to_le_bytes()[..])
    );
    assert_eq!(by(".bss").global, Some(GlobalKind::Bss));
    assert_eq!(by(".bss").initial_value.as_deref(), Some(&[0u8; 32][..]));
    let rodata = by(".rodata").initial_value.clone().unwrap();
    assert_eq!(&rodata[..4], &100u32.to_le_bytes());
    assert!(rodata.windows(9).any(|w| w == b"hi there\0"));
    let strs = by(".rodata.str1.1");
    assert_eq!(strs.global, Some(GlobalKind::Rodata));
    assert!(
        strs.initial_value
            .as_ref()
            .unwrap()
            .windows(15)
            .any(|w| w == b"literal string\0")
    );
}

#[test]
fn global_references_become_pseudo_map_value() {
    let Some(obj) = load("globals") else { return };
    let p = obj.program("use_globals").unwrap();
    let mut maps_used = Vec::new();
    for pc in lddws(p, op::PSEUDO_MAP_VALUE) {
        let m = &obj.maps[p.insns[pc].imm as usize];
        let off = p.insns[pc + 1].imm;
        assert!(
            off >= 0 && (off as u32) < m.value_size,
            "{} offset {off}",
            m.name
        );
        let init = m.initial_value.as_ref().unwrap();
        match m.name.as_str() {
            ".rodata.str1.1" => assert!(init[off as usize..].starts_with(b"literal string\0")),
            ".rodata" => assert!(off == 0 || init[off as usize..].starts_with(b"hi there")),
            _ => assert_eq!(off, 0, "{}", m.name),
        }
        maps_used.push(m.name.as_str());
    }
    maps_used.sort();
    maps_used.dedup();
    assert_eq!(
        maps_used,
        [".bss", ".data", ".data.custom", ".rodata", ".rodata.str1.1"]
    );
    assert!(lddws(p, op::PSEUDO_MAP_FD).is_empty());
    assert_eq!(obj.license, None);
}
