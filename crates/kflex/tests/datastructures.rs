//! The list, hash map and LRU cache against their reference models: randomized operation
//! sequences (seeded, reproducible) in batches of several sizes, every result and every looked-up
//! value compared, on kflex's interpreter, its JIT (default SFI mode, and-mask and writes-only),
//! the native gcc build and the Linux kernel (`LinuxDriver`; SKIPPED where BPF is unavailable).
//!
//! The loop is generic over `Driver`: one more engine is one more line in `engines!`.

#[path = "common/ds.rs"]
mod ds;

use ds::{Rng, engines, kflex, native, value};
use kflex::Engine;
use kflex::engine::SfiMode;
use kflex_datastructures::model::{self, Model};
use kflex_datastructures::protocol::{BATCH_MAX, Key, LRU_CAPACITY, Op};
use kflex_datastructures::{Driver, OpKind, Structure};

/// Key number `i`: spread over all four words, and odd/even neighbours differ only in the last
/// byte, so a comparison that skips a word is caught.
fn key(i: u64) -> Key {
    let base = i / 2;
    let mut k = [0u8; 32];
    k[0..8].copy_from_slice(&base.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    k[8..16].copy_from_slice(&(base ^ 0x5555).to_le_bytes());
    k[16..24].copy_from_slice(&base.rotate_left(17).to_le_bytes());
    k[24..32].copy_from_slice(&(base << 1 | (i & 1)).to_be_bytes());
    k
}

/// Runs one batch of `kind` over `ops` on the driver and checks it against the model.
fn run_batch(d: &mut dyn Driver, m: &mut dyn Model, kind: OpKind, ops: &[Op]) {
    let returned = ds::run(d, kind, ops);
    if let Err(e) = model::check_batch(m, kind, ops, &returned) {
        panic!("{}: {e}", d.engine());
    }
}

/// A batch of `n` ops over keys `0..universe`.
fn batch(rng: &mut Rng, n: usize, universe: u64) -> Vec<Op> {
    ds::batch(rng, n, universe, key)
}

/// `ds_key_hash` of `ds/common.h` (keep in step): which bucket of `2^17` a key lands in.
fn c_bucket(k: &Key, seed: u64) -> u64 {
    const MUL: [u64; 4] = [
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0xd6e8_feb8_6659_fd93,
    ];
    let mut h = seed;
    for (i, m) in MUL.iter().enumerate() {
        let w = u64::from_le_bytes(k[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        h = h.wrapping_add(w.wrapping_mul(*m));
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 29;
    h & ((1 << 17) - 1)
}

/// Keys that share a bucket with `key(i)` (hash seed `seed`) and differ from it in one word
/// only, one per word: a chain walk that compares only some words of a key confuses them.
fn colliding(i: u64, seed: u64) -> Vec<Key> {
    let k = key(i);
    let bucket = c_bucket(&k, seed);
    (0..4)
        .map(|word| {
            (1u64..)
                .map(|t| {
                    let mut c = k;
                    let w = u64::from_le_bytes(c[word * 8..word * 8 + 8].try_into().unwrap());
                    c[word * 8..word * 8 + 8].copy_from_slice(&w.wrapping_add(t).to_le_bytes());
                    c
                })
                .find(|c| c_bucket(c, seed) == bucket)
                .expect("a colliding key exists")
        })
        .collect()
}

/// Mixed batches over a small set of keys that collide in pairs (each `key(i)` with keys that
/// differ from it in one word and share its bucket).
fn collisions(d: &mut dyn Driver, structure: Structure, seed: u64) {
    let mut m = model::for_structure(structure).expect("a key-value structure");
    let hash_seed = match structure {
        Structure::Lru => 0x6c_7275,
        _ => 0x6b_666c_6578,
    };
    let keys: Vec<Key> = (0..8)
        .flat_map(|i| std::iter::once(key(i)).chain(colliding(i, hash_seed)))
        .collect();
    let mut rng = Rng(seed);
    for round in 0..200 {
        let kind = if round < 4 {
            OpKind::Update
        } else {
            OpKind::ALL[rng.below(3) as usize]
        };
        let ops: Vec<Op> = (0..1 + rng.below(24))
            .map(|_| Op::new(keys[rng.below(keys.len() as u64) as usize], value(&mut rng)))
            .collect();
        run_batch(d, m.as_mut(), kind, &ops);
    }
}

/// Mixed random batches: every kind, batch sizes from 1 to BATCH_MAX, keys drawn from a universe
/// small enough that updates replace and deletes hit, large enough that lookups and deletes miss.
fn randomized(d: &mut dyn Driver, structure: Structure, seed: u64, total: usize, universe: u64) {
    let mut m = model::for_structure(structure).expect("a key-value structure");
    let sizes = [1, 7, 64, 333, BATCH_MAX];
    for (kind, ops) in ds::random_batches(seed, &sizes, total, universe, key) {
        run_batch(d, m.as_mut(), kind, &ops);
    }
    // Finally look every key up, then delete every key: the structure must end empty.
    for (kind, ops) in ds::drain_batches(universe, key) {
        run_batch(d, m.as_mut(), kind, &ops);
    }
    assert!(m.is_empty());
}

/// The LRU filled past its capacity, with lookups refreshing some old keys on the way: evictions
/// must follow recency exactly.
fn lru_past_capacity(d: &mut dyn Driver) {
    let mut m = model::for_structure(Structure::Lru).expect("LRU model");
    let mut rng = Rng(0x1badb002);
    let total = LRU_CAPACITY as u64 + 3 * BATCH_MAX as u64 + 17;
    let mut next = 0u64;
    while next < total {
        let n = (BATCH_MAX as u64).min(total - next);
        let ops: Vec<Op> = (next..next + n)
            .map(|i| Op::new(key(i), value(&mut rng)))
            .collect();
        run_batch(d, m.as_mut(), OpKind::Update, &ops);
        next += n;
        // Refresh a few early keys (found until they are evicted) and replace one.
        let old = batch(&mut rng, 16, 4096);
        run_batch(d, m.as_mut(), OpKind::Lookup, &old);
        let again = batch(&mut rng, 4, next);
        run_batch(d, m.as_mut(), OpKind::Update, &again);
    }
    assert_eq!(m.len(), LRU_CAPACITY);
    let all: Vec<Op> = (0..total).map(|i| Op::new(key(i), [0; 64])).collect();
    for chunk in all.chunks(BATCH_MAX) {
        run_batch(d, m.as_mut(), OpKind::Lookup, chunk);
    }
}

engines!(list, Structure::List, |d| randomized(
    d,
    Structure::List,
    1,
    4000,
    600
));
engines!(hash, Structure::Hash, |d| randomized(
    d,
    Structure::Hash,
    2,
    12000,
    5000
));
engines!(lru, Structure::Lru, |d| randomized(
    d,
    Structure::Lru,
    3,
    8000,
    3000
));
engines!(lru_full, Structure::Lru, |d| lru_past_capacity(d));
engines!(hash_collisions, Structure::Hash, |d| collisions(
    d,
    Structure::Hash,
    4
));
engines!(lru_collisions, Structure::Lru, |d| collisions(
    d,
    Structure::Lru,
    5
));

#[test]
fn drivers_name_their_engine() {
    assert_eq!(
        kflex(Structure::List, Engine::Jit, SfiMode::default()).engine(),
        "kflex-jit"
    );
    assert_eq!(
        kflex(Structure::List, Engine::Jit, SfiMode::AndMask).engine(),
        "kflex-jit-and-mask"
    );
    assert_eq!(
        kflex(Structure::List, Engine::Jit, SfiMode::WritesOnly).engine(),
        "kflex-jit-perf"
    );
    assert_eq!(
        kflex(Structure::List, Engine::Interp, SfiMode::AndMask).engine(),
        "kflex-interp"
    );
    assert_eq!(native(Structure::List).engine(), "native");
}

#[test]
fn oversized_batches_are_refused() {
    let mut d = kflex(Structure::Hash, Engine::Jit, SfiMode::AndMask);
    assert!(d.run(OpKind::Lookup, BATCH_MAX + 1).is_err());
    let mut n = native(Structure::Hash);
    assert!(n.run(OpKind::Lookup, BATCH_MAX + 1).is_err());
}

/// The goal: at least 80% of the static SFI guard sites of every batch program are
/// elided by the verifier.
#[test]
fn most_guard_sites_are_elided() {
    for s in [Structure::List, Structure::Hash, Structure::Lru] {
        let stats = kflex(s, Engine::Jit, SfiMode::default()).guard_stats();
        let names: Vec<&str> = stats.iter().map(|g| g.program.as_str()).collect();
        assert_eq!(names, ["init", "update", "lookup", "delete"], "{s}");
        // The verifier's decisions do not depend on the engine.
        assert_eq!(
            kflex(s, Engine::Interp, SfiMode::AndMask).guard_stats(),
            stats
        );
        for g in &stats {
            println!(
                "{s} {}: {} guarded / {} elided ({:.1}% elided)",
                g.program,
                g.emitted,
                g.elided,
                100.0 * g.elided_ratio()
            );
            if g.program != "init" {
                assert!(
                    g.emitted > 0,
                    "{s} {}: pointers loaded from the heap need guards",
                    g.program
                );
                assert!(g.elided_ratio() >= 0.8, "{s}: {g:?}");
            }
        }
    }
}

/// A batch cancelled in the middle of a walk (lock held, JIT watchdog) leaves the structure
/// usable: the driver releases the heap lock, and later batches match the model.
#[test]
fn a_cancelled_batch_releases_the_lock() {
    let mut d = kflex(Structure::List, Engine::Jit, SfiMode::default());
    let mut m = model::for_structure(Structure::List).expect("list model");
    let mut rng = Rng(77);
    for chunk in 0..20u64 {
        let ops: Vec<Op> = (chunk * 1024..(chunk + 1) * 1024)
            .map(|i| Op::new(key(i), value(&mut rng)))
            .collect();
        run_batch(&mut d, m.as_mut(), OpKind::Update, &ops);
    }
    // 1024 lookups of absent keys walk all 20480 nodes each: far longer than 1 ms.
    d.set_budget(Some(std::time::Duration::from_millis(1)))
        .expect("budget");
    let absent: Vec<Op> = (0..BATCH_MAX as u64)
        .map(|i| Op::new(key(1_000_000 + i), [0; 64]))
        .collect();
    d.mailbox()[..absent.len()].copy_from_slice(&absent);
    let err = d
        .run(OpKind::Lookup, absent.len())
        .expect_err("cancelled by the watchdog");
    assert!(err.to_string().contains("released 1 heap lock"), "{err}");
    // The lock is free again: a batch with the default budget runs and matches the model.
    d.set_budget(Some(kflex::datastructures::BATCH_BUDGET))
        .expect("budget");
    let ops = batch(&mut rng, 64, 30_000);
    run_batch(&mut d, m.as_mut(), OpKind::Delete, &ops);
    let ops = batch(&mut rng, 64, 30_000);
    run_batch(&mut d, m.as_mut(), OpKind::Update, &ops);
}
