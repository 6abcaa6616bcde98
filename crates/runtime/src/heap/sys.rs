//! Thin wrappers over the system calls the heap needs: address-space reservation, memfd creation,
//! fixed file mappings and residency queries. Every wrapper validates what it can and turns the
//! errno into a [`HeapError`] naming the call.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::HeapError;

/// Pages queried per `mincore` call (bounds the temporary vector to 256 KiB).
const MINCORE_CHUNK_PAGES: u64 = 1 << 18;

fn os(what: &'static str) -> HeapError {
    HeapError::Os {
        what,
        source: io::Error::last_os_error(),
    }
}

/// Converts a byte count to `usize`, or explains that it does not fit in the address space.
pub(super) fn to_usize(n: u64) -> Result<usize, HeapError> {
    usize::try_from(n)
        .map_err(|_| HeapError::Config(format!("{n:#x} bytes do not fit in the address space")))
}

/// Reserves `len` bytes of inaccessible, unreserved address space: anywhere when `at` is `None`,
/// else exactly at `at`, never replacing an existing mapping ([`HeapError::AddressTaken`]).
pub(super) fn reserve(at: Option<u64>, len: u64) -> Result<u64, HeapError> {
    let ulen = to_usize(len)?;
    let mut flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    if at.is_some() {
        flags |= libc::MAP_FIXED_NOREPLACE;
    }
    let hint = at.unwrap_or(0);
    // SAFETY: an anonymous PROT_NONE mapping; without a fixed address the kernel picks free space,
    // and MAP_FIXED_NOREPLACE fails instead of replacing anything already mapped.
    let p = unsafe {
        libc::mmap(
            hint as *mut libc::c_void,
            ulen,
            libc::PROT_NONE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EEXIST) => HeapError::AddressTaken { addr: hint, len },
            _ => HeapError::Os {
                what: "mmap (reserve)",
                source: err,
            },
        });
    }
    let got = p as u64;
    if let Some(want) = at
        && got != want
    {
        // Kernels before 4.17 treat MAP_FIXED_NOREPLACE as a hint: give the space back.
        unmap(got, len);
        return Err(HeapError::AddressTaken { addr: want, len });
    }
    Ok(got)
}

/// Unmaps `[addr, addr+len)`; a no-op for `len == 0`.
///
/// Callers pass only ranges they mapped themselves and no longer reference.
pub(super) fn unmap(addr: u64, len: u64) {
    let Ok(ulen) = usize::try_from(len) else {
        return;
    };
    if ulen == 0 {
        return;
    }
    // SAFETY: the caller owns this range (it came from one of our own mmap calls) and nothing
    // refers to it any more. munmap of our own range cannot affect other memory.
    let rc = unsafe { libc::munmap(addr as *mut libc::c_void, ulen) };
    debug_assert_eq!(rc, 0, "munmap({addr:#x}, {len:#x}) failed");
}

/// Creates a close-on-exec memfd of `size` bytes (sparse: no memory is allocated yet).
pub(super) fn memfd(size: u64) -> Result<OwnedFd, HeapError> {
    const NAME: &CStr = c"kflex-heap";
    // SAFETY: NAME is a valid NUL-terminated string; the flags are valid memfd flags.
    let fd = unsafe { libc::memfd_create(NAME.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(os("memfd_create"));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = libc::off_t::try_from(size)
        .map_err(|_| HeapError::Config(format!("{size:#x} bytes exceed the file size limit")))?;
    // SAFETY: ftruncate on a valid, owned descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(os("ftruncate"));
    }
    Ok(fd)
}

/// The size in bytes of the file behind `fd`.
pub(super) fn file_size(fd: BorrowedFd<'_>) -> Result<u64, HeapError> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a valid descriptor for the duration of the borrow; `st` is writable.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(os("fstat"));
    }
    u64::try_from(st.st_size).map_err(|_| HeapError::Config("negative file size".into()))
}

/// Maps `len` bytes of `fd` read-write and shared at exactly `addr`.
///
/// With `replace`, the range must be address space the caller reserved itself (it is replaced);
/// without, the call fails with [`HeapError::AddressTaken`] if anything is mapped there.
pub(super) fn map_shared(
    fd: BorrowedFd<'_>,
    addr: u64,
    len: u64,
    replace: bool,
) -> Result<(), HeapError> {
    let ulen = to_usize(len)?;
    let fixed = if replace {
        libc::MAP_FIXED
    } else {
        libc::MAP_FIXED_NOREPLACE
    };
    // SAFETY: with `replace` the caller owns the reserved range being replaced (documented
    // precondition), otherwise MAP_FIXED_NOREPLACE refuses to touch existing mappings. The file
    // is at least `len` bytes long (checked by callers), so no access through it raises SIGBUS.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            ulen,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | fixed,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EEXIST) => HeapError::AddressTaken { addr, len },
            _ => HeapError::Os {
                what: "mmap (heap)",
                source: err,
            },
        });
    }
    if p as u64 != addr {
        unmap(p as u64, len);
        return Err(HeapError::AddressTaken { addr, len });
    }
    Ok(())
}

/// Duplicates `fd` without close-on-exec, so that a child process spawned next inherits it.
pub(super) fn dup_inheritable(fd: BorrowedFd<'_>) -> Result<OwnedFd, HeapError> {
    // SAFETY: F_DUPFD on a valid descriptor returns a new descriptor (CLOEXEC clear) or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, 0) };
    if new < 0 {
        return Err(os("fcntl(F_DUPFD)"));
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Bytes of `[addr, addr+len)` (page aligned, mapped by us) currently resident in memory.
pub(super) fn resident(addr: u64, len: u64, page: u64) -> Result<u64, HeapError> {
    let pages = len / page;
    let mut vec = vec![0u8; to_usize(pages.min(MINCORE_CHUNK_PAGES))?];
    let mut total = 0u64;
    let mut done = 0u64;
    while done < pages {
        let n = (pages - done).min(MINCORE_CHUNK_PAGES);
        let start = addr + done * page;
        let n_us = to_usize(n)?;
        // SAFETY: `start..start+n*page` lies inside a mapping we own (caller precondition) and
        // `vec` has room for at least `n` entries, one per page.
        let rc = unsafe {
            libc::mincore(
                start as *mut libc::c_void,
                n_us * to_usize(page)?,
                vec.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(os("mincore"));
        }
        let resident = vec.iter().take(n_us).filter(|&&b| b & 1 != 0).count() as u64;
        total += resident * page;
        done += n;
    }
    Ok(total)
}
