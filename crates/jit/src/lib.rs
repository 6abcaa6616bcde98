//! kflex-jit: the x86-64 JIT.
//!
//! [`JitProgram::compile`] translates a decoded [`Program`] into native code with exactly the
//! reference interpreter's semantics (`kflex_interp`): the same 32-bit zero extension, shift
//! masking, division edge cases, byte swaps, atomics (`lock`-prefixed instructions), `may_goto`
//! budget per frame, helper calls, BPF-to-BPF calls with their own 512-byte frames, and `callx`
//! with the interpreter's code-address encoding. [`JitProgram::run`] executes it;
//! [`JitProgram::runner`] sets it up once for a series of runs in one environment ([`JitRunner`],
//! what test-runs and repeated invocations use).
//!
//! ```
//! use kflex_isa::decode::{AluOp, Instruction, Operand, Program, Width, encode_all};
//! use kflex_jit::{JitEnv, JitOptions, JitProgram};
//! use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};
//!
//! // r0 = r1 + 1
//! let insns = [
//!     Instruction::Mov { width: Width::W64, dst: 0, src: Operand::Reg(1) },
//!     Instruction::Alu { width: Width::W64, op: AluOp::Add, dst: 0, src: Operand::Imm(1) },
//!     Instruction::Exit,
//! ];
//! let program = Program::decode(&encode_all(&insns)).unwrap();
//! let jit = JitProgram::compile(&program, &JitOptions::default()).unwrap();
//! let (mut mem, helpers, mut env) = (MemoryMap::new(), HelperRegistry::empty(), ExecEnv::default());
//! let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
//! assert_eq!(jit.run([41, 0, 0, 0, 0], &mut jenv), Ok(42));
//! ```
//!
//! Design points the SFI, guarded-stack, termination and cancellation work builds on:
//! * Register mapping as in the Linux x86-64 JIT (r0=rax, r1=rdi, r2=rsi, r3=rdx, r4=rcx, r5=r8,
//!   r6=rbx, r7=r13, r8=r14, r9=r15, r10=rbp). x86 `r12` is reserved for the heap base
//!   ([`JitEnv::heap_base`]) and x86 `r9` for the per-invocation state block, whose first field is
//!   the terminate word; `r10`/`r11` are scratch.
//! * Every instruction's code offset is recorded ([`JitProgram::pc_at`],
//!   [`JitProgram::code_offset`]), so a faulting machine pc maps back to a BPF slot.
//! * Host calls (helpers, context accesses) are plain function calls into `extern "sysv64"`
//!   trampolines. Errors and panics never unwind through JIT frames: the trampoline records the
//!   fault, the JIT code checks a flag after the call and leaves through a fault exit that
//!   restores the host's stack pointer.
//! * Map helper calls whose map the verifier knows ([`JitOptions::map_calls`], with
//!   [`JitOptions::maps`]) skip the trampoline, as in Linux's JIT: array and per-CPU array
//!   look-ups are compiled inline, hash and LRU hash calls as direct calls of the map's
//!   functions ([`kflex_runtime::maps::MapCallPlan`]).
//! * Code lives in W^X memory: written while read-write, then made read-execute.
//! * Profiling: with `KFLEX_PERF_MAP=1` every compiled program names its code (entry stub, one
//!   symbol per BPF function, tail) in `/tmp/perf-<pid>.map`, so `perf report` attributes samples
//!   in JIT code; `KFLEX_PERF_MAP=code` also writes the code to `/tmp/kflex-jit-<pid>-<addr>.bin`.
//! * Runs execute on a guarded native stack ([`kflex_runtime::exec`]) of
//!   [`JitEnv::native_stack_size`] bytes, and the code is registered with the process-wide fault
//!   handler: a memory fault inside the program's code, or a run into the stack's guard page,
//!   resumes at the fault exit and the run returns [`JitFaultKind::Cancelled`] (a fault
//!   elsewhere in the host is not caught).
//!
//! Differences from the interpreter (none observable by verified programs):
//! * memory accesses are not checked against the [`MemoryMap`] (the verifier, and later SFI,
//!   make them safe) and there is no instruction limit: loops are stopped by time instead, through
//!   the termination checks at the verifier's termination points and the watchdog
//!   ([`termination`], [`JitEnv::budget`]);
//! * all stack frames a run may use are registered in the memory map for the whole run, not
//!   only while live (frame 0 alone for a program without BPF-to-BPF calls or `callx`);
//! * `callx` accepts only code addresses of function entries (slot 0, call targets and
//!   `PSEUDO_FUNC` targets), not of arbitrary instructions.

#![warn(missing_docs)]

mod codegen;
pub mod ctx_direct;
mod ctx_plan;
pub mod error;
mod exec_mem;
mod helpers_direct;
mod perf_map;
mod runner;
pub mod sfi;
mod stack;
mod state;
pub mod termination;
mod trampoline;

use kflex_isa::decode::{Instruction, Program};
use kflex_runtime::exec::{self, CodeRange};
use kflex_runtime::{ContextAccess, ExecEnv, HelperRegistry, MemoryMap};

pub use ctx_direct::CtxDirect;
pub use error::{JitError, JitFault, JitFaultKind};
pub use runner::JitRunner;
pub use sfi::{HeapAccess, HeapLayout, SfiMode};
pub use stack::{FrameLease, STACK_SIZE};
pub use termination::TerminationMode;

use exec_mem::ExecutableMemory;
use state::RunState;

/// Initial value of each frame's `may_goto` counter (Linux `BPF_MAX_LOOPS`).
pub const MAY_GOTO_BUDGET: u64 = 8 * 1024 * 1024;

/// Base of code addresses (`lddw PSEUDO_FUNC` values): the interpreter's encoding, base plus 8
/// times the slot index, so values are interchangeable between the engines.
pub const CODE_ADDRESS_BASE: u64 = 0xffff_c0de_0000_0000;

/// Largest number of frames a run may use.
pub const MAX_FRAMES: usize = 256;

/// One context access to rewrite into a call of the context hook (from the verifier's facts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtxAccess {
    /// Slot of the load or store.
    pub pc: usize,
    /// Offset into the context.
    pub offset: u32,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// True for a store.
    pub write: bool,
}

impl From<(usize, u32, u8, bool)> for CtxAccess {
    fn from((pc, offset, size, write): (usize, u32, u8, bool)) -> Self {
        CtxAccess {
            pc,
            offset,
            size,
            write,
        }
    }
}

/// Compilation options.
#[derive(Clone, Debug, Default)]
pub struct JitOptions {
    /// Loads and stores to turn into calls of the run's [`ContextAccess`] hook; all other
    /// accesses are plain memory accesses.
    pub ctx_accesses: Vec<CtxAccess>,
    /// How heap accesses marked [`HeapAccess::Guard`] are guarded (see [`sfi`]; default
    /// [`SfiMode::Segment`], compiled as [`SfiMode::AndMask`] where the heap or CPU cannot use it).
    pub sfi: SfiMode,
    /// The heap guards mask into; required when a fact asks for a guard (unless `sfi` is
    /// [`SfiMode::None`]). Runs load its base into `r12`.
    pub heap: Option<HeapLayout>,
    /// `(slot, fact)` per heap access, from the verifier (`VerifiedProgram::insns[pc].heap`).
    pub heap_facts: Vec<(usize, HeapAccess)>,
    /// How back-edge termination checks are compiled (see [`termination`]).
    pub termination: TerminationMode,
    /// Slots of the termination points (`VerifiedProgram::termination_points`: loop back-edge
    /// jumps and `may_goto`s); a check is emitted at each.
    pub termination_points: Vec<usize>,
    /// The map table of the program's maps, for compiling map helper calls against their map
    /// ([`JitOptions::map_calls`]). A program with such calls keeps the table and runs only
    /// with it as its environment's `ExecEnv::maps`.
    pub maps: Option<std::sync::Arc<kflex_runtime::MapTable>>,
    /// `(slot, map index)` of map helper calls (`bpf_map_lookup_elem`/`update_elem`/
    /// `delete_elem`) whose r1 is that map on every path (the verifier's
    /// `InsnFacts::map_call`). With [`JitOptions::maps`], array and per-CPU array look-ups are
    /// compiled inline and hash map calls as direct calls of the map's functions. Like
    /// [`JitEnv::trust_map_helper_pointers`], this takes the calls' key and value pointers as
    /// valid (verified programs only); a site whose r1 is not that map's handle when it runs
    /// takes the ordinary helper path.
    pub map_calls: Vec<(usize, usize)>,
    /// Test-only fault injection: the back-edge jump or `may_goto` at this slot is compiled as
    /// an unconditional cancellation (`CancelReason::Terminated`, every live resource released),
    /// so a test can cancel a run exactly when it reaches that termination point.
    pub inject_cancel_at: Option<usize>,
    /// The most bytes below its frame pointer any frame of the program can touch (the
    /// verifier's `VerifiedProgram::stack_depth`); runs zero only those bytes of the frames
    /// they reached afterwards. `None`: the whole 512-byte frame. Like the rest of the
    /// verifier's facts this is trusted: a program that writes deeper leaves those bytes for
    /// later runs on the same thread to find.
    pub stack_depth: Option<u32>,
}

/// What a run executes against (the JIT counterpart of the interpreter's `Vm`).
pub struct JitEnv<'a> {
    /// Regions helpers may touch; the run's stack frames are added for its duration.
    pub mem: &'a mut MemoryMap,
    /// The helpers the program may call.
    pub helpers: &'a HelperRegistry,
    /// The environment helpers see.
    pub env: &'a mut ExecEnv,
    /// Serves the rewritten context accesses ([`JitOptions::ctx_accesses`]).
    pub ctx: Option<&'a mut dyn ContextAccess>,
    /// Serves the context accesses its tables cover without calling `ctx` (see [`ctx_direct`]).
    pub ctx_direct: Option<&'a CtxDirect>,
    /// Frames a run may hold at once, frame 0 included (default 8; clamped to 1..=256).
    pub max_call_depth: usize,
    /// Base of the extension heap, kept in x86 `r12` while the program runs (default 0).
    pub heap_base: u64,
    /// Usable bytes of the guarded native stack the run executes on (default
    /// [`exec::DEFAULT_STACK_SIZE`], rounded up to pages). Helpers called by the program run on
    /// it too; running into its guard page cancels the run.
    pub native_stack_size: usize,
    /// Time budget of a run of a program with termination checks: when it passes, the watchdog
    /// stops the run at its next check (`Cancelled { Terminated }`, or a `may_goto`'s exit
    /// branch). Default [`exec::watchdog::DEFAULT_BUDGET`] (10 ms); `None` disables the watchdog.
    pub budget: Option<std::time::Duration>,
    /// Map helpers (`bpf_map_lookup_elem`/`update_elem`/`delete_elem`) may trust their pointer
    /// arguments and skip the registry (see [`JitEnv::trust_map_helper_pointers`]).
    trust_map_helpers: bool,
}

impl<'a> JitEnv<'a> {
    /// Lets the map helpers of this run's program take their key and value pointers as valid
    /// without checking them against [`JitEnv::mem`], and call the map table directly instead of
    /// going through [`JitEnv::helpers`] (same results, a fraction of the cost).
    ///
    /// # Safety
    /// The program must have been verified (kflex-verify proves that every such call passes a
    /// handle of `env`'s map table and key/value pointers to that many readable bytes), and
    /// `helpers` must hold the Linux map helpers (ids 1, 2, 3), whose behaviour this replaces.
    pub unsafe fn trust_map_helper_pointers(&mut self) {
        self.trust_map_helpers = true;
    }

    /// An environment without a context hook, with 8 frames and no heap.
    pub fn new(mem: &'a mut MemoryMap, helpers: &'a HelperRegistry, env: &'a mut ExecEnv) -> Self {
        JitEnv {
            mem,
            helpers,
            env,
            ctx: None,
            ctx_direct: None,
            max_call_depth: 8,
            heap_base: 0,
            native_stack_size: exec::DEFAULT_STACK_SIZE,
            budget: Some(exec::watchdog::DEFAULT_BUDGET),
            trust_map_helpers: false,
        }
    }
}

/// A compiled program: native code in read-execute memory, freed on drop.
pub struct JitProgram {
    /// Registration of the code with the fault handler; declared before `mem` so it is dropped
    /// (unregistered) before the code is unmapped.
    _registration: CodeRange,
    /// Address of the fault exit (the landing pad of caught faults).
    landing_pad: usize,
    mem: ExecutableMemory,
    /// Native address of each slot's function entry (0 where none starts).
    entries: Box<[u64]>,
    /// `(code offset, slot)` per instruction, ascending in both.
    pc_map: Vec<(u32, u32)>,
    static_faults: Vec<JitFaultKind>,
    ctx_table: Box<[CtxAccess]>,
    /// Static SFI guard counts: (emitted, elided).
    guards: (usize, usize),
    /// The heap the guards mask into, if SFI is on.
    heap: Option<HeapLayout>,
    /// True if the code contains termination checks (runs then arm the watchdog).
    has_termination_checks: bool,
    /// Bytes below each frame pointer a run may have written ([`JitOptions::stack_depth`]),
    /// zeroed again after the run.
    stack_clear_bytes: usize,
    /// True if the program can call a BPF function (`call` to a local function or `callx`);
    /// otherwise a run only ever uses frame 0, and only that frame is set up.
    calls: bool,
    /// The map table the code's map calls embed addresses of, kept alive with the code.
    maps: Option<std::sync::Arc<kflex_runtime::MapTable>>,
    /// Number of map helper calls compiled against their map.
    map_calls: usize,
}

impl std::fmt::Debug for JitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitProgram")
            .field("code_addr", &format_args!("{:#x}", self.mem.addr()))
            .field("code_len", &self.mem.code().len())
            .field("instructions", &self.pc_map.len())
            .finish_non_exhaustive()
    }
}

/// Signature of the entry stub.
type EntryFn = unsafe extern "sysv64" fn(*mut RunState) -> u64;

impl JitProgram {
    /// Compiles `program`; errors name the instruction that could not be compiled.
    pub fn compile(program: &Program, options: &JitOptions) -> Result<JitProgram, JitError> {
        let out = codegen::compile(program, options)?;
        let mem = ExecutableMemory::new(&out.code)?;
        let code_range =
            exec::registry::register(mem.addr(), mem.code().len(), mem.addr() + out.fault_exit)
                .map_err(|e| JitError::Memory(e.to_string()))?;
        publish_perf_map(&mem, &out);
        let mut entries = vec![0u64; program.len()].into_boxed_slice();
        for (pc, offset) in out.fn_entries {
            if let Some(slot) = entries.get_mut(pc) {
                *slot = (mem.addr() + offset) as u64;
            }
        }
        Ok(JitProgram {
            landing_pad: mem.addr() + out.fault_exit,
            _registration: code_range,
            mem,
            entries,
            pc_map: out.pc_map,
            static_faults: out.static_faults,
            ctx_table: out.ctx_table.into_boxed_slice(),
            guards: out.guards,
            heap: options.heap.filter(|_| options.sfi != SfiMode::None),
            has_termination_checks: out.has_termination_checks,
            maps: options.maps.clone().filter(|_| out.map_calls > 0),
            map_calls: out.map_calls,
            stack_clear_bytes: options.stack_depth.map_or(STACK_SIZE, |d| {
                (d as usize).next_multiple_of(8).min(STACK_SIZE)
            }),
            calls: program.iter().any(|(_, insn)| {
                matches!(
                    insn,
                    Instruction::CallLocal { .. } | Instruction::Callx { .. }
                )
            }),
        })
    }

    /// Static SFI guard counts `(emitted, elided)`: guard sequences in the code, and heap
    /// accesses compiled without one (elided by the verifier, or loads in
    /// [`SfiMode::WritesOnly`]).
    pub fn guards(&self) -> (u64, u64) {
        (self.guards.0 as u64, self.guards.1 as u64)
    }

    /// The generated machine code (the entry stub is at offset 0).
    pub fn code(&self) -> &[u8] {
        self.mem.code()
    }

    /// Address the code is mapped at.
    pub fn code_addr(&self) -> usize {
        self.mem.addr()
    }

    /// The slot whose machine code contains code offset `offset` (for mapping a faulting
    /// machine pc back to the program); `None` outside instruction bodies' range.
    pub fn pc_at(&self, offset: usize) -> Option<usize> {
        let offset = u32::try_from(offset).ok()?;
        let i = self.pc_map.partition_point(|&(o, _)| o <= offset);
        let (_, pc) = *self.pc_map.get(i.checked_sub(1)?)?;
        Some(pc as usize)
    }

    /// The slot a fault at code offset `offset` is attributed to: the instruction whose body
    /// contains it, or, in a function prologue (emitted after every body, in slot order), the
    /// function's entry slot.
    fn fault_slot(&self, offset: usize) -> Option<usize> {
        let prologue = self
            .entries
            .iter()
            .enumerate()
            .filter(|&(_, &addr)| addr != 0)
            .map(|(pc, &addr)| (addr as usize - self.mem.addr(), pc))
            .filter(|&(start, _)| start <= offset)
            .max();
        match prologue {
            Some((_, pc)) => Some(pc),
            None => self.pc_at(offset),
        }
    }

    /// Code offset of the prologue of the function starting at slot `pc` (slot 0, BPF-to-BPF
    /// call targets and `PSEUDO_FUNC` targets), if one starts there.
    pub fn function_offset(&self, pc: usize) -> Option<usize> {
        let addr = *self.entries.get(pc)?;
        (addr != 0).then(|| addr as usize - self.mem.addr())
    }

    /// Code offset of the first machine instruction of slot `pc`.
    pub fn code_offset(&self, pc: usize) -> Option<usize> {
        let pc = u32::try_from(pc).ok()?;
        let i = self.pc_map.binary_search_by_key(&pc, |&(_, p)| p).ok()?;
        Some(self.pc_map[i].0 as usize)
    }

    /// Runs the program with r1..r5 = `args` and r10 = the top of a zeroed 512-byte frame;
    /// returns r0 at the final `exit`, or the fault that stopped the run.
    pub fn run(&self, args: [u64; 5], env: &mut JitEnv<'_>) -> Result<u64, JitFault> {
        let mut lease = self.frame_lease(env.max_call_depth);
        let out = match self.runner(env, &mut lease) {
            Ok(mut runner) => runner.run(args),
            Err(fault) => Err(fault),
        };
        lease.release(env.mem);
        out
    }

    /// Frames of the BPF stack a run with `max_call_depth` sets up: all of them if the program
    /// can call a BPF function, frame 0 alone otherwise.
    fn frames_used(&self, max_call_depth: usize) -> usize {
        if self.calls {
            max_call_depth.clamp(1, MAX_FRAMES)
        } else {
            1
        }
    }

    /// A [`FrameLease`] for runs of this program with up to `max_call_depth` frames (pass the
    /// same depth as [`JitEnv::max_call_depth`]).
    pub fn frame_lease(&self, max_call_depth: usize) -> FrameLease {
        FrameLease::new(self.frames_used(max_call_depth))
    }

    /// [`JitProgram::run`] on the frames of `lease`, which stay registered in `env.mem` after the
    /// run (registered on first use): repeated runs skip the per-run registration. The frames a
    /// run used are zeroed again before this returns, as in `run`.
    pub fn run_leased(
        &self,
        args: [u64; 5],
        env: &mut JitEnv<'_>,
        lease: &mut FrameLease,
    ) -> Result<u64, JitFault> {
        self.runner(env, lease)?.run(args)
    }
}

/// Names the program's code for profilers when `KFLEX_PERF_MAP` asks for it (see [`perf_map`]).
fn publish_perf_map(mem: &ExecutableMemory, out: &codegen::Compiled) {
    let mode = perf_map::PerfMap::from_env();
    if mode == perf_map::PerfMap::Off {
        return;
    }
    // Prologues follow every body: the first one starts the tail.
    let tail = out.fn_entries.iter().map(|&(_, o)| o).min();
    let tail = tail.unwrap_or(mem.code().len());
    let mut bodies: Vec<(usize, usize)> = out
        .fn_entries
        .iter()
        .filter_map(|&(slot, _)| {
            let i = out.pc_map.binary_search_by_key(&(slot as u32), |&(_, p)| p);
            i.ok().map(|i| (slot, out.pc_map[i].0 as usize))
        })
        .collect();
    bodies.sort_by_key(|&(_, o)| o);
    let ranges = perf_map::ranges(mem.addr(), mem.code().len(), &bodies, tail);
    perf_map::publish(mode, mem.addr(), mem.code(), &ranges);
}
