//! [`KeyHasher`]: the per-map seeded hash of the index's keys.
//!
//! A small multiply-rotate hash over 8-byte little-endian words (several times cheaper than the
//! standard library's SipHash on the 4- to 16-byte keys maps use), keyed with a random per-map
//! seed. Trade-off: it is not a keyed cryptographic hash, so a program that can observe timing and
//! choose keys could still provoke collisions more easily than with SipHash; the per-map seed keeps
//! collision sets from being precomputed offline, and the damage is bounded by `max_entries` (a
//! chain never holds more than the map's elements), as with Linux's jhash-based maps.

/// Multiplier of the key hash (an odd constant with well-spread bits: 2^64 / golden ratio).
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// The per-map seeded key hash of the index.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    /// A hasher with a random seed (drawn from the standard library's per-process random keys).
    pub(crate) fn random() -> Self {
        use std::hash::BuildHasher;
        KeyHasher::with_seed(std::collections::hash_map::RandomState::new().hash_one(MUL))
    }

    /// A hasher with a fixed seed (tests).
    pub(crate) fn with_seed(seed: u64) -> Self {
        KeyHasher { seed: seed | 1 }
    }

    /// The hash of `key`. Every bit of the result depends on every key byte; the index takes the
    /// bucket from the low bits and a tag from the high 32.
    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        let mut h = self.seed;
        let mut chunks = key.chunks_exact(8);
        for c in &mut chunks {
            h = mix(h, word(c));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // The length in the top byte keeps `[0]` and `[0, 0]` apart.
            h = mix(h, word(rest) ^ ((rest.len() as u64) << 56));
        }
        // Fold the high bits (where multiplication gathers entropy) into the low ones too.
        let h = h ^ (h >> 32);
        h.wrapping_mul(MUL) ^ (h >> 29)
    }
}

/// The first (up to) 8 bytes of `bytes` as a little-endian word, zero-padded.
///
/// Short tails are assembled from overlapping 4-, 2- and 1-byte loads rather than copied into a
/// zeroed buffer: a narrow copy followed by a wide load of the same bytes defeats the CPU's
/// store-to-load forwarding, which cost more than the rest of a 4-byte key's look-up.
#[inline]
pub(crate) fn word(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if let Some(w) = bytes.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    if n >= 4 {
        let (Some(lo), Some(hi)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) else {
            return 0;
        };
        let (lo, hi) = (u32::from_le_bytes(*lo), u32::from_le_bytes(*hi));
        // `hi` ends at byte n; the bytes it shares with `lo` are equal, so OR merges them.
        return u64::from(lo) | (u64::from(hi) << ((n - 4) * 8));
    }
    match bytes {
        [] => 0,
        [a] => u64::from(*a),
        [a, b] => u64::from(*a) | (u64::from(*b) << 8),
        [a, b, c, ..] => u64::from(*a) | (u64::from(*b) << 8) | (u64::from(*c) << 16),
    }
}

/// One round: absorb `word` into the running state `h`.
#[inline]
fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(23) ^ word).wrapping_mul(MUL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn word_zero_pads_every_length() {
        let bytes: Vec<u8> = (1..=10).collect();
        for n in 0..=10 {
            let mut padded = [0u8; 8];
            let m = n.min(8);
            padded[..m].copy_from_slice(&bytes[..m]);
            assert_eq!(word(&bytes[..n]), u64::from_le_bytes(padded), "{n} bytes");
        }
    }

    #[test]
    fn key_hash_is_seeded_and_spreads_short_keys() {
        let a = KeyHasher::with_seed(1);
        let b = KeyHasher::with_seed(2);
        let key: &[u8] = &[10, 0, 0, 1];
        assert_eq!(a.hash(key), a.hash(key));
        assert_ne!(a.hash(key), b.hash(key), "the seed changes the hash");
        // Distinct lengths and contents give distinct hashes.
        assert_ne!(a.hash(&[0]), a.hash(&[0, 0]));
        assert_ne!(a.hash(&[0; 8]), a.hash(&[0; 16]));
        // Consecutive keys spread over the high bits (the tag) ...
        let tops: HashSet<u64> = (0u32..256)
            .map(|i| a.hash(&i.to_ne_bytes()) >> 57)
            .collect();
        assert!(
            tops.len() > 64,
            "only {} distinct top-7-bit values",
            tops.len()
        );
        assert_ne!(KeyHasher::random().seed, KeyHasher::random().seed);
    }

    /// Longest chain when `keys` fill `2^bits` buckets by the hash's low bits.
    fn longest_chain(h: &KeyHasher, keys: impl Iterator<Item = Vec<u8>>, bits: u32) -> usize {
        let mut counts = vec![0usize; 1 << bits];
        for k in keys {
            counts[(h.hash(&k) & ((1 << bits) - 1)) as usize] += 1;
        }
        counts.into_iter().max().unwrap_or(0)
    }

    #[test]
    fn structured_keys_spread_over_the_low_bits() {
        // As many keys as buckets: a good hash keeps the longest chain near ln n / ln ln n (about
        // 6 for 4096); a weak one piles structured keys (counters, IPv4 addresses, 5-tuples) up.
        for seed in [1u64, 0xdead_beef, u64::MAX] {
            let h = KeyHasher::with_seed(seed);
            let counters = (0u32..4096).map(|i| i.to_le_bytes().to_vec());
            let addrs = (0u32..4096).map(|i| (0x0a00_0000u32 | (i << 8)).to_be_bytes().to_vec());
            let tuples = (0u32..4096).map(|i| {
                let mut k = vec![0u8; 16];
                k[..4].copy_from_slice(&0xc0a8_0001u32.to_be_bytes());
                k[4..8].copy_from_slice(&(0x0a00_0000 + i).to_be_bytes());
                k[8..10].copy_from_slice(&(1024 + i as u16).to_be_bytes());
                k[10..12].copy_from_slice(&80u16.to_be_bytes());
                k[12] = 6;
                k
            });
            assert!(
                longest_chain(&h, counters, 12) <= 12,
                "counters, seed {seed:#x}"
            );
            assert!(
                longest_chain(&h, addrs, 12) <= 12,
                "addresses, seed {seed:#x}"
            );
            assert!(
                longest_chain(&h, tuples, 12) <= 12,
                "5-tuples, seed {seed:#x}"
            );
        }
    }
}
