//! Test-runs modelled on Linux `BPF_PROG_TEST_RUN`: prepare the program type's context and packet,
//! run the program `repeat` times, and report the return value, the output packet and context,
//! timing and trace output.
//!
//! As in Linux's test-run loop, everything is set up once per call and the `repeat` runs then
//! execute back to back on it, timed as one loop (`ns_per_run` is the loop's time divided by the
//! runs): the helper registry of each program type is built once per process (and shared by every
//! extension without host helpers); the memory map with the map regions, the execution
//! environment, the packet and context (prepared and installed once) and, on the JIT, the
//! program's stack frames (a [`kflex_jit::FrameLease`], registered once) live for the call. As in
//! Linux for `xdp` and `__sk_buff` programs, the packet and context are **not** reset between the
//! runs of one call: a run sees what the previous run left in them (each call starts from
//! `data_in`/`ctx_in` again). Stack frames are zeroed after every run.
//!
//! Consecutive calls on one thread reuse that set-up where it does not depend on the input
//! (`test_run/scratch.rs`): the memory map, the execution environment, and the prepared packet and
//! context, refilled from each call's input exactly as a fresh preparation lays them out.

mod scratch;
mod timer;

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use kflex_interp::{Limits, Vm};
use kflex_jit::{JitEnv, JitFault, JitFaultKind, JitProgram};
use kflex_object::ProgType;
use kflex_runtime::exec::watchdog::DEFAULT_BUDGET;
use kflex_runtime::helpers::HelperRegistry;
use kflex_runtime::{ExecEnv, MemoryMap};

use crate::engine::Engine;
use crate::error::{Error, Result, RunFault};
use crate::extension::Extension;
use crate::invoke::{jit_of, prog_type_of};
use crate::link::LoadedProgram;

/// Trace lines kept per test-run (later lines are counted in `trace_dropped`).
pub const MAX_TRACE_LINES: usize = 10_000;

/// Input and options of one test-run.
#[derive(Clone, Debug)]
pub struct TestRunOptions {
    /// Packet data (an Ethernet frame for packet program types; ignored by `syscall`).
    pub data_in: Vec<u8>,
    /// Context input (`struct xdp_md`, `struct __sk_buff`, or the raw `syscall` context).
    pub ctx_in: Option<Vec<u8>>,
    /// Number of runs (at least 1; 0 is treated as 1, as Linux does).
    pub repeat: u32,
    /// CPU number the runs are considered to execute on (selects per-CPU map slots).
    pub cpu: u32,
    /// The engine to run on; `None` for the extension's default ([`crate::ExtensionOptions::engine`]).
    /// Programs loaded without verification always run on the interpreter.
    pub engine: Option<Engine>,
    /// Time budget of one JIT run of a program with loops: past it the watchdog cancels the run
    /// (`cancelled` in the result). `None` for the default, 10 ms.
    pub budget: Option<Duration>,
}

impl Default for TestRunOptions {
    fn default() -> Self {
        TestRunOptions {
            data_in: Vec::new(),
            ctx_in: None,
            repeat: 1,
            cpu: 0,
            engine: None,
            budget: None,
        }
    }
}

impl TestRunOptions {
    /// Options for one run over `data_in`.
    pub fn packet(data_in: Vec<u8>) -> Self {
        TestRunOptions {
            data_in,
            ..Self::default()
        }
    }

    /// Options for one run with context `ctx_in` and no packet.
    pub fn context(ctx_in: Vec<u8>) -> Self {
        TestRunOptions {
            ctx_in: Some(ctx_in),
            ..Self::default()
        }
    }
}

/// What a test-run produced (outputs are those of the last run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunResult {
    /// r0 at exit.
    pub retval: u64,
    /// The packet after the run.
    pub data_out: Vec<u8>,
    /// The context after the run, for program types that return one.
    pub ctx_out: Option<Vec<u8>>,
    /// Mean time of one run of the program, in nanoseconds. With `repeat > 1`: the CPU time the
    /// calling thread spent in the loop of runs divided by the runs — like Linux's test-run timer,
    /// which stops while the task is rescheduled, this leaves out time the thread spent preempted
    /// (wall-clock time where the thread CPU clock is unavailable). A single run is timed by the
    /// wall clock (reading the thread CPU clock is a system call, dearer than a short run): by the
    /// time-stamp counter, calibrated against `CLOCK_MONOTONIC`, where it is invariant and the
    /// kernel's clock source.
    pub ns_per_run: u64,
    /// Instructions executed by one run (the last one); 0 on the JIT, which does not count them.
    pub instructions_per_run: u64,
    /// Lines written by `bpf_trace_printk`, over all runs (at most [`MAX_TRACE_LINES`]).
    pub trace: Vec<String>,
    /// Trace lines beyond [`MAX_TRACE_LINES`] that were dropped.
    pub trace_dropped: u64,
    /// Resources (ringbuf reservations, locks, ...) the program still held at exit and the runtime
    /// released, over all runs.
    pub resources_released: u64,
    /// The engine that ran the program.
    pub engine: Engine,
    /// The last run was cancelled (a memory fault, a stack overflow, or the watchdog when it ran
    /// past its budget, in JIT code); `retval` is then 0, the resources it held were released
    /// (counted in `resources_released`), and the runs stop there.
    pub cancelled: bool,
    /// Why the run was cancelled.
    pub cancel_reason: Option<String>,
    /// SFI guard sequences in the JIT code (0 on the interpreter, which checks every access).
    pub guards_emitted: u64,
    /// Heap accesses the JIT compiled without a guard (elided by the verifier's facts, or loads
    /// in writes-only mode).
    pub guards_elided: u64,
}

impl Extension {
    /// Test-runs program `program` (see [`TestRunOptions`]). Map contents persist across runs and
    /// calls, as in Linux.
    pub fn test_run(&self, program: &str, options: &TestRunOptions) -> Result<TestRunResult> {
        let prog = self.program(program)?;
        let prog_type = prog_type_of(prog)?;
        let registry = self.run_registry(prog_type)?;
        let jit = jit_of(prog, options.engine.unwrap_or(self.engine))?;
        let target = Target {
            prog,
            registry: &registry,
            heap_base: self.heap_layout().map_or(0, |h| h.base),
            limits: self.limits,
            budget: options.budget.unwrap_or(DEFAULT_BUDGET),
        };
        let mut scratch = scratch::Scratch::take(&self.maps, options.cpu)?;
        let result = scratch
            .prepare(prog_type, &options.data_in, options.ctx_in.as_deref())
            .and_then(|parts| self.run_prepared(&target, jit, parts, program, options));
        scratch.put_back();
        result
    }

    /// The runs of one test-run call on a prepared entry, and their result.
    fn run_prepared(
        &self,
        target: &Target<'_>,
        jit: Option<&JitProgram>,
        parts: scratch::Parts<'_>,
        program: &str,
        options: &TestRunOptions,
    ) -> Result<TestRunResult> {
        let scratch::Parts {
            mem,
            env,
            run: prepared,
        } = parts;
        let prog = target.prog;
        let repeat = options.repeat.max(1);
        let mut lease = jit.map(|j| j.frame_lease(self.limits.max_call_depth));
        let mut tally = LoopTally::default();
        let start = timer::LoopTimer::start(repeat > 1);
        let last = match (jit, lease.as_mut()) {
            (Some(jit), Some(lease)) => {
                let args = [prepared.ctx_address(), 0, 0, 0, 0];
                let direct = crate::invoke::direct_context(prepared);
                let mut jenv = JitEnv::new(mem, target.registry, env);
                jenv.ctx = Some(prepared.context_access());
                jenv.ctx_direct = Some(&direct);
                if prog.verified.is_some() {
                    // SAFETY: the program was verified (JIT code exists only for verified
                    // programs) and the registry is built on the Linux helpers, map helpers
                    // included.
                    unsafe { jenv.trust_map_helper_pointers() };
                }
                jenv.max_call_depth = target.limits.max_call_depth;
                jenv.heap_base = target.heap_base;
                jenv.budget = Some(target.budget);
                match jit.runner(&mut jenv, lease) {
                    Ok(mut runner) => {
                        let mut last = Ok((0, 0, None, 0));
                        for _ in 0..repeat {
                            last = jit_outcome(prog, runner.run(args));
                            let j = runner.env();
                            if !tally.after_run(j.env, j.mem, &last) {
                                break;
                            }
                        }
                        last
                    }
                    Err(f) => Err(run_fault(prog, f.pc, f.to_string())),
                }
            }
            _ => {
                let mut last = Ok((0, 0, None, 0));
                for _ in 0..repeat {
                    last = interp_once(target, prepared, mem, env);
                    if !tally.after_run(env, mem, &last) {
                        break;
                    }
                }
                last
            }
        };
        // Timed before the cancellation hooks run: they are the host's time, not the runs'.
        let elapsed = start.elapsed_ns();
        if let Some(reason) = tally.stopped_by.take() {
            self.cancel_hooks.notify(program, options.cpu, &reason);
        }
        let LoopTally {
            trace,
            trace_dropped,
            released,
            ..
        } = tally;
        if let Some(lease) = lease {
            lease.release(mem);
        }
        let (retval, instructions, cancel, _) = last?;
        let output = prepared.output();
        let runs = u128::from(repeat);
        let ns_per_run = (u128::from(elapsed) / runs.max(1)) as u64;
        let (guards_emitted, guards_elided) = jit.map_or((0, 0), JitProgram::guards);
        Ok(TestRunResult {
            retval,
            data_out: output.data_out,
            ctx_out: output.ctx_out,
            ns_per_run,
            instructions_per_run: instructions,
            trace,
            trace_dropped,
            resources_released: released,
            engine: if jit.is_some() {
                Engine::Jit
            } else {
                Engine::Interp
            },
            cancelled: cancel.is_some(),
            cancel_reason: cancel,
            guards_emitted,
            guards_elided,
        })
    }

    /// The helper registry a program of `prog_type` runs with: Linux helpers, the program type's
    /// helpers, then the host's helpers.
    pub fn registry(&self, prog_type: ProgType) -> Result<HelperRegistry> {
        let mut registry = base_registry(prog_type)?.clone();
        for h in &self.helpers {
            registry.register(h.clone())?;
        }
        Ok(registry)
    }

    /// [`Extension::registry`], borrowed from the shared per-type registry when the extension
    /// offers no host helpers.
    fn run_registry(&self, prog_type: ProgType) -> Result<Cow<'static, HelperRegistry>> {
        crate::link::helper_registry(prog_type, &self.helpers)
    }
}

/// The Linux helpers plus the helpers of `prog_type`, built on first use and shared by every
/// test-run of the process (helper implementations keep no state of their own: everything a
/// helper changes lives in the run's `ExecEnv` or memory).
pub(crate) fn base_registry(prog_type: ProgType) -> Result<&'static HelperRegistry> {
    static BASE: [OnceLock<HelperRegistry>; ProgType::ALL.len()] =
        [const { OnceLock::new() }; ProgType::ALL.len()];
    let slot = ProgType::ALL
        .iter()
        .position(|t| *t == prog_type)
        .and_then(|i| BASE.get(i))
        .ok_or_else(|| Error::Input(format!("no helper set for program type {prog_type:?}")))?;
    if let Some(registry) = slot.get() {
        return Ok(registry);
    }
    let mut registry = HelperRegistry::linux_default();
    for h in kflex_hooks::extra_helpers(prog_type) {
        registry.register(h)?;
    }
    // Another thread may have won the race; either value is the same set of helpers.
    Ok(slot.get_or_init(|| registry))
}

/// What runs: the program, its JIT code when the JIT runs it, and what it runs with.
struct Target<'a> {
    prog: &'a LoadedProgram,
    registry: &'a HelperRegistry,
    heap_base: u64,
    limits: Limits,
    budget: Duration,
}

/// What one run produced: r0, the instructions executed (interpreter), why the run was
/// cancelled, if it was, and the resources the cancellation released.
type RunOutcome = Result<(u64, u64, Option<String>, u64)>;

/// Trace lines, released resources and the reason a loop of runs stopped early.
#[derive(Default)]
struct LoopTally {
    trace: Vec<String>,
    trace_dropped: u64,
    released: u64,
    /// Why the loop stopped before `repeat` runs (a cancellation or fault), for the hooks.
    stopped_by: Option<String>,
}

impl LoopTally {
    /// Books a finished run: releases what it left held, collects its trace lines; false when
    /// the loop must stop (the run was cancelled or faulted).
    fn after_run(&mut self, env: &mut ExecEnv, mem: &mut MemoryMap, last: &RunOutcome) -> bool {
        self.released += env.release_all_in(mem) as u64;
        if !env.trace.is_empty() {
            for line in env.take_trace() {
                if self.trace.len() < MAX_TRACE_LINES {
                    self.trace.push(line);
                } else {
                    self.trace_dropped += 1;
                }
            }
        }
        match last {
            Ok((_, _, None, _)) => true,
            Ok((_, _, Some(reason), by_cancel)) => {
                self.released += by_cancel;
                self.stopped_by = Some(reason.clone());
                false
            }
            Err(e) => {
                self.stopped_by = Some(e.to_string());
                false
            }
        }
    }
}

/// The fault of `prog` at slot `pc`.
fn run_fault(prog: &LoadedProgram, pc: usize, message: String) -> Error {
    Error::Fault(RunFault {
        program: prog.name.clone(),
        pc,
        message,
        source: prog.source_line(pc),
    })
}

/// A JIT run's result as a [`RunOutcome`] (cancellations are outcomes, other faults errors).
fn jit_outcome(prog: &LoadedProgram, ran: std::result::Result<u64, JitFault>) -> RunOutcome {
    match ran {
        Ok(retval) => Ok((retval, 0, None, 0)),
        Err(JitFault {
            kind: JitFaultKind::Cancelled { reason },
            resources_released,
            ..
        }) => Ok((0, 0, Some(reason.to_string()), resources_released as u64)),
        Err(f) => Err(run_fault(prog, f.pc, f.to_string())),
    }
}

/// One interpreter run of `target` on the installed `prepared` run in `mem`. Resources the run
/// left held are the caller's to release (`ExecEnv::release_all_in`).
fn interp_once(
    target: &Target<'_>,
    prepared: &mut kflex_hooks::PreparedRun,
    mem: &mut MemoryMap,
    env: &mut ExecEnv,
) -> RunOutcome {
    let prog = target.prog;
    let args = [prepared.ctx_address(), 0, 0, 0, 0];
    let mut vm = Vm {
        mem,
        ctx: Some(prepared.context_access()),
        helpers: target.registry,
        env,
        limits: target.limits,
    };
    kflex_interp::run(&prog.code, args, &mut vm)
        .map(|o| (o.retval, o.instructions, None, 0))
        .map_err(|f| run_fault(prog, f.pc, f.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExtensionOptions;
    use kflex_hooks::{BPF_FUNC_SKB_LOAD_BYTES, BPF_FUNC_XDP_ADJUST_HEAD};
    use kflex_runtime::helpers::{ArgKind, HelperDef, RetKind, Signature};
    use std::sync::Arc;

    fn example(name: &str) -> Extension {
        let e = kflex_examples::get(name).expect("bundled example");
        Extension::load(e.name, e.object, ExtensionOptions::default()).expect("example loads")
    }

    #[test]
    fn base_registries_are_built_once_per_type_with_that_types_helpers() {
        let xdp = base_registry(ProgType::Xdp).unwrap();
        assert!(std::ptr::eq(xdp, base_registry(ProgType::Xdp).unwrap()));
        assert!(xdp.get(BPF_FUNC_XDP_ADJUST_HEAD).is_some());
        assert!(xdp.get(BPF_FUNC_SKB_LOAD_BYTES).is_none());
        let skb = base_registry(ProgType::SocketFilter).unwrap();
        assert!(skb.get(BPF_FUNC_SKB_LOAD_BYTES).is_some());
        assert!(skb.get(BPF_FUNC_XDP_ADJUST_HEAD).is_none());
        let syscall = base_registry(ProgType::Syscall).unwrap();
        // The Linux helpers are in every set.
        assert!(
            syscall
                .get(1)
                .is_some_and(|h| h.name == "bpf_map_lookup_elem")
        );
    }

    #[test]
    fn host_helpers_get_their_own_registry() {
        let mut ext = example("xdp_firewall");
        assert!(matches!(
            ext.run_registry(ProgType::Xdp).unwrap(),
            Cow::Borrowed(_)
        ));
        ext.register_helper(HelperDef {
            id: 1000,
            name: "host_answer".into(),
            sig: Signature::new(&[ArgKind::Scalar], RetKind::Scalar),
            func: Arc::new(|_| Ok(42)),
        })
        .unwrap();
        let own = ext.run_registry(ProgType::Xdp).unwrap();
        assert!(matches!(own, Cow::Owned(_)));
        assert!(own.get(1000).is_some());
        assert!(own.get(BPF_FUNC_XDP_ADJUST_HEAD).is_some());
        assert!(base_registry(ProgType::Xdp).unwrap().get(1000).is_none());
    }

    #[test]
    fn repeated_runs_see_fresh_input_and_keep_map_state() {
        let ext = example("sk_skb_verdict");
        let frame = crate::packet::ethernet(
            crate::packet::DST_MAC,
            crate::packet::SRC_MAC,
            0x0800,
            &[0u8; 86],
        );
        let options = TestRunOptions {
            repeat: 5,
            ..TestRunOptions::packet(frame.clone())
        };
        let first = ext.test_run("sk_skb_verdict", &options).unwrap();
        let second = ext.test_run("sk_skb_verdict", &options).unwrap();
        assert_eq!((first.retval, second.retval), (1, 1));
        assert_eq!(first.data_out, second.data_out);
        // SK_PASS counted once per run over both calls.
        let passed = ext
            .map("verdicts")
            .unwrap()
            .lookup(&1u32.to_ne_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(passed, 10u64.to_ne_bytes());
    }
}
