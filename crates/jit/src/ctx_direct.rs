//! Context accesses served without the context hook.
//!
//! A run may describe its context image with a [`CtxDirect`] ([`crate::JitEnv::ctx_direct`]):
//! which byte offsets are plain image accesses and which yield a packet pointer or NULL (the
//! program type's `convert_ctx_access`, as tables from the hooks). The context trampoline then
//! serves those accesses with one table look-up and one memory access instead of calling the
//! [`ContextAccess`](kflex_runtime::ContextAccess) hook; everything else still goes to the hook.
//! Results are identical: the tables mirror what the hook computes, and any access the tables do
//! not cover exactly (out of the image, misaligned, odd size) is left to the hook, which applies
//! the full rules.

use crate::CtxAccess;

/// Values of the kind tables (the `kflex_hooks::DirectKind` discriminants).
pub mod kind {
    /// Only through the hook.
    pub const HOOK: u8 = 0;
    /// A plain little-endian access of the image at the same offset.
    pub const PLAIN: u8 = 1;
    /// A load yields the first pointer cell (`data`).
    pub const DATA: u8 = 2;
    /// A load yields the second pointer cell (`data_end`).
    pub const DATA_END: u8 = 3;
    /// A load yields the third pointer cell (`data_meta`).
    pub const DATA_META: u8 = 4;
    /// A load yields 0.
    pub const NULL: u8 = 5;
}

/// How a directly served access reaches its value ([`CtxDirect::resolve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// A plain access of the access's size at this image address.
    Image(u64),
    /// A load of the 64-bit packet-pointer cell at this address.
    Cell(u64),
    /// A load that yields 0.
    Zero,
}

/// A context image the context trampoline may access directly (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct CtxDirect {
    image: u64,
    len: u64,
    pointers: u64,
    loads: &'static [u8],
    stores: &'static [u8],
    uniform: bool,
}

impl CtxDirect {
    /// Describes the image of `len` bytes at `image`; `pointers` is the address of three `u64`
    /// cells (`data`, `data_end`, `data_meta`) or 0 when there is no packet; `loads`/`stores`
    /// give a [`kind`] per byte offset, or `uniform` makes every in-image access plain.
    ///
    /// # Safety
    /// For as long as a run uses this descriptor: `[image, image + len)` must be valid,
    /// writable memory that nothing else accesses through references during the run, and
    /// `pointers`, unless 0, must point to three readable, aligned `u64`s.
    pub unsafe fn new(
        image: u64,
        len: u64,
        pointers: u64,
        loads: &'static [u8],
        stores: &'static [u8],
        uniform: bool,
    ) -> Self {
        CtxDirect {
            image,
            len,
            pointers,
            loads,
            stores,
            uniform,
        }
    }

    /// Where `access` is served directly, or `None` when the hook must serve it (the decision
    /// [`CtxDirect::serve`] and the inline context plan both act on).
    pub(crate) fn resolve(&self, access: &CtxAccess) -> Option<Resolved> {
        let off = u64::from(access.offset);
        let size = u64::from(access.size);
        if !matches!(size, 1 | 2 | 4 | 8)
            || !off.is_multiple_of(size)
            || off.checked_add(size)? > self.len
        {
            return None;
        }
        let k = if self.uniform {
            kind::PLAIN
        } else {
            let table = if access.write {
                self.stores
            } else {
                self.loads
            };
            *table.get(usize::try_from(off).ok()?)?
        };
        match (k, access.write) {
            (kind::PLAIN, _) => Some(Resolved::Image(self.image + off)),
            (kind::DATA | kind::DATA_END | kind::DATA_META, false) if self.pointers == 0 => {
                Some(Resolved::Zero)
            }
            (kind::DATA | kind::DATA_END | kind::DATA_META, false) => Some(Resolved::Cell(
                self.pointers + 8 * u64::from(k - kind::DATA),
            )),
            (kind::NULL, false) => Some(Resolved::Zero),
            _ => None,
        }
    }

    /// The value of `access` (the stored value's result, 0, for a store of `value`), or `None`
    /// when the hook must serve it.
    pub fn serve(&self, access: &CtxAccess, value: u64) -> Option<u64> {
        match self.resolve(access)? {
            Resolved::Image(addr) if access.write => {
                // SAFETY: `resolve` checked `[addr, addr + size)` lies inside the image, which is
                // valid and writable by `new`'s contract.
                unsafe { kflex_runtime::memory::raw_store(addr, access.size, value) };
                Some(0)
            }
            // SAFETY: as above, for a load.
            Resolved::Image(addr) => {
                Some(unsafe { kflex_runtime::memory::raw_load(addr, access.size) })
            }
            Resolved::Cell(cell) => {
                // SAFETY: `pointers` addresses three aligned, readable `u64`s (`new`'s contract),
                // and `resolve` returns one of them.
                Some(unsafe { std::ptr::read_volatile(cell as *const u64) })
            }
            Resolved::Zero => Some(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(offset: u32, size: u8, write: bool) -> CtxAccess {
        CtxAccess {
            pc: 0,
            offset,
            size,
            write,
        }
    }

    #[test]
    fn tables_route_accesses_and_bounds_go_to_the_hook() {
        static LOADS: [u8; 16] = [2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 5, 5, 5, 5];
        static STORES: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0];
        let mut image = [0u8; 16];
        image[8..12].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        let cells = [0x1000u64, 0x1040, 0x0ff0];
        // SAFETY: both arrays outlive every use of `d` in this test and are only accessed
        // through it meanwhile.
        let d = unsafe {
            CtxDirect::new(
                image.as_mut_ptr() as u64,
                16,
                cells.as_ptr() as u64,
                &LOADS,
                &STORES,
                false,
            )
        };
        assert_eq!(d.serve(&access(0, 4, false), 0), Some(0x1000));
        assert_eq!(d.serve(&access(4, 4, false), 0), Some(0x1040));
        assert_eq!(d.serve(&access(8, 4, false), 0), Some(0xdead_beef));
        assert_eq!(d.serve(&access(10, 2, false), 0), Some(0xdead));
        assert_eq!(d.serve(&access(12, 4, false), 0), Some(0));
        assert_eq!(d.serve(&access(8, 4, true), 7), Some(0));
        assert_eq!(d.serve(&access(8, 4, false), 0), Some(7));
        assert_eq!(d.serve(&access(0, 4, true), 7), None, "hook store");
        assert_eq!(d.serve(&access(9, 2, false), 0), None, "misaligned");
        assert_eq!(d.serve(&access(16, 4, false), 0), None, "outside");
        assert_eq!(d.serve(&access(8, 3, false), 0), None, "odd size");
        // SAFETY: as above.
        let u = unsafe { CtxDirect::new(image.as_mut_ptr() as u64, 16, 0, &[], &[], true) };
        assert_eq!(u.serve(&access(12, 4, true), 9), Some(0));
        assert_eq!(u.serve(&access(12, 4, false), 0), Some(9));
        assert_eq!(u.serve(&access(12, 8, false), 0), None, "past the end");
    }
}
