//! Map helpers called through the registry against a real memory map.

mod common;

use common::*;
use kflex_runtime::helpers::{HelperError, ids};
use kflex_runtime::maps::{BPF_EXIST, BPF_NOEXIST};
use kflex_runtime::{AccessError, RegionKind};

#[test]
fn array_update_lookup_and_errnos() {
    let mut f = Fixture::new();
    let m = f.handle(ARRAY);
    let key = f.put(0, &2u32.to_le_bytes());
    let val = f.put(8, &0x1122_3344_5566_7788u64.to_le_bytes());
    assert_eq!(f.call(ids::MAP_UPDATE_ELEM, &[m, key, val, 0]), Ok(0));
    let p = f.call(ids::MAP_LOOKUP_ELEM, &[m, key]).unwrap();
    assert_eq!(
        f.mem.region_at(p).unwrap().kind,
        RegionKind::MapValue(ARRAY as u32)
    );
    assert_eq!(f.mem.load(p, 8), Ok(0x1122_3344_5566_7788));
    // The program writes through the pointer; the host sees it.
    f.mem.store(p, 4, 0xaabbccdd).unwrap();
    let host = f.table.lookup(ARRAY, &2u32.to_le_bytes()).unwrap().unwrap();
    assert_eq!(&host[..4], &0xaabbccddu32.to_le_bytes());
    // A value access cannot run into the next element.
    assert!(f.mem.load(p + 4, 8).is_err());

    assert_eq!(
        f.call(ids::MAP_UPDATE_ELEM, &[m, key, val, BPF_NOEXIST]),
        Ok(neg(libc::EEXIST))
    );
    assert_eq!(
        f.call(ids::MAP_UPDATE_ELEM, &[m, key, val, 7]),
        Ok(neg(libc::EINVAL))
    );
    let far = f.put(16, &4u32.to_le_bytes());
    assert_eq!(f.call(ids::MAP_LOOKUP_ELEM, &[m, far]), Ok(0));
    assert_eq!(
        f.call(ids::MAP_UPDATE_ELEM, &[m, far, val, 0]),
        Ok(neg(libc::E2BIG))
    );
    assert_eq!(
        f.call(ids::MAP_DELETE_ELEM, &[m, key]),
        Ok(neg(libc::EINVAL))
    );
}

#[test]
fn hash_helpers_follow_linux() {
    let mut f = Fixture::new();
    let m = f.handle(HASH);
    let k1 = f.put(0, &1u32.to_le_bytes());
    let k2 = f.put(4, &2u32.to_le_bytes());
    let k3 = f.put(8, &3u32.to_le_bytes());
    let v = f.put(16, &[9; 8]);
    assert_eq!(f.call(ids::MAP_LOOKUP_ELEM, &[m, k1]), Ok(0));
    assert_eq!(
        f.call(ids::MAP_UPDATE_ELEM, &[m, k1, v, BPF_EXIST]),
        Ok(neg(libc::ENOENT))
    );
    assert_eq!(
        f.call(ids::MAP_UPDATE_ELEM, &[m, k1, v, BPF_NOEXIST]),
        Ok(0)
    );
    assert_eq!(f.call(ids::MAP_UPDATE_ELEM, &[m, k2, v, 0]), Ok(0));
    assert_eq!(
        f.call(ids::MAP_UPDATE_ELEM, &[m, k3, v, 0]),
        Ok(neg(libc::E2BIG))
    );
    let p = f.call(ids::MAP_LOOKUP_ELEM, &[m, k2]).unwrap();
    assert_eq!(f.mem.read_bytes(p, 8).unwrap(), vec![9; 8]);
    assert_eq!(
        f.call(ids::MAP_DELETE_ELEM, &[m, k3]),
        Ok(neg(libc::ENOENT))
    );
    assert_eq!(f.call(ids::MAP_DELETE_ELEM, &[m, k2]), Ok(0));
    // The old value pointer still points at valid, accessible memory.
    assert!(f.mem.load(p, 8).is_ok());
    assert_eq!(f.call(ids::MAP_UPDATE_ELEM, &[m, k3, v, 0]), Ok(0));
    assert_eq!(
        f.table.keys(HASH).unwrap(),
        vec![1u32.to_le_bytes().to_vec(), 3u32.to_le_bytes().to_vec()]
    );
}

#[test]
fn lru_lookup_from_program_refreshes() {
    let mut f = Fixture::new();
    let m = f.handle(LRU);
    let k: Vec<u64> = (0..3u32)
        .map(|i| f.put(i as u64 * 4, &i.to_le_bytes()))
        .collect();
    let v = f.put(32, &[1; 8]);
    f.call(ids::MAP_UPDATE_ELEM, &[m, k[0], v, 0]).unwrap();
    f.call(ids::MAP_UPDATE_ELEM, &[m, k[1], v, 0]).unwrap();
    assert_ne!(f.call(ids::MAP_LOOKUP_ELEM, &[m, k[0]]), Ok(0));
    assert_eq!(f.call(ids::MAP_UPDATE_ELEM, &[m, k[2], v, 0]), Ok(0));
    assert_eq!(
        f.call(ids::MAP_LOOKUP_ELEM, &[m, k[1]]),
        Ok(0),
        "1 was least recently used"
    );
    assert_ne!(f.call(ids::MAP_LOOKUP_ELEM, &[m, k[0]]), Ok(0));
}

#[test]
fn percpu_slots_follow_env_cpu() {
    let mut f = Fixture::new();
    let m = f.handle(PERCPU);
    let key = f.put(0, &0u32.to_le_bytes());
    let v = f.put(8, &7u32.to_le_bytes());
    f.env.cpu = 1;
    assert_eq!(f.call(ids::MAP_UPDATE_ELEM, &[m, key, v, 0]), Ok(0));
    let p1 = f.call(ids::MAP_LOOKUP_ELEM, &[m, key]).unwrap();
    f.env.cpu = 0;
    let p0 = f.call(ids::MAP_LOOKUP_ELEM, &[m, key]).unwrap();
    assert_eq!(p1 - p0, 8, "4-byte values are padded to 8 per CPU");
    assert_eq!(f.mem.load(p0, 4), Ok(0));
    assert_eq!(f.mem.load(p1, 4), Ok(7));
    assert_eq!(
        f.table.lookup_percpu(PERCPU, &0u32.to_le_bytes()).unwrap(),
        vec![vec![0; 4], 7u32.to_le_bytes().to_vec()]
    );
    assert_eq!(
        f.table
            .lookup(PERCPU, &0u32.to_le_bytes())
            .unwrap()
            .unwrap(),
        vec![0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0]
    );
    f.env.cpu = 5;
    assert_eq!(
        f.call(ids::MAP_LOOKUP_ELEM, &[m, key]),
        Ok(0),
        "no slot for CPU 5"
    );
}

#[test]
fn rodata_is_read_only_for_programs() {
    let mut f = Fixture::new();
    let m = f.handle(RODATA);
    let key = f.put(0, &0u32.to_le_bytes());
    let p = f.call(ids::MAP_LOOKUP_ELEM, &[m, key]).unwrap();
    assert_eq!(f.mem.read_bytes(p, 6).unwrap(), b"hello\0");
    assert!(matches!(
        f.mem.store(p, 1, 0),
        Err(AccessError::ReadOnly { .. })
    ));
    assert_eq!(f.table.value_address(RODATA, 1), Some(p + 1));
    let v = f.put(8, &[0; 6]);
    assert!(matches!(
        f.call(ids::MAP_UPDATE_ELEM, &[m, key, v, 0]),
        Err(HelperError::BadArgument { arg: 1, .. })
    ));
    // The host may still write it (before the program runs, as libbpf does).
    f.table
        .update(RODATA, &0u32.to_le_bytes(), b"HELLO\0", 0)
        .unwrap();
    assert_eq!(f.mem.read_bytes(p, 5).unwrap(), b"HELLO");
}

#[test]
fn bad_arguments_are_refused() {
    let mut f = Fixture::new();
    let m = f.handle(ARRAY);
    let key = f.put(0, &0u32.to_le_bytes());
    // Key pointer outside every region.
    assert!(matches!(
        f.call(ids::MAP_LOOKUP_ELEM, &[m, 0x10]),
        Err(HelperError::Memory(AccessError::OutOfBounds { .. }))
    ));
    // Key running past the end of the stack.
    let end = f.stack + STACK_LEN as u64 - 2;
    assert!(matches!(
        f.call(ids::MAP_LOOKUP_ELEM, &[m, end]),
        Err(HelperError::Memory(AccessError::PastEnd { .. }))
    ));
    // Value pointer into the read-only map is fine to read, a bad one is not.
    assert!(matches!(
        f.call(ids::MAP_UPDATE_ELEM, &[m, key, 1, 0]),
        Err(HelperError::Memory(_))
    ));
    // Not a map handle: an ordinary stack address, a handle plus one, NULL.
    for bad in [f.stack, m + 1, 0] {
        assert!(matches!(
            f.call(ids::MAP_LOOKUP_ELEM, &[bad, key]),
            Err(HelperError::BadArgument { arg: 1, .. })
        ));
    }
    // Map types without lookup/update/delete.
    for idx in [RINGBUF, ARENA] {
        let h = f.handle(idx);
        assert!(matches!(
            f.call(ids::MAP_LOOKUP_ELEM, &[h, key]),
            Err(HelperError::BadArgument { .. })
        ));
        assert!(matches!(
            f.call(ids::MAP_DELETE_ELEM, &[h, key]),
            Err(HelperError::BadArgument { .. })
        ));
    }
    // No maps at all.
    f.env.maps = None;
    assert!(matches!(
        f.call(ids::MAP_LOOKUP_ELEM, &[m, key]),
        Err(HelperError::BadArgument { .. })
    ));
}

#[test]
fn handles_are_outside_every_region_and_heap_is_registered() {
    let f = Fixture::new();
    for i in 0..f.table.len() {
        let h = f.table.handle(i);
        assert!(
            f.mem.region_at(h).is_none(),
            "handle of map {i} is accessible"
        );
        assert_eq!(f.table.index_of_handle(h), Some(i));
    }
    assert_eq!(f.table.handle(99), 0);
    assert_eq!(f.table.index_of_handle(0), None);
    let (base, len) = f.table.heap(ARENA).unwrap();
    assert_eq!(len, kflex_runtime::maps::page_size());
    let r = f.mem.region_at(base).unwrap();
    assert_eq!((r.kind, r.writable, r.len), (RegionKind::Heap, true, len));
    assert_eq!(f.mem.read_bytes(base, 5).unwrap(), b"heap!");
    assert_eq!(f.table.value_address(ARENA, 16), Some(base + 16));
    assert_eq!(f.table.value_address(ARENA, len), None);
    assert_eq!(
        f.table.value_address(ARRAY, 0),
        None,
        "multi-entry arrays have no direct value"
    );
    assert_eq!(f.table.value_address(HASH, 0), None);
    f.table.heap_write(ARENA, 8, b"xy").unwrap();
    assert_eq!(f.mem.read_bytes(base + 8, 2).unwrap(), b"xy");
    assert!(f.table.heap_read(ARENA, len - 1, 2).is_err());
}
