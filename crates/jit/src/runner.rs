//! Runs of a compiled program: [`JitRunner`] sets up once what every run in one environment
//! shares, so that a run costs little more than the program itself.
//!
//! Set up once per runner: the BPF stack frames (registered in the memory map through a
//! [`FrameLease`]), a guarded native stack held for the runner's lifetime (not taken from and
//! returned to the thread's cache each run), the context plan of the environment's direct
//! context ([`crate::ctx_plan`]), the state block, and the
//! thread's fault-handler preparation. Per run: the state block's per-run fields are reset, an
//! [`Invocation`] record is made current, the watchdog is armed when the program has
//! termination checks, the code runs on the held native stack, and the bytes of the frames the
//! run reached are zeroed again — only the [`crate::JitOptions::stack_depth`] bytes below each
//! frame pointer the verifier says a program can touch.

use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;

use kflex_runtime::exec::{self, CancelReason, GuardedStack, Invocation};

use crate::ctx_plan;
use crate::stack::StackBuffer;
use crate::state::{RunState, code};
use crate::{EntryFn, FrameLease, JitEnv, JitFault, JitFaultKind, JitProgram, MAX_FRAMES};

/// A program set up for a series of runs in one [`JitEnv`] (made by [`JitProgram::runner`]).
///
/// The environment is borrowed for the runner's lifetime: its context, memory map and
/// execution environment stay those of the first run. Between runs the caller reaches them
/// through [`JitRunner::env`] (to release what a run left held, take trace lines, ...).
pub struct JitRunner<'r, 'a> {
    program: &'r JitProgram,
    env: &'r mut JitEnv<'a>,
    frames: &'r mut StackBuffer,
    /// The native stack runs execute on (back to the thread's cache on drop).
    native: Option<GuardedStack>,
    /// The state block (its address is taken afresh by every run: the runner may move
    /// between runs).
    state: RunState,
    /// Bytes below each frame pointer zeroed after a run.
    clear_bytes: usize,
    /// Runners stay on the thread that made them (the fault handler and the guarded stack's
    /// guard pages are per thread).
    _not_send: PhantomData<*const ()>,
}

impl std::fmt::Debug for JitRunner<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitRunner")
            .field("program", self.program)
            .field("max_depth", &self.state.max_depth)
            .field("clear_bytes", &self.clear_bytes)
            .finish_non_exhaustive()
    }
}

impl JitProgram {
    /// Sets the program up for runs in `env` on the frames of `lease` (registered in `env.mem`
    /// now if it does not hold them; they stay registered afterwards, see [`FrameLease`]).
    pub fn runner<'r, 'a>(
        &'r self,
        env: &'r mut JitEnv<'a>,
        lease: &'r mut FrameLease,
    ) -> Result<JitRunner<'r, 'a>, JitFault> {
        self.check_env_maps(env.env)?;
        let max_frames = env.max_call_depth.clamp(1, MAX_FRAMES);
        let heap_base = match self.heap {
            Some(h) if env.heap_base != 0 && env.heap_base != h.base => {
                return Err(setup_fault(format!(
                    "JitEnv::heap_base {:#x} differs from the heap {:#x} the program's SFI guards were compiled for",
                    env.heap_base, h.base
                )));
            }
            Some(h) => h.base,
            None => env.heap_base,
        };
        exec::fault::prepare_thread().map_err(|e| setup_fault(format!("fault handler: {e}")))?;
        let native = exec::stack::take(env.native_stack_size)
            .map_err(|e| setup_fault(format!("guarded stack: {e}")))?;
        let used = self.frames_used(env.max_call_depth);
        let frames = lease.ensure(env.mem, used).map_err(setup_fault)?;
        // The plan lives in the lease's buffer: built in place, and the runner stays small.
        match env.ctx_direct {
            Some(d) => ctx_plan::build_into(&mut frames.plan, d, &self.ctx_table),
            None => ctx_plan::clear_into(&mut frames.plan, &self.ctx_table),
        }
        let state = RunState {
            terminate: AtomicU64::new(0),
            regs: [0; 6],
            saved_rsp: 0,
            depth: 0,
            max_depth: max_frames as u64,
            frame_base: frames.top0() + crate::stack::STRIDE as u64,
            deepest: 0,
            entries: self.entries.as_ptr(),
            entries_len: self.entries.len() as u64,
            fault_pc: 0,
            fault_code: code::NONE,
            fault_value: 0,
            heap_base,
            cpu: u64::from(env.env.cpu),
            env: std::ptr::null_mut(),
            ctx_table: self.ctx_table.as_ptr(),
            ctx_table_len: self.ctx_table.len() as u64,
            ctx_direct: env
                .ctx_direct
                .map_or(std::ptr::null(), |d| d as *const crate::CtxDirect),
            ctx_plan: std::ptr::null(),
            trust_map_helpers: env.trust_map_helpers,
            host_fault: None,
        };
        Ok(JitRunner {
            program: self,
            env,
            frames,
            native: Some(native),
            state,
            clear_bytes: self.stack_clear_bytes,
            _not_send: PhantomData,
        })
    }
}

impl<'a> JitRunner<'_, 'a> {
    /// The environment runs execute in (between runs: to release what a run left held, take
    /// trace lines, change `budget` or the environment's CPU). What the runner set up from it —
    /// the frames in `mem`, the context plan of `ctx_direct`, `max_call_depth`, `heap_base` and
    /// the native stack — stays as it was when the runner was made; a new runner picks up
    /// changes to those.
    pub fn env(&mut self) -> &mut JitEnv<'a> {
        self.env
    }

    /// Runs the program with r1..r5 = `args` and r10 = the top of a zeroed frame; returns r0 at
    /// the final `exit`, or the fault that stopped the run (a cancelled run has released every
    /// resource it held).
    pub fn run(&mut self, args: [u64; 5]) -> Result<u64, JitFault> {
        let program = self.program;
        let env_ptr = (&raw mut *self.env).cast::<std::ffi::c_void>();
        let plan = self.frames.plan.as_ptr();
        let st = &mut self.state;
        // Element by element: the caller has just stored `args` as separate words, and a wider
        // (vector) copy would miss store-to-load forwarding, a stall on every run.
        st.regs[0] = 0;
        for (slot, arg) in st.regs[1..].iter_mut().zip(&args) {
            // SAFETY: `arg` is a reference to an initialised `u64`.
            *slot = unsafe { std::ptr::read_volatile(arg) };
        }
        st.depth = 0;
        st.deepest = 0;
        st.fault_pc = 0;
        st.fault_code = code::NONE;
        st.fault_value = 0;
        st.cpu = u64::from(self.env.env.cpu);
        st.host_fault = None;
        st.env = env_ptr;
        st.ctx_plan = plan;
        let state_ptr: *mut RunState = st;
        // SAFETY: the code was generated by `codegen` with the entry stub at offset 0 following
        // the `EntryFn` ABI, and lives (read-execute) as long as `program`.
        let entry: EntryFn = unsafe { std::mem::transmute::<usize, EntryFn>(program.mem.addr()) };
        let invocation = Invocation::new(program.landing_pad, state_ptr as u64);
        // SAFETY: `state_ptr` points to the runner's state block, which `&mut self` keeps alive
        // and unmoved until this call returns, after `invocation` is dropped.
        unsafe {
            invocation.set_resume_rsp_slot(&raw const (*state_ptr).saved_rsp);
            invocation.use_terminate_word(&raw const (*state_ptr).terminate);
        }
        let Some(native) = self.native.as_mut() else {
            return Err(setup_fault("the runner has no native stack".into()));
        };
        let r0 = {
            // SAFETY: the guard is a local of this block, dropped (never leaked) before
            // `invocation`, which is declared before the block.
            let _watch = self
                .env
                .budget
                .filter(|_| program.has_termination_checks)
                .map(|budget| unsafe { exec::Watchdog::arm(&invocation, budget) });
            let _current = invocation.enter();
            // SAFETY: the state block is fully initialised for this program: its entry and
            // context tables and plan belong to `program` and the runner's frames, `env` points at the
            // runner's `JitEnv` (exclusively borrowed for the runner's lifetime and not touched
            // while the code runs), and the stack frames it addresses are registered and alive.
            // A caught fault resumes at the fault exit, which returns from `entry` normally.
            exec::run_on(native, || unsafe { entry(state_ptr) })
        };
        // SAFETY: the run is over; nothing else references the state block.
        let st = unsafe { &mut *state_ptr };
        self.frames.clear(st.deepest as usize, self.clear_bytes);
        if let Some(fault) = invocation.fault() {
            let pc = (fault.rip as usize)
                .checked_sub(program.mem.addr())
                .filter(|&o| o < program.mem.code().len())
                .and_then(|o| program.fault_slot(o))
                .unwrap_or(st.fault_pc as usize);
            return Err(cancelled(self.env, pc, fault.reason()));
        }
        if st.fault_code == code::TERMINATED {
            return Err(cancelled(
                self.env,
                st.fault_pc as usize,
                CancelReason::Terminated,
            ));
        }
        program.outcome(r0, st)
    }
}

impl Drop for JitRunner<'_, '_> {
    fn drop(&mut self) {
        if let Some(native) = self.native.take() {
            exec::stack::give_back(native);
        }
    }
}

impl JitProgram {
    /// The result of a run that returned from the entry stub (`state` as the run left it).
    fn outcome(&self, r0: u64, state: &mut RunState) -> Result<u64, JitFault> {
        let pc = state.fault_pc as usize;
        let kind = match state.fault_code {
            code::NONE => return Ok(r0),
            code::HOST => {
                if let Some(f) = state.host_fault.take() {
                    return Err(f);
                }
                JitFaultKind::StackSetup("fault recorded without details".into())
            }
            code::BAD_CALLX => JitFaultKind::BadCallTarget(state.fault_value),
            code::CALL_DEPTH => JitFaultKind::CallDepth {
                limit: state.max_depth as usize,
            },
            c => c
                .checked_sub(code::STATIC_BASE)
                .and_then(|i| self.static_faults.get(i as usize))
                .cloned()
                .unwrap_or_else(|| JitFaultKind::StackSetup(format!("unknown fault code {c}"))),
        };
        Err(JitFault {
            pc,
            kind,
            resources_released: 0,
        })
    }
}

/// The fault of a run that could not be set up.
pub(crate) fn setup_fault(reason: String) -> JitFault {
    JitFault {
        pc: 0,
        kind: JitFaultKind::StackSetup(reason),
        resources_released: 0,
    }
}

/// The fault of a run cancelled at `pc`: releases every resource the invocation still holds
/// (ringbuf reservations discarded, spin locks unlocked) and counts the cancellation.
fn cancelled(env: &mut JitEnv<'_>, pc: usize, reason: CancelReason) -> JitFault {
    let released = env.env.release_all_in(env.mem);
    exec::watchdog::record_cancellation(released);
    JitFault {
        pc,
        kind: JitFaultKind::Cancelled { reason },
        resources_released: released,
    }
}
