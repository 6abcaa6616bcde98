//! [`IndexLock`]: the lock writers of a hash map's index take.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};

/// The lock that serialises the writers of a map's index (updates, deletes, host-side look-ups and
/// iteration, LRU look-ups); program look-ups of plain hash maps never take it (see
/// [`KeyIndex`](super::index::KeyIndex)). A test-and-test-and-set spin lock: writers hold it for
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
    /// An unlocked lock around `data`.
    pub(crate) fn new(data: T) -> Self {
        IndexLock {
            locked: AtomicBool::new(false),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the lock, spinning (then yielding) while another thread holds it.
    pub(crate) fn lock(&self) -> IndexGuard<'_, T> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
