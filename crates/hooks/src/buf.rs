//! An owned byte buffer that is only ever accessed through raw pointers.
//!
//! Buffers handed to an extension (the packet, the context image) are registered in a
//! [`MemoryMap`](kflex_runtime::MemoryMap) by address, and the interpreter and helpers read and write
//! them through that table. To stay sound while those raw accesses happen, the host side never holds
//! a Rust reference into the buffer either: every access here goes through the raw base pointer,
//! bounds-checked, and the allocation is only freed on drop.

use std::ptr::NonNull;

/// A heap allocation of `len` bytes, accessed only through raw pointers.
pub(crate) struct RawBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl RawBuf {
    /// A buffer holding `bytes`.
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        let boxed: Box<[u8]> = bytes.into_boxed_slice();
        let len = boxed.len();
        let raw: *mut [u8] = Box::into_raw(boxed);
        // `Box::into_raw` never returns null.
        let ptr = NonNull::new(raw.cast::<u8>()).unwrap_or(NonNull::dangling());
        RawBuf { ptr, len }
    }

    /// A zeroed buffer of `len` bytes: `spare`, zeroed, if it has exactly that length (same
    /// address), a new allocation otherwise.
    pub(crate) fn zeroed_reusing(spare: Option<RawBuf>, len: usize) -> Self {
        match spare {
            Some(buf) if buf.len == len => {
                buf.zero(0, len);
                buf
            }
            _ => RawBuf::from_vec(vec![0u8; len]),
        }
    }

    /// Sets bytes `[from, to)` to zero (clamped to the buffer).
    pub(crate) fn zero(&self, from: usize, to: usize) {
        let to = to.min(self.len);
        if from < to {
            // SAFETY: [from, to) is inside the live allocation (clamped above). Only raw
            // pointers touch the buffer.
            unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(from), 0, to - from) };
        }
    }

    /// Address of the first byte (what extensions see).
    pub(crate) fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Copies `len` bytes at `off`, or `None` if the range is not inside the buffer.
    pub(crate) fn read(&self, off: usize, len: usize) -> Option<Vec<u8>> {
        let end = off.checked_add(len)?;
        if end > self.len {
            return None;
        }
        let mut out = vec![0u8; len];
        // SAFETY: [off, off+len) is inside the live allocation (checked above); `out` is a fresh
        // allocation, so the ranges cannot overlap. Only raw pointers touch the buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), out.as_mut_ptr(), len) };
        Some(out)
    }

    /// Copies `dst.len()` bytes at `off` into `dst`; returns `false` (copying nothing) if the
    /// range is not inside the buffer.
    pub(crate) fn read_into(&self, off: usize, dst: &mut [u8]) -> bool {
        let Some(end) = off.checked_add(dst.len()) else {
            return false;
        };
        if end > self.len {
            return false;
        }
        // SAFETY: [off, end) is inside the live allocation (checked above); `dst` is a Rust
        // reference, so it cannot alias the buffer, which is only touched through raw pointers.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), dst.as_mut_ptr(), dst.len())
        };
        true
    }

    /// Copies `bytes` to `off`; returns `false` (and writes nothing) if the range is outside.
    pub(crate) fn write(&self, off: usize, bytes: &[u8]) -> bool {
        let Some(end) = off.checked_add(bytes.len()) else {
            return false;
        };
        if end > self.len {
            return false;
        }
        // SAFETY: [off, end) is inside the live allocation (checked above). `bytes` may alias the
        // buffer only if the caller obtained it from `read`, which returns a fresh copy, so `copy`
        // (memmove semantics) is used to be safe regardless.
        unsafe { std::ptr::copy(bytes.as_ptr(), self.ptr.as_ptr().add(off), bytes.len()) };
        true
    }

    /// Moves `len` bytes from `src` to `dst` inside the buffer (ranges may overlap).
    pub(crate) fn move_within(&self, src: usize, dst: usize, len: usize) -> bool {
        let ok = |o: usize| o.checked_add(len).is_some_and(|e| e <= self.len);
        if !ok(src) || !ok(dst) {
            return false;
        }
        // SAFETY: both ranges are inside the live allocation (checked above); `copy` handles overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(src), self.ptr.as_ptr().add(dst), len) };
        true
    }

    /// Little-endian load of `size` (1..=8) bytes at `off`.
    pub(crate) fn load_le(&self, off: usize, size: usize) -> Option<u64> {
        if size > 8 {
            return None;
        }
        let end = off.checked_add(size)?;
        if end > self.len {
            return None;
        }
        let mut word = [0u8; 8];
        // SAFETY: [off, off+size) is inside the live allocation (checked above) and `word` is a
        // local array of at least `size` bytes. Only raw pointers touch the buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(off), word.as_mut_ptr(), size)
        };
        Some(u64::from_le_bytes(word))
    }

    /// Little-endian store of the low `size` (1..=8) bytes of `value` at `off`.
    pub(crate) fn store_le(&self, off: usize, size: usize, value: u64) -> bool {
        match value.to_le_bytes().get(..size) {
            Some(bytes) => self.write(off, bytes),
            None => false,
        }
    }

    /// A copy of the whole buffer.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.read(0, self.len).unwrap_or_default()
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
        // SAFETY: `ptr`/`len` came from `Box::into_raw` of a `Box<[u8]>` of exactly this length in
        // `from_vec`, and this is the only place that frees it.
        drop(unsafe { Box::from_raw(slice) });
    }
}

impl std::fmt::Debug for RawBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawBuf({:#x}, {} bytes)", self.addr(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        let b = RawBuf::from_vec(vec![1, 2, 3, 4]);
        assert_eq!(b.read(1, 3), Some(vec![2, 3, 4]));
        assert_eq!(b.read(2, 3), None);
        assert_eq!(b.read(usize::MAX, 2), None);
        assert!(!b.write(3, &[9, 9]));
        assert!(b.write(3, &[9]));
        assert_eq!(b.to_vec(), vec![1, 2, 3, 9]);
        assert_eq!(b.load_le(0, 2), Some(0x0201));
        assert!(b.store_le(0, 4, 0xaabb_ccdd));
        assert_eq!(b.to_vec(), vec![0xdd, 0xcc, 0xbb, 0xaa]);
        assert_eq!(b.load_le(0, 9), None);
        assert_eq!(b.load_le(3, 2), None, "past the end");
        assert_eq!(b.load_le(usize::MAX, 1), None);
        assert!(b.move_within(0, 1, 3));
        assert_eq!(b.to_vec(), vec![0xdd, 0xdd, 0xcc, 0xbb]);
        assert!(!b.move_within(0, 2, 3));
    }

    #[test]
    fn reuse_keeps_the_address_only_for_the_same_length() {
        let b = RawBuf::from_vec(vec![7; 8]);
        let addr = b.addr();
        let b = RawBuf::zeroed_reusing(Some(b), 8);
        assert_eq!((b.addr(), b.to_vec()), (addr, vec![0; 8]));
        let c = RawBuf::zeroed_reusing(Some(b), 4);
        assert_eq!(c.to_vec(), vec![0; 4]);
        let d = RawBuf::from_vec(vec![1, 2, 3, 4, 5]);
        d.zero(1, 3);
        d.zero(4, 100);
        d.zero(3, 2);
        assert_eq!(d.to_vec(), vec![1, 0, 0, 4, 0]);
    }

    #[test]
    fn empty_buffer() {
        let b = RawBuf::from_vec(Vec::new());
        assert_eq!(b.len(), 0);
        assert_eq!(b.to_vec(), Vec::<u8>::new());
        assert_eq!(b.read(0, 1), None);
    }
}
