//! `BPF_MAP_TYPE_HASH` and `BPF_MAP_TYPE_LRU_HASH`, preallocated as Linux does by default.
//!
//! Values live in a slab of `max_entries` slots allocated at creation, so a value pointer handed to
//! a program always points at valid memory, even after its element is deleted (as in Linux, it may
//! then see another element's value). Keys live in the index ([`index`]), out of the program's
//! reach, hashed with a per-map seeded [`KeyHasher`] ([`key`]).
//!
//! Program look-ups of plain hash maps ([`HashMapImpl::lookup_addr`]) take no lock: the index is a
//! chained table whose readers validate each bucket with a sequence number, as Linux's look-ups
//! rely on RCU. Writers (updates, deletes, host-side look-ups and iteration) serialise on the
//! map's [`IndexLock`] ([`lock`]), like Linux's bucket locks. LRU maps keep an exact
//! least-recently-used order ([`LruOrder`]) that a program look-up refreshes, so their program
//! look-ups take the lock too, except a hit on the most recently used element (nothing to
//! refresh). A new element's value is written before the element is linked, so a lock-free reader
//! that finds it sees its value.

mod index;
mod key;
mod lock;
#[cfg(test)]
mod stress;

use std::sync::atomic::{AtomicU32, Ordering};

use kflex_object::MapSpec;

use self::index::{KeyIndex, Slots};
use self::key::KeyHasher;
use self::lock::{IndexGuard, IndexLock};
use super::array::{MAX_VALUE_SIZE, check_update_flags};
use super::lru::LruOrder;
use super::raw::RawBuf;
use super::{BPF_EXIST, BPF_NOEXIST, MapError, round_up8};

/// Largest key size accepted (Linux: `MAX_BPF_STACK`).
const MAX_KEY_SIZE: u32 = 512;

/// [`HashMapImpl::newest`] when no element is the most recently used.
const NO_SLOT: u32 = u32::MAX;

/// What writers change under the map's lock.
struct WriterState {
    slots: Slots,
    lru: Option<LruOrder>,
}

/// A hash or LRU hash map.
pub(crate) struct HashMapImpl {
    key_size: u32,
    value_size: u32,
    stride: u64,
    values: RawBuf,
    /// Key -> slot; read without the lock.
    index: KeyIndex,
    /// True for `BPF_MAP_TYPE_LRU_HASH` (`state.lru` is then `Some`).
    lru: bool,
    /// LRU maps: the slot at the most recent end of the order ([`NO_SLOT`] if none), written
    /// under the lock. A look-up that finds this slot has nothing to refresh and skips the lock.
    newest: AtomicU32,
    state: IndexLock<WriterState>,
}

impl HashMapImpl {
    /// Creates a map; `lru` selects LRU eviction instead of `E2BIG` when full.
    pub(crate) fn new(spec: &MapSpec, lru: bool) -> Result<Self, MapError> {
        let bad = |reason: String| MapError::Create {
            name: spec.name.clone(),
            reason,
        };
        let no_memory = |reason: String| MapError::NoMemory {
            name: spec.name.clone(),
            reason,
        };
        if spec.key_size == 0 || spec.key_size > MAX_KEY_SIZE {
            return Err(bad(format!("key size {}", spec.key_size)));
        }
        if spec.value_size == 0 || spec.value_size > MAX_VALUE_SIZE {
            return Err(bad(format!("value size {}", spec.value_size)));
        }
        if spec.max_entries == 0 || spec.max_entries == u32::MAX {
            return Err(bad(format!("max_entries is {}", spec.max_entries)));
        }
        let stride = round_up8(spec.value_size as u64);
        let total = stride
            .checked_mul(spec.max_entries as u64)
            .ok_or_else(|| bad("size overflows".into()))?;
        let values = RawBuf::zeroed(total).map_err(no_memory)?;
        let n = spec.max_entries;
        let (index, slots) =
            KeyIndex::new(spec.key_size, n, KeyHasher::random()).map_err(no_memory)?;
        Ok(HashMapImpl {
            key_size: spec.key_size,
            value_size: spec.value_size,
            stride,
            values,
            index,
            lru,
            newest: AtomicU32::new(NO_SLOT),
            state: IndexLock::new(WriterState {
                slots,
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

    fn lock(&self) -> IndexGuard<'_, WriterState> {
        self.state.lock()
    }

    #[inline]
    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if key.len() != self.key_size as usize {
            return Err(MapError::KeySize {
                expected: self.key_size,
                got: key.len(),
            });
        }
        Ok(())
    }

    #[inline]
    fn slot_off(&self, slot: u32) -> u64 {
        slot as u64 * self.stride
    }

    /// Address of the value at `key` (refreshing its recency in an LRU map). Lock-free for plain
    /// hash maps, and for LRU maps when the element is already the most recently used.
    #[inline]
    pub(crate) fn lookup_addr(&self, key: &[u8]) -> Result<Option<u64>, MapError> {
        self.check_key(key)?;
        let hash = self.index.hash(key);
        let slot = if self.lru {
            self.lru_lookup(key, hash)
        } else {
            self.index.find(key, hash)
        };
        Ok(slot.map(|slot| self.base() + self.slot_off(slot)))
    }

    /// An LRU map's program look-up. A hit on the most recently used element changes no order,
    /// so it needs no lock (racing writers may reorder meanwhile, as they may right after a locked
    /// look-up); any other hit moves its element to the recent end under the lock.
    fn lru_lookup(&self, key: &[u8], hash: u64) -> Option<u32> {
        if let Some(slot) = self.index.find(key, hash)
            && self.newest.load(Ordering::Relaxed) == slot
        {
            return Some(slot);
        }
        let mut st = self.lock();
        let slot = self.index.find_locked(&st.slots, key, hash)?;
        self.touch(&mut st, slot);
        Some(slot)
    }

    /// Marks `slot` most recently used (LRU maps; the caller holds the lock).
    fn touch(&self, st: &mut WriterState, slot: u32) {
        if let Some(lru) = &mut st.lru
            && self.newest.load(Ordering::Relaxed) != slot
        {
            lru.touch(slot);
            self.newest.store(slot, Ordering::Relaxed);
        }
    }

    /// Takes `slot` out of the recency order (LRU maps; the caller holds the lock).
    fn forget(&self, st: &mut WriterState, slot: u32) {
        if let Some(lru) = &mut st.lru {
            lru.remove(slot);
            if self.newest.load(Ordering::Relaxed) == slot {
                self.newest.store(NO_SLOT, Ordering::Relaxed);
            }
        }
    }

    /// Copies the value at `key` out (host side: like Linux's syscall lookup, this does not
    /// refresh LRU recency).
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        let hash = self.index.hash(key);
        let st = self.lock();
        let Some(slot) = self.index.find_locked(&st.slots, key, hash) else {
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
        let hash = self.index.hash(key);
        let mut st = self.lock();
        let st = &mut *st;
        let slot = match self.index.find_locked(&st.slots, key, hash) {
            Some(slot) => {
                if flags == BPF_NOEXIST {
                    return Err(MapError::Exists);
                }
                self.values.write(self.slot_off(slot), value);
                slot
            }
            None => {
                if flags == BPF_EXIST {
                    return Err(MapError::NotFound);
                }
                let slot = match self.index.alloc(&mut st.slots) {
                    Some(s) => s,
                    None => self.evict(st)?,
                };
                // The value first: a reader that finds the new element sees its value.
                self.values.write(self.slot_off(slot), value);
                self.index.link(&mut st.slots, slot, key, hash);
                slot
            }
        };
        self.touch(st, slot);
        Ok(())
    }

    /// Frees the least recently used slot of a full LRU map for reuse; `E2BIG` for a full plain
    /// hash map.
    fn evict(&self, st: &mut WriterState) -> Result<u32, MapError> {
        let lru = st.lru.as_ref().ok_or(MapError::Full)?;
        let victim = lru.oldest().ok_or(MapError::Full)?;
        self.forget(st, victim);
        if !self.index.evict(&mut st.slots, victim) {
            return Err(MapError::Full);
        }
        Ok(victim)
    }

    /// Deletes `key` (`ENOENT` if missing).
    pub(crate) fn delete(&self, key: &[u8]) -> Result<(), MapError> {
        self.check_key(key)?;
        let hash = self.index.hash(key);
        let mut st = self.lock();
        let st = &mut *st;
        let slot = self
            .index
            .remove(&mut st.slots, key, hash)
            .ok_or(MapError::NotFound)?;
        self.forget(st, slot);
        Ok(())
    }

    /// All keys, sorted.
    pub(crate) fn keys(&self) -> Vec<Vec<u8>> {
        let st = self.lock();
        self.index.keys(&st.slots)
    }

    /// Number of elements.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().slots.len() as usize
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
        MapSpec::new("h", MapType::Hash, 4, 4, max_entries)
    }

    fn k(i: u32) -> [u8; 4] {
        i.to_le_bytes()
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
