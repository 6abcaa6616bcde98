//! `#[repr(C)]` mirror of the allocator state in `sdk/include/kflex/alloc.h`, with the constants
//! of that header. Compile-time assertions pin every offset the C header fixes; the test
//! `tests/layout.rs` compiles the header with gcc and compares `offsetof`/`sizeof` too.

use std::mem::{offset_of, size_of};

/// CPUs with their own allocator state (`KFLEX_MAX_CPUS`); the CPU id is taken modulo this.
pub const MAX_CPUS: usize = 64;
/// Size classes (`KFLEX_NR_CLASSES`): 16, 32, ..., 4096 usable bytes.
pub const NR_CLASSES: usize = 9;
/// log2 of the smallest class (`KFLEX_MIN_CLASS_SHIFT`).
pub const MIN_CLASS_SHIFT: u32 = 4;
/// Largest allocation (`KFLEX_MAX_ALLOC`).
pub const MAX_ALLOC: u64 = 4096;
/// Entries of the per-CPU in-flight journal ring (`KFLEX_JOURNAL_LEN`).
pub const JOURNAL_LEN: usize = 16;
/// Slots of the per-CPU held-lock record (`KFLEX_HELD_LOCKS`).
pub const HELD_LOCKS: usize = 4;
/// Bytes of the header in front of every block's payload (`KFLEX_BLOCK_HEADER`).
pub const BLOCK_HEADER: u64 = 8;
/// `kflex_alloc.magic` once a host has attached (`KFLEX_ALLOC_MAGIC`).
pub const ALLOC_MAGIC: u64 = 0x636f_6c6c_6178_6c66;
/// `kflex_alloc.version` (`KFLEX_ALLOC_VERSION`).
pub const ALLOC_VERSION: u64 = 3;

/// Usable bytes of class `cls` (`KFLEX_CLASS_SIZE`).
pub const fn class_size(cls: usize) -> u64 {
    1 << (cls as u32 + MIN_CLASS_SHIFT)
}

/// Distance between consecutive blocks of class `cls` the host carves (header + payload).
pub const fn class_stride(cls: usize) -> u64 {
    class_size(cls) + BLOCK_HEADER
}

/// The class `kflex_malloc(size)` uses, `None` above [`MAX_ALLOC`] (`kflex_size_class`).
pub fn size_class(size: u64) -> Option<usize> {
    (size <= MAX_ALLOC).then(|| {
        (0..NR_CLASSES)
            .find(|&c| size <= class_size(c))
            .unwrap_or(0)
    })
}

/// One CPU's state (`struct kflex_alloc_cpu`, 640 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AllocCpu {
    /// Private free list per class (heap address of the first block, 0 when empty).
    pub free_head: [u64; NR_CLASSES],
    /// Blocks on each private free list.
    pub free_count: [u64; NR_CLASSES],
    /// Refill stack per class: the host pushes chains, the program takes the whole stack.
    pub refill: [u64; NR_CLASSES],
    /// Mallocs of each class that found the list and the refill stack empty.
    pub starved: [u64; NR_CLASSES],
    /// Blocks allocated since the last `kflex_commit()`, a ring indexed by position modulo
    /// [`JOURNAL_LEN`].
    pub journal: [u64; JOURNAL_LEN],
    /// Blocks allocated since the last commit (may exceed [`JOURNAL_LEN`]).
    pub journal_pos: u64,
    /// Heap addresses of the locks this CPU holds (0 = free slot).
    pub held_locks: [u64; HELD_LOCKS],
    /// `kflex_addr()`'s scratch word.
    pub scratch: u64,
    /// This CPU id + 1 (the lock owner value), written by the host at attach.
    pub self_id: u64,
    /// Per class, the private-list length beyond which `kflex_free` gives blocks back (written
    /// by the host; 0 = keep everything).
    pub keep: [u64; NR_CLASSES],
    /// Per class, blocks given back to the host: the program pushes, the host takes the whole
    /// stack.
    pub giveback: [u64; NR_CLASSES],
    /// Reserved (zero).
    pub reserved: [u64; 3],
}

/// The allocator state (`struct kflex_alloc`), the object's `kflex_alloc_state` heap global.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AllocState {
    /// [`ALLOC_MAGIC`] once a host has attached.
    pub magic: u64,
    /// [`ALLOC_VERSION`].
    pub version: u64,
    /// Reserved (zero).
    pub reserved: [u64; 6],
    /// Per-CPU state.
    pub cpu: [AllocCpu; MAX_CPUS],
}

/// Size of [`AllocState`] in bytes (the heap range the host must never carve from).
pub const STATE_SIZE: usize = size_of::<AllocState>();

const _: () = {
    assert!(size_of::<AllocCpu>() == 640);
    assert!(offset_of!(AllocCpu, free_head) == 0);
    assert!(offset_of!(AllocCpu, free_count) == 72);
    assert!(offset_of!(AllocCpu, refill) == 144);
    assert!(offset_of!(AllocCpu, starved) == 216);
    assert!(offset_of!(AllocCpu, journal) == 288);
    assert!(offset_of!(AllocCpu, journal_pos) == 416);
    assert!(offset_of!(AllocCpu, held_locks) == 424);
    assert!(offset_of!(AllocCpu, scratch) == 456);
    assert!(offset_of!(AllocCpu, self_id) == 464);
    assert!(offset_of!(AllocCpu, keep) == 472);
    assert!(offset_of!(AllocCpu, giveback) == 544);
    assert!(offset_of!(AllocState, magic) == 0);
    assert!(offset_of!(AllocState, version) == 8);
    assert!(offset_of!(AllocState, cpu) == 64);
    assert!(STATE_SIZE == 64 + 64 * 640);
    assert!(JOURNAL_LEN.is_power_of_two());
    assert!(class_size(NR_CLASSES - 1) == MAX_ALLOC);
};

/// Byte offset of a field of CPU `cpu`'s state from the start of [`AllocState`].
pub(crate) const fn cpu_field(cpu: usize, field: usize) -> usize {
    offset_of!(AllocState, cpu) + cpu * size_of::<AllocCpu>() + field
}

/// Offsets of [`AllocCpu`]'s fields, for word-wise atomic access.
pub(crate) mod field {
    use super::AllocCpu;
    use std::mem::offset_of;

    pub const FREE_COUNT: usize = offset_of!(AllocCpu, free_count);
    pub const REFILL: usize = offset_of!(AllocCpu, refill);
    pub const STARVED: usize = offset_of!(AllocCpu, starved);
    pub const JOURNAL: usize = offset_of!(AllocCpu, journal);
    pub const JOURNAL_POS: usize = offset_of!(AllocCpu, journal_pos);
    pub const HELD_LOCKS: usize = offset_of!(AllocCpu, held_locks);
    pub const SELF_ID: usize = offset_of!(AllocCpu, self_id);
    pub const KEEP: usize = offset_of!(AllocCpu, keep);
    pub const GIVEBACK: usize = offset_of!(AllocCpu, giveback);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes_match_the_c_rule() {
        assert_eq!(size_class(0), Some(0));
        assert_eq!(size_class(16), Some(0));
        assert_eq!(size_class(17), Some(1));
        assert_eq!(size_class(104), Some(3));
        assert_eq!(size_class(2049), Some(8));
        assert_eq!(size_class(4096), Some(8));
        assert_eq!(size_class(4097), None);
        assert_eq!(class_stride(0), 24);
        assert_eq!(class_stride(8), 4104);
    }
}
