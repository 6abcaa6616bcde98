//! Model and concurrency tests of the hash map index and the maps built on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kflex_object::{MapSpec, MapType};
use proptest::prelude::*;

use super::index::KeyIndex;
use super::key::KeyHasher;
use super::{BPF_EXIST, BPF_NOEXIST, HashMapImpl, MapError};

fn spec(key_size: u32, value_size: u32, max_entries: u32) -> MapSpec {
    MapSpec::new("h", MapType::Hash, key_size, value_size, max_entries)
}

/// Key `id` of `size` bytes: keys differ in their first and last bytes only, so that comparisons
/// must look at every word, including a partial last one.
fn key(id: u16, size: u32) -> Vec<u8> {
    let mut k = vec![0xa5; size as usize];
    let [lo, hi] = id.to_le_bytes();
    if let Some(last) = k.last_mut() {
        *last = lo;
    }
    if size > 1 {
        k[0] = hi;
    }
    k
}

/// How test keys are hashed: the map's real hash, or degenerate ones that pile keys into a few
/// buckets (with equal or distinct tags) to exercise long chains.
#[derive(Clone, Copy, Debug)]
enum Hashing {
    Real,
    /// Every key in one bucket with one tag: only key comparison tells them apart.
    OneBucket,
    /// Three buckets; the tag differs per key.
    ThreeBuckets,
}

impl Hashing {
    fn hash(self, index: &KeyIndex, id: u16, k: &[u8]) -> u64 {
        match self {
            Hashing::Real => index.hash(k),
            Hashing::OneBucket => 0x1234_5678_0000_0000,
            Hashing::ThreeBuckets => (u64::from(id) << 32) | u64::from(id % 3),
        }
    }
}

#[derive(Clone, Debug)]
enum IndexOp {
    Insert(u16),
    Remove(u16),
    Find(u16),
}

fn index_op(ids: u16) -> impl Strategy<Value = IndexOp> {
    prop_oneof![
        3 => (0..ids).prop_map(IndexOp::Insert),
        2 => (0..ids).prop_map(IndexOp::Remove),
        2 => (0..ids).prop_map(IndexOp::Find),
    ]
}

#[derive(Clone, Debug)]
enum MapOp {
    Update(u16, u8, u64),
    Delete(u16),
    Lookup(u16),
    ProgLookup(u16),
}

fn map_op(ids: u16) -> impl Strategy<Value = MapOp> {
    prop_oneof![
        3 => (0..ids, any::<u8>(), 0u64..4).prop_map(|(k, v, f)| MapOp::Update(k, v, f)),
        2 => (0..ids).prop_map(MapOp::Delete),
        1 => (0..ids).prop_map(MapOp::Lookup),
        2 => (0..ids).prop_map(MapOp::ProgLookup),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The index against a std map of key -> slot: every slot handed out is free, every key is
    /// found in the slot it was linked into (by the lock-free and the locked look-up alike) until
    /// removed, and removed slots are reused.
    #[test]
    fn index_matches_a_model(
        key_size in prop::sample::select(vec![1u32, 3, 4, 8, 13, 16, 40]),
        cap in 1u32..24,
        hashing in prop::sample::select(vec![Hashing::Real, Hashing::OneBucket, Hashing::ThreeBuckets]),
        ops in proptest::collection::vec(index_op(40), 1..200),
    ) {
        let (index, mut slots) = KeyIndex::new(key_size, cap, KeyHasher::with_seed(7)).unwrap();
        let mut model: HashMap<u16, u32> = HashMap::new();
        for op in ops {
            match op {
                IndexOp::Insert(id) => {
                    let k = key(id, key_size);
                    let h = hashing.hash(&index, id, &k);
                    if model.contains_key(&id) {
                        continue;
                    }
                    match index.alloc(&mut slots) {
                        Some(slot) => {
                            prop_assert!(slot < cap);
                            prop_assert!(!model.values().any(|&s| s == slot), "slot {} in use", slot);
                            index.link(&mut slots, slot, &k, h);
                            model.insert(id, slot);
                        }
                        None => prop_assert_eq!(model.len() as u32, cap),
                    }
                }
                IndexOp::Remove(id) => {
                    let k = key(id, key_size);
                    let h = hashing.hash(&index, id, &k);
                    prop_assert_eq!(index.remove(&mut slots, &k, h), model.remove(&id));
                }
                IndexOp::Find(id) => {
                    let k = key(id, key_size);
                    let h = hashing.hash(&index, id, &k);
                    let want = model.get(&id).copied();
                    prop_assert_eq!(index.find(&k, h), want);
                    prop_assert_eq!(index.find_locked(&slots, &k, h), want);
                }
            }
            prop_assert_eq!(slots.len() as usize, model.len());
        }
        for (&id, &slot) in &model {
            let k = key(id, key_size);
            prop_assert_eq!(index.find(&k, hashing.hash(&index, id, &k)), Some(slot));
        }
        let mut keys: Vec<Vec<u8>> = model.keys().map(|&id| key(id, key_size)).collect();
        keys.sort();
        prop_assert_eq!(index.keys(&slots), keys);
    }

    /// Hash maps of several key sizes against a std map: update flags, `E2BIG` when full,
    /// delete and reinsert, host and program look-ups (reading the value through the address a
    /// program gets), and the sorted key list.
    #[test]
    fn hash_map_matches_a_model(
        key_size in prop::sample::select(vec![1u32, 4, 8, 13, 16]),
        cap in 1u32..20,
        ops in proptest::collection::vec(map_op(32), 1..250),
    ) {
        let h = HashMapImpl::new(&spec(key_size, 8, cap), false).unwrap();
        let value = |v: u8| [v, 1, 2, 3, 4, 5, 6, v];
        let mut model: HashMap<u16, u8> = HashMap::new();
        for op in ops {
            match op {
                MapOp::Update(id, v, flags) => {
                    let got = h.update(&key(id, key_size), &value(v), flags);
                    let want = if flags > BPF_EXIST {
                        prop_assert!(matches!(got, Err(MapError::Invalid(_))));
                        continue;
                    } else if model.contains_key(&id) {
                        if flags == BPF_NOEXIST { Err(MapError::Exists) } else { Ok(()) }
                    } else if flags == BPF_EXIST {
                        Err(MapError::NotFound)
                    } else if model.len() as u32 == cap {
                        Err(MapError::Full)
                    } else {
                        Ok(())
                    };
                    prop_assert_eq!(&got, &want);
                    if want.is_ok() {
                        model.insert(id, v);
                    }
                }
                MapOp::Delete(id) => {
                    let want = model.remove(&id).map(|_| ()).ok_or(MapError::NotFound);
                    prop_assert_eq!(h.delete(&key(id, key_size)), want);
                }
                MapOp::Lookup(id) => {
                    let want = model.get(&id).map(|&v| value(v).to_vec());
                    prop_assert_eq!(h.lookup(&key(id, key_size)).unwrap(), want);
                }
                MapOp::ProgLookup(id) => {
                    let got = h.lookup_addr(&key(id, key_size)).unwrap();
                    let got = got.map(|a| h.values.read(a - h.base(), 8).unwrap());
                    prop_assert_eq!(got, model.get(&id).map(|&v| value(v).to_vec()));
                }
            }
        }
        prop_assert_eq!(h.len(), model.len());
        let mut keys: Vec<Vec<u8>> = model.keys().map(|&id| key(id, key_size)).collect();
        keys.sort();
        prop_assert_eq!(h.keys(), keys);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// LRU hash maps of several key sizes against an exact least-recently-used model: eviction
    /// finds the victim's bucket again from the key stored in its slot, so odd key sizes matter.
    #[test]
    fn lru_map_matches_a_model(
        key_size in prop::sample::select(vec![1u32, 3, 8, 13, 40]),
        cap in 1u32..10,
        ops in proptest::collection::vec(map_op(24), 1..200),
    ) {
        let h = HashMapImpl::new(&spec(key_size, 8, cap), true).unwrap();
        let value = |v: u8| [v; 8];
        // (id, value), least recently used first.
        let mut model: Vec<(u16, u8)> = Vec::new();
        let pos = |m: &Vec<(u16, u8)>, id: u16| m.iter().position(|e| e.0 == id);
        for op in ops {
            match op {
                MapOp::Update(id, v, flags) => {
                    let got = h.update(&key(id, key_size), &value(v), flags);
                    match (flags, pos(&model, id)) {
                        (f, _) if f > BPF_EXIST => {
                            prop_assert!(matches!(got, Err(MapError::Invalid(_))));
                        }
                        (BPF_NOEXIST, Some(_)) => prop_assert_eq!(got, Err(MapError::Exists)),
                        (BPF_EXIST, None) => prop_assert_eq!(got, Err(MapError::NotFound)),
                        (_, found) => {
                            prop_assert_eq!(got, Ok(()));
                            match found {
                                Some(i) => {
                                    model.remove(i);
                                }
                                None if model.len() as u32 == cap => {
                                    model.remove(0);
                                }
                                None => {}
                            }
                            model.push((id, v));
                        }
                    }
                }
                MapOp::Delete(id) => {
                    let want = pos(&model, id).map(|i| { model.remove(i); }).ok_or(MapError::NotFound);
                    prop_assert_eq!(h.delete(&key(id, key_size)), want);
                }
                MapOp::Lookup(id) => {
                    let want = pos(&model, id).map(|i| value(model[i].1).to_vec());
                    prop_assert_eq!(h.lookup(&key(id, key_size)).unwrap(), want);
                }
                MapOp::ProgLookup(id) => {
                    let got = h.lookup_addr(&key(id, key_size)).unwrap();
                    let got = got.map(|a| h.values.read(a - h.base(), 8).unwrap());
                    let i = pos(&model, id);
                    prop_assert_eq!(got, i.map(|i| value(model[i].1).to_vec()));
                    if let Some(i) = i {
                        let e = model.remove(i);
                        model.push(e);
                    }
                }
            }
        }
        let mut keys: Vec<Vec<u8>> = model.iter().map(|&(id, _)| key(id, key_size)).collect();
        keys.sort();
        prop_assert_eq!(h.keys(), keys);
        prop_assert_eq!(h.len(), model.len());
    }
}

#[test]
fn the_real_hash_keeps_chains_short() {
    let (index, mut slots) = KeyIndex::new(4, 4096, KeyHasher::random()).unwrap();
    for i in 0u32..4096 {
        let k = i.to_le_bytes();
        let slot = index.alloc(&mut slots).unwrap();
        index.link(&mut slots, slot, &k, index.hash(&k));
    }
    let longest = index.longest_chain(&slots);
    assert!(
        longest <= 12,
        "longest chain {longest} in a full 4096-entry map"
    );
}

/// Deterministic xorshift64 for the writer's choices.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Lock-free readers against a writer: readers look up stable keys, which must always be found
/// with their own value, and keys never inserted, which must never be found, while a writer
/// inserts and deletes other keys (from `churn` distinct ones) in a map of `cap` entries, so
/// that slots keep moving between buckets, the stable keys' among them (the map has only twice
/// as many buckets as entries, so chains are shared). Reader 0 looks one stable key up again and again (for LRU maps:
/// the lock-free most-recently-used hit), the others cycle through all of them.
fn readers_against_churn(lru: bool, cap: u32, churn: u64) {
    const STABLE: u64 = 16;
    const WRITER_OPS: u32 = 1_000_000;
    const READERS: usize = 2;
    let h = Arc::new(HashMapImpl::new(&spec(8, 8, cap), lru).unwrap());
    let stable_value = |k: u64| (k * 1000 + 7).to_le_bytes();
    for k in 0..STABLE {
        h.update(&k.to_le_bytes(), &stable_value(k), BPF_NOEXIST)
            .unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (h, done, lookups) = (Arc::clone(&h), Arc::clone(&done), Arc::clone(&lookups));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) {
                    for i in 0..STABLE {
                        let k = if r == 0 { 3 } else { i };
                        let addr = h.lookup_addr(&k.to_le_bytes()).unwrap();
                        let addr =
                            addr.unwrap_or_else(|| panic!("reader {r}: stable key {k} lost"));
                        let v = h.values.read(addr - h.base(), 8).unwrap();
                        assert_eq!(v, stable_value(k), "reader {r}: key {k}");
                        let absent = (1_000_000 + k).to_le_bytes();
                        assert_eq!(h.lookup_addr(&absent).unwrap(), None);
                        n += 2;
                    }
                }
                lookups.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let (mut inserted, mut deleted) = (0u32, 0u32);
    for _ in 0..WRITER_OPS {
        let r = next_rand(&mut rng);
        let k = (100 + r % churn).to_le_bytes();
        match h.update(&k, &r.to_le_bytes(), BPF_NOEXIST) {
            Ok(()) => inserted += 1,
            Err(MapError::Exists) => {
                h.delete(&k).unwrap();
                deleted += 1;
            }
            Err(MapError::Full) if !lru => {}
            Err(e) => panic!("writer: {e}"),
        }
    }
    done.store(true, Ordering::Relaxed);
    for t in readers {
        t.join().unwrap();
    }
    assert!(
        inserted > 10_000 && deleted > 10_000,
        "{inserted} / {deleted}"
    );
    assert!(lookups.load(Ordering::Relaxed) > 0);
    for k in 0..STABLE {
        assert_eq!(
            h.lookup(&k.to_le_bytes()).unwrap(),
            Some(stable_value(k).to_vec())
        );
    }
}

#[test]
fn lock_free_readers_see_stable_keys_through_writer_churn() {
    // 300 churn keys for 48 free slots: the map is often full.
    readers_against_churn(false, 64, 300);
}

#[test]
fn lru_readers_see_stable_keys_through_writer_churn() {
    // Room for every key, so that nothing is evicted and the stable keys stay.
    readers_against_churn(true, 16 + 112, 112);
}
