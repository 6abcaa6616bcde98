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

use kflex_datastructures::driver::check_count;
use kflex_datastructures::heap::{HostAllocator, attach_after_init};
use kflex_datastructures::protocol::{BATCH_MAX, CTX_SIZE, Ctx, Op, OpKind};
use kflex_datastructures::{Driver, DriverError, Structure};
use kflex_linux::backend::{BackendError, LinuxExtension};

/// The engine name the driver reports.
pub const ENGINE: &str = "linux";

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
        matches!(
            self,
            LinuxDriverError::Backend(BackendError::Unavailable(_))
        )
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
        Self::with_object(structure, structure.object())
    }

    /// Like [`LinuxDriver::new`] with another build of the structure: `object` is any BPF ELF
    /// object following the protocol of `ds/common.h` (programs `init`, `update`, `lookup`,
    /// `delete`; heap globals with the mailbox and `kflex_alloc_state`). `structure` names it.
    pub fn with_object(structure: Structure, object: &[u8]) -> Result<Self, LinuxDriverError> {
        let ext = LinuxExtension::load(structure.name(), object)?;
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
        // SAFETY: libbpf maps the arena read-write into this process at the addresses programs
        // use; the mapping belongs to `ext`, which the driver drops after the allocator (field
        // order), and nothing else carves from the arena.
        let allocator = unsafe { attach_after_init(&init, arena.range()) }
            .map_err(|m| LinuxDriverError::setup(structure, m))?;
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
        check_count(count)?;
        self.allocator.refill();
        Ctx::set_count(&mut self.ctx, count);
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

    /// `crates/linux/tests/c/ds_table.c` compiled (a chained hash table over the ds protocol),
    /// or `None` when clang is missing.
    fn ds_table() -> Option<Vec<u8>> {
        let root = kflex_testutil::repo_root();
        let include = root.join("datastructures/include");
        kflex_testutil::compile_c_with(
            &root.join("crates/linux/tests/c/ds_table.c"),
            &["-Werror", "-I", include.to_str().expect("UTF-8 path")],
        )
    }

    fn open() -> Option<LinuxDriver> {
        if let Err(reason) = kflex_linux::backend::backend_available() {
            kflex_testutil::skip(&reason);
            return None;
        }
        let object = ds_table()?;
        Some(LinuxDriver::with_object(Structure::Hash, &object).expect("ds_table loads"))
    }

    /// Key `k`: distinct words, so keys differ in more than their hash.
    fn key(k: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&k.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        out[24..].copy_from_slice(&k.to_le_bytes());
        out
    }

    fn value(k: u64, version: u64) -> [u8; 64] {
        let mut v = [0u8; 64];
        v[..8].copy_from_slice(&k.to_le_bytes());
        v[56..].copy_from_slice(&version.to_le_bytes());
        v
    }

    /// A deterministic xorshift stream.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_batches_match_a_hash_map_model_in_the_kernel() {
        let Some(mut d) = open() else { return };
        assert_eq!(d.engine(), "linux");
        let init = d.init_ctx();
        let arena = d.extension().arena().expect("arena").clone();
        assert!(arena.contains(init.mailbox, BATCH_MAX * std::mem::size_of::<Op>()));
        let mut model: std::collections::HashMap<u64, u64> = Default::default();
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut version = 0;
        for round in 0..40 {
            let kind = OpKind::ALL[(rng.next() % 3) as usize];
            let count = 1 + (rng.next() % 400) as usize;
            let keys: Vec<u64> = (0..count).map(|_| rng.next() % 600).collect();
            let mut expected = Vec::with_capacity(count);
            for (slot, &k) in d.mailbox().iter_mut().zip(&keys) {
                version += 1;
                *slot = Op::new(key(k), value(k, version));
                if kind != OpKind::Update {
                    slot.value = [0xee; 64];
                }
                expected.push(match kind {
                    OpKind::Update => match model.insert(k, version) {
                        None => (1, None),
                        Some(_) => (2, None),
                    },
                    OpKind::Lookup => match model.get(&k) {
                        Some(&v) => (1, Some(value(k, v))),
                        None => (0, None),
                    },
                    OpKind::Delete => (i64::from(model.remove(&k).is_some()), None),
                });
            }
            let hits = d.run(kind, count).expect("batch runs");
            let ops = &d.mailbox()[..count];
            for (i, (op, (result, v))) in ops.iter().zip(&expected).enumerate() {
                assert_eq!(
                    op.result, *result,
                    "round {round} {kind:?} op {i} key {}",
                    keys[i]
                );
                if let Some(v) = v {
                    assert_eq!(&op.value, v, "round {round} lookup op {i}");
                }
            }
            let positive = expected.iter().filter(|(r, _)| *r > 0).count() as i64;
            assert_eq!(hits, positive, "round {round}: return value");
        }
        let stats = d.allocator().sdk().stats();
        let carved: u64 = stats.carved.iter().sum();
        assert!(carved >= model.len() as u64, "{stats:?}");
        assert_eq!(stats.in_flight, 0, "every allocation was committed");
    }

    #[test]
    fn oversized_batches_are_refused_before_the_kernel() {
        let Some(mut d) = open() else { return };
        assert!(matches!(
            d.run(OpKind::Lookup, BATCH_MAX + 1),
            Err(DriverError::BatchTooLarge { .. })
        ));
    }

    #[test]
    fn a_missing_object_is_a_setup_error() {
        if kflex_linux::backend::backend_available().is_err() {
            return;
        }
        let err = LinuxDriver::with_object(Structure::List, b"\x7fELF garbage").unwrap_err();
        assert!(!err.is_unavailable());
        assert!(err.to_string().contains("list"), "{err}");
    }
}
