//! Host-side heap plumbing shared by every driver: [`HostBuffer`] (an `mmap`ed buffer, the
//! native build's heap) and [`HostAllocator`] (the host half of the SDK allocator, attached to an
//! object's `kflex_alloc_state` through a heap mapping the host can write), and what the kflex and
//! Linux drivers do after `init` ([`attach_after_init`]: layout check, carve range, attach).

use std::ops::Range;

use crate::protocol::{BATCH_MAX, Ctx, Op};

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

/// Page size the host carves around (blocks never share a page with the globals).
const PAGE: u64 = 4096;

/// Checks that the layout `init` reported lies in `heap`: the globals inside it, the allocator
/// state ([`ALLOC_STATE_SIZE`] bytes) and the mailbox ([`BATCH_MAX`] ops, 8-byte aligned) inside
/// the globals.
pub fn check_layout(init: &Ctx, heap: Range<u64>) -> Result<(), String> {
    let within = |outer: &Range<u64>, start: u64, len: u64| {
        start >= outer.start && start.checked_add(len).is_some_and(|end| end <= outer.end)
    };
    let op_bytes = (BATCH_MAX * std::mem::size_of::<Op>()) as u64;
    let ok = within(&heap, init.globals, init.globals_size) && {
        let globals = init.globals..init.globals + init.globals_size;
        within(&globals, init.alloc_state, ALLOC_STATE_SIZE)
            && within(&globals, init.mailbox, op_bytes)
            && init.mailbox.is_multiple_of(8)
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "init reported a layout outside the heap {heap:#x?}: {init:?}"
        ))
    }
}

/// The part of `heap` the host may carve blocks from: the larger of the two page-aligned gaps
/// beside `globals` (globals may sit at the start or the end of the heap).
pub fn carve_range(heap: Range<u64>, globals: Range<u64>) -> Range<u64> {
    let below = heap.start..(globals.start & !(PAGE - 1)).max(heap.start);
    let above = globals
        .end
        .div_ceil(PAGE)
        .saturating_mul(PAGE)
        .min(heap.end)..heap.end;
    if above.end - above.start >= below.end.saturating_sub(below.start) {
        above
    } else {
        below
    }
}

/// After `init`: checks the layout it reported against `heap` ([`check_layout`]), attaches the
/// host allocator to its allocator state, carving from the larger gap beside the globals
/// ([`carve_range`]), and fills the refill stacks once.
///
/// # Safety
///
/// `heap` is mapped read-write in this process at the addresses programs use, and stays mapped
/// for the allocator's life; nothing else carves from it.
pub unsafe fn attach_after_init(init: &Ctx, heap: Range<u64>) -> Result<HostAllocator, String> {
    check_layout(init, heap.clone())?;
    let globals = init.globals..init.globals + init.globals_size;
    let carve = carve_range(heap, globals);
    // SAFETY: the layout check put the allocator state inside the globals, inside `heap`, which
    // the caller guarantees is mapped read-write for the allocator's life; `carve` leaves the
    // globals' pages out.
    let allocator = unsafe { HostAllocator::attach(init.alloc_state as *mut u8, carve) }?;
    allocator.refill();
    Ok(allocator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carving_skips_the_globals_pages_at_either_end() {
        let heap = 0x10000..0x20000;
        assert_eq!(
            carve_range(heap.clone(), 0x10000..0x10100),
            0x11000..0x20000
        );
        assert_eq!(
            carve_range(heap.clone(), 0x1f000..0x20000),
            0x10000..0x1f000
        );
        assert_eq!(
            carve_range(heap.clone(), 0x1e010..0x20000),
            0x10000..0x1e000
        );
        assert_eq!(carve_range(heap, 0x10000..0x20000), 0x20000..0x20000);
    }

    #[test]
    fn layouts_outside_the_heap_are_refused() {
        let heap = 0x10_0000..0x20_0000;
        let good = Ctx {
            mailbox: 0x10_1000,
            alloc_state: 0x12_0000,
            globals: 0x10_0000,
            globals_size: 0x3_0000,
            count: 0,
            ret: 0,
        };
        assert_eq!(check_layout(&good, heap.clone()), Ok(()));
        for bad in [
            Ctx {
                mailbox: 0x12_f000,
                ..good
            },
            Ctx {
                mailbox: 0x10_1004,
                ..good
            },
            Ctx {
                alloc_state: 0x13_0000,
                ..good
            },
            Ctx {
                alloc_state: 0x13_0000 - 8,
                ..good
            },
            Ctx {
                globals_size: 0x10_0001,
                ..good
            },
            Ctx {
                globals: u64::MAX - 4,
                ..good
            },
        ] {
            assert!(check_layout(&bad, heap.clone()).is_err(), "{bad:?}");
        }
    }
}
