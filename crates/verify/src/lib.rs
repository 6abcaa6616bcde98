//! kflex-verify: the kflex verifier — kernel-interface compliance of eBPF extensions, proved by
//! abstract interpretation before an extension runs, with KFlex's relaxations (loops need no bound
//! proof, heap accesses are guarded or proved inside the heap's guard zone).
//!
//! The verifier runs on the *unlinked* instructions of a program (`lddw` with `PSEUDO_MAP_FD`
//! naming a map index, `PSEUDO_MAP_VALUE` naming a map index and an offset, `PSEUDO_FUNC` naming a
//! subprogram), so it knows which map every map pointer refers to.
//!
//! * [`verify`] explores every path of the program (depth first, with state pruning by
//!   subsumption and widening at loop heads) and either rejects it with a [`VerifyError`] a person
//!   can act on, or returns a [`VerifiedProgram`] holding what later stages need: per instruction
//!   the heap guards needed or elided and the context accesses to rewrite, the termination points
//!   (loop back-edges and `may_goto`), the cancellation table and statistics.
//!
//! Modules: `domains` (tnum and scalar bounds), `state` (registers, stack, frames), `explore`
//! (the exploration engine), `check` (the rules per instruction kind), `facts` (the output),
//! `liveness` (registers still read, for pruning), `cycles` (which backward jumps close a cycle).

#![warn(missing_docs)]

use std::collections::BTreeMap;

pub mod check;
mod cycles;
pub mod domains;
pub mod error;
mod explore;
mod facts;
pub mod hints;
mod liveness;
pub mod log;
pub mod progen;
pub mod state;
mod stats;
#[cfg(test)]
mod testing;

pub use error::VerifyError;
pub use stats::Stats;

/// What to verify: a decoded (unlinked) program and everything its instructions refer to.
#[derive(Clone, Copy, Debug)]
pub struct VerifyInput<'a> {
    /// The program's instructions (entry function first, then its subprograms).
    pub program: &'a kflex_isa::decode::Program,
    /// The program type, which decides the context layout and return-value rules.
    pub prog_type: kflex_object::ProgType,
    /// Map specifications: `lddw` map index -> spec.
    pub maps: &'a [kflex_object::MapSpec],
    /// Typed signatures of every helper the program may call.
    pub helpers: &'a kflex_runtime::HelperRegistry,
    /// Source lines for error messages (may be empty for raw bytecode).
    pub line_info: &'a [kflex_object::LineInfo],
    /// Function starts (may be empty for raw bytecode).
    pub func_info: &'a [kflex_object::FuncInfo],
}

/// How to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Complexity budget: processed instructions before verification gives up.
    pub max_processed: u64,
    /// 0: no log; 1: summary line and error context; 2: full exploration log like the kernel's.
    pub log_level: u8,
    /// Bytes of unmapped guard zone the runtime guarantees on each side of the heap.
    pub guard_zone: u64,
    /// Linux `CAP_BPF`/`CAP_SYS_ADMIN` semantics; `false` forbids pointer leaks into maps and r0.
    pub privileged: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_processed: 1_000_000,
            log_level: 0,
            guard_zone: 1 << 16,
            privileged: true,
        }
    }
}

/// Verifies a program: `Ok` with the facts later stages need, or the first rule it breaks.
// The error type is part of the shared contract (callers match on its fields); it is returned
// once per verification, so its size does not matter.
#[allow(clippy::result_large_err)]
pub fn verify(
    input: &VerifyInput<'_>,
    options: &VerifyOptions,
) -> Result<VerifiedProgram, VerifyError> {
    explore::run(input, options).map_err(|e| *e)
}

/// A program the verifier accepted, with what it proved about each instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifiedProgram {
    /// One entry per slot of the program (a `lddw`'s second slot is unreachable).
    pub insns: Vec<InsnFacts>,
    /// Loop back-edges (backward jumps on a cycle of the control-flow graph; backward jumps that
    /// close no cycle are not listed) and `may_goto` instructions, sorted by pc.
    pub termination_points: Vec<TerminationPoint>,
    /// Live resources at every point where the extension may be cancelled.
    pub cancellation: CancellationTable,
    /// The most bytes below its frame pointer (r10) that any frame of the program reads or writes
    /// (its own accesses and memory handed to helpers), rounded up to 8; at most 512.
    ///
    /// Covers every path: variable-offset accesses count from the lowest offset their bounds
    /// allow, and a stack pointer passed to a helper counts from its lowest offset.
    pub stack_depth: u32,
    /// Exploration statistics.
    pub stats: Stats,
    /// The exploration log (when `log_level >= 1`).
    pub log: String,
}

/// What the verifier proved about one instruction slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InsnFacts {
    /// Some path reaches this instruction.
    pub reachable: bool,
    /// For heap loads/stores/atomics: whether the access needs a guard.
    pub heap: Option<HeapAccess>,
    /// For context loads/stores: the field accessed (the JIT rewrites it).
    pub ctx: Option<CtxAccess>,
    /// For calls of `bpf_map_lookup_elem`/`update_elem`/`delete_elem` (helpers 1, 2, 3): the index
    /// of the map r1 holds on every path that reaches the call, `None` if paths disagree (or r1 is
    /// not a constant map pointer).
    ///
    /// Exact (callers may inline the map's code here): the first path sets it and any path with
    /// another map, or without a constant map pointer, clears it for good. Pruned paths agree with
    /// the explored ones, since a map pointer only covers a pointer to the same map.
    pub map_call: Option<usize>,
}

/// A load or store that goes to the program context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtxAccess {
    /// Constant byte offset in the context struct (variable offsets are rejected).
    pub offset: u32,
    /// Access size in bytes.
    pub size: u8,
    /// True for stores.
    pub write: bool,
}

/// How a heap access is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapAccess {
    /// The base register must be masked into the heap before this access.
    Guard {
        /// The base register.
        reg: u8,
    },
    /// Proven inside the heap plus its guard zone: no guard needed.
    Elided {
        /// The base register.
        reg: u8,
        /// Largest |offset| (register offset plus instruction offset) from the last guard.
        max_offset: i64,
    },
}

/// A point where a running extension can be stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TerminationPoint {
    /// The instruction (the jump or `may_goto`).
    pub pc: usize,
    /// Why it is a termination point.
    pub kind: TerminationKind,
}

/// The kind of a termination point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TerminationKind {
    /// A jump whose target is at or before the jump itself and that lies on a cycle of the
    /// control-flow graph (the target reaches the jump).
    BackEdge {
        /// The loop head.
        target: usize,
    },
    /// A `may_goto` instruction.
    MayGoto,
}

/// Live resources at every cancellation point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CancellationTable {
    /// pc -> resources live there. An entry exists (possibly empty) for every termination point
    /// and every heap access.
    pub entries: BTreeMap<usize, Vec<LiveResource>>,
}

/// One resource held at a cancellation point, and how to release it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveResource {
    /// The reference id.
    pub ref_id: u32,
    /// What the resource is.
    pub kind: kflex_runtime::helpers::ResourceKind,
    /// Where a pointer or handle to it is held.
    pub location: Location,
    /// The helper that releases it.
    pub release_helper: u32,
    /// The instruction that acquired it.
    pub acquired_at: usize,
}

/// Where a value is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// In a register of the innermost frame.
    Reg(u8),
    /// In a stack slot.
    Stack {
        /// Call depth of the frame (0 = the entry function).
        frame: u8,
        /// Offset from that frame's r10.
        offset: i16,
    },
}
