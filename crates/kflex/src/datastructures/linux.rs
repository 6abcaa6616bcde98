//! The data-structure extensions in the Linux kernel: [`LinuxDriver`] runs a structure's object
//! through the libbpf back end ([`kflex_linux::backend`]), its heap being the object's BPF arena
//! mapped into this process.
//!
//! [`LinuxDriver::new`] loads the object, runs its `init` program (a `syscall` program whose
//! context is `struct ds_ctx`), checks the layout `init` reports against the arena mapping,
//! attaches the host allocator to the allocator state in the arena and fills its refill stacks
//! from user space (touching each page through the mapping is what allocates it in the kernel:
//! programs never allocate arena pages). Each [`Driver::run`] tops the refill stacks up, sets
//! `ctx.count` and runs `update`, `lookup` or `delete` with `BPF_PROG_TEST_RUN`; the mailbox is
//! the arena memory the program reads and writes, at the same addresses.
//!
//! ```no_run
//! use kflex::datastructures::linux::LinuxDriver;
//! use kflex_datastructures::{Driver, OpKind, Structure};
//!
//! let mut d = LinuxDriver::new(Structure::Hash)?;
//! d.mailbox()[0].key[0] = 7;
//! assert_eq!(d.run(OpKind::Update, 1)?, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Range;

use kflex_datastructures::heap::HostAllocator;
use kflex_datastructures::protocol::{BATCH_MAX, CTX_SIZE, Ctx, Op, OpKind};
use kflex_datastructures::{Driver, DriverError, Structure};
use kflex_linux::backend::{ArenaMapping, BackendError, LinuxExtension};

/// The engine name the driver reports.
pub const ENGINE: &str = "linux";

/// Page size the host carves around (blocks never share a page with the globals).
const PAGE: u64 = 4096;

/// Why a structure could not be set up in the kernel.
#[derive(Debug, thiserror::Error)]
pub enum LinuxDriverError {
    /// The back end failed: unavailable here ([`BackendError::Unavailable`]), the verifier
    /// rejected a program (with its log), or a run failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The object is missing from this build, or `init` failed or reported an impossible layout.
    #[error("{structure}: {message}")]
    Setup {
        /// The structure.
        structure: Structure,
        /// What went wrong.
        message: String,
    },
}

impl LinuxDriverError {
    /// Whether the error only says that this process cannot use the kernel back end.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LinuxDriverError::Backend(BackendError::Unavailable(_)))
    }

    fn setup(structure: Structure, message: impl Into<String>) -> Self {
        LinuxDriverError::Setup {
            structure,
            message: message.into(),
        }
    }
}

/// A structure loaded into the kernel and initialised, ready to run batches (see the module
/// docs).
pub struct LinuxDriver {
    // Field order is drop order: the allocator refers to arena memory that `ext` maps.
    allocator: HostAllocator,
    structure: Structure,
    ctx: [u8; CTX_SIZE],
    init: Ctx,
    mailbox: *mut Op,
    ext: LinuxExtension,
}

impl std::fmt::Debug for LinuxDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxDriver")
            .field("structure", &self.structure)
            .field("init", &self.init)
            .field("arena", &self.ext.arena())
            .finish_non_exhaustive()
    }
}

impl LinuxDriver {
    /// Loads `structure`'s object into the kernel, runs `init` and attaches and fills the heap
    /// allocator. [`LinuxDriverError::is_unavailable`] tells a process without BPF apart.
    pub fn new(structure: Structure) -> Result<Self, LinuxDriverError> {
        if !structure.is_available() {
            return Err(LinuxDriverError::setup(
                structure,
                "this build has no object for it",
            ));
        }
        let ext = LinuxExtension::load(structure.name(), structure.object())?;
        let arena = ext
            .arena()
            .cloned()
            .ok_or_else(|| LinuxDriverError::setup(structure, "the object has no arena map"))?;
        let mut ctx = Ctx::default().to_bytes();
        let ret = ext.run_syscall("init", &mut ctx)? as i32;
        let init = Ctx::from_bytes(&ctx).unwrap_or_default();
        if ret != 0 {
            return Err(LinuxDriverError::setup(
                structure,
                format!("init returned {ret}"),
            ));
        }
        check_layout(&init, &arena).map_err(|m| LinuxDriverError::setup(structure, m))?;
        let globals = init.globals..init.globals + init.globals_size;
        let carve = carve_range(arena.range(), globals);
        // SAFETY: libbpf maps the arena read-write into this process at the addresses programs
        // use; `init` reported the allocator state inside the globals (checked above) and `carve`
        // leaves the globals' pages out. The mapping belongs to `ext`, which the driver drops
        // after the allocator (field order), and nothing else carves from the arena.
        let allocator = unsafe { HostAllocator::attach(init.alloc_state as *mut u8, carve) }
            .map_err(|e| LinuxDriverError::setup(structure, e))?;
        allocator.refill();
        Ok(LinuxDriver {
            allocator,
            structure,
            ctx,
            init,
            mailbox: init.mailbox as *mut Op,
            ext,
        })
    }

    /// The structure.
    pub fn structure(&self) -> Structure {
        self.structure
    }

    /// The loaded object (programs, maps, arena mapping).
    pub fn extension(&self) -> &LinuxExtension {
        &self.ext
    }

    /// The context `init` reported (mailbox, allocator state, globals).
    pub fn init_ctx(&self) -> Ctx {
        self.init
    }

    /// The host allocator attached to the structure's arena.
    pub fn allocator(&self) -> &HostAllocator {
        &self.allocator
    }
}

/// Checks that what `init` reported lies in the arena: the mailbox (8-byte aligned,
/// [`BATCH_MAX`] ops) and the allocator state inside the globals, the globals inside the arena.
fn check_layout(init: &Ctx, arena: &ArenaMapping) -> Result<(), String> {
    let op_bytes = (BATCH_MAX * std::mem::size_of::<Op>()) as u64;
    let globals_end = init.globals.checked_add(init.globals_size);
    let ok = arena.contains(init.globals, init.globals_size as usize)
        && globals_end.is_some_and(|end| {
            (init.globals..end).contains(&init.alloc_state)
                && init.mailbox >= init.globals
                && init.mailbox.checked_add(op_bytes).is_some_and(|m| m <= end)
        })
        && init.mailbox % 8 == 0;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "init reported a layout outside the arena {:#x?}: {init:?}",
            arena.range()
        ))
    }
}

/// The part of `heap` the host may carve blocks from: the larger of the two page-aligned gaps
/// beside `globals` (libbpf puts arena globals at the start or the end of the arena).
fn carve_range(heap: Range<u64>, globals: Range<u64>) -> Range<u64> {
    let below = heap.start..(globals.start & !(PAGE - 1)).max(heap.start);
    let above = globals.end.div_ceil(PAGE).saturating_mul(PAGE).min(heap.end)..heap.end;
    if above.end - above.start >= below.end.saturating_sub(below.start) {
        above
    } else {
        below
    }
}

impl Driver for LinuxDriver {
    fn engine(&self) -> &str {
        ENGINE
    }

    fn mailbox(&mut self) -> &mut [Op] {
        // SAFETY: `init` reported the mailbox inside the arena's globals (checked in `new`),
        // 8-byte aligned, BATCH_MAX ops long; the mapping lives as long as `ext`, and `&mut self`
        // makes this the only reference (no program runs while it is held).
        unsafe { std::slice::from_raw_parts_mut(self.mailbox, BATCH_MAX) }
    }

    fn run(&mut self, op: OpKind, count: usize) -> Result<i64, DriverError> {
        if count > BATCH_MAX {
            return Err(DriverError::BatchTooLarge {
                count,
                max: BATCH_MAX,
            });
        }
        self.allocator.refill();
        self.ctx[32..36].copy_from_slice(&(count as u32).to_le_bytes());
        let ret = self
            .ext
            .run_syscall(op.program(), &mut self.ctx)
            .map_err(|e| DriverError::engine(ENGINE, e.to_string()))?;
        // The programs return a 32-bit count.
        Ok(i64::from(ret as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carving_skips_the_globals_pages_at_either_end() {
        let heap = 0x10000..0x20000;
        assert_eq!(carve_range(heap.clone(), 0x10000..0x10100), 0x11000..0x20000);
        assert_eq!(carve_range(heap.clone(), 0x1e010..0x20000), 0x10000..0x1e000);
        assert_eq!(carve_range(heap, 0x10000..0x20000), 0x20000..0x20000);
    }

    #[test]
    fn layouts_outside_the_arena_are_refused() {
        let arena = ArenaMapping {
            map: "heap".into(),
            base: 0x10_0000,
            size: 0x10_0000,
            globals: 0x10_0000..0x13_0000,
        };
        let good = Ctx {
            mailbox: 0x10_1000,
            alloc_state: 0x12_0000,
            globals: 0x10_0000,
            globals_size: 0x3_0000,
            count: 0,
            ret: 0,
        };
        assert_eq!(check_layout(&good, &arena), Ok(()));
        for bad in [
            Ctx { mailbox: 0x12_f000, ..good },
            Ctx { mailbox: 0x10_1004, ..good },
            Ctx { alloc_state: 0x13_0000, ..good },
            Ctx { globals_size: 0x10_0001, ..good },
            Ctx { globals: u64::MAX - 4, ..good },
        ] {
            assert!(check_layout(&bad, &arena).is_err(), "{bad:?}");
        }
    }
}
