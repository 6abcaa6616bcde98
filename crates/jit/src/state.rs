//! The per-invocation state block JIT code reaches through the reserved register `r9`.
//!
//! JIT code addresses the fields with constant displacements (the `*_OFF` constants, computed with
//! `offset_of!`), so the layout is `repr(C)`. The block lives on the host's stack for the duration
//! of one [`crate::JitProgram::run`]; every trampoline receives a pointer to it.

use std::ffi::c_void;
use std::mem::offset_of;
use std::sync::atomic::AtomicU64;

use crate::error::JitFault;

/// Fault codes JIT code stores in [`RunState::fault_code`].
pub(crate) mod code {
    /// No fault.
    pub const NONE: u64 = 0;
    /// A trampoline recorded the fault in [`super::RunState::host_fault`].
    pub const HOST: u64 = 1;
    /// `callx` target in `fault_value` is neither a helper number nor a subprogram entry.
    pub const BAD_CALLX: u64 = 2;
    /// A BPF-to-BPF call would exceed the frame limit.
    pub const CALL_DEPTH: u64 = 3;
    /// A compare-branch termination check found the terminate word poisoned.
    pub const TERMINATED: u64 = 4;
    /// Codes from here on index the program's table of statically known faults.
    pub const STATIC_BASE: u64 = 16;
}

/// The state block of one invocation.
#[repr(C)]
pub(crate) struct RunState {
    /// The run's terminate word itself (installed as its `kflex_runtime::exec::Invocation`'s
    /// word, which a watchdog poisons): termination checks load it from `[r9]` and load through
    /// it, or test its low byte.
    pub terminate: AtomicU64,
    /// Save area for BPF r0..r5 around host calls; r1..r5 hold the entry arguments at entry.
    pub regs: [u64; 6],
    /// The native stack pointer right after the entry stub saved the host's registers; the fault
    /// exit restores it, discarding every JIT frame.
    pub saved_rsp: u64,
    /// BPF frames currently live (1 while the main program runs).
    pub depth: u64,
    /// Frames a run may hold at once.
    pub max_depth: u64,
    /// `r10` of frame `d` is `frame_base - d * STRIDE`.
    pub frame_base: u64,
    /// The largest `depth` reached (frames `0..deepest` must be zeroed after the run).
    pub deepest: u64,
    /// Native entry address per slot (0 where no subprogram starts), for `callx`.
    pub entries: *const u64,
    /// Number of elements of `entries`.
    pub entries_len: u64,
    /// Slot of the faulting instruction (valid when `fault_code != NONE`).
    pub fault_pc: u64,
    /// Why the run stopped early (see [`code`]).
    pub fault_code: u64,
    /// Extra fault datum (the bad `callx` target).
    pub fault_value: u64,
    /// Base of the extension heap, loaded into `r12` at entry (reserved for SFI).
    pub heap_base: u64,
    /// The run's `JitEnv`, type-erased (trampolines cast it back).
    pub env: *mut c_void,
    /// Pointer to the program's context rewrite table (for the context trampoline).
    pub ctx_table: *const crate::CtxAccess,
    /// Number of elements of `ctx_table`.
    pub ctx_table_len: u64,
    /// The run's direct context description, or null (for the context trampoline).
    pub ctx_direct: *const crate::CtxDirect,
    /// The run's context plan (`crate::ctx_plan`): one word per inline context access.
    pub ctx_plan: *const u64,
    /// The run's CPU (`ExecEnv::cpu`): inline per-CPU array look-ups select its slot.
    pub cpu: u64,
    /// Map helpers may be served directly ([`crate::JitEnv::trust_map_helper_pointers`]).
    pub trust_map_helpers: bool,
    /// A fault recorded by a trampoline (with `fault_code == HOST`).
    pub host_fault: Option<JitFault>,
}

/// Displacement of a field, as JIT code encodes it.
macro_rules! off {
    ($field:ident) => {
        offset_of!(RunState, $field) as i32
    };
}

/// The terminate word must stay the first field: termination checks address it with a zero
/// displacement from r9 (the shortest encoding).
const _: () = assert!(off!(terminate) == 0);
pub(crate) const REGS_OFF: i32 = off!(regs);
pub(crate) const SAVED_RSP_OFF: i32 = off!(saved_rsp);
pub(crate) const DEPTH_OFF: i32 = off!(depth);
pub(crate) const MAX_DEPTH_OFF: i32 = off!(max_depth);
pub(crate) const FRAME_BASE_OFF: i32 = off!(frame_base);
pub(crate) const DEEPEST_OFF: i32 = off!(deepest);
pub(crate) const ENTRIES_OFF: i32 = off!(entries);
pub(crate) const ENTRIES_LEN_OFF: i32 = off!(entries_len);
pub(crate) const FAULT_PC_OFF: i32 = off!(fault_pc);
pub(crate) const FAULT_CODE_OFF: i32 = off!(fault_code);
pub(crate) const FAULT_VALUE_OFF: i32 = off!(fault_value);
pub(crate) const HEAP_BASE_OFF: i32 = off!(heap_base);
pub(crate) const CTX_PLAN_OFF: i32 = off!(ctx_plan);
pub(crate) const CPU_OFF: i32 = off!(cpu);

/// Displacement of the save slot of BPF register `r` (0..=5).
pub(crate) const fn reg_slot(r: u8) -> i32 {
    REGS_OFF + 8 * r as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminate_word_pointer_is_first_and_slots_are_distinct() {
        let offs = [
            REGS_OFF,
            SAVED_RSP_OFF,
            DEPTH_OFF,
            MAX_DEPTH_OFF,
            FRAME_BASE_OFF,
            DEEPEST_OFF,
            ENTRIES_OFF,
            ENTRIES_LEN_OFF,
            FAULT_PC_OFF,
            FAULT_CODE_OFF,
            FAULT_VALUE_OFF,
            HEAP_BASE_OFF,
            CTX_PLAN_OFF,
            CPU_OFF,
        ];
        for w in offs.windows(2) {
            assert!(w[0] < w[1], "fields in declaration order");
        }
        assert_eq!(reg_slot(5), REGS_OFF + 40);
        assert!(reg_slot(5) < SAVED_RSP_OFF);
    }
}
