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

/// The host half of the heap allocator of one object.
///
/// Placeholder until `kflex_sdk::HeapAllocator` lands: attaching fails with a clear message.
pub struct HostAllocator {
    _state: *mut u8,
}

impl HostAllocator {
    /// Attaches to the allocator state at `state` (a host-writable address of the object's
    /// `kflex_alloc_state`), carving blocks from `carve` (heap addresses as the program sees
    /// them). The caller keeps the memory behind `state` and `carve` mapped for the allocator's
    /// life.
    pub fn attach(state: *mut u8, carve: Range<u64>) -> Result<Self, String> {
        let _ = (state, carve);
        Err("the host heap allocator (kflex_sdk::HeapAllocator) is not available yet".into())
    }

    /// Tops every refill stack up to its watermark; returns the blocks pushed.
    pub fn refill(&self) -> usize {
        0
    }
}
