//! [`Heap`]: creation, checked host access and teardown of one extension heap.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{HeapConfig, HeapError, HeapShare, MIN_GUARD, SEGMENT_WINDOW, sys};
use crate::maps::page_size;
use crate::memory::{Region, RegionKind};

/// A size-aligned, memfd-backed heap with unmapped guard zones on both sides.
///
/// The memory is never borrowed as a Rust reference: the host reads and writes it through raw
/// copies ([`Heap::read`], [`Heap::write`]), so extensions (and other processes sharing the memfd)
/// may access it concurrently, with the same contract as Linux arena maps. Dropping the heap
/// unmaps the heap and both guard zones.
#[derive(Debug)]
pub struct Heap {
    fd: OwnedFd,
    base: u64,
    size: u64,
    guard: u64,
    /// Unmapped bytes reserved above the heap (the guard, or up to the end of the 4 GiB window).
    above: u64,
    page: u64,
}

// Compile-time check that a heap can be shared between threads (it holds only addresses and an fd).
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Heap>();
};

/// Rounds `n` up to a multiple of `align` (a power of two), or `None` on overflow.
fn align_up(n: u64, align: u64) -> Option<u64> {
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// Checks `size` and `address`, and returns the guard rounded up to pages.
fn validate(config: &HeapConfig<'_>, page: u64) -> Result<u64, HeapError> {
    let bad = |m: String| Err(HeapError::Config(m));
    if !config.size.is_power_of_two() || config.size < page {
        return bad(format!(
            "size {:#x} is not a power of two of at least one page ({page} bytes)",
            config.size
        ));
    }
    if config.guard < MIN_GUARD {
        return bad(format!(
            "guard {:#x} is smaller than the minimum {MIN_GUARD:#x} (instruction offset plus access size)",
            config.guard
        ));
    }
    let guard = align_up(config.guard, page)
        .ok_or_else(|| HeapError::Config(format!("guard {:#x} is too large", config.guard)))?;
    if let Some(init) = config.init
        && init.len() as u64 > config.size
    {
        return bad(format!(
            "initial image of {} bytes is larger than the heap ({:#x} bytes)",
            init.len(),
            config.size
        ));
    }
    if let Some(addr) = config.address
        && (addr == 0 || addr & (config.size - 1) != 0)
    {
        return bad(format!(
            "address {addr:#x} is not a non-zero multiple of the heap size {:#x}",
            config.size
        ));
    }
    Ok(guard)
}

/// Unmapped bytes above a heap of `size` bytes at `base`: the guard, or, when the base is aligned
/// to [`SEGMENT_WINDOW`] and the heap fits in it, everything up to the window's end plus the
/// guard, so that an access at a 32-bit offset from the base never reaches another mapping (not
/// even the bytes of an access that starts just below the window's end and straddles it).
fn above_for(base: u64, size: u64, guard: u64) -> u64 {
    if size <= SEGMENT_WINDOW && base.is_multiple_of(SEGMENT_WINDOW) {
        SEGMENT_WINDOW - size + guard
    } else {
        guard
    }
}

/// Reserves `guard` bytes below and the [`above_for`] bytes above a heap of `size` bytes and
/// returns `(base, above)`. Without a fixed address the base is aligned to the size, and to
/// [`SEGMENT_WINDOW`] for heaps of at most 4 GiB.
fn reserve_aligned(
    size: u64,
    guard: u64,
    page: u64,
    at: Option<u64>,
) -> Result<(u64, u64), HeapError> {
    let too_big = || HeapError::Config(format!("heap of {size:#x} bytes plus guards is too large"));
    let total = |above: u64| {
        guard
            .checked_add(size)
            .and_then(|n| n.checked_add(above))
            .ok_or_else(too_big)
    };
    if let Some(base) = at {
        let above = above_for(base, size, guard);
        let start = base
            .checked_sub(guard)
            .ok_or_else(|| HeapError::Config(format!("no room for the guard below {base:#x}")))?;
        let len = total(above)?;
        start.checked_add(len).ok_or_else(too_big)?;
        sys::reserve(Some(start), len)?;
        return Ok((base, above));
    }
    let align = size.max(SEGMENT_WINDOW);
    // The base chosen below is a multiple of `align`, so this is the window it will get.
    let above = above_for(align, size, guard);
    let len = total(above)?;
    // Reserve enough slack to find an aligned base, then give back both ends.
    let padded = len.checked_add(align - page).ok_or_else(too_big)?;
    let start = sys::reserve(None, padded)?;
    let end = start + padded;
    let base = align_up(start + guard, align).ok_or_else(too_big)?;
    let keep_start = base - guard;
    let keep_end = base + size + above;
    debug_assert!(keep_start >= start && keep_end <= end);
    sys::unmap(start, keep_start - start);
    sys::unmap(keep_end, end - keep_end);
    Ok((base, above))
}

impl Heap {
    /// Creates a heap: reserves the guarded range, maps a fresh memfd read-write at the
    /// size-aligned base (pages are populated on first touch), and copies `init` in.
    pub fn create(config: HeapConfig<'_>) -> Result<Heap, HeapError> {
        let page = page_size();
        let guard = validate(&config, page)?;
        let fd = sys::memfd(config.size)?;
        let (base, above) = reserve_aligned(config.size, guard, page, config.address)?;
        let heap = Heap {
            fd,
            base,
            size: config.size,
            guard,
            above,
            page,
        };
        // From here on, dropping `heap` releases the reservation.
        sys::map_shared(heap.fd.as_fd(), base, config.size, true)?;
        if let Some(init) = config.init {
            heap.write(0, init)?;
        }
        Ok(heap)
    }

    /// Maps an existing heap memfd at `base` (see [`SharedHeap::attach`](super::SharedHeap)).
    pub(super) fn attach(fd: OwnedFd, base: u64, size: u64, guard: u64) -> Result<Heap, HeapError> {
        let page = page_size();
        let config = HeapConfig {
            size,
            guard: guard.max(MIN_GUARD),
            address: Some(base),
            init: None,
        };
        validate(&config, page)?;
        let guard = if guard == 0 {
            0
        } else {
            align_up(guard, page).ok_or_else(|| HeapError::Config("guard too large".into()))?
        };
        let file = sys::file_size(fd.as_fd())?;
        if file < size {
            return Err(HeapError::Config(format!(
                "the shared file has {file:#x} bytes, fewer than the heap size {size:#x}"
            )));
        }
        if guard == 0 {
            sys::map_shared(fd.as_fd(), base, size, false)?;
        } else {
            let (_, above) = reserve_aligned(size, guard, page, Some(base))?;
            // Own the reservation first so that a failed mapping still releases it.
            let heap = Heap {
                fd,
                base,
                size,
                guard,
                above,
                page,
            };
            sys::map_shared(heap.fd.as_fd(), base, size, true)?;
            return Ok(heap);
        }
        Ok(Heap {
            fd,
            base,
            size,
            guard,
            above: 0,
            page,
        })
    }

    /// First address of the heap (aligned to [`Heap::size`]).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Heap size in bytes (a power of two).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// `size - 1`: `base | (addr & mask)` forces any address into the heap.
    pub fn mask(&self) -> u64 {
        self.size - 1
    }

    /// Unmapped bytes on each side of the heap (the guard zone; above the heap the unmapped range
    /// may be larger, see [`Heap::unmapped_above`]).
    pub fn guard(&self) -> u64 {
        self.guard
    }

    /// Unmapped (reserved, inaccessible) bytes right above the heap: the guard, or for a heap in a
    /// segment window ([`Heap::segment_window`]) everything up to the window's end.
    pub fn unmapped_above(&self) -> u64 {
        self.above
    }

    /// True if the heap sits at the start of a 4 GiB-aligned [`SEGMENT_WINDOW`] whose part above
    /// the heap, and a guard zone past the window's end, are reserved inaccessible for the heap's
    /// lifetime: then an access of up to 8 bytes at `base + (x mod 2^32)` is inside the heap or
    /// faults, for any `x`, which is what the JIT's segment SFI mode relies on. Every heap of at
    /// most 4 GiB created without a fixed address (or at a 4 GiB-aligned one) has one; a plain
    /// [`SharedHeap::attach`](super::SharedHeap::attach) view has none.
    pub fn segment_window(&self) -> bool {
        self.size <= SEGMENT_WINDOW
            && self.base.is_multiple_of(SEGMENT_WINDOW)
            && self.above >= SEGMENT_WINDOW - self.size + MIN_GUARD
    }

    /// The memfd backing the heap.
    pub fn memfd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// What a second process needs to map this heap at the same address.
    pub fn share_fd(&self) -> HeapShare<'_> {
        HeapShare {
            fd: self.fd.as_fd(),
            base: self.base,
            size: self.size,
        }
    }

    /// True if `[addr, addr+len)` lies entirely inside the heap.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        match addr.checked_add(len) {
            Some(end) => addr >= self.base && end <= self.base + self.size,
            None => false,
        }
    }

    /// The heap as a writable [`Region`] of kind [`RegionKind::Heap`], for a `MemoryMap`.
    pub fn region(&self) -> Region {
        Region {
            start: self.base,
            len: self.size,
            kind: RegionKind::Heap,
            writable: true,
            elements: None,
        }
    }

    /// Host address of `len` bytes at `offset`, if they fit inside the heap.
    fn span(&self, offset: u64, len: usize) -> Result<*mut u8, HeapError> {
        let len64 = len as u64;
        match offset.checked_add(len64) {
            Some(end) if end <= self.size => Ok((self.base + offset) as *mut u8),
            _ => Err(HeapError::OutOfRange {
                offset,
                len: len64,
                size: self.size,
            }),
        }
    }

    /// Copies `buf.len()` bytes at heap `offset` into `buf`; refused if the range leaves the heap.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), HeapError> {
        let src = self.span(offset, buf.len())?;
        // SAFETY: `span` checked that [src, src+len) lies inside the heap mapping, which stays
        // mapped while `self` lives and is never borrowed as a Rust reference; `buf` is a distinct
        // host buffer.
        unsafe { std::ptr::copy(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` to heap `offset`; refused if the range leaves the heap.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), HeapError> {
        let dst = self.span(offset, data.len())?;
        // SAFETY: as in `read`: the destination range is inside the live, writable heap mapping.
        unsafe { std::ptr::copy(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    /// Bytes of the heap currently resident in memory (`mincore`); shows that pages are populated
    /// lazily.
    pub fn resident_bytes(&self) -> Result<u64, HeapError> {
        sys::resident(self.base, self.size, self.page)
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        // The heap and the reserved ranges on both sides are one contiguous range we mapped; the
        // memfd closes after.
        sys::unmap(self.base - self.guard, self.guard + self.size + self.above);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(1, 4096), Some(4096));
        assert_eq!(align_up(4096, 4096), Some(4096));
        assert_eq!(align_up(0, 1 << 20), Some(0));
        assert_eq!(align_up(u64::MAX - 3, 4096), None);
    }

    #[test]
    fn validation_rejects_bad_configs() {
        let page = page_size();
        let ok = HeapConfig::new(1 << 20);
        assert_eq!(validate(&ok, page).unwrap(), super::super::DEFAULT_GUARD);
        for size in [0, 3, page / 2, (1 << 20) + page] {
            assert!(validate(&HeapConfig::new(size), page).is_err(), "{size}");
        }
        let small_guard = HeapConfig { guard: 4096, ..ok };
        assert!(validate(&small_guard, page).is_err());
        let rounded = HeapConfig {
            guard: MIN_GUARD,
            ..ok
        };
        assert_eq!(validate(&rounded, page).unwrap() % page, 0);
        let misaligned = HeapConfig {
            address: Some(0x7f00_0000_0000 + page),
            ..ok
        };
        assert!(validate(&misaligned, page).is_err());
        let zero = HeapConfig {
            address: Some(0),
            ..ok
        };
        assert!(validate(&zero, page).is_err());
        let big = vec![0u8; (1 << 20) + 1];
        let too_big = HeapConfig {
            init: Some(&big),
            ..ok
        };
        assert!(validate(&too_big, page).is_err());
    }

    #[test]
    fn create_write_read_and_image() {
        let h = Heap::create(HeapConfig {
            init: Some(b"image"),
            ..HeapConfig::new(1 << 16)
        })
        .unwrap();
        let mut buf = [0u8; 6];
        h.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"image\0");
        h.write(h.size() - 2, b"zz").unwrap();
        assert!(h.write(h.size() - 1, b"zz").is_err());
        assert!(h.read(u64::MAX, &mut buf).is_err());
        assert!(h.contains(h.base(), h.size()));
        assert!(!h.contains(h.base() - 1, 1));
        assert!(!h.contains(h.base() + h.size(), 1));
        assert!(!h.contains(u64::MAX, 2));
        assert_eq!(h.region().len, h.size());
    }

    #[test]
    fn heaps_up_to_4_gib_get_a_segment_window() {
        for size in [1u64 << 16, 1 << 30, SEGMENT_WINDOW] {
            let h = Heap::create(HeapConfig::new(size)).unwrap();
            assert!(h.segment_window(), "{size:#x}");
            assert_eq!(h.base() % SEGMENT_WINDOW, 0);
            assert_eq!(h.unmapped_above(), SEGMENT_WINDOW - size + h.guard());
            // Nothing else can be mapped in the window above the heap, nor right after it.
            let end = h.base() + SEGMENT_WINDOW;
            for probe in [h.base() + size, end - 4096, end, end + h.guard() - 4096] {
                assert!(
                    matches!(
                        sys::reserve(Some(probe), 4096),
                        Err(HeapError::AddressTaken { .. })
                    ),
                    "{probe:#x}"
                );
            }
        }
        let big = Heap::create(HeapConfig::new(SEGMENT_WINDOW * 2)).unwrap();
        assert!(!big.segment_window());
        assert_eq!(big.unmapped_above(), big.guard());
        // A fixed base aligned to the size but not to 4 GiB has the plain guard only.
        let addr = 0x5d00_0000_0000u64 + (1 << 20);
        let fixed = Heap::create(HeapConfig {
            address: Some(addr),
            ..HeapConfig::new(1 << 20)
        })
        .unwrap();
        assert!(!fixed.segment_window());
        assert_eq!(fixed.unmapped_above(), fixed.guard());
    }
}
