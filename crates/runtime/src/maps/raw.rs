//! Raw memory that backs map values: heap allocations and `mmap`ed areas at fixed addresses.
//!
//! None of this memory is ever borrowed as a Rust reference; the host reads and writes it only with
//! bounds-checked raw copies, so extensions may access it concurrently through a `MemoryMap`.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

/// Alignment of raw value buffers.
const ALIGN: usize = 16;

/// A zero-initialised heap allocation at a stable address.
pub(crate) struct RawBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: RawBuf owns its allocation and exposes it only through raw copies (no references), so
// moving it between threads or sharing it is no different from sharing a raw address.
unsafe impl Send for RawBuf {}
// SAFETY: see the `Send` impl; concurrent raw copies are the same contract Linux maps have.
unsafe impl Sync for RawBuf {}

impl RawBuf {
    /// Allocates `len` zeroed bytes (at least one byte is allocated so the address is unique).
    pub(crate) fn zeroed(len: u64) -> Result<Self, String> {
        let len = usize::try_from(len).map_err(|_| format!("{len} bytes do not fit in memory"))?;
        let layout = Layout::from_size_align(len.max(1), ALIGN)
            .map_err(|e| format!("bad allocation size {len}: {e}"))?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or_else(|| format!("allocation of {len} bytes failed"))?;
        Ok(RawBuf { ptr, len, layout })
    }

    /// Address of the first byte.
    pub(crate) fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `len` bytes at `off` out, or `None` if the range is outside the buffer.
    pub(crate) fn read(&self, off: u64, len: usize) -> Option<Vec<u8>> {
        let off = self.in_bounds(off, len)?;
        let mut out = vec![0u8; len];
        // SAFETY: [off, off+len) is inside the allocation (checked above); `out` is a fresh Vec.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(off), out.as_mut_ptr(), len) };
        Some(out)
    }

    /// Copies `data` in at `off`; false if the range is outside the buffer.
    pub(crate) fn write(&self, off: u64, data: &[u8]) -> bool {
        let Some(off) = self.in_bounds(off, data.len()) else {
            return false;
        };
        // SAFETY: the range is inside the allocation; no Rust reference to it exists.
        unsafe { std::ptr::copy(data.as_ptr(), self.ptr.as_ptr().add(off), data.len()) };
        true
    }

    fn in_bounds(&self, off: u64, len: usize) -> Option<usize> {
        let off = usize::try_from(off).ok()?;
        (off.checked_add(len)? <= self.len).then_some(off)
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// An anonymous or file-backed `mmap` area, unmapped on drop.
pub(crate) struct Mapping {
    addr: u64,
    len: usize,
}

// SAFETY: the mapping is only accessed through raw copies; see `RawBuf`.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

fn os_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

impl Mapping {
    /// Maps `len` bytes of zeroed shared memory twice, back to back, so that a range starting in the
    /// first copy and running past its end continues at the start of the same memory (the layout
    /// Linux uses for ring buffers). The mapping is `2 * len` bytes long.
    pub(crate) fn double(len: u64) -> Result<Self, String> {
        let size = usize::try_from(len).map_err(|_| format!("{len} bytes do not fit in memory"))?;
        let total = size
            .checked_mul(2)
            .ok_or_else(|| format!("{len} bytes do not fit in memory twice"))?;
        if size == 0 {
            return Err("zero-length mapping".into());
        }
        // SAFETY: the name is a valid NUL-terminated string.
        let fd = unsafe { libc::memfd_create(c"kflex-ringbuf".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(os_error("memfd_create"));
        }
        let result = Self::double_from_fd(fd, size, total);
        // SAFETY: `fd` is ours; the mappings keep the memory alive after it is closed.
        unsafe { libc::close(fd) };
        result
    }

    fn double_from_fd(fd: libc::c_int, size: usize, total: usize) -> Result<Self, String> {
        let off = libc::off_t::try_from(size).map_err(|_| "ring too large".to_string())?;
        // SAFETY: `fd` is a valid memfd we own.
        if unsafe { libc::ftruncate(fd, off) } != 0 {
            return Err(os_error("ftruncate"));
        }
        // SAFETY: reserving address space with an inaccessible anonymous mapping.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(os_error("mmap reserve"));
        }
        let m = Mapping {
            addr: base as u64,
            len: total,
        };
        for half in [0usize, size] {
            // SAFETY: MAP_FIXED only replaces pages of the reservation we just made and own.
            let p = unsafe {
                libc::mmap(
                    (base as *mut u8).wrapping_add(half) as *mut libc::c_void,
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED,
                    fd,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(os_error("mmap ring copy"));
            }
        }
        Ok(m)
    }

    /// Address of the first byte.
    pub(crate) fn addr(&self) -> u64 {
        self.addr
    }

    /// Copies `data` in at `off`; false if the range is outside the mapping (tests write
    /// records and wrapped data through it).
    #[cfg(test)]
    pub(crate) fn write(&self, off: u64, data: &[u8]) -> bool {
        let Some(off) = usize::try_from(off).ok() else {
            return false;
        };
        if off.checked_add(data.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        // SAFETY: the range is inside the mapping, which is readable and writable.
        unsafe { std::ptr::copy(data.as_ptr(), (self.addr as *mut u8).add(off), data.len()) };
        true
    }

    /// Copies `len` bytes at `off` out, or `None` if the range is outside the mapping.
    pub(crate) fn read(&self, off: u64, len: usize) -> Option<Vec<u8>> {
        let off = usize::try_from(off).ok()?;
        if off.checked_add(len)? > self.len {
            return None;
        }
        let mut out = vec![0u8; len];
        // SAFETY: the range is inside the mapping; `out` is a fresh Vec.
        unsafe { std::ptr::copy((self.addr as *const u8).add(off), out.as_mut_ptr(), len) };
        Some(out)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: [addr, addr+len) was mapped by us and is unmapped exactly once.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rawbuf_bounds() {
        let b = RawBuf::zeroed(16).unwrap();
        assert_eq!(b.read(0, 16).unwrap(), vec![0; 16]);
        assert!(b.write(12, &[1, 2, 3, 4]));
        assert!(!b.write(13, &[1, 2, 3, 4]));
        assert!(b.read(u64::MAX, 1).is_none());
        assert_eq!(b.read(12, 4).unwrap(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn double_mapping_aliases() {
        let m = Mapping::double(4096).unwrap();
        assert!(m.write(4094, &[1, 2, 3, 4]));
        assert_eq!(m.read(0, 2).unwrap(), vec![3, 4]);
        assert_eq!(m.read(4096 + 4094, 2).unwrap(), vec![1, 2]);
    }
}
