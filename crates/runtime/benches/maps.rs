//! Hash map look-up costs as a program sees them: hits and misses for 4-byte and 16-byte keys in a
//! full 4096-entry `BPF_MAP_TYPE_HASH` (and hits in an LRU hash), through the helper path
//! (`MapTable::prog_lookup`, group `hash_lookup`) and through the direct call compiled code makes
//! (`MapTable::call_plan`'s look-up function, group `hash_lookup_direct`). Keys are looked up in
//! a fixed shuffled order.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kflex_object::{MapSpec, MapType};
use kflex_runtime::maps::MapCallPlan;
use kflex_runtime::{MapOptions, MapTable};

/// Entries in each benchmarked map (all present).
const ENTRIES: u32 = 4096;
const _: () = assert!(
    ENTRIES.is_power_of_two(),
    "the benchmark loops index keys with a mask"
);

/// The key of element `i`: `i` spread over `size` bytes (so every byte of a 16-byte key matters).
fn key(i: u32, size: usize) -> Vec<u8> {
    let mut k = vec![0u8; size];
    for (j, chunk) in k.chunks_mut(4).enumerate() {
        let w = i.wrapping_mul(0x9e37_79b9).rotate_left(j as u32 * 7) ^ j as u32;
        chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
    }
    k
}

/// `keys` in a fixed pseudo-random order: look-ups then follow neither the order elements were
/// inserted in nor any memory order (as packets of many flows would not).
fn shuffled(mut keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..keys.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        keys.swap(i, (state % (i as u64 + 1)) as usize);
    }
    keys
}

/// A table holding one full map of `map_type` with `key_size`-byte keys.
fn filled(map_type: MapType, key_size: u32) -> MapTable {
    let spec = MapSpec::new("bench", map_type, key_size, 8, ENTRIES);
    let t = MapTable::create(&[spec], &MapOptions::default()).unwrap();
    for i in 0..ENTRIES {
        t.update(
            0,
            &key(i, key_size as usize),
            &u64::from(i).to_le_bytes(),
            0,
        )
        .unwrap();
    }
    t
}

fn lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("hash_lookup");
    for key_size in [4u32, 16] {
        let t = filled(MapType::Hash, key_size);
        let hits = shuffled((0..ENTRIES).map(|i| key(i, key_size as usize)).collect());
        let misses = shuffled(
            (ENTRIES..2 * ENTRIES)
                .map(|i| key(i, key_size as usize))
                .collect(),
        );
        for (label, keys, found) in [("hit", &hits, true), ("miss", &misses, false)] {
            let id = BenchmarkId::new(label, format!("{key_size}B"));
            g.bench_with_input(id, keys, |b, keys| {
                let mut i = 0usize;
                b.iter(|| {
                    let k = &keys[i & (ENTRIES as usize - 1)];
                    i = i.wrapping_add(1);
                    let r = t.prog_lookup(0, black_box(k), 0).unwrap();
                    assert_eq!(r.is_some(), found);
                    black_box(r)
                })
            });
        }
    }
    let t = filled(MapType::LruHash, 4);
    let hits = shuffled((0..ENTRIES).map(|i| key(i, 4)).collect());
    g.bench_with_input(BenchmarkId::new("lru_hit", "4B"), &hits, |b, keys| {
        let mut i = 0usize;
        b.iter(|| {
            let k = &keys[i & (ENTRIES as usize - 1)];
            i = i.wrapping_add(1);
            black_box(t.prog_lookup(0, black_box(k), 0).unwrap())
        })
    });
    g.finish();
}

fn direct_lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("hash_lookup_direct");
    // (map type, key size, label, first key, distinct keys): "hot" cases look one key up again
    // and again, as a packet program does for a repeated flow.
    for (map_type, key_size, label, first, distinct) in [
        (MapType::Hash, 4u32, "hit", 0, ENTRIES),
        (MapType::Hash, 4, "miss", ENTRIES, ENTRIES),
        (MapType::Hash, 16, "hit", 0, ENTRIES),
        (MapType::Hash, 16, "miss", ENTRIES, ENTRIES),
        (MapType::Hash, 4, "hot_hit", 0, 1),
        (MapType::Hash, 4, "hot_miss", ENTRIES, 1),
        (MapType::LruHash, 4, "lru_hit", 0, ENTRIES),
        (MapType::LruHash, 4, "lru_hot_hit", 0, 1),
    ] {
        let t = filled(map_type, key_size);
        let Some(MapCallPlan::Hash(plan)) = t.call_plan(0) else {
            panic!("no direct-call plan for a hash map");
        };
        let keys = shuffled(
            (0..ENTRIES)
                .map(|j| key(first + j % distinct, key_size as usize))
                .collect(),
        );
        let found = first == 0;
        let id = BenchmarkId::new(label, format!("{key_size}B"));
        g.bench_with_input(id, &keys, |b, keys| {
            let mut i = 0usize;
            b.iter(|| {
                let k = &keys[i & (ENTRIES as usize - 1)];
                i = i.wrapping_add(1);
                // SAFETY: the plan's map is alive (`t` outlives the loop) and `k` holds the
                // map's key size in bytes.
                let r = unsafe { (plan.lookup)(plan.map, black_box(k.as_ptr())) };
                assert_eq!(r != 0, found);
                black_box(r)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, lookups, direct_lookups);
criterion_main!(benches);
