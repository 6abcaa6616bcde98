//! Word access to heap memory shared with running programs.
//!
//! Every heap word the host touches may be read or written concurrently by a program (or by a
//! native build of one on another thread), so every access is an atomic one on an
//! [`AtomicU64`] view of the word. The addresses are checked by the callers (see
//! [`crate::carve::Segments`] and [`HeapView::contains`]) before they get here.

use std::ops::Range;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// A range of host-writable memory holding heap words at their heap addresses.
#[derive(Clone, Debug)]
pub(crate) struct HeapView {
    /// Addresses the host may access (the state, the carve range, and what the host was told is
    /// mapped around them).
    range: Range<u64>,
}

impl HeapView {
    /// A view of `range`; the caller of [`crate::HeapAllocator::attach`] vouched that it is
    /// mapped readable and writable for the allocator's lifetime.
    pub fn new(range: Range<u64>) -> Self {
        HeapView { range }
    }

    /// True if the `len` bytes at `addr` lie inside the view.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.range.start
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= self.range.end)
    }

    /// The word at `addr` (8-byte aligned, inside the view).
    fn word(&self, addr: u64) -> &AtomicU64 {
        assert!(
            addr.is_multiple_of(8) && self.contains(addr, 8),
            "heap word {addr:#x} outside {:x?}",
            self.range
        );
        // SAFETY: `addr` is 8-byte aligned and inside the range the attach caller guaranteed to
        // be mapped, readable and writable for as long as the allocator lives; every access to
        // heap words from the host goes through atomics, and programs access them with atomic
        // instructions or plain aligned 8-byte accesses, so no torn values are observed.
        unsafe { AtomicU64::from_ptr(addr as *mut u64) }
    }

    /// Loads the word at `addr`.
    pub fn load(&self, addr: u64, order: Ordering) -> u64 {
        self.word(addr).load(order)
    }

    /// Stores `v` into the word at `addr`.
    pub fn store(&self, addr: u64, v: u64, order: Ordering) {
        self.word(addr).store(v, order);
    }

    /// Stores `v` into the word at `addr` and returns what it held.
    pub fn swap(&self, addr: u64, v: u64, order: Ordering) -> u64 {
        self.word(addr).swap(v, order)
    }

    /// Compare-and-swap on the word at `addr`: `Ok(old)` when it held `old` and now holds `new`.
    pub fn cas(&self, addr: u64, old: u64, new: u64, success: Ordering) -> Result<u64, u64> {
        self.word(addr)
            .compare_exchange(old, new, success, Ordering::Relaxed)
    }

    /// Reads one byte of every page in `range` (page size `page`), so that pages of a lazily
    /// populated heap (a Linux arena) exist before a program touches them.
    pub fn touch_pages(&self, range: Range<u64>, page: u64) {
        let mut p = range.start - range.start % page;
        while p < range.end {
            let a = p.max(range.start);
            assert!(self.contains(a, 1), "page {a:#x} outside the heap view");
            // SAFETY: `a` lies in the mapped, readable range (checked above); an atomic byte
            // load has no alignment requirement and cannot race destructively with writers.
            let b = unsafe { AtomicU8::from_ptr(a as *mut u8) };
            b.load(Ordering::Relaxed);
            p += page;
        }
    }
}
