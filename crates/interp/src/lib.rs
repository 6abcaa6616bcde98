//! kflex-interp: the reference interpreter.
//!
//! [`run`] executes a decoded [`Program`] with the exact semantics of the Linux eBPF interpreter;
//! it is the oracle the JIT is tested against. Every memory access goes through the run's
//! [`MemoryMap`] (context accesses through the program type's [`ContextAccess`] hook), helper
//! calls dispatch through the [`HelperRegistry`], and each run gets its own stack frames.
//!
//! Semantic choices where Linux leaves room:
//! * r1..r5 keep their values across a helper call (Linux leaves them undefined and the verifier
//!   forbids reading them, so this is not observable by verified programs).
//! * `addr_space_cast` keeps the value in both directions (0 stays 0): kflex maps the heap at the
//!   same address in the extension and in user space.
//! * `lddw` with `PSEUDO_FUNC` loads a [`code_addr`] value that `callx` accepts; other non-zero
//!   pseudo sources must have been resolved by the loader and fault here.
//! * Stack memory starts zeroed.
//!
//! ```
//! use kflex_interp::{Vm, run};
//! use kflex_isa::decode::{Instruction, Operand, Program, Width, encode_all};
//! use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};
//!
//! // r0 = r1 + 1
//! let insns = [
//!     Instruction::Mov { width: Width::W64, dst: 0, src: Operand::Reg(1) },
//!     Instruction::Alu {
//!         width: Width::W64,
//!         op: kflex_isa::decode::AluOp::Add,
//!         dst: 0,
//!         src: Operand::Imm(1),
//!     },
//!     Instruction::Exit,
//! ];
//! let program = Program::decode(&encode_all(&insns)).unwrap();
//! let (mut mem, helpers, mut env) = (MemoryMap::new(), HelperRegistry::empty(), ExecEnv::default());
//! let mut vm = Vm::new(&mut mem, &helpers, &mut env);
//! let out = run(&program, [41, 0, 0, 0, 0], &mut vm).unwrap();
//! assert_eq!((out.retval, out.instructions), (42, 3));
//! assert!(mem.regions().is_empty(), "stack frames are gone after the run");
//! ```
//!
//! Modules: [`alu`] and [`cond`] hold the pure arithmetic, `access` the checked memory accesses,
//! `stack` the frame buffer, `scratch` the per-thread cache of ready frame buffers, `exec` the
//! dispatch loop, [`fault`] the error types.

#![warn(missing_docs)]

mod access;
pub mod alu;
pub mod code_addr;
pub mod cond;
mod exec;
pub mod fault;
mod scratch;
mod stack;

use kflex_isa::decode::Program;
use kflex_runtime::{ContextAccess, ExecEnv, HelperRegistry, MemoryMap};

pub use exec::MAY_GOTO_BUDGET;
pub use fault::{Fault, FaultKind};
pub use stack::STACK_SIZE;

/// Execution limits of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Instructions a run may execute before it is stopped (default `1 << 32`).
    pub max_instructions: u64,
    /// Stack frames a run may hold at once, frame 0 included (default 8, as Linux
    /// `MAX_CALL_FRAMES`; values are clamped to 1..=256).
    pub max_call_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_instructions: 1 << 32,
            max_call_depth: 8,
        }
    }
}

/// Everything a run executes against.
pub struct Vm<'a> {
    /// The regions the program may touch; stack frames are added and removed by [`run`].
    pub mem: &'a mut MemoryMap,
    /// Routes accesses to [`kflex_runtime::RegionKind::Context`] regions, if installed.
    pub ctx: Option<&'a mut dyn ContextAccess>,
    /// The helpers the program may call.
    pub helpers: &'a HelperRegistry,
    /// The environment helpers see.
    pub env: &'a mut ExecEnv,
    /// Instruction and call-depth limits.
    pub limits: Limits,
}

impl<'a> Vm<'a> {
    /// A VM without a context hook and with default limits.
    pub fn new(mem: &'a mut MemoryMap, helpers: &'a HelperRegistry, env: &'a mut ExecEnv) -> Self {
        Vm {
            mem,
            ctx: None,
            helpers,
            env,
            limits: Limits::default(),
        }
    }
}

/// The result of a run that reached its final `exit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// r0 at the final `exit`.
    pub retval: u64,
    /// Instructions executed (a `lddw` counts once).
    pub instructions: u64,
}

/// Runs `program` with r1..r5 = `args` and r10 = the top of frame 0's stack.
///
/// Stack frame regions are registered in `vm.mem` for the duration of the run and removed before
/// returning, whether the run succeeds or faults.
pub fn run(program: &Program, args: [u64; 5], vm: &mut Vm<'_>) -> Result<Outcome, Fault> {
    let frames = vm.limits.max_call_depth.clamp(1, 256);
    exec::run_with_frames(program, args, vm, frames).map_err(|(pc, kind)| Fault {
        pc,
        kind,
        disasm: program.get(pc).map(fault::disasm).unwrap_or_default(),
    })
}
