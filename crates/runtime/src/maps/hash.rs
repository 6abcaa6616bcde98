//! `BPF_MAP_TYPE_HASH` and `BPF_MAP_TYPE_LRU_HASH`, preallocated as Linux does by default.
//!
//! Values live in a slab of `max_entries` slots allocated at creation, so a value pointer handed to
//! a program always points at valid memory, even after its element is deleted (as in Linux, it may
//! then see another element's value). Keys live in the index, out of the program's reach.
//!
//! The index hashes keys with [`KeyHasher`], a small multiply-rotate hash over 8-byte words
//! (several times cheaper than the standard library's SipHash on the short keys maps use), keyed
//! with a random per-map seed. Trade-off: it is not a keyed cryptographic hash, so a program that
//! can observe timing and choose keys could still provoke collisions more easily than with
//! SipHash; the per-map seed keeps collision sets from being precomputed offline, and the damage is
//! bounded by `max_entries` (the index never grows past it), as with Linux's jhash-based maps.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

use kflex_object::MapSpec;

use super::array::{MAX_VALUE_SIZE, check_update_flags};
use super::lru::LruOrder;
use super::raw::RawBuf;
use super::{BPF_EXIST, BPF_NOEXIST, MapError, round_up8};

/// Largest key size accepted (Linux: `MAX_BPF_STACK`).
const MAX_KEY_SIZE: u32 = 512;

/// Multiplier of the key hash (an odd constant with well-spread bits: 2^64 / golden ratio).
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// The per-map seeded key hash of the index (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    /// A hasher with a random seed (drawn from the standard library's per-process random keys).
    fn random() -> Self {
        KeyHasher {
            seed: std::collections::hash_map::RandomState::new().hash_one(MUL) | 1,
        }
    }
}

impl BuildHasher for KeyHasher {
    type Hasher = KeyHash;

    fn build_hasher(&self) -> KeyHash {
        KeyHash(self.seed)
    }
}

/// The running state of one [`KeyHasher`] hash.
#[derive(Debug)]
pub(crate) struct KeyHash(u64);

impl KeyHash {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(MUL);
    }
}

impl Hasher for KeyHash {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length in the top byte keeps `[0]` and `[0, 0]` apart.
            self.mix(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        // Fold the high bits (where multiplication gathers entropy) into the low ones too.
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(MUL) ^ (h >> 29)
    }
}

/// The lock around a map's index: a test-and-test-and-set spin lock. Map operations hold it for
/// a hash-table operation only, like Linux's per-bucket raw spin locks; taking it is one
/// compare-and-swap and releasing it one plain release store (a `std` mutex releases with a
/// second atomic read-modify-write, to find sleepers, which was a measurable part of a short
/// program's run). Waiters spin briefly, then yield the CPU. A panic while holding the lock
/// releases it (the guard's drop runs during unwinding); it cannot leave the index inconsistent
/// in a way that breaks memory safety, since values are raw memory.
pub(crate) struct IndexLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `data` to one guard at a time (acquire/release ordering
// on `locked`), so sharing the lock between threads shares `T` only as `Mutex<T>` would.
unsafe impl<T: Send> Sync for IndexLock<T> {}

impl<T> IndexLock<T> {
    fn new(data: T) -> Self {
        IndexLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    fn lock(&self) -> IndexGuard<'_, T> {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                if spins < 128 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        IndexGuard { lock: self }
    }
}

/// Access to a locked index; dropping it releases the lock.
pub(crate) struct IndexGuard<'a, T> {
    lock: &'a IndexLock<T>,
}

impl<T> Deref for IndexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for IndexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` keeps the access unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for IndexGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// The index: key -> slot, free slots, and recency for LRU maps.
struct Index {
    slots: HashMap<Box<[u8]>, u32, KeyHasher>,
    /// Key stored in each slot (to unlink evicted elements).
    keys: Vec<Option<Box<[u8]>>>,
    free: Vec<u32>,
    lru: Option<LruOrder>,
}

/// A hash or LRU hash map.
pub(crate) struct HashMapImpl {
    key_size: u32,
    value_size: u32,
    stride: u64,
    values: RawBuf,
    index: IndexLock<Index>,
}

impl HashMapImpl {
    /// Creates a map; `lru` selects LRU eviction instead of `E2BIG` when full.
    pub(crate) fn new(spec: &MapSpec, lru: bool) -> Result<Self, MapError> {
        let bad = |reason: String| MapError::Create {
            name: spec.name.clone(),
            reason,
        };
        if spec.key_size == 0 || spec.key_size > MAX_KEY_SIZE {
            return Err(bad(format!("key size {}", spec.key_size)));
        }
        if spec.value_size == 0 || spec.value_size > MAX_VALUE_SIZE {
            return Err(bad(format!("value size {}", spec.value_size)));
        }
        if spec.max_entries == 0 {
            return Err(bad("max_entries is 0".into()));
        }
        let stride = round_up8(spec.value_size as u64);
        let total = stride
            .checked_mul(spec.max_entries as u64)
            .ok_or_else(|| bad("size overflows".into()))?;
        let values = RawBuf::zeroed(total).map_err(|reason| MapError::NoMemory {
            name: spec.name.clone(),
            reason,
        })?;
        let n = spec.max_entries;
        Ok(HashMapImpl {
            key_size: spec.key_size,
            value_size: spec.value_size,
            stride,
            values,
            index: IndexLock::new(Index {
                slots: HashMap::with_hasher(KeyHasher::random()),
                keys: vec![None; n as usize],
                // Popped from the end: slot 0 is used first.
                free: (0..n).rev().collect(),
                lru: lru.then(|| LruOrder::new(n)),
            }),
        })
    }

    /// Start of the value slab.
    pub(crate) fn base(&self) -> u64 {
        self.values.addr()
    }

    /// Length of the value slab.
    pub(crate) fn slab_len(&self) -> u64 {
        self.values.len() as u64
    }

    /// Distance between value slots.
    pub(crate) fn stride(&self) -> u64 {
        self.stride
    }

    fn lock(&self) -> IndexGuard<'_, Index> {
        self.index.lock()
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() != self.key_size as usize {
            return Err(MapError::KeySize {
                expected: self.key_size,
                got: key.len(),
            });
        }
        Ok(())
    }

    fn slot_off(&self, slot: u32) -> u64 {
        slot as u64 * self.stride
    }

    /// Address of the value at `key` (refreshing its recency in an LRU map).
    pub(crate) fn lookup_addr(&self, key: &[u8]) -> Result<Option<u64>, MapError> {
        self.check_key(key)?;
        let mut ix = self.lock();
        let Some(&slot) = ix.slots.get(key) else {
            return Ok(None);
        };
        if let Some(lru) = &mut ix.lru {
            lru.touch(slot);
        }
        Ok(Some(self.base() + self.slot_off(slot)))
    }

    /// Copies the value at `key` out (host side: like Linux's syscall lookup, this does not
    /// refresh LRU recency).
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        let ix = self.lock();
        let Some(&slot) = ix.slots.get(key) else {
            return Ok(None);
        };
        Ok(self
            .values
            .read(self.slot_off(slot), self.value_size as usize))
    }

    /// Linux `htab_map_update_elem` / `htab_lru_map_update_elem` for preallocated maps.
    pub(crate) fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        check_update_flags(flags)?;
        self.check_key(key)?;
        if value.len() != self.value_size as usize {
            return Err(MapError::ValueSize {
                expected: self.value_size as usize,
                got: value.len(),
            });
        }
        let mut ix = self.lock();
        let ix = &mut *ix;
        let slot = match ix.slots.get(key) {
            Some(&slot) => {
                if flags == BPF_NOEXIST {
                    return Err(MapError::Exists);
                }
                slot
            }
            None => {
                if flags == BPF_EXIST {
                    return Err(MapError::NotFound);
                }
                let slot = match ix.free.pop() {
                    Some(s) => s,
                    None => {
                        let victim = ix.lru.as_ref().and_then(LruOrder::oldest);
                        let Some(victim) = victim else {
                            return Err(MapError::Full);
                        };
                        Self::unlink(ix, victim);
                        victim
                    }
                };
                let k: Box<[u8]> = key.into();
                ix.slots.insert(k.clone(), slot);
                if let Some(s) = ix.keys.get_mut(slot as usize) {
                    *s = Some(k);
                }
                slot
            }
        };
        self.values.write(self.slot_off(slot), value);
        if let Some(lru) = &mut ix.lru {
            lru.touch(slot);
        }
        Ok(())
    }

    fn unlink(ix: &mut Index, slot: u32) {
        if let Some(k) = ix.keys.get_mut(slot as usize).and_then(Option::take) {
            ix.slots.remove(&k);
        }
        if let Some(lru) = &mut ix.lru {
            lru.remove(slot);
        }
    }

    /// Deletes `key` (`ENOENT` if missing).
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        let mut ix = self.lock();
        let Some(slot) = ix.slots.get(key).copied() else {
            return Err(MapError::NotFound);
        };
        Self::unlink(&mut ix, slot);
        ix.free.push(slot);
        Ok(())
    }

    /// All keys, sorted.
    pub(crate) fn keys(&self) -> Vec<Vec<u8>> {
        let ix = self.lock();
        let mut keys: Vec<Vec<u8>> = ix.slots.keys().map(|k| k.to_vec()).collect();
        keys.sort();
        keys
    }

    /// Number of elements.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().slots.len()
    }
}

// ---- direct calls from compiled code (`super::plan`) ----

impl HashMapImpl {
    /// The direct-call entry points of this map; `writable`: programs may update and delete.
    pub(crate) fn call_plan(&self, writable: bool) -> super::HashPlan {
        super::HashPlan {
            map: (self as *const HashMapImpl).cast(),
            lookup: direct_lookup,
            update: writable.then_some(direct_update as super::UpdateFn),
            delete: writable.then_some(direct_delete as super::DeleteFn),
        }
    }
}

/// `bpf_map_lookup_elem` for compiled code: the value's address, or 0.
///
/// # Safety
/// `map` is a [`HashMapImpl`] from [`HashMapImpl::call_plan`] that is still alive, and `key`
/// addresses its key size in readable bytes.
unsafe extern "sysv64" fn direct_lookup(map: *const std::ffi::c_void, key: *const u8) -> u64 {
    // SAFETY: guaranteed by the caller.
    let (map, key) = unsafe { direct_args(map, key) };
    map.lookup_addr(key).ok().flatten().unwrap_or(0)
}

/// `bpf_map_update_elem` for compiled code: 0 or a negative errno (`cpu` is unused: hash values
/// are shared by all CPUs).
///
/// # Safety
/// As for [`direct_lookup`]; `value` addresses the map's value size in readable bytes.
unsafe extern "sysv64" fn direct_update(
    map: *const std::ffi::c_void,
    key: *const u8,
    value: *const u8,
    flags: u64,
    _cpu: u64,
) -> u64 {
    // SAFETY: guaranteed by the caller.
    let (map, key) = unsafe { direct_args(map, key) };
    // SAFETY: the caller guarantees `value_size` readable bytes at `value`.
    let value = unsafe { std::slice::from_raw_parts(value, map.value_size as usize) };
    map.update(key, value, flags)
        .map_or_else(|e| e.to_r0(), |()| 0)
}

/// `bpf_map_delete_elem` for compiled code: 0 or a negative errno.
///
/// # Safety
/// As for [`direct_lookup`].
unsafe extern "sysv64" fn direct_delete(map: *const std::ffi::c_void, key: *const u8) -> u64 {
    // SAFETY: guaranteed by the caller.
    let (map, key) = unsafe { direct_args(map, key) };
    map.delete(key).map_or_else(|e| e.to_r0(), |()| 0)
}

/// The map and key of a direct call.
///
/// # Safety
/// As for [`direct_lookup`]; the results must not outlive the map or the key memory.
unsafe fn direct_args<'a>(
    map: *const std::ffi::c_void,
    key: *const u8,
) -> (&'a HashMapImpl, &'a [u8]) {
    // SAFETY: the caller guarantees `map` is a live `HashMapImpl`.
    let map = unsafe { &*map.cast::<HashMapImpl>() };
    // SAFETY: the caller guarantees `key_size` readable bytes at `key`.
    let key = unsafe { std::slice::from_raw_parts(key, map.key_size as usize) };
    (map, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_object::MapType;

    fn spec(max_entries: u32) -> MapSpec {
        MapSpec {
            name: "h".into(),
            map_type: MapType::Hash,
            key_size: 4,
            value_size: 4,
            max_entries,
            flags: 0,
            map_extra: 0,
            global: None,
            initial_value: None,
        }
    }

    fn k(i: u32) -> [u8; 4] {
        i.to_le_bytes()
    }

    #[test]
    fn the_index_lock_excludes_concurrent_holders() {
        let lock = std::sync::Arc::new(IndexLock::new((0u64, 0u64)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = std::sync::Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let mut g = lock.lock();
                        // Two fields updated non-atomically: a second holder would tear them.
                        g.0 += 1;
                        std::hint::black_box(&mut *g);
                        g.1 += 1;
                        assert_eq!(g.0, g.1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let g = lock.lock();
        assert_eq!(*g, (80_000, 80_000));
    }

    #[test]
    fn a_panic_while_holding_the_index_lock_releases_it() {
        let lock = IndexLock::new(1u32);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = lock.lock();
            panic!("inside");
        }));
        assert!(r.is_err());
        assert_eq!(*lock.lock(), 1);
    }

    #[test]
    fn key_hash_is_seeded_and_spreads_short_keys() {
        let a = KeyHasher { seed: 1 };
        let b = KeyHasher { seed: 2 };
        let key: &[u8] = &[10, 0, 0, 1];
        assert_eq!(a.hash_one(key), a.hash_one(key));
        assert_ne!(
            a.hash_one(key),
            b.hash_one(key),
            "the seed changes the hash"
        );
        // Distinct lengths and contents give distinct hashes, and consecutive keys spread over
        // the high bits the table's control bytes use.
        let z1: &[u8] = &[0];
        let z2: &[u8] = &[0, 0];
        assert_ne!(a.hash_one(z1), a.hash_one(z2));
        let tops: std::collections::HashSet<u64> = (0u32..256)
            .map(|i| a.hash_one(&i.to_ne_bytes()[..]) >> 57)
            .collect();
        assert!(
            tops.len() > 64,
            "only {} distinct top-7-bit values",
            tops.len()
        );
        assert_ne!(KeyHasher::random().seed, KeyHasher::random().seed);
    }

    #[test]
    fn hash_flags_full_and_delete() {
        let h = HashMapImpl::new(&spec(2), false).unwrap();
        assert_eq!(h.update(&k(1), &k(10), BPF_EXIST), Err(MapError::NotFound));
        h.update(&k(1), &k(10), BPF_NOEXIST).unwrap();
        assert_eq!(h.update(&k(1), &k(11), BPF_NOEXIST), Err(MapError::Exists));
        h.update(&k(1), &k(11), BPF_EXIST).unwrap();
        h.update(&k(2), &k(20), 0).unwrap();
        assert_eq!(h.update(&k(3), &k(30), 0), Err(MapError::Full));
        // Updating an existing key of a full map works.
        h.update(&k(2), &k(21), 0).unwrap();
        assert_eq!(h.lookup(&k(1)).unwrap(), Some(k(11).to_vec()));
        assert_eq!(h.lookup(&k(2)).unwrap(), Some(k(21).to_vec()));
        assert_eq!(h.delete(&k(3)), Err(MapError::NotFound));
        h.delete(&k(1)).unwrap();
        assert_eq!(h.lookup(&k(1)).unwrap(), None);
        h.update(&k(3), &k(30), 0).unwrap();
        assert_eq!(h.keys(), vec![k(2).to_vec(), k(3).to_vec()]);
        assert!(matches!(
            h.update(&k(3), &k(30), 4),
            Err(MapError::Invalid(_))
        ));
        assert!(matches!(h.lookup(&[1]), Err(MapError::KeySize { .. })));
    }

    #[test]
    fn value_addresses_stay_inside_the_slab() {
        let h = HashMapImpl::new(&spec(4), false).unwrap();
        for i in 0..4 {
            h.update(&k(i), &k(i), 0).unwrap();
            let a = h.lookup_addr(&k(i)).unwrap().unwrap();
            assert!(a >= h.base() && a + 4 <= h.base() + h.slab_len());
            assert_eq!((a - h.base()) % h.stride(), 0);
        }
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let h = HashMapImpl::new(&spec(3), true).unwrap();
        for i in 1..=3 {
            h.update(&k(i), &k(i), 0).unwrap();
        }
        // Use 1 so that 2 becomes the oldest.
        assert!(h.lookup_addr(&k(1)).unwrap().is_some());
        h.update(&k(4), &k(4), 0).unwrap();
        assert_eq!(h.lookup(&k(2)).unwrap(), None);
        // Order now (oldest first): 3, 1, 4. Updating 3 refreshes it.
        h.update(&k(3), &k(33), BPF_EXIST).unwrap();
        h.update(&k(5), &k(5), BPF_NOEXIST).unwrap();
        assert_eq!(h.lookup(&k(1)).unwrap(), None);
        assert_eq!(h.keys(), vec![k(3).to_vec(), k(4).to_vec(), k(5).to_vec()]);
        assert_eq!(h.len(), 3);
        assert_eq!(h.update(&k(9), &k(9), BPF_EXIST), Err(MapError::NotFound));
    }
}
