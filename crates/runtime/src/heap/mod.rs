//! The extension heap: a memfd-backed region whose size is a power of two, whose base is aligned to
//! its size, and which has unmapped guard zones on both sides.
//!
//! The alignment is what makes KFlex's software fault isolation cheap: any address can be forced
//! into the heap with `base | (addr & mask)` (or `base + (off & mask)` with the base in a
//! register), and an access at a masked address plus a bounded constant offset either lands inside
//! the heap or in a guard zone, where it faults instead of touching host memory. The guard must
//! therefore be at least as large as the largest offset the verifier lets a guard be elided for
//! (`kflex_verify::VerifyOptions::guard_zone`, 64 KiB by default), which also covers any
//! instruction offset (at most 32 KiB) plus the access size.
//!
//! A heap of at most 4 GiB is also placed at the start of a 4 GiB-aligned window whose rest is
//! reserved inaccessible ([`SEGMENT_WINDOW`], [`Heap::segment_window`]): the JIT's segment SFI mode
//! addresses the heap as `gs:[base + (x mod 2^32)]`, which then lands in the heap or faults for any
//! `x`, and a valid heap pointer's low 32 bits are its heap offset. This costs address space only.
//!
//! Pages are populated lazily on first touch, so a 64 GiB heap costs only address space until it
//! is used. The heap is a `memfd`, so another process can map the same memory at the same address
//! ([`Heap::share_fd`], [`SharedHeap::attach`]) and follow the same pointers.
//!
//! ```no_run
//! use kflex_runtime::heap::{Heap, HeapConfig};
//! let heap = Heap::create(HeapConfig::new(1 << 20)).unwrap();
//! heap.write(16, b"hello").unwrap();
//! let mut buf = [0u8; 5];
//! heap.read(16, &mut buf).unwrap();
//! assert_eq!(&buf, b"hello");
//! assert_eq!(heap.base() & heap.mask(), 0);
//! ```

mod owned;
mod shared;
mod sys;

use thiserror::Error;

pub use owned::Heap;
pub use shared::{HeapShare, SharedHeap};

/// Guard zone used when none is configured: the verifier's default `guard_zone` (64 KiB).
pub const DEFAULT_GUARD: u64 = 1 << 16;

/// The address window of the JIT's segment SFI mode: a heap of at most this size is placed at a
/// multiple of it and everything above the heap up to the window's end, plus a guard zone past
/// it, is reserved inaccessible ([`Heap::segment_window`]), so an access at a 32-bit offset from
/// the base lands in the heap or faults.
pub const SEGMENT_WINDOW: u64 = 1 << 32;

/// Smallest guard accepted: any instruction offset (at most 32 KiB either way) plus the largest
/// access (8 bytes) from a masked address must land in the guard zone.
pub const MIN_GUARD: u64 = (1 << 15) + 8;

/// How to create a [`Heap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapConfig<'a> {
    /// Heap size in bytes: a power of two, at least one page. Sizes above 4 GiB are supported.
    pub size: u64,
    /// Unmapped bytes on each side of the heap (rounded up to whole pages); at least
    /// [`MIN_GUARD`] and at least the verifier's `guard_zone`.
    pub guard: u64,
    /// Fixed base address (must be aligned to `size`); `None` lets the runtime choose one.
    pub address: Option<u64>,
    /// Bytes copied to the start of the heap after creation.
    pub init: Option<&'a [u8]>,
}

impl HeapConfig<'_> {
    /// A heap of `size` bytes with the default guard, anywhere, zero-filled.
    pub fn new(size: u64) -> Self {
        HeapConfig {
            size,
            guard: DEFAULT_GUARD,
            address: None,
            init: None,
        }
    }
}

/// Why a heap could not be created, attached or accessed.
#[derive(Debug, Error)]
pub enum HeapError {
    /// The configuration is invalid (size, guard, address or initial image).
    #[error("invalid heap configuration: {0}")]
    Config(String),
    /// The requested address range is already (partly) mapped.
    #[error("address range {addr:#x}+{len:#x} is already in use")]
    AddressTaken {
        /// Start of the range asked for.
        addr: u64,
        /// Its length.
        len: u64,
    },
    /// A system call failed.
    #[error("{what} failed: {source}")]
    Os {
        /// The call.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A host read or write does not fit inside the heap.
    #[error("{len} bytes at heap offset {offset:#x} leave the heap ({size:#x} bytes)")]
    OutOfRange {
        /// Offset asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// Heap size.
        size: u64,
    },
}
