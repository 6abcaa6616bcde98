//! Maps with Linux semantics: array (and global data), per-CPU array, hash, LRU hash, ring buffer,
//! and the arena (extension heap).
//!
//! All value memory is allocated outside Rust references (raw allocations and `mmap`), stays at a
//! fixed address for the lifetime of the map, and is accessed by the host only through raw copies,
//! so it can be registered in a [`MemoryMap`](crate::memory::MemoryMap) and handed to extensions.
//! [`MapTable`] owns every map of one runtime instance and is `Send + Sync`.

mod arena;
mod array;
mod error;
mod hash;
mod lru;
mod percpu_array;
mod plan;
mod raw;
mod ringbuf;
mod table;

pub use error::MapError;
pub use plan::{ArrayPlan, DeleteFn, HashPlan, LookupFn, MapCallPlan, PercpuArrayPlan, UpdateFn};
pub use ringbuf::{BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, RingBuf};
pub use table::MapTable;

/// `BPF_ANY`: create a new element or update an existing one.
pub const BPF_ANY: u64 = 0;
/// `BPF_NOEXIST`: create a new element only if it does not exist.
pub const BPF_NOEXIST: u64 = 1;
/// `BPF_EXIST`: update an existing element only.
pub const BPF_EXIST: u64 = 2;
/// `BPF_F_RDONLY_PROG` map flag: the program may only read the map's values.
pub const BPF_F_RDONLY_PROG: u32 = 0x80;

/// `BPF_RB_NO_WAKEUP`: do not notify the consumer of new data.
pub const BPF_RB_NO_WAKEUP: u64 = 1;
/// `BPF_RB_FORCE_WAKEUP`: notify the consumer unconditionally.
pub const BPF_RB_FORCE_WAKEUP: u64 = 2;
/// `bpf_ringbuf_query` flag: bytes submitted but not yet consumed.
pub const BPF_RB_AVAIL_DATA: u64 = 0;
/// `bpf_ringbuf_query` flag: size of the ring in bytes.
pub const BPF_RB_RING_SIZE: u64 = 1;
/// `bpf_ringbuf_query` flag: consumer position.
pub const BPF_RB_CONS_POS: u64 = 2;
/// `bpf_ringbuf_query` flag: producer position.
pub const BPF_RB_PROD_POS: u64 = 3;

/// Options for creating the maps of one runtime instance.
#[derive(Clone, Debug, Default)]
pub struct MapOptions {
    /// Number of CPUs per-CPU maps keep a slot for (default: the host's online CPU count).
    pub num_cpus: Option<u32>,
    /// Initial image for the first bytes of the arena map (at most one arena per object, as in
    /// Linux); ignored when the object has no arena.
    pub arena_init: Option<Vec<u8>>,
}

impl MapOptions {
    /// The number of CPUs to use: the explicit option, else the host's online CPU count (at least 1).
    pub fn cpus(&self) -> u32 {
        self.num_cpus.unwrap_or_else(online_cpus).max(1)
    }
}

/// The host's online CPU count (at least 1).
pub fn online_cpus() -> u32 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).unwrap_or(1).max(1)
}

/// The host's page size in bytes.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// Rounds `n` up to a multiple of 8.
pub(crate) const fn round_up8(n: u64) -> u64 {
    (n + 7) & !7
}
