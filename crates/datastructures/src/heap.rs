//! Host-side heap plumbing shared by every driver: [`HostBuffer`] (an `mmap`ed buffer, the
//! native build's heap) and [`HostAllocator`] (the host half of the SDK allocator, attached to an
//! object's `kflex_alloc_state` through a heap mapping the host can write).

use std::ops::Range;

/// An anonymous private mapping reserved without backing (pages appear when touched); unmapped
/// on drop.
pub struct HostBuffer {
    addr: *mut u8,
    len: usize,
}

impl HostBuffer {
    /// Reserves `len` bytes, readable and writable.
    pub fn new(len: usize) -> Result<Self, String> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(format!(
                "mmap of {len} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(HostBuffer {
            addr: addr.cast(),
            len,
        })
    }

    /// The buffer's addresses.
    pub fn range(&self) -> Range<u64> {
        let start = self.addr as u64;
        start..start + self.len as u64
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours and nothing refers to it once its owner drops it.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

// SAFETY: the buffer is plain memory owned by this value.
unsafe impl Send for HostBuffer {}

/// Bytes of the allocator state (`struct kflex_alloc`) in an object's heap globals.
pub const ALLOC_STATE_SIZE: u64 = kflex_sdk::layout::STATE_SIZE as u64;

/// The host half of the heap allocator of one object (`kflex_sdk::HeapAllocator`).
pub struct HostAllocator {
    inner: kflex_sdk::HeapAllocator,
}

impl HostAllocator {
    /// Attaches to the allocator state at `state` (a host-writable address of the object's
    /// `kflex_alloc_state`), carving blocks from `carve` (heap addresses, equal to host
    /// addresses).
    ///
    /// # Safety
    ///
    /// As `kflex_sdk::HeapAllocator::attach`: `state` is the object's allocator state, and the
    /// state and `carve` stay mapped read-write at these addresses for the allocator's life,
    /// with nothing else carving from `carve`.
    pub unsafe fn attach(state: *mut u8, carve: Range<u64>) -> Result<Self, String> {
        // SAFETY: forwarded from the caller.
        let inner = unsafe { kflex_sdk::HeapAllocator::attach(state, carve) }
            .map_err(|e| format!("attaching the heap allocator: {e}"))?;
        Ok(HostAllocator { inner })
    }

    /// Tops every empty refill stack up; returns the blocks pushed.
    pub fn refill(&self) -> usize {
        self.inner.refill()
    }

    /// The SDK allocator itself (statistics, clean-up after a cancelled invocation).
    pub fn sdk(&self) -> &kflex_sdk::HeapAllocator {
        &self.inner
    }
}
