//! A prepared test run: the buffers of one invocation, their regions, and the context hook.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use kflex_object::ProgType;
use kflex_runtime::{ContextAccess, MemoryMap, Region, RegionKind};

use crate::direct::{self, DirectContext};
use crate::state::{self, RunState, Shared};
use crate::{HookError, TestRunInput, TestRunOutput, skb, syscall, xdp};

/// Everything one invocation of a program needs from its program type: the context image, the
/// packet buffer, the regions to install, and the context hook. Built by [`crate::prepare`].
#[derive(Debug)]
pub struct PreparedRun {
    state: Shared,
    hook: CtxHook,
    ctx_in: Option<Vec<u8>>,
    installed: Cell<bool>,
}

impl PreparedRun {
    pub(crate) fn new(state: RunState, input: &TestRunInput) -> Self {
        let state = Rc::new(RefCell::new(state));
        PreparedRun {
            hook: CtxHook {
                state: Rc::clone(&state),
            },
            state,
            ctx_in: input.ctx_in.clone(),
            installed: Cell::new(false),
        }
    }

    /// The program type this run was prepared for.
    pub fn prog_type(&self) -> ProgType {
        self.state.borrow().prog_type
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
        if ctx_len > 0 {
            let region = Region {
                start: ctx_addr,
                len: ctx_len,
                kind: RegionKind::Context,
                // `struct xdp_md` has no writable field; the others route stores to the hook.
                writable: s.prog_type != ProgType::Xdp,
                elements: None,
            };
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
        if ctx_len > 0 {
            state::register(ctx_addr, &self.state);
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
            if mem
                .region_at(ctx_addr)
                .is_some_and(|r| r.start == ctx_addr && r.kind == RegionKind::Context)
            {
                mem.remove(ctx_addr);
            }
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
        let s = self.state.borrow();
        match s.prog_type {
            ProgType::Xdp => {
                let (data_out, ctx_out) = xdp::finish(&s, self.ctx_in.is_some());
                TestRunOutput { data_out, ctx_out }
            }
            ProgType::Syscall => TestRunOutput {
                data_out: Vec::new(),
                ctx_out: self.ctx_in.as_ref().map(|_| s.ctx.to_vec()),
            },
            _ => {
                let (data_out, ctx_out) = skb::finish(&s, self.ctx_in.as_deref());
                TestRunOutput {
                    data_out,
                    ctx_out: Some(ctx_out),
                }
            }
        }
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
