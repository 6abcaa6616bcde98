//! kflex-sdk: the host side of the C SDK in `sdk/include/kflex` — the heap allocator's shared
//! layout, the user-space refill of its free lists, and cleanup of heap locks and in-flight
//! allocations after a cancelled invocation. `sdk/README.md` describes the SDK as a whole.
//!
//! # The shared state
//!
//! Each object that uses the allocator defines one heap global `struct kflex_alloc
//! kflex_alloc_state` (`KFLEX_ALLOCATOR();`), mirrored by [`layout::AllocState`]:
//! `magic`, `version`, then per CPU id ([`layout::MAX_CPUS`] = 64, the program's CPU id modulo
//! 64) a [`layout::AllocCpu`] with
//!
//! * `free_head[cls]`, `free_count[cls]` — the CPU's private free list of each size class
//!   (classes 16, 32, ..., 4096 usable bytes; [`layout::class_size`]), touched only by programs;
//! * `refill[cls]` — the refill stack the host pushes chains of blocks onto and the program
//!   takes whole with one exchange;
//! * `starved[cls]` — mallocs that returned NULL (the host doubles that chain length);
//! * `journal[16]`, `journal_pos` — blocks allocated since the last `kflex_commit()`;
//! * `held_locks[4]` — heap addresses of the `struct kflex_lock`s the CPU holds;
//! * `scratch` — used by `kflex_addr()`;
//! * `self_id` — the CPU id + 1 (a held lock's word), written at attach;
//! * `keep[cls]`, `giveback[cls]` — once the private list holds `keep` blocks (set by the host
//!   to [`AllocConfig::keep_chains`] chains), `kflex_free` pushes onto the give-back stack,
//!   which [`HeapAllocator::refill`] drains into the host's pool.
//!
//! Blocks have an 8-byte header in front of the payload ([`block`]): class, allocated bit,
//! chain length (in a chain's head) and a magic tag. Blocks are carved only by the host.
//!
//! # Using it
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kflex_sdk::HeapAllocator;
//!
//! # fn demo(state: *mut u8, carve: std::ops::Range<u64>) -> kflex_sdk::Result<()> {
//! // `state`: host address of `kflex_alloc_state` (what the object's init reports);
//! // `carve`: heap addresses not used by the object's globals.
//! // SAFETY: the heap mapping outlives the allocator and heap addresses are host addresses.
//! let alloc = Arc::new(unsafe { HeapAllocator::attach(state, carve)? });
//! alloc.refill(); // stock every CPU before the first run
//! let _refiller = alloc.clone().spawn_refill_thread(Duration::from_millis(1));
//! // ... run programs; after a cancelled run on CPU id `cpu`:
//! let report = alloc.release_after_cancel(0);
//! assert_eq!(alloc.stats().in_flight, 0);
//! # let _ = report; Ok(())
//! # }
//! ```
//!
//! Modules: [`layout`] (the `#[repr(C)]` mirror and constants), [`block`] (block headers),
//! `allocator` ([`HeapAllocator`]), `refill_thread` ([`RefillThread`]), `carve` (the host's
//! record of carved blocks), `mem` (atomic word access to the heap).

#![warn(missing_docs)]

mod allocator;
pub mod block;
mod carve;
mod error;
pub mod layout;
mod mem;
mod refill_thread;

pub use allocator::{AllocConfig, AllocStats, HeapAllocator, ReleaseReport};
pub use error::{Error, Result};
pub use refill_thread::RefillThread;
