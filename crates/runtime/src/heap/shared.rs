//! Sharing a heap with another process at the same address, so pointers are identical on both
//! sides.
//!
//! The creating process hands out [`HeapShare`] (the memfd, base and size), typically passing an
//! inheritable duplicate of the fd to a child it spawns; the other process calls
//! [`SharedHeap::attach`], which maps the same memfd at the same base and refuses (instead of
//! clobbering) if anything is already mapped there.

use std::ops::Deref;
use std::os::fd::{BorrowedFd, OwnedFd};

use super::{Heap, HeapError, sys};

/// What a second process needs to map a heap: its memfd, base address and size.
#[derive(Clone, Copy, Debug)]
pub struct HeapShare<'a> {
    /// The heap's memfd (close-on-exec; see [`HeapShare::inheritable_fd`]).
    pub fd: BorrowedFd<'a>,
    /// Base address the heap is mapped at.
    pub base: u64,
    /// Heap size in bytes.
    pub size: u64,
}

impl HeapShare<'_> {
    /// A duplicate of the memfd without close-on-exec, inherited by a process spawned while it is
    /// open (close it in the parent after spawning).
    pub fn inheritable_fd(&self) -> Result<OwnedFd, HeapError> {
        sys::dup_inheritable(self.fd)
    }
}

/// A heap created by another process, mapped here at the same address.
///
/// Dereferences to [`Heap`] for the accessors and checked reads and writes; dropping it unmaps
/// this process's view only.
#[derive(Debug)]
pub struct SharedHeap(Heap);

impl SharedHeap {
    /// Maps `size` bytes of the heap memfd `fd` at exactly `base`, without guard zones (a plain
    /// user-space view). Fails with [`HeapError::AddressTaken`] if the range is in use, and
    /// with [`HeapError::Config`] if `size` is not a power of two, `base` not size-aligned, or the
    /// file shorter than `size`.
    pub fn attach(fd: OwnedFd, base: u64, size: u64) -> Result<SharedHeap, HeapError> {
        Heap::attach(fd, base, size, 0).map(SharedHeap)
    }

    /// Like [`SharedHeap::attach`], also reserving `guard` unmapped bytes (rounded up to pages) on
    /// each side, for a process that runs extensions against the shared heap too.
    pub fn attach_guarded(
        fd: OwnedFd,
        base: u64,
        size: u64,
        guard: u64,
    ) -> Result<SharedHeap, HeapError> {
        if guard < super::MIN_GUARD {
            return Err(HeapError::Config(format!(
                "guard {guard:#x} is smaller than the minimum {:#x}",
                super::MIN_GUARD
            )));
        }
        Heap::attach(fd, base, size, guard).map(SharedHeap)
    }
}

impl Deref for SharedHeap {
    type Target = Heap;

    fn deref(&self) -> &Heap {
        &self.0
    }
}
