//! Cheap repeated invocation of one program: [`Extension::invoker`] sets up everything a run
//! needs once (helper registry, memory map with the map regions, execution environment, JIT
//! environment), and [`Invoker::run`] then runs the program on a caller's buffer with as little
//! per-run work as the engine allows.
//!
//! ```no_run
//! use kflex::{Engine, Extension, ExtensionOptions};
//!
//! let ext = Extension::load_file("syscall_events.o", ExtensionOptions::default())?;
//! let mut invoker = ext.invoker("syscall_events", Engine::Jit)?;
//! let mut ctx = [0u8; 24];
//! ctx[..8].copy_from_slice(&27u64.to_ne_bytes());
//! let done = invoker.run(&mut ctx)?;
//! println!("r0 = {}, result slot = {:?}", done.retval, &ctx[16..]);
//! # Ok::<(), kflex::Error>(())
//! ```
//!
//! What `ctx` is depends on the program type:
//! * `syscall`: the context itself. The program reads and writes the caller's buffer in place (no
//!   copy), as Linux's `BPF_PROG_TEST_RUN` does with its copy of `ctx_in`. An empty buffer passes
//!   a NULL context, as Linux does.
//! * packet types (`xdp`, `socket_filter`, `sched_cls`, `sk_skb`): the packet. Each run sees a
//!   fresh packet and default context made from it, exactly as one test-run prepares them
//!   (nothing an earlier run wrote to the packet, its headroom or the context carries over),
//!   and copies the packet the program leaves back into `ctx` (its first `min(len)` bytes;
//!   [`Invocation::data_len`] is its length after the run, which `bpf_xdp_adjust_head` may have
//!   changed). The invoker keeps one prepared packet run installed and refills it for every
//!   call ([`PreparedRun::reset`]: same buffers and regions while packets fit), so a run pays
//!   for copying the packet in and out, not for preparing and installing a new one.
//!
//! An invoker stays on the thread that made it (it is not `Send`): the program-type helpers
//! find its prepared packet run through a per-thread table.
//!
//! Map contents persist across runs, as in test-runs.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use kflex_hooks::{PreparedRun, check_ctx_access};
use kflex_interp::{Limits, Vm};
use kflex_jit::{CtxDirect, FrameLease, JitEnv, JitFault, JitFaultKind, JitProgram};
use kflex_object::ProgType;
use kflex_runtime::exec::watchdog::DEFAULT_BUDGET;
use kflex_runtime::helpers::HelperRegistry;
use kflex_runtime::{Access, ContextAccess, ExecEnv, MemoryMap, Region, RegionKind};

use crate::engine::Engine;
use crate::error::{Error, Result, RunFault};
use crate::extension::{CancelHooks, Extension};
use crate::link::LoadedProgram;

/// Trace lines an invoker keeps (later lines are counted and dropped); see
/// [`Invoker::take_trace`].
pub const MAX_INVOKER_TRACE: usize = 10_000;

/// What one [`Invoker::run`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// r0 at exit (0 when the run was cancelled).
    pub retval: u64,
    /// The run was cancelled (watchdog budget, memory fault, stack overflow); the resources it
    /// held were released.
    pub cancelled: bool,
    /// Why the run was cancelled.
    pub cancel_reason: Option<String>,
    /// Resources (ringbuf reservations, locks, ...) the run still held at exit or cancellation
    /// and the runtime released.
    pub resources_released: u64,
    /// Packet length after the run (packet program types); `None` for `syscall`.
    pub data_len: Option<usize>,
}

/// A program of an extension set up for cheap repeated runs (see the [module docs](self)).
pub struct Invoker<'e> {
    prog: &'e LoadedProgram,
    /// The extension's cancellation hooks, told about every cancelled or faulted run.
    cancel_hooks: &'e CancelHooks,
    prog_type: ProgType,
    jit: Option<&'e JitProgram>,
    registry: Cow<'static, HelperRegistry>,
    mem: MemoryMap,
    /// Regions `mem` holds between runs (the extension's map regions).
    map_regions: Vec<Region>,
    env: ExecEnv,
    heap_base: u64,
    limits: Limits,
    budget: Option<Duration>,
    trace_dropped: u64,
    /// The JIT program's stack frames, registered in `mem` once (released on drop).
    lease: Option<FrameLease>,
    /// `(start, len)` of the syscall context region left in `mem` by the last run.
    ctx_region: Option<(u64, u64)>,
    /// The packet run of packet program types, installed in `mem` and reset for every call.
    packet_run: Option<PreparedRun>,
}

impl Drop for Invoker<'_> {
    fn drop(&mut self) {
        if let Some(run) = self.packet_run.take() {
            run.uninstall(&mut self.mem);
        }
        if let Some(lease) = self.lease.take() {
            lease.release(&mut self.mem);
        }
    }
}

impl std::fmt::Debug for Invoker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invoker")
            .field("program", &self.prog.name)
            .field("prog_type", &self.prog_type)
            .field("engine", &self.engine())
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Extension {
    /// Sets program `program` up for repeated runs on `engine` (see [`Invoker`]). The JIT falls
    /// back to the interpreter for programs it did not compile (loaded unverified), as
    /// test-runs do.
    pub fn invoker(&self, program: &str, engine: Engine) -> Result<Invoker<'_>> {
        let prog = self.program(program)?;
        let prog_type = prog_type_of(prog)?;
        let jit = jit_of(prog, engine)?;
        let registry = crate::link::helper_registry(prog_type, &self.helpers)?;
        let map_regions = self.maps.regions();
        let mut mem = MemoryMap::new();
        for region in &map_regions {
            // SAFETY: map regions describe value memory owned by the extension's `MapTable`,
            // allocated outside Rust references, never moved, and alive as long as the
            // extension, which the invoker borrows (and its `ExecEnv` holds an `Arc` of).
            unsafe { mem.insert(region.clone()) }
                .map_err(|e| Error::Input(format!("map memory layout: {e}")))?;
        }
        Ok(Invoker {
            prog,
            cancel_hooks: self.cancel_hooks(),
            prog_type,
            jit,
            registry,
            mem,
            map_regions,
            env: ExecEnv::with_maps(Arc::clone(&self.maps)),
            heap_base: self.heap_layout().map_or(0, |h| h.base),
            limits: self.limits,
            budget: Some(DEFAULT_BUDGET),
            trace_dropped: 0,
            lease: jit.map(|j| j.frame_lease(self.limits.max_call_depth)),
            ctx_region: None,
            packet_run: None,
        })
    }
}

impl<'e> Invoker<'e> {
    /// The engine runs execute on.
    pub fn engine(&self) -> Engine {
        if self.jit.is_some() {
            Engine::Jit
        } else {
            Engine::Interp
        }
    }

    /// Sets the time budget of one JIT run of a program with loops (default 10 ms; `None`
    /// disables the watchdog). Past it the run is cancelled.
    pub fn with_budget(mut self, budget: Option<Duration>) -> Self {
        self.budget = budget;
        self
    }

    /// Sets the CPU number runs are considered to execute on (selects per-CPU map slots;
    /// default 0).
    pub fn with_cpu(mut self, cpu: u32) -> Self {
        self.env.cpu = cpu;
        self
    }

    /// The program type of the program.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// Takes the `bpf_trace_printk` lines written since the last call (at most
    /// [`MAX_INVOKER_TRACE`]) and how many were dropped beyond that.
    pub fn take_trace(&mut self) -> (Vec<String>, u64) {
        let dropped = std::mem::take(&mut self.trace_dropped);
        (self.env.take_trace(), dropped)
    }

    /// Runs the program once on `ctx` (the context for `syscall` programs, the packet for packet
    /// types: see the [module docs](self)).
    pub fn run(&mut self, ctx: &mut [u8]) -> Result<Invocation> {
        self.reset_memory();
        let invocation = if self.prog_type == ProgType::Syscall {
            self.run_syscall(ctx)
        } else {
            self.run_packet(ctx)
        };
        if self.env.trace.len() > MAX_INVOKER_TRACE {
            let extra = self.env.trace.len() - MAX_INVOKER_TRACE;
            self.env.trace.truncate(MAX_INVOKER_TRACE);
            self.trace_dropped += extra as u64;
        }
        invocation
    }

    /// A `syscall` run directly on the caller's buffer.
    fn run_syscall(&mut self, ctx: &mut [u8]) -> Result<Invocation> {
        if ctx.len() > kflex_hooks::MAX_SYSCALL_CTX {
            return Err(Error::Input(format!(
                "syscall context of {} bytes exceeds {} bytes",
                ctx.len(),
                kflex_hooks::MAX_SYSCALL_CTX
            )));
        }
        let mut hook = RawContext {
            addr: ctx.as_mut_ptr() as u64,
            len: ctx.len() as u64,
        };
        let ctx_addr = if ctx.is_empty() { 0 } else { hook.addr };
        let wanted = (ctx_addr != 0).then_some((hook.addr, hook.len));
        if self.ctx_region != wanted {
            if let Some((start, _)) = self.ctx_region.take() {
                self.mem.remove(start);
            }
            if let Some((start, len)) = wanted {
                let region = Region {
                    start,
                    len,
                    kind: RegionKind::Context,
                    writable: true,
                    elements: None,
                };
                // SAFETY: `ctx` is exclusively borrowed for this whole call and only accessed
                // through raw pointers while the program runs. The region stays in `self.mem`
                // after the call (so that the next run on the same buffer skips re-inserting
                // it), but `self.mem` is private and only used inside `run`, which replaces
                // the region before a run on any other buffer: a stale region is never used.
                unsafe { self.mem.insert(region) }
                    .map_err(|e| Error::Input(format!("syscall context: {e}")))?;
                self.ctx_region = wanted;
            }
        }
        // SAFETY: the caller's buffer is exclusively borrowed for this whole call and only
        // accessed through raw pointers while the program runs.
        let direct = unsafe { CtxDirect::new(hook.addr, hook.len, 0, &[], &[], true) };
        let outcome = self.execute(ctx_addr, &mut hook, &direct);
        let (retval, cancel, released) = outcome?;
        Ok(Invocation {
            retval,
            cancelled: cancel.is_some(),
            cancel_reason: cancel,
            resources_released: released,
            data_len: None,
        })
    }

    /// A packet run on a fresh copy of `packet` (the invoker's packet run, reset to it), copied
    /// back afterwards.
    fn run_packet(&mut self, packet: &mut [u8]) -> Result<Invocation> {
        let input_error = |e: kflex_hooks::HookError| Error::Input(e.to_string());
        let mut run = match self.packet_run.take() {
            Some(mut run) => match run.reset(&mut self.mem, packet, None) {
                Ok(()) => run,
                Err(e) => {
                    // Rejected input leaves the run as it was, ready for the next call.
                    self.packet_run = Some(run);
                    return Err(input_error(e));
                }
            },
            None => kflex_hooks::prepare_from(self.prog_type, packet, None).map_err(input_error)?,
        };
        if !run.is_installed() {
            // SAFETY: the run owns the buffers its regions describe; it stays in
            // `self.packet_run` while installed, and is uninstalled from `self.mem` before it
            // is dropped (in `Drop`, and in `reset_memory` when `self.mem` is replaced).
            unsafe { run.install(&mut self.mem) }.map_err(input_error)?;
        }
        let ctx_addr = run.ctx_address();
        let direct = direct_context(&run);
        let outcome = self.execute(ctx_addr, run.context_access(), &direct);
        let data_len = if outcome.is_ok() {
            run.copy_data_out(packet)
        } else {
            None
        };
        self.packet_run = Some(run);
        let (retval, cancel, released) = outcome?;
        Ok(Invocation {
            retval,
            cancelled: cancel.is_some(),
            cancel_reason: cancel,
            resources_released: released,
            data_len,
        })
    }

    /// Runs the program with r1 = `ctx_addr` and context hook `hook`; returns r0, the cancel
    /// reason and the resources released. Leaves `self.mem` holding exactly the map regions and
    /// whatever the caller installed.
    fn execute(
        &mut self,
        ctx_addr: u64,
        hook: &mut dyn ContextAccess,
        direct: &CtxDirect,
    ) -> Result<(u64, Option<String>, u64)> {
        let args = [ctx_addr, 0, 0, 0, 0];
        let outcome = match (self.jit, self.lease.as_mut()) {
            (Some(jit), Some(lease)) => {
                let mut jenv = JitEnv::new(&mut self.mem, &self.registry, &mut self.env);
                jenv.ctx = Some(hook);
                jenv.ctx_direct = Some(direct);
                if self.prog.verified.is_some() {
                    // SAFETY: the program was verified (JIT code exists only for verified
                    // programs) and the registry is built on the Linux helpers.
                    unsafe { jenv.trust_map_helper_pointers() };
                }
                jenv.max_call_depth = self.limits.max_call_depth;
                jenv.heap_base = self.heap_base;
                jenv.budget = self.budget;
                match jit.run_leased(args, &mut jenv, lease) {
                    Ok(retval) => Ok((retval, None, 0)),
                    Err(JitFault {
                        kind: JitFaultKind::Cancelled { reason },
                        resources_released,
                        ..
                    }) => Ok((0, Some(reason.to_string()), resources_released as u64)),
                    Err(f) => Err((f.pc, f.to_string())),
                }
            }
            _ => {
                let mut vm = Vm {
                    mem: &mut self.mem,
                    ctx: Some(hook),
                    helpers: &self.registry,
                    env: &mut self.env,
                    limits: self.limits,
                };
                kflex_interp::run(&self.prog.code, args, &mut vm)
                    .map(|o| (o.retval, None, 0))
                    .map_err(|f| (f.pc, f.to_string()))
            }
        };
        let freed = self.env.release_all_in(&mut self.mem) as u64;
        match &outcome {
            Ok((_, Some(reason), _)) => {
                self.cancel_hooks
                    .notify(&self.prog.name, self.env.cpu, reason)
            }
            Err((_, message)) => self
                .cancel_hooks
                .notify(&self.prog.name, self.env.cpu, message),
            Ok(_) => {}
        }
        let (retval, cancel, released) = outcome.map_err(|(pc, message)| {
            Error::Fault(RunFault {
                program: self.prog.name.clone(),
                pc,
                message,
                source: self.prog.source_line(pc),
            })
        })?;
        Ok((retval, cancel, released + freed))
    }

    /// Restores the memory map to the map regions (and the leased stack frames) alone if
    /// something outlived a run in it.
    fn reset_memory(&mut self) {
        let frames = self.lease.as_ref().map_or(0, FrameLease::frames);
        let ctx = usize::from(self.ctx_region.is_some());
        let packet = self
            .packet_run
            .as_ref()
            .map_or(0, PreparedRun::installed_regions);
        if self.mem.regions().len() != self.map_regions.len() + frames + ctx + packet {
            self.ctx_region = None;
            if let Some(run) = self.packet_run.take() {
                run.uninstall(&mut self.mem);
            }
            if let Some(lease) = self.lease.take() {
                lease.release(&mut self.mem);
                self.lease = self.jit.map(|j| j.frame_lease(self.limits.max_call_depth));
            }
            let mut mem = MemoryMap::new();
            for region in &self.map_regions {
                // SAFETY: as in `Extension::invoker`.
                let _ = unsafe { mem.insert(region.clone()) };
            }
            self.mem = mem;
        }
    }
}

/// The program type of `prog`, or an error naming a program kflex cannot run.
pub(crate) fn prog_type_of(prog: &LoadedProgram) -> Result<ProgType> {
    prog.prog_type.ok_or_else(|| {
        Error::Input(format!(
            "program {} (section {:?}) has no program type kflex can run",
            prog.name, prog.section
        ))
    })
}

/// The JIT code `engine` runs `prog` with: `None` on the interpreter and for programs the JIT did
/// not compile (loaded unverified); an error when the JIT failed on the program.
pub(crate) fn jit_of(prog: &LoadedProgram, engine: Engine) -> Result<Option<&JitProgram>> {
    match (engine, &prog.jit) {
        (Engine::Jit, Some(Ok(jit))) => Ok(Some(jit)),
        (Engine::Jit, Some(Err(e))) => Err(Error::Input(format!(
            "program {} could not be compiled by the JIT: {e}",
            prog.name
        ))),
        (Engine::Jit, None) | (Engine::Interp, _) => Ok(None),
    }
}

/// The JIT's direct-context description of an installed prepared run.
pub(crate) fn direct_context(prepared: &PreparedRun) -> CtxDirect {
    let d = prepared.direct_context();
    // SAFETY: the image and the pointer cells belong to `prepared`, which callers keep installed
    // (alive, unmoved, accessed only through raw pointers by the run) for as long as a run uses
    // the description; the tables are the hooks' own for the run's program type.
    unsafe { CtxDirect::new(d.image, d.len, d.pointers, d.loads, d.stores, d.uniform) }
}

/// The context hook of a `syscall` run on a caller's buffer: any access the syscall layout rules
/// allow inside the buffer.
struct RawContext {
    addr: u64,
    len: u64,
}

impl RawContext {
    fn locate(&self, offset: u64, size: u8, access: Access) -> Result<u64, String> {
        check_ctx_access(ProgType::Syscall, offset, size, access).map_err(|e| e.to_string())?;
        match offset.checked_add(u64::from(size)) {
            Some(end) if end <= self.len => Ok(self.addr + offset),
            _ => Err(format!(
                "syscall: {size}-byte access at offset {offset} is outside the {}-byte context",
                self.len
            )),
        }
    }
}

impl ContextAccess for RawContext {
    fn load(&mut self, offset: u64, size: u8) -> Result<u64, String> {
        let addr = self.locate(offset, size, Access::Read)?;
        // SAFETY: `locate` checked `[addr, addr + size)` lies inside the caller's buffer, which is
        // exclusively borrowed for the whole run and only accessed through raw pointers meanwhile.
        Ok(unsafe { kflex_runtime::memory::raw_load(addr, size) })
    }

    fn store(&mut self, offset: u64, size: u8, value: u64) -> Result<(), String> {
        let addr = self.locate(offset, size, Access::Write)?;
        // SAFETY: as in `load`.
        unsafe { kflex_runtime::memory::raw_store(addr, size, value) };
        Ok(())
    }
}
