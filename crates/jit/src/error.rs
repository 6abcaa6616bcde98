//! Compile errors and run-time faults of JIT programs.

use kflex_runtime::HelperError;
use kflex_runtime::exec::CancelReason;
use thiserror::Error;

/// Why a program could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JitError {
    /// An instruction cannot be compiled as configured (names the slot and the reason).
    #[error("instruction {pc}: {reason}")]
    Instruction {
        /// Slot index of the instruction.
        pc: usize,
        /// What is wrong.
        reason: String,
    },
    /// The assembler rejected the generated code (a bug in the JIT).
    #[error("code generation failed: {0}")]
    Assembler(String),
    /// Executable memory could not be mapped or protected.
    #[error("executable memory: {0}")]
    Memory(String),
}

/// A run stopped before its final `exit`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("instruction {pc}: {kind}")]
pub struct JitFault {
    /// Slot index of the instruction that stopped the run.
    pub pc: usize,
    /// What happened.
    pub kind: JitFaultKind,
    /// Resources (ringbuf reservations, spin locks) the run still held and that were released on
    /// its behalf (non-zero only for [`JitFaultKind::Cancelled`]).
    pub resources_released: usize,
}

/// The reason a JIT run was stopped (the same cases as the interpreter's `FaultKind` where the
/// JIT detects them).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum JitFaultKind {
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
    /// A helper panicked; the panic was caught at the trampoline (nothing unwinds through JIT
    /// frames).
    #[error("helper #{id} panicked: {message}")]
    HelperPanic {
        /// Helper number.
        id: u32,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// `callx` through a register that holds neither a helper number nor a subprogram entry.
    #[error("callx target {0:#x} is neither a helper number nor a subprogram address")]
    BadCallTarget(u64),
    /// A BPF-to-BPF call would exceed the frame limit.
    #[error("call depth limit of {limit} frames exceeded")]
    CallDepth {
        /// The configured maximum number of frames.
        limit: usize,
    },
    /// A kfunc call (kflex has no kfuncs).
    #[error("kfuncs are not supported (call to BTF id {btf_id})")]
    Kfunc {
        /// The kfunc's BTF id.
        btf_id: i32,
    },
    /// A `lddw` with a pseudo source the loader should have resolved.
    #[error("unresolved lddw pseudo source {pseudo} (imm {imm:#x})")]
    UnresolvedPseudo {
        /// The pseudo source value.
        pseudo: u8,
        /// The 64-bit immediate.
        imm: u64,
    },
    /// The run's stack frames could not be registered in the memory map (or the run ended in an
    /// inconsistent fault state; the text says which).
    #[error("stack setup: {0}")]
    StackSetup(String),
    /// A rewritten context access was refused (or no context hook was installed).
    #[error("context access at offset {offset:#x} ({size} bytes) refused: {reason}")]
    Context {
        /// Offset from the start of the context.
        offset: u32,
        /// Access size in bytes.
        size: u8,
        /// The context hook's explanation.
        reason: String,
    },
    /// The run was cancelled: a memory fault in the program's code (or a stack overflow, or a
    /// poisoned terminate word) was caught by the fault handler and the run left through its
    /// fault exit. The host is unaffected.
    #[error("cancelled: {reason}")]
    Cancelled {
        /// What caused the cancellation.
        reason: CancelReason,
    },
}
