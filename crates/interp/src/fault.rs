//! Why a run stopped before its program returned.

use kflex_runtime::{AccessError, HelperError};
use thiserror::Error;

/// A run stopped at an instruction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("instruction {pc} ({disasm}): {kind}")]
pub struct Fault {
    /// Slot index of the faulting instruction.
    pub pc: usize,
    /// What went wrong.
    pub kind: FaultKind,
    /// The faulting instruction in llvm-objdump syntax (empty if there is no instruction at `pc`).
    pub disasm: String,
}

/// The reason a run was stopped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FaultKind {
    /// A load, store or atomic touched memory the program may not access.
    #[error("{0}")]
    Memory(#[from] AccessError),
    /// The program type's context layout refused a context access.
    #[error("context access at offset {offset:#x} ({size} bytes) refused: {reason}")]
    Context {
        /// Offset from the start of the context.
        offset: u64,
        /// Access size in bytes.
        size: u8,
        /// The context hook's explanation.
        reason: String,
    },
    /// An atomic read-modify-write on the context, which Linux never allows.
    #[error("atomic operation on the context at offset {offset:#x} is not allowed")]
    AtomicOnContext {
        /// Offset from the start of the context.
        offset: u64,
    },
    /// An atomic access at an address not aligned to its size.
    #[error("misaligned atomic access of {size} bytes at {addr:#x}")]
    MisalignedAtomic {
        /// Address accessed.
        addr: u64,
        /// Access size in bytes.
        size: u8,
    },
    /// A call to a helper number the registry does not contain.
    #[error("unknown helper #{0}")]
    UnknownHelper(u64),
    /// A helper reported an error that stops the program.
    #[error("helper #{id} ({name}) failed: {error}")]
    Helper {
        /// Helper number.
        id: u32,
        /// Helper name.
        name: String,
        /// What the helper reported.
        error: HelperError,
    },
    /// `callx` through a register that holds neither a helper number nor a subprogram address.
    #[error("callx target {0:#x} is neither a helper number nor a subprogram address")]
    BadCallTarget(u64),
    /// A BPF-to-BPF call would exceed the frame limit.
    #[error("call depth limit of {limit} frames exceeded")]
    CallDepth {
        /// The configured maximum number of frames.
        limit: usize,
    },
    /// The instruction budget ran out.
    #[error("instruction limit of {limit} exceeded")]
    InstructionLimit {
        /// The configured budget.
        limit: u64,
    },
    /// A kfunc call (kflex has no kfuncs).
    #[error("kfuncs are not supported (call to BTF id {btf_id})")]
    Kfunc {
        /// The kfunc's BTF id.
        btf_id: i32,
    },
    /// A `lddw` with a map (or BTF) pseudo source that the loader did not rewrite.
    #[error(
        "unresolved map reference: the loader must resolve lddw src={pseudo} first (imm {imm:#x})"
    )]
    UnresolvedPseudo {
        /// The `src` field of the `lddw`.
        pseudo: u8,
        /// Its 64-bit immediate.
        imm: u64,
    },
    /// Control reached a slot that is not the start of an instruction (or left the program).
    #[error("no instruction at slot {0}")]
    InvalidPc(usize),
    /// A stack frame could not be registered in the memory map.
    #[error("cannot register stack frame {frame}: {error}")]
    StackSetup {
        /// Frame number.
        frame: usize,
        /// Why the memory map refused it.
        error: AccessError,
    },
}

/// The instruction in llvm-objdump syntax, for fault messages.
pub(crate) fn disasm(insn: &kflex_isa::decode::Instruction) -> String {
    kflex_isa::disasm::format(insn)
}
