//! The red-black tree, skip list, count sketch and count-min sketch against their reference
//! models: randomized operation sequences (seeded, reproducible) in batches of several sizes, every
//! result and every looked-up value compared, on kflex's interpreter, its JIT (default SFI,
//! and-mask and writes-only), the native gcc build and the Linux kernel (`LinuxDriver`; SKIPPED
//! where BPF is unavailable). After the random sequences the host walks the red-black tree and the
//! skip list through the heap and checks their invariants (colours, black height, order, parent
//! links; skip-list levels) and that they hold exactly the model's keys. A red-black tree whose
//! batches are cancelled part-way stays a valid search tree and keeps working.
//!
//! Everything is generic over `Driver`: one more engine is one more line in `engines!`.

#[path = "common/ds.rs"]
mod ds;

use ds::{Rng, engines, kflex, run, value};
use kflex::Engine;
use kflex::datastructures::KflexDriver;
use kflex::engine::SfiMode;
use kflex_datastructures::model::Model;
use kflex_datastructures::model_sketch::{SketchKind, SketchModel};
use kflex_datastructures::model_trees::{
    Memory as _, ProcessMemory, TreeModel, check_rbtree, check_skiplist, rb_layout, sl_layout,
};
use kflex_datastructures::protocol::{BATCH_MAX, FOUND, Key, Op};
use kflex_datastructures::{Driver, OpKind, Structure};

/// Key number `i`. Keys spread over all four words, and groups of keys share a prefix of one,
/// two or three words, so the ordered structures must compare every word (and compare bytes in
/// big-endian order: neighbours differ in the low byte of a word whose high bytes also vary).
fn key(i: u64) -> Key {
    let mut k = [0u8; 32];
    let group = i / 8;
    k[0..8].copy_from_slice(
        &(group / 4)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_le_bytes(),
    );
    k[8..16].copy_from_slice(&(group % 4).to_le_bytes());
    k[16..24].copy_from_slice(&(group.rotate_left(29) ^ (i % 8 / 4)).to_le_bytes());
    k[24..32].copy_from_slice(&((i % 4) << 56 | (i % 3)).to_le_bytes());
    k
}

/// Runs a batch on an ordered structure and compares every op with the model.
fn map_batch(d: &mut dyn Driver, m: &mut TreeModel, kind: OpKind, ops: &[Op]) {
    let returned = run(d, kind, ops);
    for (i, (sent, got)) in ops.iter().zip(&returned).enumerate() {
        let want = m.apply(kind, sent);
        assert_eq!(
            got.result,
            want.result,
            "{}: {kind:?} op {i} key {:02x?}",
            d.engine(),
            &sent.key[..8]
        );
        if kind == OpKind::Lookup && want.result == FOUND {
            assert_eq!(got.value, want.value, "{}: lookup op {i} value", d.engine());
        }
    }
}

/// Where the mailbox is, as an address (the structures' globals are found from it).
fn mailbox_addr(d: &mut dyn Driver) -> u64 {
    d.mailbox().as_ptr() as u64
}

/// The ordered structure's shape, walked through the heap: its keys in order.
fn walk(d: &mut dyn Driver, structure: Structure, m: &TreeModel) -> Vec<Key> {
    let mailbox = mailbox_addr(d);
    let mem = ProcessMemory;
    let at = |off: i64| mailbox.wrapping_add_signed(off);
    match structure {
        Structure::Rbtree => {
            let root = mem.read_u64(at(rb_layout::ROOT_FROM_MAILBOX)).unwrap();
            let shape = check_rbtree(&mem, root, m.len() + 1)
                .unwrap_or_else(|e| panic!("{}: red-black tree broken: {e}", d.engine()));
            // A red-black tree of n nodes is at most 2 log2(n + 1) high.
            let bound = 2.0 * ((m.len() + 1) as f64).log2();
            assert!(
                shape.height as f64 <= bound,
                "{}: height {} for {} keys",
                d.engine(),
                shape.height,
                m.len()
            );
            shape.keys
        }
        Structure::Skiplist => {
            let levels = mem.read_u64(at(sl_layout::LEVELS_FROM_MAILBOX)).unwrap();
            let head = at(sl_layout::HEAD_NEXT_FROM_MAILBOX);
            check_skiplist(&mem, head, levels, m.len() + 1)
                .unwrap_or_else(|e| panic!("{}: skip list broken: {e}", d.engine()))
        }
        _ => unreachable!("not an ordered structure"),
    }
}

/// Checks the walked structure holds exactly the model's keys, in byte order.
fn check_shape(d: &mut dyn Driver, structure: Structure, m: &TreeModel) {
    let keys = walk(d, structure, m);
    let want: Vec<Key> = m.keys().copied().collect();
    assert_eq!(
        keys.len(),
        want.len(),
        "{}: keys in the structure",
        d.engine()
    );
    assert!(keys == want, "{}: the structure's keys differ", d.engine());
}

/// Random batches of every kind (sizes 1 to BATCH_MAX) over keys `0..universe`, with the shape
/// checked every few batches; then every key looked up and deleted, leaving the structure empty.
fn randomized_map(
    d: &mut dyn Driver,
    structure: Structure,
    seed: u64,
    total: usize,
    universe: u64,
) {
    let mut m = TreeModel::default();
    let sizes = [1, 5, 64, 300, BATCH_MAX];
    // The first batch fills; the shape is checked after it and after every fourth batch after it.
    // Deletes and updates weigh the same, so the structure keeps growing and shrinking.
    for (i, (kind, ops)) in ds::random_batches(seed, &sizes, total, universe, key).enumerate() {
        map_batch(d, &mut m, kind, &ops);
        if i % 4 == 0 {
            check_shape(d, structure, &m);
        }
    }
    check_shape(d, structure, &m);
    for (kind, ops) in ds::drain_batches(universe, key) {
        map_batch(d, &mut m, kind, &ops);
    }
    assert!(m.is_empty());
    check_shape(d, structure, &m);
}

/// Inserts keys in ascending, then descending order (the rebalancing worst cases for a tree, the
/// append case for a list), deleting every other one, checking the shape as it goes.
fn sorted_runs(d: &mut dyn Driver, structure: Structure) {
    let mut m = TreeModel::default();
    let mut rng = Rng(99);
    let mut keys: Vec<Key> = (0..3000).map(key).collect();
    keys.sort();
    for (round, order) in [false, true].into_iter().enumerate() {
        let mut ks = keys.clone();
        if order {
            ks.reverse();
        }
        for chunk in ks.chunks(BATCH_MAX) {
            let ops: Vec<Op> = chunk.iter().map(|k| Op::new(*k, value(&mut rng))).collect();
            map_batch(d, &mut m, OpKind::Update, &ops);
        }
        check_shape(d, structure, &m);
        let every_other: Vec<Op> = ks
            .iter()
            .skip(round)
            .step_by(2)
            .map(|k| Op::new(*k, [0; 64]))
            .collect();
        for chunk in every_other.chunks(BATCH_MAX) {
            map_batch(d, &mut m, OpKind::Delete, chunk);
        }
        check_shape(d, structure, &m);
    }
    assert!(!m.is_empty());
}

/// Runs a sketch batch: every result must be 1; lookups are checked against the model.
fn sketch_batch(d: &mut dyn Driver, m: &mut SketchModel, kind: OpKind, ops: &[Op]) {
    let returned = run(d, kind, ops);
    for (i, (sent, got)) in ops.iter().zip(&returned).enumerate() {
        assert_eq!(got.result, 1, "{}: {kind:?} op {i}", d.engine());
        match kind {
            OpKind::Update => m.update(&sent.key),
            OpKind::Delete => m.delete(&sent.key),
            OpKind::Lookup => {
                let mut w = [0u8; 8];
                w.copy_from_slice(&got.value[..8]);
                let estimate = i64::from_le_bytes(w);
                if let Err(e) = m.check_estimate(&sent.key, estimate) {
                    panic!("{}: lookup op {i}: {e}", d.engine());
                }
            }
        }
    }
}

/// Random sketch traffic (keys drawn with a skew, so some are counted many times), deletes only
/// of keys currently counted (true counts stay non-negative), lookups of counted and uncounted
/// keys; then a load of `distinct` keys whose estimates must mostly lie within the documented
/// bound.
fn randomized_sketch(d: &mut dyn Driver, kind: SketchKind, seed: u64, distinct: u64) {
    let mut m = SketchModel::new(kind);
    let mut rng = Rng(seed);
    let sizes = [1, 9, 128, BATCH_MAX];
    for round in 0..24 {
        let n = sizes[rng.below(sizes.len() as u64) as usize];
        let op_kind = OpKind::ALL[round % 3];
        let ops: Vec<Op> = (0..n)
            .filter_map(|_| {
                // Skewed: half the draws from 64 hot keys.
                let i = if rng.below(2) == 0 {
                    rng.below(64)
                } else {
                    rng.below(50_000)
                };
                let k = key(i);
                (op_kind != OpKind::Delete || m.true_count(&k) > 0).then(|| Op::new(k, [0; 64]))
            })
            .collect();
        if !ops.is_empty() {
            sketch_batch(d, &mut m, op_kind, &ops);
        }
    }
    // Deletes of a batch with repeated keys: counts reach exactly 0 again.
    let hot: Vec<Op> = (0..64).map(|i| Op::new(key(i), [0; 64])).collect();
    sketch_batch(d, &mut m, OpKind::Lookup, &hot);

    // The workload of the error bound: `distinct` keys counted once each.
    let base = 1 << 40;
    let load: Vec<Op> = (base..base + distinct)
        .map(|i| Op::new(key(i), [0; 64]))
        .collect();
    for chunk in load.chunks(BATCH_MAX) {
        sketch_batch(d, &mut m, OpKind::Update, chunk);
    }
    let bound = m.error_bound();
    let mut within = 0usize;
    let mut exact = 0usize;
    for chunk in load.chunks(BATCH_MAX) {
        let returned = run(d, OpKind::Lookup, chunk);
        for (sent, got) in chunk.iter().zip(&returned) {
            let mut w = [0u8; 8];
            w.copy_from_slice(&got.value[..8]);
            let estimate = i64::from_le_bytes(w);
            m.check_estimate(&sent.key, estimate)
                .unwrap_or_else(|e| panic!("{}: {e}", d.engine()));
            let error = (estimate - m.true_count(&sent.key)).abs() as f64;
            within += usize::from(error <= bound);
            exact += usize::from(error == 0.0);
        }
    }
    let share = within as f64 / distinct as f64;
    // Documented: count-min within e/w*N with probability 1 - e^-4 (98.2%), count sketch within
    // 2*sqrt(F2/w) with probability about 90% per key.
    let floor = match kind {
        SketchKind::CountMin => 0.98,
        SketchKind::CountSketch => 0.90,
    };
    assert!(
        share >= floor,
        "{}: {within} of {distinct} estimates within {bound:.2} ({exact} exact)",
        d.engine()
    );
}

engines!(rbtree, Structure::Rbtree, |d| randomized_map(
    d,
    Structure::Rbtree,
    11,
    12_000,
    4000
));
engines!(rbtree_sorted, Structure::Rbtree, |d| sorted_runs(
    d,
    Structure::Rbtree
));
engines!(skiplist, Structure::Skiplist, |d| randomized_map(
    d,
    Structure::Skiplist,
    12,
    12_000,
    4000
));
engines!(skiplist_sorted, Structure::Skiplist, |d| sorted_runs(
    d,
    Structure::Skiplist
));
engines!(countmin, Structure::Countmin, |d| randomized_sketch(
    d,
    SketchKind::CountMin,
    13,
    20_000
));
engines!(countsketch, Structure::Countsketch, |d| randomized_sketch(
    d,
    SketchKind::CountSketch,
    14,
    20_000
));

/// The key generator does what the tests rely on: distinct keys for distinct numbers, sharing
/// one, two or three leading words in groups.
#[test]
fn keys_are_distinct_and_share_prefixes() {
    let keys: std::collections::BTreeSet<Key> = (0..10_000).map(key).collect();
    assert_eq!(keys.len(), 10_000);
    let (k0, k1, k4, k8) = (key(0), key(1), key(4), key(8));
    assert_eq!(k0[..24], k1[..24]);
    assert_ne!(k0[24..], k1[24..]);
    assert_eq!(k0[..16], k4[..16]);
    assert_ne!(k0[16..24], k4[16..24]);
    assert_eq!(k0[..8], k8[..8]);
    assert_ne!(k0[8..16], k8[8..16]);
}

/// Static SFI guard sites: the structures are written so that the verifier elides most guards
/// (each node pointer loaded from the heap is guarded once, its fields are then reached through
/// it; globals and the mailbox are reached from the heap start). Prints the figure per program.
#[test]
fn most_guard_sites_are_elided() {
    let mut low = Vec::new();
    let (mut all_emitted, mut all_elided) = (0, 0);
    for structure in [
        Structure::Rbtree,
        Structure::Skiplist,
        Structure::Countsketch,
        Structure::Countmin,
    ] {
        let d = kflex(structure, Engine::Jit, SfiMode::AndMask);
        let stats = d.guard_stats();
        let (mut emitted, mut elided) = (0, 0);
        for s in &stats {
            println!(
                "{structure}/{}: {} emitted, {} elided ({:.1}% elided)",
                s.program,
                s.emitted,
                s.elided,
                100.0 * s.elided_ratio()
            );
            emitted += s.emitted;
            elided += s.elided;
        }
        assert!(
            stats.iter().any(|s| s.program == "update" && s.elided > 0),
            "{structure}: no guard statistics"
        );
        let ratio = elided as f64 / (emitted + elided) as f64;
        println!("{structure}: {:.1}% elided", 100.0 * ratio);
        // Every structure, the red-black tree included (its rotations and fixups dereference
        // many distinct freshly loaded nodes, each needing its guard), stays at 80% or more.
        if ratio < 0.8 {
            low.push(format!("{structure}: {:.1}%", 100.0 * ratio));
        }
        all_emitted += emitted;
        all_elided += elided;
    }
    assert!(low.is_empty(), "under 80% of guard sites elided: {low:?}");
    let ratio = all_elided as f64 / (all_emitted + all_elided) as f64;
    println!("all four: {:.1}% elided", 100.0 * ratio);
    assert!(
        ratio >= 0.8,
        "only {:.1}% of all guard sites elided",
        100.0 * ratio
    );
}

/// Batches cut short by a time budget far shorter than a batch: the JIT cancels the run at
/// whatever loop back-edge it reaches (in a descent, between linking and rebalancing or linking
/// the upper levels, in the middle of a rebalance), or a `may_goto` leaves its loop (an op
/// answers -EBUSY having changed nothing, or the batch ends early). After every batch the
/// structure walked through the heap is a valid search structure (a red-black tree may be left
/// with a colour violation, a skip-list node linked on fewer levels than it has, nothing worse),
/// every completed op's result agrees with the keys held, and the lock and allocator keep
/// working: once the budget is lifted, batches run to completion and the structure empties.
fn survives_cut_short_batches(structure: Structure) {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use kflex_datastructures::model_trees::check_bst;
    use kflex_datastructures::protocol::{ABSENT, EBUSY, INSERTED, REMOVED, REPLACED};

    let mut d = kflex(structure, Engine::Jit, SfiMode::AndMask);
    let mut rng = Rng(77);
    let mut held: BTreeSet<Key> = BTreeSet::new();
    let walk = |d: &mut KflexDriver, what: &str| -> BTreeSet<Key> {
        let mailbox = mailbox_addr(d);
        let at = |off: i64| mailbox.wrapping_add_signed(off);
        let keys = match structure {
            Structure::Rbtree => {
                let root = ProcessMemory
                    .read_u64(at(rb_layout::ROOT_FROM_MAILBOX))
                    .unwrap();
                check_bst(&ProcessMemory, root, 1 << 20)
                    .map(|shape| shape.keys)
                    .map_err(|e| e.to_string())
            }
            _ => {
                let levels = ProcessMemory
                    .read_u64(at(sl_layout::LEVELS_FROM_MAILBOX))
                    .unwrap();
                let head = at(sl_layout::HEAD_NEXT_FROM_MAILBOX);
                check_skiplist(&ProcessMemory, head, levels, 1 << 20)
            }
        };
        keys.unwrap_or_else(|e| panic!("{structure} {what}: broken: {e}"))
            .into_iter()
            .collect()
    };
    let (mut cancelled, mut completed_ops) = (0, 0);
    for round in 0..40 {
        d.set_budget(Some(Duration::from_micros(20 + 10 * (round % 5))))
            .unwrap();
        let kind = [
            OpKind::Update,
            OpKind::Update,
            OpKind::Delete,
            OpKind::Lookup,
        ][round as usize % 4];
        let ops: Vec<Op> = (0..BATCH_MAX)
            .map(|_| Op::new(key(rng.below(3000)), value(&mut rng)))
            .collect();
        let mailbox = d.mailbox();
        mailbox[..ops.len()].copy_from_slice(&ops);
        for op in &mut mailbox[..ops.len()] {
            op.result = i64::MIN;
        }
        let outcome = d.run(kind, ops.len());
        cancelled += usize::from(outcome.is_err());
        let returned = d.mailbox()[..ops.len()].to_vec();
        // Completed ops (in order) must agree with the keys held; the op in flight when the run
        // was cancelled (result still unwritten or -EBUSY) may or may not have taken effect.
        let mut in_flight = None;
        for (sent, got) in ops.iter().zip(&returned) {
            let present = held.contains(&sent.key);
            match (kind, got.result) {
                (OpKind::Update, INSERTED) if !present => {
                    held.insert(sent.key);
                }
                (OpKind::Update, REPLACED) if present => {}
                (OpKind::Delete, REMOVED) if present => {
                    held.remove(&sent.key);
                }
                (OpKind::Delete, ABSENT) if !present => {}
                (OpKind::Lookup, FOUND) if present => {}
                (OpKind::Lookup, ABSENT) if !present => {}
                // Cancelled: the op in flight may or may not have taken effect.
                (_, r) if (r == i64::MIN || r == EBUSY) && outcome.is_err() => {
                    in_flight = Some(sent.key);
                    break;
                }
                // The loop budget ran out first (may_goto left the batch loop): not reached.
                (_, i64::MIN) => break,
                // A descent cut short by the loop budget: nothing was changed.
                (_, EBUSY) => {}
                (_, r) => {
                    panic!("{structure} round {round}: {kind:?} returned {r} (present: {present})")
                }
            }
            completed_ops += 1;
        }
        let walked = walk(&mut d, &format!("round {round}"));
        if let Some(k) = in_flight {
            held.remove(&k);
        }
        let extra: Vec<&Key> = walked.difference(&held).collect();
        assert!(
            extra.len() <= usize::from(in_flight.is_some()),
            "{structure} round {round}: {} keys that no completed op put there",
            extra.len()
        );
        assert!(
            held.is_subset(&walked),
            "{structure} round {round}: keys lost"
        );
        held = walked;
    }
    assert!(
        cancelled > 0 && completed_ops > 0,
        "{cancelled} batches cancelled, {completed_ops} ops completed: the test needs both"
    );

    // No budget: the lock was released at every cancellation and the allocator still serves.
    d.set_budget(None).unwrap();
    let mut m = TreeModel::default();
    for k in &held {
        m.update(k, &[0; 64]);
    }
    let fresh: Vec<Op> = (5000..5000 + BATCH_MAX as u64)
        .map(|i| Op::new(key(i), value(&mut rng)))
        .collect();
    map_batch(&mut d, &mut m, OpKind::Update, &fresh);
    let all: Vec<Op> = m.keys().map(|k| Op::new(*k, [0; 64])).collect();
    for chunk in all.chunks(BATCH_MAX) {
        map_batch(&mut d, &mut m, OpKind::Delete, chunk);
    }
    assert!(m.is_empty());
    assert!(walk(&mut d, "after deleting every key").is_empty());
    println!("{structure}: {cancelled} of 40 batches cancelled, {completed_ops} ops completed");
}

#[test]
fn rbtree_survives_cut_short_batches() {
    survives_cut_short_batches(Structure::Rbtree);
}

#[test]
fn skiplist_survives_cut_short_batches() {
    survives_cut_short_batches(Structure::Skiplist);
}
