//! A prepared test run: the buffers of one invocation, their regions, and the context hook.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use kflex_object::ProgType;
use kflex_runtime::{ContextAccess, MemoryMap, Region, RegionKind};

use crate::buf::RawBuf;
use crate::direct::{self, DirectContext};
use crate::state::{self, RunState, Shared};
use crate::{HookError, Spare, TestRunOutput, skb, syscall, xdp};

/// Everything one invocation of a program needs from its program type: the context image, the
/// packet buffer, the regions to install, and the context hook. Built by [`crate::prepare`];
/// [`PreparedRun::reset`] turns it into the run another input would prepare, reusing its
/// buffers (at their addresses) where they fit.
#[derive(Debug)]
pub struct PreparedRun {
    state: Shared,
    hook: CtxHook,
    /// The input had a `ctx_in`.
    ctx_given: bool,
    /// The `ctx_in` bytes, kept for `__sk_buff` types only (their `ctx_out` starts from them).
    ctx_in: Vec<u8>,
    installed: Cell<bool>,
}

impl PreparedRun {
    pub(crate) fn new(state: RunState, ctx_in: Option<&[u8]>) -> Self {
        let state = Rc::new(RefCell::new(state));
        let mut run = PreparedRun {
            hook: CtxHook {
                state: Rc::clone(&state),
            },
            state,
            ctx_given: false,
            ctx_in: Vec::new(),
            installed: Cell::new(false),
        };
        run.remember_ctx_in(ctx_in);
        run
    }

    /// Keeps what [`PreparedRun::output`] needs of `ctx_in`.
    fn remember_ctx_in(&mut self, ctx_in: Option<&[u8]>) {
        self.ctx_given = ctx_in.is_some();
        self.ctx_in.clear();
        if let Some(bytes) = ctx_in
            && !matches!(self.prog_type(), ProgType::Xdp | ProgType::Syscall)
        {
            self.ctx_in.extend_from_slice(bytes);
        }
    }

    /// Makes this run exactly what [`crate::prepare_from`] would build for `data_in` and
    /// `ctx_in` (same program type): packet bytes, headroom, context fields and bounds as a
    /// fresh run has them, whatever an earlier run of the program left behind. The context image
    /// and the packet buffer keep their addresses when they fit (always for the context of
    /// packet types and for a syscall context of the same length; for a packet no longer than
    /// the buffer holds), so an installed run's regions stay in place; otherwise they are
    /// reallocated, and an installed run is installed again with its new regions.
    ///
    /// If the run is installed, `mem` must be the map it is installed in (as for
    /// [`PreparedRun::uninstall`]). Rejected input leaves the run unchanged; if installing the
    /// new regions fails, the run is left uninstalled and the error returned.
    pub fn reset(
        &mut self,
        mem: &mut MemoryMap,
        data_in: &[u8],
        ctx_in: Option<&[u8]>,
    ) -> Result<(), HookError> {
        let layout = crate::validate(self.prog_type(), data_in, ctx_in)?;
        let installed = self.installed.get();
        let mut s = self.state.borrow_mut();
        let keep_ctx = s.ctx.len() == layout.ctx_len(ctx_in);
        let keep_packet = s
            .packet
            .as_ref()
            .is_some_and(|p| layout.fits_packet(p, data_in));
        if installed {
            // Regions of buffers about to be freed go first.
            if !keep_ctx && s.ctx.len() > 0 {
                remove_ctx_region(mem, s.ctx.addr());
                state::unregister(s.ctx.addr());
            }
            if !keep_packet && let Some(p) = s.packet.as_mut() {
                p.uninstall(mem);
            }
        }
        let spare = Spare {
            ctx: keep_ctx.then(|| std::mem::replace(&mut s.ctx, RawBuf::from_vec(Vec::new()))),
            packet: if keep_packet { s.packet.take() } else { None },
        };
        *s = crate::fill(layout, data_in, ctx_in, spare);
        let reinstalled = if installed {
            self.reinstall(&mut s, mem, !keep_ctx, !keep_packet)
        } else {
            Ok(())
        };
        drop(s);
        self.remember_ctx_in(ctx_in);
        if let Err(e) = reinstalled {
            self.uninstall(mem);
            return Err(e);
        }
        Ok(())
    }

    /// Brings an installed run's regions up to date after [`PreparedRun::reset`] rebuilt its
    /// state: a new context region (and registration) if `new_ctx`, the packet's regions
    /// installed afresh if `new_packet`, else refreshed where its bounds moved.
    fn reinstall(
        &self,
        s: &mut RunState,
        mem: &mut MemoryMap,
        new_ctx: bool,
        new_packet: bool,
    ) -> Result<(), HookError> {
        if new_ctx && let Some(region) = ctx_region(s) {
            // SAFETY: the image is a live allocation owned by this run, only accessed through
            // raw pointers; the caller agreed to remove the run's regions before dropping it
            // when it installed the run (`install`'s contract).
            unsafe { mem.insert(region)? };
            if let Err(e) = state::register(s.ctx.addr(), &self.state) {
                mem.remove(s.ctx.addr());
                return Err(e);
            }
        }
        if let Some(p) = s.packet.as_mut() {
            if new_packet {
                // SAFETY: as above, for the packet buffer.
                unsafe { p.install(mem)? };
            } else {
                p.refresh(mem)?;
            }
        }
        Ok(())
    }

    /// The program type this run was prepared for.
    pub fn prog_type(&self) -> ProgType {
        self.state.borrow().prog_type
    }

    /// True while the run's regions are installed in a memory map.
    pub fn is_installed(&self) -> bool {
        self.installed.get()
    }

    /// Number of regions the run has in the map it is installed in (0 when it is not): the
    /// context, and the packet and metadata regions while they are not empty.
    pub fn installed_regions(&self) -> usize {
        if !self.installed.get() {
            return 0;
        }
        let s = self.state.borrow();
        usize::from(s.ctx.len() > 0)
            + s.packet
                .as_ref()
                .map_or(0, state::Packet::installed_regions)
    }

    /// The context pointer to pass in r1 (0 for a `syscall` run with an empty context, like Linux).
    pub fn ctx_address(&self) -> u64 {
        let s = self.state.borrow();
        if s.ctx.len() == 0 { 0 } else { s.ctx.addr() }
    }

    /// Inserts the context region and (for types with direct packet access) the packet and packet
    /// metadata regions into `mem`, and makes the run reachable by the prog-type helpers.
    ///
    /// # Safety
    /// The regions point into buffers owned by this run: the caller must call
    /// [`PreparedRun::uninstall`] with the same map before this run is dropped or finished, and
    /// must not use the map from another thread meanwhile.
    pub unsafe fn install(&mut self, mem: &mut MemoryMap) -> Result<(), HookError> {
        if self.installed.get() {
            return Err(HookError::AlreadyInstalled);
        }
        let mut s = self.state.borrow_mut();
        let ctx_addr = s.ctx.addr();
        let ctx_len = s.ctx.len() as u64;
        if let Some(region) = ctx_region(&s) {
            // SAFETY: the context image is a live allocation of `ctx_len` bytes owned by this run,
            // only accessed through raw pointers; the caller removes the region before dropping it.
            unsafe { mem.insert(region)? };
        }
        if let Some(p) = s.packet.as_mut() {
            // SAFETY: the packet buffer is owned by this run; the caller uninstalls first (contract).
            if let Err(e) = unsafe { p.install(mem) } {
                if ctx_len > 0 {
                    mem.remove(ctx_addr);
                }
                return Err(e.into());
            }
        }
        if ctx_len > 0
            && let Err(e) = state::register(ctx_addr, &self.state)
        {
            mem.remove(ctx_addr);
            if let Some(p) = s.packet.as_mut() {
                p.uninstall(mem);
            }
            return Err(e);
        }
        self.installed.set(true);
        Ok(())
    }

    /// Removes this run's regions from `mem` (a no-op if not installed).
    pub fn uninstall(&self, mem: &mut MemoryMap) {
        if !self.installed.replace(false) {
            return;
        }
        let mut s = self.state.borrow_mut();
        let ctx_addr = s.ctx.addr();
        if s.ctx.len() > 0 {
            remove_ctx_region(mem, ctx_addr);
            state::unregister(ctx_addr);
        }
        if let Some(p) = s.packet.as_mut() {
            p.uninstall(mem);
        }
    }

    /// What an engine needs to serve this run's verified context accesses without the hook
    /// (see [`crate::direct`]). Valid while the run is installed; stores through it are seen by
    /// the hook and by [`PreparedRun::finish`].
    pub fn direct_context(&self) -> DirectContext {
        let s = self.state.borrow();
        let (loads, stores) = direct::tables(s.prog_type);
        DirectContext {
            image: s.ctx.addr(),
            len: s.ctx.len() as u64,
            pointers: s
                .packet
                .as_ref()
                .map_or(0, |p| std::rc::Rc::as_ptr(&p.pointers) as u64),
            loads,
            stores,
            uniform: s.prog_type == ProgType::Syscall,
        }
    }

    /// The hook that serves the program's context loads and stores.
    pub fn context_access(&mut self) -> &mut dyn ContextAccess {
        &mut self.hook
    }

    /// The run's results: the packet after the run and the context to hand back.
    pub fn finish(self) -> TestRunOutput {
        self.output()
    }

    /// [`PreparedRun::finish`] without giving the run up (for a run that is
    /// [reset](PreparedRun::reset) and run again).
    pub fn output(&self) -> TestRunOutput {
        let s = self.state.borrow();
        match s.prog_type {
            ProgType::Xdp => {
                let (data_out, ctx_out) = xdp::finish(&s, self.ctx_given);
                TestRunOutput { data_out, ctx_out }
            }
            ProgType::Syscall => TestRunOutput {
                data_out: Vec::new(),
                ctx_out: self.ctx_given.then(|| s.ctx.to_vec()),
            },
            _ => {
                let ctx_in = self.ctx_given.then_some(self.ctx_in.as_slice());
                let (data_out, ctx_out) = skb::finish(&s, ctx_in);
                TestRunOutput {
                    data_out,
                    ctx_out: Some(ctx_out),
                }
            }
        }
    }

    /// Length of the packet after the run (`data_out`'s length), without copying it; `None`
    /// for program types without a packet.
    pub fn data_out_len(&self) -> Option<usize> {
        let s = self.state.borrow();
        let p = s.packet.as_ref()?;
        Some(match s.prog_type {
            ProgType::Xdp => p.data_end - p.data_meta,
            _ => p.data_end,
        })
    }

    /// Copies the packet after the run (`data_out`) into `dst` (its first `min(len)` bytes) and
    /// returns its length, without allocating; `None` for program types without a packet.
    pub fn copy_data_out(&self, dst: &mut [u8]) -> Option<usize> {
        let s = self.state.borrow();
        let p = s.packet.as_ref()?;
        let (from, len) = match s.prog_type {
            ProgType::Xdp => (p.data_meta, p.data_end - p.data_meta),
            _ => (0, p.data_end),
        };
        let n = len.min(dst.len());
        if let Some(d) = dst.get_mut(..n) {
            p.buf.read_into(from, d);
            if s.prog_type == ProgType::SocketFilter {
                // As in `finish`: Linux zeroes the Ethernet header of `socket_filter` output.
                let eth = n.min(crate::ETH_HLEN);
                d[..eth].fill(0);
            }
        }
        Some(len)
    }
}

/// The context region of a run state (none for an empty syscall context).
fn ctx_region(s: &RunState) -> Option<Region> {
    (s.ctx.len() > 0).then(|| Region {
        start: s.ctx.addr(),
        len: s.ctx.len() as u64,
        kind: RegionKind::Context,
        // `struct xdp_md` has no writable field; the others route stores to the hook.
        writable: s.prog_type != ProgType::Xdp,
        elements: None,
    })
}

/// Removes the context region at `ctx_addr` from `mem` if it is there.
fn remove_ctx_region(mem: &mut MemoryMap, ctx_addr: u64) {
    if mem
        .region_at(ctx_addr)
        .is_some_and(|r| r.start == ctx_addr && r.kind == RegionKind::Context)
    {
        mem.remove(ctx_addr);
    }
}

impl Drop for PreparedRun {
    fn drop(&mut self) {
        if self.installed.get() {
            state::unregister(self.state.borrow().ctx.addr());
        }
    }
}

/// Routes context accesses to the program type's rules.
#[derive(Debug)]
struct CtxHook {
    state: Shared,
}

impl ContextAccess for CtxHook {
    fn load(&mut self, offset: u64, size: u8) -> Result<u64, String> {
        let s = self
            .state
            .try_borrow()
            .map_err(|_| "context is busy (re-entrant access)".to_string())?;
        match s.prog_type {
            ProgType::Xdp => xdp::load(&s, offset, size),
            ProgType::Syscall => syscall::load(&s, offset, size),
            _ => skb::load(&s, offset, size),
        }
    }

    fn store(&mut self, offset: u64, size: u8, value: u64) -> Result<(), String> {
        let s = self
            .state
            .try_borrow()
            .map_err(|_| "context is busy (re-entrant access)".to_string())?;
        match s.prog_type {
            ProgType::Xdp => xdp::store(offset, size),
            ProgType::Syscall => syscall::store(&s, offset, size, value),
            _ => skb::store(&s, offset, size, value),
        }
    }
}
