//! W^X executable memory: code is written into a fresh read-write mapping, which is then made
//! read-execute before anything can run it. No mapping is ever writable and executable at once.

use crate::error::JitError;

/// A read-execute mapping holding finished machine code; unmapped on drop.
pub(crate) struct ExecutableMemory {
    ptr: *mut u8,
    /// Mapped length (whole pages).
    len: usize,
    /// Bytes of code at the start of the mapping.
    code_len: usize,
}

// SAFETY: the mapping is immutable (read-execute) after construction and owned exclusively by
// this value, so sharing or moving it between threads cannot race.
unsafe impl Send for ExecutableMemory {}
// SAFETY: as above; `&ExecutableMemory` only allows reading immutable bytes.
unsafe impl Sync for ExecutableMemory {}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

fn os_error(what: &str) -> JitError {
    JitError::Memory(format!("{what}: {}", std::io::Error::last_os_error()))
}

impl ExecutableMemory {
    /// Maps `code` read-write, copies it in, then flips the mapping to read-execute.
    pub(crate) fn new(code: &[u8]) -> Result<Self, JitError> {
        let page = page_size();
        let len = code
            .len()
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| JitError::Memory(format!("{} bytes of code", code.len())))?;
        // SAFETY: an anonymous private mapping at an address the kernel chooses; no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(os_error("mmap"));
        }
        let mem = ExecutableMemory {
            ptr: ptr.cast::<u8>(),
            len,
            code_len: code.len(),
        };
        // SAFETY: the mapping is `len >= code.len()` bytes, readable and writable, and cannot
        // overlap `code` (it was just created).
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), mem.ptr, code.len()) };
        // SAFETY: `ptr`/`len` describe exactly the mapping created above.
        let rc = unsafe { libc::mprotect(ptr, len, libc::PROT_READ | libc::PROT_EXEC) };
        if rc != 0 {
            return Err(os_error("mprotect"));
        }
        Ok(mem)
    }

    /// Address of the first code byte.
    pub(crate) fn addr(&self) -> usize {
        self.ptr as usize
    }

    /// The code bytes.
    pub(crate) fn code(&self) -> &[u8] {
        // SAFETY: the first `code_len` bytes of the mapping were initialised in `new`, and the
        // mapping is readable and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.code_len) }
    }
}

impl Drop for ExecutableMemory {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value owns; no code in it can be running
        // because runs borrow the program that owns this value.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_copied_and_page_rounded() {
        let m = ExecutableMemory::new(&[0xc3, 0x90]).unwrap();
        assert_eq!(m.code(), &[0xc3, 0x90]);
        assert_eq!(m.len % page_size(), 0);
        assert_eq!(m.addr() % page_size(), 0);
    }
}
