//! Keys, values and key streams of the data-structure benchmark.
//!
//! Key `i` (of `0..n`) is 32 bytes derived from `i` alone: four 64-bit words of a bijective mix of
//! `i`, so keys are distinct, spread evenly over a hash function's input, and ordered unlike their
//! indices (a tree sees random insertion order even for a sorted index stream). Value `i` is 64
//! bytes derived the same way from another seed, so a lookup's copied value identifies its key.
//!
//! A stream is a sequence of key indices drawn with replacement from `0..n`: uniformly, or
//! Zipf-distributed (rank `r` has probability proportional to `1 / (r + 1)^s`) from a precomputed
//! cumulative distribution searched by binary search. Both come from a seeded generator, so a
//! stream is the same in every run and for every engine.

use crate::bench::{KEY_SIZE, VALUE_SIZE};

/// The Zipf exponent of the benchmark's skewed stream (YCSB's default).
pub const ZIPF_S: f64 = 0.99;

/// Key distribution of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// Zipfian with exponent [`ZIPF_S`].
    Zipf,
}

impl KeyDist {
    /// Both distributions, in report order.
    pub const ALL: [KeyDist; 2] = [KeyDist::Uniform, KeyDist::Zipf];

    /// The name used in the report and the JSON (`uniform`, `zipf`).
    pub const fn name(self) -> &'static str {
        match self {
            KeyDist::Uniform => "uniform",
            KeyDist::Zipf => "zipf",
        }
    }
}

/// One step of SplitMix64: a bijection of the 64-bit integers with good avalanche.
pub const fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of index `i`: the first word is a bijection of `i` (keys of distinct indices differ),
/// the other three are further mixes.
pub fn key(i: u64) -> [u8; KEY_SIZE] {
    let mut out = [0u8; KEY_SIZE];
    let mut w = mix64(i);
    for chunk in out.chunks_exact_mut(8) {
        chunk.copy_from_slice(&w.to_le_bytes());
        w = mix64(w ^ 0x6b65_7973);
    }
    out
}

/// The value stored under key `i`: its first word is `i` itself (readable in a lookup's result),
/// the rest a mix of it.
pub fn value(i: u64) -> [u8; VALUE_SIZE] {
    let mut out = [0u8; VALUE_SIZE];
    out[..8].copy_from_slice(&i.to_le_bytes());
    let mut w = mix64(i ^ 0x7661_6c75_6573);
    for chunk in out[8..].chunks_exact_mut(8) {
        chunk.copy_from_slice(&w.to_le_bytes());
        w = mix64(w);
    }
    out
}

/// A small deterministic generator (SplitMix64 over a counter).
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub const fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (`n > 0`), without modulo bias worth measuring (Lemire's
    /// multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A Zipf sampler over ranks `0..n`: the cumulative distribution is computed once, each sample
/// is one uniform draw and a binary search.
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks (`n > 0`) with exponent `s` (`s >= 0`).
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0f64;
        for r in 0..n {
            sum += 1.0 / ((r + 1) as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        if let Some(last) = cdf.last_mut() {
            // Rounding may leave the total a hair below 1; a draw must always find a rank.
            *last = 1.0;
        }
        Zipf { cdf }
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// True when there are no ranks.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Probability of rank `r`.
    pub fn probability(&self, r: usize) -> f64 {
        match r {
            0 => self.cdf[0],
            _ => self.cdf[r] - self.cdf[r - 1],
        }
    }

    /// The rank whose cumulative interval holds `u` (in `[0, 1)`).
    pub fn rank_of(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// Draws one rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        self.rank_of(rng.next_f64())
    }
}

/// A stream of `len` key indices in `0..n` drawn from `dist`, fixed by `seed`. Zipf ranks are
/// mapped to key indices through a fixed permutation, so the popular keys are scattered over the
/// key space rather than being its lowest indices.
pub fn stream(dist: KeyDist, n: usize, len: usize, seed: u64) -> Vec<u32> {
    assert!(n > 0 && n <= u32::MAX as usize, "key space of {n} keys");
    let mut rng = Rng::new(seed ^ mix64(dist as u64 + 1));
    match dist {
        KeyDist::Uniform => (0..len).map(|_| rng.below(n as u64) as u32).collect(),
        KeyDist::Zipf => {
            let zipf = Zipf::new(n, ZIPF_S);
            let perm = permutation(n, seed);
            (0..len).map(|_| perm[zipf.sample(&mut rng)]).collect()
        }
    }
}

/// A Fisher–Yates shuffle of `0..n`, fixed by `seed`.
fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(mix64(seed ^ 0x7065_726d));
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_are_distinct_and_values_name_their_key() {
        let keys: HashSet<[u8; KEY_SIZE]> = (0..50_000).map(key).collect();
        assert_eq!(keys.len(), 50_000);
        assert_eq!(&value(12345)[..8], &12345u64.to_le_bytes());
        assert_ne!(value(1)[8..], value(2)[8..]);
        assert_eq!(key(7), key(7), "derived from the index alone");
    }

    #[test]
    fn zipf_probabilities_follow_the_power_law() {
        let z = Zipf::new(1000, ZIPF_S);
        let total: f64 = (0..1000).map(|r| z.probability(r)).sum();
        assert!((total - 1.0).abs() < 1e-9);
        // p(r) / p(0) = 1 / (r + 1)^s, computed independently of the table.
        for r in [1usize, 9, 99, 999] {
            let want = 1.0 / ((r + 1) as f64).powf(0.99);
            let got = z.probability(r) / z.probability(0);
            assert!((got - want).abs() < 1e-9, "rank {r}: {got} vs {want}");
        }
        assert_eq!(z.rank_of(0.0), 0);
        assert_eq!(z.rank_of(0.999_999_999_999), 999);
    }

    #[test]
    fn zipf_samples_match_the_distribution() {
        let n = 1000;
        let z = Zipf::new(n, ZIPF_S);
        let mut rng = Rng::new(42);
        let draws = 400_000;
        let mut counts = vec![0u64; n];
        for _ in 0..draws {
            counts[z.sample(&mut rng)] += 1;
        }
        // Harmonic number H(1000, 0.99) ~ 7.7: rank 0 gets ~13% of draws, rank 9 ~1.3%.
        let h: f64 = (1..=n).map(|k| 1.0 / (k as f64).powf(0.99)).sum();
        for r in [0usize, 1, 4, 9, 49] {
            let expect = draws as f64 / ((r + 1) as f64).powf(0.99) / h;
            let sigma = expect.sqrt();
            let got = counts[r] as f64;
            assert!(
                (got - expect).abs() < 5.0 * sigma,
                "rank {r}: {got} draws, expected {expect:.0} +- {sigma:.0}"
            );
        }
        // The top 10% of ranks carry about 70% of the mass (sum of 1/k^0.99 up to 100 / H).
        let top: u64 = counts[..100].iter().sum();
        let expect_top: f64 = (1..=100).map(|k| 1.0 / (k as f64).powf(0.99)).sum::<f64>() / h;
        assert!((top as f64 / draws as f64 - expect_top).abs() < 0.01);
    }

    #[test]
    fn uniform_stream_is_flat_and_zipf_stream_is_skewed() {
        let n = 10_000;
        let u = stream(KeyDist::Uniform, n, 200_000, 1);
        let z = stream(KeyDist::Zipf, n, 200_000, 1);
        assert!(u.iter().chain(&z).all(|&k| (k as usize) < n));
        let max_count = |s: &[u32]| {
            let mut c = vec![0u32; n];
            for &k in s {
                c[k as usize] += 1;
            }
            *c.iter().max().unwrap()
        };
        // Uniform: 20 draws per key on average; the busiest of 10,000 keys stays under 60.
        assert!(max_count(&u) < 60, "uniform max {}", max_count(&u));
        // Zipf: the top key alone gets 1/H(10000) ~ 10% of 200k draws.
        assert!(max_count(&z) > 15_000, "zipf max {}", max_count(&z));
        // Distinct keys in a stream of n draws: sum over keys of 1 - (1 - p)^n, computed from
        // the power law directly (uniform: about 63% of the keys; Zipf: far fewer).
        let distinct = |s: &[u32]| s[..n].iter().collect::<HashSet<_>>().len() as f64;
        let h: f64 = (1..=n).map(|k| 1.0 / (k as f64).powf(0.99)).sum();
        let expect_z: f64 = (1..=n)
            .map(|k| 1.0 - (1.0 - 1.0 / (k as f64).powf(0.99) / h).powi(n as i32))
            .sum();
        let expect_u = n as f64 * (1.0 - (1.0 - 1.0 / n as f64).powi(n as i32));
        assert!(
            (distinct(&u) / expect_u - 1.0).abs() < 0.03,
            "uniform {}",
            distinct(&u)
        );
        assert!(
            (distinct(&z) / expect_z - 1.0).abs() < 0.05,
            "zipf {} vs {expect_z}",
            distinct(&z)
        );
        assert!(expect_z < 0.6 * expect_u);
    }

    #[test]
    fn streams_are_deterministic_and_seeded() {
        let a = stream(KeyDist::Zipf, 1000, 5000, 9);
        assert_eq!(a, stream(KeyDist::Zipf, 1000, 5000, 9));
        assert_ne!(a, stream(KeyDist::Zipf, 1000, 5000, 10));
        assert_ne!(
            stream(KeyDist::Uniform, 1000, 100, 9),
            stream(KeyDist::Zipf, 1000, 100, 9)
        );
    }
}
