//! Shared support of the data-structure tests (`datastructures.rs`, `datastructures_trees.rs`):
//! the seeded generator, the engines' drivers, one test per engine (`engines!`), running a batch
//! through the mailbox, and the randomized batch stream both files drive their structures with.

// Each test binary includes this file and uses a part of it.
#![allow(dead_code)]

use kflex::Engine;
use kflex::datastructures::KflexDriver;
use kflex::datastructures::linux::LinuxDriver;
use kflex::engine::SfiMode;
use kflex_datastructures::native::NativeInstance;
use kflex_datastructures::protocol::{BATCH_MAX, Key, Op, Value};
use kflex_datastructures::{Driver, OpKind, Structure};

/// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random value.
pub fn value(rng: &mut Rng) -> Value {
    let mut v = [0u8; 64];
    for chunk in v.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    v
}

/// A batch of `n` ops over keys `key(0..universe)`, each with a random value.
pub fn batch(rng: &mut Rng, n: usize, universe: u64, key: fn(u64) -> Key) -> Vec<Op> {
    (0..n)
        .map(|_| Op::new(key(rng.below(universe)), value(rng)))
        .collect()
}

/// The stream of a randomized test: first a full batch of updates (so later batches find keys),
/// then batches of every kind with sizes drawn from `sizes`, over keys `key(0..universe)`, until
/// `total` ops have been sent.
pub fn random_batches(
    seed: u64,
    sizes: &[usize],
    total: usize,
    universe: u64,
    key: fn(u64) -> Key,
) -> impl Iterator<Item = (OpKind, Vec<Op>)> {
    let mut rng = Rng(seed);
    let fill = batch(&mut rng, BATCH_MAX, universe, key);
    let mut done = 0;
    let random = std::iter::from_fn(move || {
        (done < total).then(|| {
            let n = sizes[rng.below(sizes.len() as u64) as usize];
            let kind = OpKind::ALL[rng.below(3) as usize];
            let ops = batch(&mut rng, n, universe, key);
            done += n;
            (kind, ops)
        })
    });
    std::iter::once((OpKind::Update, fill)).chain(random)
}

/// Every key `key(0..universe)` looked up, then deleted, then looked up again, in batches of at
/// most `BATCH_MAX`: after these the structure must be empty.
pub fn drain_batches(universe: u64, key: fn(u64) -> Key) -> Vec<(OpKind, Vec<Op>)> {
    let all: Vec<Op> = (0..universe).map(|i| Op::new(key(i), [0; 64])).collect();
    [OpKind::Lookup, OpKind::Delete, OpKind::Lookup]
        .into_iter()
        .flat_map(|kind| all.chunks(BATCH_MAX).map(move |c| (kind, c.to_vec())))
        .collect()
}

/// Puts `ops` in the mailbox (results poisoned, so they must be written), runs `kind`, checks the
/// return value against the results, and returns the ops as the program left them.
pub fn run(d: &mut dyn Driver, kind: OpKind, ops: &[Op]) -> Vec<Op> {
    let mailbox = d.mailbox();
    mailbox[..ops.len()].copy_from_slice(ops);
    for op in &mut mailbox[..ops.len()] {
        op.result = i64::MIN;
    }
    let ret = d
        .run(kind, ops.len())
        .unwrap_or_else(|e| panic!("{}: {kind:?}: {e}", d.engine()));
    let returned = d.mailbox()[..ops.len()].to_vec();
    let hits = returned.iter().filter(|o| o.result > 0).count() as i64;
    assert_eq!(ret, hits, "{}: {kind:?} return value", d.engine());
    returned
}

/// The structure on kflex with `engine` and `sfi`.
pub fn kflex(structure: Structure, engine: Engine, sfi: SfiMode) -> KflexDriver {
    KflexDriver::new(structure, engine, sfi).unwrap_or_else(|e| panic!("{structure}: {e}"))
}

/// The structure's native gcc build.
pub fn native(structure: Structure) -> NativeInstance {
    NativeInstance::new(structure).unwrap_or_else(|e| panic!("{structure}: {e}"))
}

/// The structure in the Linux kernel, or `None` (with a SKIPPED line) where this process cannot
/// use BPF.
pub fn linux(structure: Structure) -> Option<LinuxDriver> {
    match LinuxDriver::new(structure) {
        Ok(d) => Some(d),
        Err(e) if e.is_unavailable() => {
            kflex_testutil::skip(&format!("{structure} on Linux: {e}"));
            None
        }
        Err(e) => panic!("{structure} on Linux: {e}"),
    }
}

/// `engines!(test_name, structure, |driver| body)` defines one test per engine.
macro_rules! engines {
    ($name:ident, $structure:expr, |$d:ident| $body:expr) => {
        mod $name {
            use super::*;
            use ::kflex::Engine;
            use ::kflex::engine::SfiMode;
            use ::kflex_datastructures::Driver;

            #[test]
            fn interp() {
                let $d: &mut dyn Driver =
                    &mut $crate::ds::kflex($structure, Engine::Interp, SfiMode::AndMask);
                $body
            }

            #[test]
            fn jit() {
                let $d: &mut dyn Driver =
                    &mut $crate::ds::kflex($structure, Engine::Jit, SfiMode::default());
                $body
            }

            #[test]
            fn jit_and_mask() {
                let $d: &mut dyn Driver =
                    &mut $crate::ds::kflex($structure, Engine::Jit, SfiMode::AndMask);
                $body
            }

            #[test]
            fn jit_writes_only() {
                let $d: &mut dyn Driver =
                    &mut $crate::ds::kflex($structure, Engine::Jit, SfiMode::WritesOnly);
                $body
            }

            #[test]
            fn native() {
                let $d: &mut dyn Driver = &mut $crate::ds::native($structure);
                $body
            }

            #[test]
            fn linux() {
                if let Some(mut driver) = $crate::ds::linux($structure) {
                    let $d: &mut dyn Driver = &mut driver;
                    $body
                }
            }
        }
    };
}
pub(crate) use engines;
