//! The data-structure extensions of `kflex-datastructures` on kflex's engines.
//!
//! [`KflexDriver`] loads a structure's object with [`Extension`], runs its `init` program once,
//! attaches the host allocator to the allocator state in the (in-process) heap, and then runs
//! `update`/`lookup`/`delete` batches through [`crate::Invoker`]s set up once, on the interpreter
//! or the JIT in any SFI mode. The mailbox the driver exposes is the heap memory the program
//! reads and writes. [`KflexDriver::guard_stats`] reports the static SFI guard sites per program.
//!
//! ```no_run
//! use kflex::datastructures::KflexDriver;
//! use kflex::{Engine, engine::SfiMode};
//! use kflex_datastructures::{Driver, OpKind, Structure};
//!
//! let mut d = KflexDriver::new(Structure::Hash, Engine::Jit, SfiMode::default())?;
//! d.mailbox()[0].key[0] = 7;
//! let inserted = d.run(OpKind::Update, 1)?;
//! assert_eq!(inserted, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod guards;
pub mod linux;

pub use guards::GuardStats;

use std::time::Duration;

use kflex_datastructures::driver::check_count;
use kflex_datastructures::heap::{HostAllocator, attach_after_init};
use kflex_datastructures::protocol::{BATCH_MAX, CTX_SIZE, Ctx, Op, OpKind};
use kflex_datastructures::{Driver, DriverError, Structure};

use crate::engine::{Engine, JitConfig, SfiMode};
use crate::error::{Error, Result};
use crate::extension::{Extension, ExtensionOptions};
use crate::invoke::Invoker;

/// Time budget of one batch on the JIT (a batch of list lookups over 100,000 keys walks ~50M
/// nodes); past it the batch is cancelled.
pub const BATCH_BUDGET: Duration = Duration::from_secs(60);

/// CPU id the driver's runs execute as (`ExecEnv::cpu`, what `kflex_cpu()` returns).
const RUN_CPU: u32 = 0;

/// A structure loaded into kflex and initialised, ready to run batches (see the module docs).
pub struct KflexDriver {
    // Field order is drop order: the invokers borrow `*ext` and go first; the allocator refers
    // to heap memory owned by `ext`.
    invokers: Vec<Invoker<'static>>,
    allocator: HostAllocator,
    structure: Structure,
    engine_name: String,
    ctx: [u8; CTX_SIZE],
    init: Ctx,
    mailbox: *mut Op,
    ext: Box<Extension>,
}

impl std::fmt::Debug for KflexDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KflexDriver")
            .field("structure", &self.structure)
            .field("engine", &self.engine_name)
            .field("init", &self.init)
            .finish_non_exhaustive()
    }
}

impl KflexDriver {
    /// Loads `structure`'s object (verifying every program), compiles it for the JIT with `sfi`,
    /// runs `init` on `engine` and attaches and fills the heap allocator.
    pub fn new(structure: Structure, engine: Engine, sfi: SfiMode) -> Result<Self> {
        if !structure.is_available() {
            return Err(Error::Input(format!(
                "{structure}: this build has no object for it (no datastructures/bpf/{structure}.bpf.c)"
            )));
        }
        let options = ExtensionOptions {
            engine,
            jit: JitConfig {
                sfi,
                ..JitConfig::default()
            },
            ..ExtensionOptions::default()
        };
        let ext = Box::new(Extension::load(
            structure.name(),
            structure.object(),
            options,
        )?);
        // SAFETY: `ext` is boxed, so the extension stays at one address until the box is
        // dropped; the driver never moves it out or lends it mutably, and drops every invoker
        // (the `invokers` field, declared first) before the box (declared last). The `'static`
        // borrow therefore never outlives the extension.
        let ext_ref: &'static Extension = unsafe { &*(&*ext as *const Extension) };
        let heap = ext_ref
            .heap_layout()
            .ok_or_else(|| Error::Input(format!("{structure}: the object has no heap")))?;

        let mut init = ext_ref.invoker("init", engine)?.with_cpu(RUN_CPU);
        let mut ctx = Ctx::default().to_bytes();
        let done = init.run(&mut ctx)?;
        let init_ctx = Ctx::from_bytes(&ctx).unwrap_or_default();
        if done.cancelled || done.retval != 0 {
            return Err(Error::Input(format!(
                "{structure}: init returned {} {}",
                done.retval as i64,
                done.cancel_reason.unwrap_or_default()
            )));
        }
        // SAFETY: kflex maps the heap in-process at the addresses programs use; it belongs to
        // `ext`, which the driver drops after the allocator (field order), and only this allocator
        // carves from it.
        let allocator = unsafe { attach_after_init(&init_ctx, heap.base..heap.base + heap.size) }
            .map_err(|e| Error::Input(format!("{structure}: {e}")))?;

        let invokers = batch_invokers(ext_ref, engine, Some(BATCH_BUDGET))?;
        let engine_name = match (invokers[0].engine(), sfi) {
            (Engine::Interp, _) => "kflex-interp".to_string(),
            (Engine::Jit, SfiMode::WritesOnly) => "kflex-jit-perf".to_string(),
            (Engine::Jit, mode) if mode == SfiMode::default() => "kflex-jit".to_string(),
            (Engine::Jit, other) => format!("kflex-jit-{}", sfi_name(other)),
        };
        Ok(KflexDriver {
            invokers,
            allocator,
            structure,
            engine_name,
            ctx,
            init: init_ctx,
            mailbox: init_ctx.mailbox as *mut Op,
            ext,
        })
    }

    /// Sets the time budget of one batch on the JIT (default [`BATCH_BUDGET`]; `None`: no
    /// watchdog). A batch that runs past it is cancelled: [`Driver::run`] then fails, after the
    /// heap lock and the blocks allocated since the last commit have been released.
    pub fn set_budget(&mut self, budget: Option<Duration>) -> Result<()> {
        let engine = self.invokers[0].engine();
        // SAFETY: as in `new`: the boxed extension outlives the invokers (field order) and is
        // never moved or lent mutably.
        let ext_ref: &'static Extension = unsafe { &*(&*self.ext as *const Extension) };
        self.invokers = batch_invokers(ext_ref, engine, budget)?;
        Ok(())
    }

    /// The structure.
    pub fn structure(&self) -> Structure {
        self.structure
    }

    /// The extension (its programs, maps and heap).
    pub fn extension(&self) -> &Extension {
        &self.ext
    }

    /// The context `init` reported (mailbox, allocator state, globals).
    pub fn init_ctx(&self) -> Ctx {
        self.init
    }

    /// The host allocator attached to the structure's heap.
    pub fn allocator(&self) -> &HostAllocator {
        &self.allocator
    }

    /// Static heap-access sites of every program (`init`, `update`, `lookup`, `delete`): how
    /// many the verifier wants guarded and how many it proved safe (elided). These are the
    /// verifier's decisions, the same whatever the engine and SFI mode (the JIT then emits a
    /// guard sequence per guarded site in the masking modes, and none in segment mode).
    pub fn guard_stats(&self) -> Vec<GuardStats> {
        guards::of_extension(&self.ext)
    }
}

/// Invokers of `update`, `lookup` and `delete` (in [`OpKind`] order).
fn batch_invokers(
    ext: &'static Extension,
    engine: Engine,
    budget: Option<Duration>,
) -> Result<Vec<Invoker<'static>>> {
    OpKind::ALL
        .iter()
        .map(|k| {
            ext.invoker(k.program(), engine)
                .map(|i| i.with_budget(budget).with_cpu(RUN_CPU))
        })
        .collect()
}

/// The CLI name of an SFI mode (as `kflex --sfi` spells it).
fn sfi_name(mode: SfiMode) -> &'static str {
    match mode {
        SfiMode::AndMask => "and-mask",
        SfiMode::Base => "base",
        SfiMode::WritesOnly => "writes-only",
        SfiMode::Segment => "segment",
        SfiMode::None => "none",
    }
}

impl Driver for KflexDriver {
    fn engine(&self) -> &str {
        &self.engine_name
    }

    fn mailbox(&mut self) -> &mut [Op] {
        // SAFETY: `init` reported the mailbox inside the heap (checked in `new`), 8-byte aligned,
        // BATCH_MAX ops long; the heap lives as long as `ext`, and `&mut self` makes this the only
        // reference (no program runs while it is held).
        unsafe { std::slice::from_raw_parts_mut(self.mailbox, BATCH_MAX) }
    }

    fn run(&mut self, op: OpKind, count: usize) -> std::result::Result<i64, DriverError> {
        check_count(count)?;
        self.allocator.refill();
        Ctx::set_count(&mut self.ctx, count);
        let invoker = &mut self.invokers[op as usize];
        let done = invoker
            .run(&mut self.ctx)
            .map_err(|e| DriverError::engine(&self.engine_name, e.to_string()))?;
        if done.cancelled {
            // The runtime released what it tracks; the heap lock and the blocks allocated since
            // the last commit are the SDK's, released through the allocator state.
            let released = self.allocator.sdk().release_after_cancel(RUN_CPU);
            return Err(DriverError::engine(
                &self.engine_name,
                format!(
                    "{} cancelled ({}); released {} heap lock(s) and {} block(s)",
                    op.program(),
                    done.cancel_reason.unwrap_or_default(),
                    released.locks_released,
                    released.blocks_reclaimed
                ),
            ));
        }
        // The programs return a 32-bit count.
        Ok(i64::from(done.retval as i32))
    }
}
