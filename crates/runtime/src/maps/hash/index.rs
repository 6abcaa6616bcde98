//! [`KeyIndex`]: a hash map's key -> slot index, whose look-ups take no lock.
//!
//! # Layout
//!
//! * A bucket array, a power of two at least twice `max_entries` long (so that a miss visits half
//!   a slot on average), of 64-bit words: the low half is the slot at the head of the bucket's
//!   chain ([`NIL`] if empty), the high half the bucket's sequence number (odd while a writer is
//!   changing the chain).
//! * Per slot, a link word (low half: the next slot of the chain; high half: a 32-bit tag, the
//!   high half of the key's hash), in a dense array of its own so that a walk past non-matching
//!   slots touches few cache lines, and the key, zero-padded to whole 64-bit words, in a key slab
//!   outside any region programs can reach. Keys are compared only when the tag matches. Slot `i`
//!   owns value `i` of the map's value slab. Slots are preallocated; a deleted slot goes to a
//!   free list and is reused (possibly in another bucket) by a later insertion.
//!
//! Everything a reader may look at is an [`AtomicU64`], and every access to it is atomic, so there
//! is no data race in the Rust memory model even while a writer rewrites a key a reader compares.
//!
//! # Concurrency: writers lock, readers validate (a per-bucket seqlock)
//!
//! Writers are serialised by the map's lock (every method that changes the index takes the
//! lock-protected [`Slots`] by `&mut`). A writer changes a chain only inside a bucket write
//! section ([`BucketWrite`]): it stores the bucket's sequence number + 1 (odd), issues a release
//! fence, makes its changes (link words, keys) with relaxed stores, then publishes the new head
//! with sequence + 2 in one release store. Insertion links a slot at the head of its bucket;
//! deletion and LRU eviction unlink it from its predecessor. A slot is rewritten for a new key
//! only after the section that unlinked it has closed.
//!
//! A reader ([`KeyIndex::find`]) loads the bucket word (acquire); if the sequence is odd it waits.
//! It walks the chain with relaxed loads, comparing tags and then key words, then issues an
//! acquire fence and reloads the bucket word: if the word changed it retries. This is the standard
//! seqlock: if any load of the walk saw a store of a section opened after the first bucket load,
//! the section's release fence synchronises with the reader's acquire fence, so the reload sees
//! at least that section's odd sequence number. A section of *another* bucket counts too: a slot
//! the reader reached from this bucket can only be rewritten for another bucket after this
//! bucket's unlinking section closed, which happens before the other section's fence. So an
//! unchanged word proves that the walk saw this bucket's chain as it was at one instant, and the
//! answer (found in slot `s`, or absent) was true at that instant. Indices read from slots are
//! bounds-checked and a walk stops after `max_entries` steps (a consistent chain is never longer),
//! so a walk over a chain being rewritten ends and is retried.
//!
//! Readers never write shared memory: a look-up costs two loads of the bucket word plus the chain
//! walk, with no atomic read-modify-write. Sequence numbers wrap after 2^31 changes of one bucket;
//! a reader would have to stall across exactly that many to be fooled (as with Linux's 32-bit
//! seqcounts).
//!
//! As in Linux, a value slot stays valid memory after its element is deleted; a program holding
//! its address may then see the value of the element that reuses the slot. A new element's value
//! is written before the element is linked, so readers that find it see its value.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use super::MAX_KEY_SIZE;
use super::key::{KeyHasher, word as key_word};

/// End of a chain; head of an empty bucket.
const NIL: u32 = u32::MAX;

/// Failed validations a reader spins through before it starts yielding the CPU.
const SPINS: u32 = 64;

/// Two 32-bit halves in one word.
#[inline]
fn pack(high: u32, low: u32) -> u64 {
    (u64::from(high) << 32) | u64::from(low)
}

/// The low half of a word: a bucket's head slot or a slot's next slot.
#[inline]
fn low(word: u64) -> u32 {
    word as u32
}

/// The high half of a word: a bucket's sequence number or a slot's tag.
#[inline]
fn high(word: u64) -> u32 {
    (word >> 32) as u32
}

/// True if the key words of a slot hold `key`.
#[inline]
fn key_eq(words: &[AtomicU64], key: &[u8]) -> bool {
    words
        .iter()
        .zip(key.chunks(8))
        .all(|(w, c)| w.load(Ordering::Relaxed) == key_word(c))
}

/// Writer-side bookkeeping of the slots. It lives under the map's lock; [`KeyIndex`] methods that
/// change the index take it by `&mut` as proof that the caller holds the lock.
#[derive(Debug)]
pub(crate) struct Slots {
    /// Slots `fresh..capacity` have never been used.
    fresh: u32,
    /// Slots freed by deletion, reused last-in first-out before fresh ones.
    free: Vec<u32>,
    /// Elements in the index.
    len: u32,
}

impl Slots {
    /// Number of elements.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u32 {
        self.len
    }
}

/// Result of one walk down a chain.
enum Walk {
    /// The key is in this slot.
    Found(u32),
    /// The chain ended without the key.
    Missing,
    /// The chain led out of the slot array or ran longer than any consistent chain can.
    Torn,
}

/// A writer's change to one bucket's chain: opening it makes the sequence number odd, dropping it
/// publishes `head` with the next even sequence number.
struct BucketWrite<'a> {
    bucket: &'a AtomicU64,
    seq: u32,
    /// The head slot to publish.
    head: u32,
}

impl<'a> BucketWrite<'a> {
    /// Opens a change of `bucket`; only one writer (the lock holder) may do this at a time.
    fn open(bucket: &'a AtomicU64) -> Self {
        let word = bucket.load(Ordering::Relaxed);
        let (seq, head) = (high(word), low(word));
        bucket.store(pack(seq.wrapping_add(1), head), Ordering::Relaxed);
        // Orders the odd sequence number before every store of the change (see the module docs).
        fence(Ordering::Release);
        BucketWrite { bucket, seq, head }
    }
}

impl Drop for BucketWrite<'_> {
    fn drop(&mut self) {
        let word = pack(self.seq.wrapping_add(2), self.head);
        self.bucket.store(word, Ordering::Release);
    }
}

/// The index of a hash map (see the module docs).
pub(crate) struct KeyIndex {
    hasher: KeyHasher,
    key_size: usize,
    /// Key words per slot.
    key_words: usize,
    capacity: u32,
    /// Bucket count - 1.
    mask: u64,
    buckets: Box<[AtomicU64]>,
    /// The link word of each slot.
    links: Box<[AtomicU64]>,
    /// The key words of each slot.
    keys: Box<[AtomicU64]>,
}

/// `len` atomic words holding `init`, or an error if the memory cannot be had.
fn atomic_words(len: usize, init: u64) -> Result<Box<[AtomicU64]>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|e| format!("index of {len} words: {e}"))?;
    v.extend((0..len).map(|_| AtomicU64::new(init)));
    Ok(v.into_boxed_slice())
}

impl KeyIndex {
    /// An empty index for `capacity` elements with `key_size`-byte keys, and its writer state.
    pub(crate) fn new(
        key_size: u32,
        capacity: u32,
        hasher: KeyHasher,
    ) -> Result<(KeyIndex, Slots), String> {
        if key_size == 0 || key_size > MAX_KEY_SIZE || capacity == 0 || capacity == NIL {
            return Err(format!("no index for {capacity} keys of {key_size} bytes"));
        }
        let key_words = (key_size as usize).div_ceil(8);
        // Twice as many buckets as elements: a miss visits half a slot on average.
        let nbuckets = usize::try_from((2 * u64::from(capacity)).next_power_of_two())
            .map_err(|_| format!("{capacity} buckets do not fit in memory"))?;
        let nwords = (capacity as usize)
            .checked_mul(key_words)
            .ok_or_else(|| format!("{capacity} keys do not fit in memory"))?;
        let index = KeyIndex {
            hasher,
            key_size: key_size as usize,
            key_words,
            capacity,
            mask: nbuckets as u64 - 1,
            buckets: atomic_words(nbuckets, pack(0, NIL))?,
            links: atomic_words(capacity as usize, pack(0, NIL))?,
            keys: atomic_words(nwords, 0)?,
        };
        let slots = Slots {
            fresh: 0,
            free: Vec::new(),
            len: 0,
        };
        Ok((index, slots))
    }

    /// The hash of `key` (which must be `key_size` bytes long).
    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    #[inline]
    fn bucket(&self, hash: u64) -> Option<&AtomicU64> {
        self.buckets.get((hash & self.mask) as usize)
    }

    /// The link word and key words of `slot`, if it is a slot.
    #[inline]
    fn slot(&self, slot: u32) -> Option<(&AtomicU64, &[AtomicU64])> {
        let link = self.links.get(slot as usize)?;
        // No overflow: `slot < capacity` (it has a link), so `slot * key_words` is below the
        // length of `keys`.
        let base = slot as usize * self.key_words;
        Some((link, self.keys.get(base..base + self.key_words)?))
    }

    /// Walks the chain from `head` looking for `key` with tag `tag`.
    #[inline]
    fn walk(&self, head: u32, key: &[u8], tag: u32) -> Walk {
        let mut cur = head;
        // A consistent chain holds at most `capacity` slots.
        for _ in 0..self.capacity {
            if cur == NIL {
                return Walk::Missing;
            }
            let Some((link, words)) = self.slot(cur) else {
                return Walk::Torn;
            };
            let link = link.load(Ordering::Relaxed);
            if high(link) == tag && key_eq(words, key) {
                return Walk::Found(cur);
            }
            cur = low(link);
        }
        if cur == NIL {
            Walk::Missing
        } else {
            Walk::Torn
        }
    }

    /// The slot holding `key` (whose hash is `hash`), without taking any lock: program look-ups.
    /// The answer was true at one instant during the call (see the module docs).
    #[inline]
    pub(crate) fn find(&self, key: &[u8], hash: u64) -> Option<u32> {
        let bucket = self.bucket(hash)?;
        let tag = high(hash);
        let mut retries = 0u32;
        loop {
            let before = bucket.load(Ordering::Acquire);
            if high(before) & 1 == 0 {
                let walk = self.walk(low(before), key, tag);
                // Orders the walk's loads before the validating reload (see the module docs).
                fence(Ordering::Acquire);
                if bucket.load(Ordering::Relaxed) == before {
                    return match walk {
                        Walk::Found(slot) => Some(slot),
                        // A torn walk over an unchanged bucket cannot happen; answer "absent"
                        // rather than spin if it ever did.
                        Walk::Missing | Walk::Torn => None,
                    };
                }
            }
            retries = retries.saturating_add(1);
            if retries < SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// The slot holding `key` (whose hash is `hash`), for the lock holder.
    pub(crate) fn find_locked(&self, _lock: &Slots, key: &[u8], hash: u64) -> Option<u32> {
        let head = low(self.bucket(hash)?.load(Ordering::Relaxed));
        match self.walk(head, key, high(hash)) {
            Walk::Found(slot) => Some(slot),
            Walk::Missing | Walk::Torn => None,
        }
    }

    /// A slot for a new element (a freed one first), or `None` if all are in use.
    pub(crate) fn alloc(&self, s: &mut Slots) -> Option<u32> {
        if let Some(slot) = s.free.pop() {
            return Some(slot);
        }
        (s.fresh < self.capacity).then(|| {
            s.fresh += 1;
            s.fresh - 1
        })
    }

    /// Links `slot` (from [`alloc`](Self::alloc) or [`evict`](Self::evict), its value already
    /// written) into the index under `key`, which is not in the index.
    pub(crate) fn link(&self, s: &mut Slots, slot: u32, key: &[u8], hash: u64) {
        let (Some(bucket), Some((link, words))) = (self.bucket(hash), self.slot(slot)) else {
            debug_assert!(false, "slot {slot} is out of range");
            return;
        };
        let mut change = BucketWrite::open(bucket);
        link.store(pack(high(hash), change.head), Ordering::Relaxed);
        for (w, c) in words.iter().zip(key.chunks(8)) {
            w.store(key_word(c), Ordering::Relaxed);
        }
        change.head = slot;
        s.len += 1;
    }

    /// Unlinks `slot` from the chain of the bucket `hash` selects; false if it is not there.
    fn unlink(&self, s: &mut Slots, hash: u64, slot: u32) -> bool {
        let Some(bucket) = self.bucket(hash) else {
            return false;
        };
        let mut prev: Option<&AtomicU64> = None;
        let mut cur = low(bucket.load(Ordering::Relaxed));
        for _ in 0..self.capacity {
            let Some((link, _)) = self.slot(cur) else {
                return false;
            };
            let next = low(link.load(Ordering::Relaxed));
            if cur == slot {
                let mut change = BucketWrite::open(bucket);
                match prev {
                    None => change.head = next,
                    Some(p) => {
                        let word = p.load(Ordering::Relaxed);
                        p.store(pack(high(word), next), Ordering::Relaxed);
                    }
                }
                s.len -= 1;
                return true;
            }
            prev = Some(link);
            cur = next;
        }
        false
    }

    /// Removes `key` (whose hash is `hash`) and frees its slot; the slot, or `None` if absent.
    pub(crate) fn remove(&self, s: &mut Slots, key: &[u8], hash: u64) -> Option<u32> {
        let slot = self.find_locked(s, key, hash)?;
        if !self.unlink(s, hash, slot) {
            return None;
        }
        s.free.push(slot);
        Some(slot)
    }

    /// Unlinks the element in `slot` and keeps the slot for the caller to reuse (LRU eviction);
    /// false if the slot holds no element.
    pub(crate) fn evict(&self, s: &mut Slots, slot: u32) -> bool {
        let mut buf = [0u8; MAX_KEY_SIZE as usize];
        let Some(key) = self.key_of(slot, &mut buf) else {
            return false;
        };
        let hash = self.hash(key);
        self.unlink(s, hash, slot)
    }

    /// Copies the key stored in `slot` into `buf` (at least `key_size` bytes) and returns it.
    fn key_of<'b>(&self, slot: u32, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let (_, words) = self.slot(slot)?;
        let key = buf.get_mut(..self.key_size)?;
        for (c, w) in key.chunks_mut(8).zip(words) {
            let bytes = w.load(Ordering::Relaxed).to_le_bytes();
            c.copy_from_slice(&bytes[..c.len()]);
        }
        Some(key)
    }

    /// Every key in the index, sorted (for the lock holder).
    pub(crate) fn keys(&self, s: &Slots) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(s.len as usize);
        let mut buf = [0u8; MAX_KEY_SIZE as usize];
        for bucket in self.buckets.iter() {
            let mut cur = low(bucket.load(Ordering::Relaxed));
            for _ in 0..self.capacity {
                let Some((link, _)) = self.slot(cur) else {
                    break;
                };
                if let Some(key) = self.key_of(cur, &mut buf) {
                    out.push(key.to_vec());
                }
                cur = low(link.load(Ordering::Relaxed));
            }
        }
        out.sort();
        out
    }

    /// Length of the longest chain (for the lock holder; tests).
    #[cfg(test)]
    pub(crate) fn longest_chain(&self, _lock: &Slots) -> usize {
        self.buckets
            .iter()
            .map(|b| {
                let mut n = 0;
                let mut cur = low(b.load(Ordering::Relaxed));
                while let Some((link, _)) = self.slot(cur) {
                    n += 1;
                    cur = low(link.load(Ordering::Relaxed));
                }
                n
            })
            .max()
            .unwrap_or(0)
    }
}
