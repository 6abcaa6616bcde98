//! Reference models of the count sketch and the count-min sketch (`ds/countsketch.h`,
//! `ds/countmin.h`).
//!
//! A sketch answers with an estimate, not the exact count, so its model checks the sketch's
//! guarantees rather than equality with the true count ([`SketchModel::check_estimate`]):
//!
//! * the estimate equals what the sketch's counters must hold after the ops sent so far (the model
//!   keeps its own copy of the counters, indexed by an independent implementation of the C hash
//!   functions), so any lost, doubled or misplaced update is caught;
//! * a key none of whose counters is shared with another key of non-zero count is counted exactly;
//! * count-min never underestimates (while every true count is non-negative).
//!
//! [`SketchModel::error_bound`] is the per-key error bound the C headers document for a total
//! count, used by tests to check the estimates of a whole workload.

use std::collections::HashMap;

use crate::protocol::Key;

/// log2 of the counters per row (`SK_LOG_WIDTH`).
pub const LOG_WIDTH: u32 = 16;
/// Counters per row (`SK_WIDTH`).
pub const WIDTH: usize = 1 << LOG_WIDTH;
/// Rows of the count-min sketch (`CM_DEPTH`).
pub const CM_DEPTH: usize = 4;
/// Rows of the count sketch (`CS_DEPTH`).
pub const CS_DEPTH: usize = 5;

/// Which sketch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SketchKind {
    /// Count-min: unsigned increments, minimum over the rows.
    CountMin,
    /// Count sketch: signed increments, median over the rows.
    CountSketch,
}

impl SketchKind {
    /// Rows of this sketch.
    pub const fn depth(self) -> usize {
        match self {
            SketchKind::CountMin => CM_DEPTH,
            SketchKind::CountSketch => CS_DEPTH,
        }
    }
}

/// The key's words as the C code loads them (little-endian 8-byte words).
fn words(key: &Key) -> [u64; 4] {
    std::array::from_fn(|i| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&key[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    })
}

/// `sk_key_hash`: the key folded into 64 bits.
pub fn key_hash(key: &Key) -> u64 {
    const M: u64 = 0x9fb2_1c65_1e98_df25;
    let w = words(key);
    let mut h: u64 = 0x6a09_e667_f3bc_c909;
    for (i, word) in w.iter().enumerate() {
        h = (h ^ word).wrapping_mul(M);
        h ^= if i == 3 { h >> 32 } else { h >> 29 };
    }
    h
}

/// `sk_row_hash`: row `row`'s hash of a key hash.
pub fn row_hash(key_hash: u64, row: usize) -> u64 {
    let mut h = key_hash.wrapping_add((row as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    h
}

/// The cell (row, counter index) and sign of a key in each row of a sketch.
pub fn cells(kind: SketchKind, key: &Key) -> Vec<(usize, usize, i64)> {
    let h = key_hash(key);
    (0..kind.depth())
        .map(|row| {
            let rh = row_hash(h, row);
            let index = (rh >> (64 - LOG_WIDTH)) as usize;
            let sign = match kind {
                SketchKind::CountMin => 1,
                SketchKind::CountSketch => {
                    if rh & 1 == 1 {
                        1
                    } else {
                        -1
                    }
                }
            };
            (row, index, sign)
        })
        .collect()
}

/// The median of an odd number of values.
fn median(mut v: Vec<i64>) -> i64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// A sketch's model: true counts, the counters the sketch must hold, and which keys share them.
pub struct SketchModel {
    kind: SketchKind,
    /// Key -> true count (ops sent: updates minus deletes); keys at 0 are dropped.
    counts: HashMap<Key, i64>,
    /// The counters, row-major (`depth * WIDTH`), as 64-bit numbers.
    counters: Vec<i64>,
    /// Per counter, how many keys of non-zero true count map to it.
    sharers: Vec<u32>,
}

/// Why a sketch's estimate is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    /// The estimate is not what the counters must give.
    #[error("estimate {got} differs from the counters' {expected} (true count {true_count})")]
    Counters {
        /// What the sketch returned.
        got: i64,
        /// What its counters must give.
        expected: i64,
        /// The key's true count.
        true_count: i64,
    },
    /// A key that shares no counter was not counted exactly.
    #[error("collision-free key estimated {got}, true count {true_count}")]
    NotExact {
        /// What the sketch returned.
        got: i64,
        /// The key's true count.
        true_count: i64,
    },
    /// Count-min estimated below the true count.
    #[error("count-min underestimated: {got} < true count {true_count}")]
    Underestimate {
        /// What the sketch returned.
        got: i64,
        /// The key's true count.
        true_count: i64,
    },
}

impl SketchModel {
    /// An empty sketch of `kind`.
    pub fn new(kind: SketchKind) -> Self {
        SketchModel {
            kind,
            counts: HashMap::new(),
            counters: vec![0; kind.depth() * WIDTH],
            sharers: vec![0; kind.depth() * WIDTH],
        }
    }

    /// The sketch modelled.
    pub fn kind(&self) -> SketchKind {
        self.kind
    }

    fn add(&mut self, key: &Key, delta: i64) {
        let before = self.true_count(key);
        let after = before + delta;
        for (row, index, sign) in cells(self.kind, key) {
            let at = row * WIDTH + index;
            self.counters[at] += sign * delta;
            match (before == 0, after == 0) {
                (true, false) => self.sharers[at] += 1,
                (false, true) => self.sharers[at] -= 1,
                _ => {}
            }
        }
        if after == 0 {
            self.counts.remove(key);
        } else {
            self.counts.insert(*key, after);
        }
    }

    /// Update: counts one occurrence of `key`.
    pub fn update(&mut self, key: &Key) {
        self.add(key, 1);
    }

    /// Delete: uncounts one occurrence of `key`.
    pub fn delete(&mut self, key: &Key) {
        self.add(key, -1);
    }

    /// The key's true count.
    pub fn true_count(&self, key: &Key) -> i64 {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// Keys of non-zero true count.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.counts.keys()
    }

    /// Sum of the absolute true counts (N in the count-min bound).
    pub fn total(&self) -> i64 {
        self.counts.values().map(|c| c.abs()).sum()
    }

    /// Sum of the squared true counts (F2 in the count-sketch bound).
    pub fn second_moment(&self) -> i64 {
        self.counts.values().map(|c| c * c).sum()
    }

    /// The estimate the sketch's counters give for `key`.
    pub fn estimate(&self, key: &Key) -> i64 {
        let per_row: Vec<i64> = cells(self.kind, key)
            .into_iter()
            .map(|(row, index, sign)| sign * self.counters[row * WIDTH + index])
            .collect();
        match self.kind {
            SketchKind::CountMin => per_row.into_iter().min().unwrap_or(0),
            SketchKind::CountSketch => median(per_row),
        }
    }

    /// Whether no other key of non-zero true count shares any of `key`'s counters.
    pub fn collision_free(&self, key: &Key) -> bool {
        let own = u32::from(self.true_count(key) != 0);
        cells(self.kind, key)
            .into_iter()
            .all(|(row, index, _)| self.sharers[row * WIDTH + index] == own)
    }

    /// Checks a lookup's estimate against the counters and the sketch's guarantees.
    pub fn check_estimate(&self, key: &Key, got: i64) -> Result<(), SketchError> {
        let true_count = self.true_count(key);
        let expected = self.estimate(key);
        if got != expected {
            return Err(SketchError::Counters {
                got,
                expected,
                true_count,
            });
        }
        if self.collision_free(key) && got != true_count {
            return Err(SketchError::NotExact { got, true_count });
        }
        if self.kind == SketchKind::CountMin
            && self.counts.values().all(|&c| c >= 0)
            && got < true_count
        {
            return Err(SketchError::Underestimate { got, true_count });
        }
        Ok(())
    }

    /// The documented per-key error bound for the current counts: count-min `e / w * N`
    /// (holds with probability 1 - e^-4 per key), count sketch `2 * sqrt(F2 / w)` (probability
    /// about 0.9 per key).
    pub fn error_bound(&self) -> f64 {
        let w = WIDTH as f64;
        match self.kind {
            SketchKind::CountMin => std::f64::consts::E / w * self.total() as f64,
            SketchKind::CountSketch => 2.0 * (self.second_moment() as f64 / w).sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> Key {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&n.to_le_bytes());
        k[8..16].copy_from_slice(&(n ^ 0x5555).to_le_bytes());
        k
    }

    #[test]
    fn hash_matches_hand_computed_steps() {
        // All-zero key: h = c; then h = h * M; h ^= h >> 29, three times, the last time >> 32.
        const M: u64 = 0x9fb2_1c65_1e98_df25;
        let mut h: u64 = 0x6a09_e667_f3bc_c909;
        for shift in [29, 29, 29, 32] {
            h = h.wrapping_mul(M);
            h ^= h >> shift;
        }
        assert_eq!(key_hash(&[0; 32]), h);
        assert_ne!(key_hash(&key(1)), key_hash(&key(2)));
    }

    #[test]
    fn rows_pick_different_cells_and_both_signs_occur() {
        let c = cells(SketchKind::CountSketch, &key(7));
        assert_eq!(c.len(), CS_DEPTH);
        assert!(c.iter().all(|&(_, i, _)| i < WIDTH));
        let signs: Vec<i64> = (0..200)
            .flat_map(|n| cells(SketchKind::CountSketch, &key(n)))
            .map(|(_, _, s)| s)
            .collect();
        assert!(signs.contains(&1) && signs.contains(&-1));
        assert!(
            cells(SketchKind::CountMin, &key(7))
                .iter()
                .all(|&(_, _, s)| s == 1)
        );
    }

    #[test]
    fn a_lone_key_is_exact_and_wrong_estimates_are_caught() {
        for kind in [SketchKind::CountMin, SketchKind::CountSketch] {
            let mut m = SketchModel::new(kind);
            let k = key(3);
            m.update(&k);
            m.update(&k);
            m.update(&k);
            m.delete(&k);
            assert_eq!(m.true_count(&k), 2);
            assert!(m.collision_free(&k));
            assert_eq!(m.estimate(&k), 2);
            assert!(m.check_estimate(&k, 2).is_ok());
            assert!(matches!(
                m.check_estimate(&k, 3),
                Err(SketchError::Counters { .. })
            ));
        }
    }

    #[test]
    fn colliding_keys_share_counters_and_count_min_overestimates() {
        // Find two keys that share the row-0 count-min cell.
        let k0 = key(0);
        let cell0 = cells(SketchKind::CountMin, &k0)[0].1;
        let other = (1..1_000_000)
            .map(key)
            .find(|k| cells(SketchKind::CountMin, k)[0].1 == cell0)
            .expect("a row-0 collision among a million keys");
        let mut m = SketchModel::new(SketchKind::CountMin);
        m.update(&k0);
        m.update(&other);
        assert!(!m.collision_free(&k0));
        assert!(m.estimate(&k0) >= 1);
        assert!(matches!(
            m.check_estimate(&k0, 0),
            Err(SketchError::Counters { .. })
        ));
        // Once the other key's count is back to 0, k0 is alone again.
        m.delete(&other);
        assert!(m.collision_free(&k0));
        assert_eq!(m.estimate(&k0), 1);
    }

    #[test]
    fn error_bounds_scale_with_the_counts() {
        let mut m = SketchModel::new(SketchKind::CountMin);
        assert_eq!(m.error_bound(), 0.0);
        for n in 0..1000 {
            m.update(&key(n));
        }
        let expected = std::f64::consts::E / WIDTH as f64 * 1000.0;
        assert!((m.error_bound() - expected).abs() < 1e-9);
        let mut s = SketchModel::new(SketchKind::CountSketch);
        for _ in 0..4 {
            s.update(&key(1));
        }
        assert!((s.error_bound() - 2.0 * (16.0 / WIDTH as f64).sqrt()).abs() < 1e-12);
    }
}
