//! Termination checks: how a runaway program is stopped at its loop back-edges and `may_goto`s.
//!
//! Every run has a per-invocation terminate word (owned by its
//! [`kflex_runtime::exec::Invocation`]; the state block's first field points at it). While the run
//! may continue the word holds the address of a readable word; to stop the run a watchdog
//! ([`kflex_runtime::exec::watchdog`]) stores the address of the process-wide
//! [`trap_page`](kflex_runtime::exec::trap_page) into it. Checks are emitted at the termination
//! points the verifier reports ([`crate::JitOptions::termination_points`]):
//!
//! * at a **back-edge**, before the jump (whether or not it is then taken), as selected by
//!   [`TerminationMode`]:
//!   - [`TerminationMode::OneLoad`] (KFlex's check): `r11 = [r9]; r11 = [r11]; r11 = [r11]` —
//!     the final load goes through the word and faults once it points at the trap page; the fault
//!     handler cancels the run with `CancelReason::Terminated`. No compare, no branch.
//!   - [`TerminationMode::CompareBranch`]: load the word, compare it with the trap page's
//!     address, and branch to an out-of-line stub that stops the run (same result).
//!   - [`TerminationMode::None`]: nothing (for tests and trusted callers).
//!
//!   A back-edge whose target is itself a `may_goto` termination point gets no check: the
//!   `may_goto` at the loop head runs right after the jump and checks the word (with the exit
//!   semantics below), so the loop stays stoppable and its exit branch is honoured.
//! * at a **`may_goto`** (any mode but `None`): the word is compared, and when the invocation's
//!   time budget is exhausted the `may_goto` takes its goto branch (the loop's exit path) instead
//!   of cancelling; otherwise Linux's per-frame counter decides as before.
//!
//! # Choice of the default
//!
//! Measured with `cargo bench -p kflex-jit --bench termination` (a 1,000,000-iteration counting
//! loop whose back-edge carries the check, no watchdog armed, medians of 101 runs on a shared
//! two-core machine): no checks 0.235 ms, `OneLoad` 0.236 ms (+0.6 %, within noise),
//! `CompareBranch` 0.276 ms (+17 %). The three dependent loads of `OneLoad` hit L1 and sit off
//! the loop's critical path, so they are almost free; the compare-and-branch adds a second branch
//! per iteration, which limits a tight loop's throughput. `OneLoad` is therefore the default;
//! `CompareBranch` remains for hosts that cannot take the fault path (for example when the fault
//! handler cannot be installed).

use std::collections::BTreeSet;

use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi};
use kflex_runtime::exec::trap_page;

use crate::codegen::{Emitter, x64};
use crate::state::code;

/// How back-edge termination checks are compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TerminationMode {
    /// No checks (runs cannot be stopped by a watchdog).
    None,
    /// Load through the terminate word; a poisoned word makes the load fault (the default).
    #[default]
    OneLoad,
    /// Load the word, compare it with the trap page, branch to a stop stub.
    CompareBranch,
}

/// Where checks go, derived from the options once per compilation.
#[derive(Clone, Debug, Default)]
pub(crate) struct TerminationPlan {
    mode: Option<TerminationMode>,
    back_edges: BTreeSet<usize>,
    may_gotos: BTreeSet<usize>,
    /// Test-only: the termination point compiled as an unconditional cancellation
    /// ([`crate::JitOptions::inject_cancel_at`]).
    inject: Option<usize>,
}

impl TerminationPlan {
    /// The plan for `mode` at `points` (slots of back-edge jumps and `may_goto`s; other slots
    /// listed there are ignored by the emitter because only jumps consult the plan).
    pub fn new(
        mode: TerminationMode,
        points: &[usize],
        is_may_goto: impl Fn(usize) -> bool,
    ) -> Self {
        if mode == TerminationMode::None {
            return TerminationPlan::default();
        }
        let (may_gotos, back_edges) = points.iter().copied().partition(|&pc| is_may_goto(pc));
        TerminationPlan {
            mode: Some(mode),
            back_edges,
            may_gotos,
            inject: None,
        }
    }

    /// The plan with the termination point at `pc` (a back-edge jump or a `may_goto`, listed or
    /// not) compiled as an unconditional cancellation with `CancelReason::Terminated`.
    pub fn with_injection(mut self, pc: Option<usize>) -> Self {
        self.inject = pc;
        self
    }

    /// True if the compiled code contains any check (the run then arms the watchdog).
    pub fn has_checks(&self) -> bool {
        self.mode.is_some() && !(self.back_edges.is_empty() && self.may_gotos.is_empty())
    }

    /// Emits the injected cancellation if `pc` is the injection point; true if it did.
    fn injected(e: &mut Emitter<'_>, pc: usize) -> bool {
        if e.termination().inject != Some(pc) {
            return false;
        }
        let stop = e.code_fault(pc, code::TERMINATED);
        x64!(e.ops ; jmp =>stop);
        true
    }
}

/// Loads the terminate word's current value into `r11`.
fn load_word(e: &mut Emitter<'_>) {
    x64!(e.ops
        ; mov r11, [r9]
        ; mov r11, [r11]
    );
}

/// Emits the back-edge check of the jump at `pc` (to `target`), if the plan has one there.
pub(crate) fn back_edge(e: &mut Emitter<'_>, pc: usize, target: usize) {
    if target <= pc && TerminationPlan::injected(e, pc) {
        return;
    }
    let plan = e.termination();
    if !plan.back_edges.contains(&pc) || plan.may_gotos.contains(&target) {
        return;
    }
    let mode = plan.mode;
    match mode {
        None | Some(TerminationMode::None) => {}
        Some(TerminationMode::OneLoad) => {
            load_word(e);
            x64!(e.ops ; mov r11, [r11]);
        }
        Some(TerminationMode::CompareBranch) => {
            let stop = e.code_fault(pc, code::TERMINATED);
            compare_poisoned(e, stop);
        }
    }
}

/// Emits the `may_goto` check at `pc`: jump to `exit` (the goto target) once the word is
/// poisoned.
pub(crate) fn may_goto(e: &mut Emitter<'_>, pc: usize, exit: DynamicLabel) {
    if TerminationPlan::injected(e, pc) {
        return;
    }
    let plan = e.termination();
    let active = plan.mode.is_some() && plan.may_gotos.contains(&pc);
    if active {
        compare_poisoned(e, exit);
    }
}

/// `if word == trap_page goto l` (clobbers r10, r11 and the flags).
fn compare_poisoned(e: &mut Emitter<'_>, l: DynamicLabel) {
    let trap = trap_page() as i64;
    load_word(e);
    x64!(e.ops
        ; mov r10, QWORD trap
        ; cmp r11, r10
        ; je =>l
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_points_and_none_disables_everything() {
        let plan = TerminationPlan::new(TerminationMode::OneLoad, &[2, 5, 9], |pc| pc == 5);
        assert!(plan.has_checks());
        assert_eq!(plan.back_edges, BTreeSet::from([2, 9]));
        assert_eq!(plan.may_gotos, BTreeSet::from([5]));
        let none = TerminationPlan::new(TerminationMode::None, &[2, 5], |_| false);
        assert!(!none.has_checks());
        let empty = TerminationPlan::new(TerminationMode::CompareBranch, &[], |_| false);
        assert!(!empty.has_checks());
    }

    use kflex_isa::decode::{AluOp, Instruction as I, JmpOp, Operand, Program, Width, encode_all};

    use crate::{JitOptions, JitProgram};

    fn code_len(insns: &[I], mode: TerminationMode, points: Vec<usize>) -> usize {
        let program = Program::decode(&encode_all(insns)).unwrap();
        let options = JitOptions {
            termination: mode,
            termination_points: points,
            ..JitOptions::default()
        };
        JitProgram::compile(&program, &options)
            .unwrap()
            .code()
            .len()
    }

    const ADD1: I = I::Alu {
        width: Width::W64,
        op: AluOp::Add,
        dst: 0,
        src: Operand::Imm(1),
    };

    #[test]
    fn checks_are_emitted_only_at_listed_back_edges() {
        // r0 += 1; if r0 < 10 goto -2 (slot 1 is the back-edge); exit
        let insns = [
            ADD1,
            I::Jump {
                width: Width::W64,
                op: JmpOp::Lt,
                dst: 0,
                src: Operand::Imm(10),
                off: -2,
            },
            I::Exit,
        ];
        let none = code_len(&insns, TerminationMode::None, vec![1]);
        let unlisted = code_len(&insns, TerminationMode::OneLoad, vec![]);
        let one_load = code_len(&insns, TerminationMode::OneLoad, vec![1]);
        let compare = code_len(&insns, TerminationMode::CompareBranch, vec![1]);
        assert_eq!(none, unlisted);
        assert!(one_load > none, "the load sequence is emitted");
        assert!(
            compare > one_load,
            "compare, branch and a stop stub are longer"
        );
    }

    #[test]
    fn back_edge_to_a_may_goto_relies_on_the_may_goto_check() {
        // loop: may_goto +2; r0 += 1; goto loop; exit
        let insns = [I::MayGoto { off: 2 }, ADD1, I::Ja { off: -3 }, I::Exit];
        let none = code_len(&insns, TerminationMode::None, vec![0, 2]);
        let one_load = code_len(&insns, TerminationMode::OneLoad, vec![0, 2]);
        let compare = code_len(&insns, TerminationMode::CompareBranch, vec![0, 2]);
        assert!(one_load > none, "the may_goto compares the word");
        assert_eq!(
            one_load, compare,
            "no separate back-edge check in either mode"
        );
    }

    fn run_injected(
        insns: &[I],
        inject: Option<usize>,
        points: Vec<usize>,
    ) -> Result<u64, crate::JitFault> {
        use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};
        let program = Program::decode(&encode_all(insns)).unwrap();
        let options = JitOptions {
            termination_points: points,
            inject_cancel_at: inject,
            ..JitOptions::default()
        };
        let jit = JitProgram::compile(&program, &options).unwrap();
        let (mut mem, helpers, mut env) = (
            MemoryMap::new(),
            HelperRegistry::empty(),
            ExecEnv::default(),
        );
        let mut jenv = crate::JitEnv::new(&mut mem, &helpers, &mut env);
        jit.run([0; 5], &mut jenv)
    }

    #[test]
    fn injected_cancellation_stops_the_run_at_that_point_only() {
        use kflex_runtime::exec::CancelReason;
        // loop: may_goto +3; r0 += 1; if r0 < 10 goto loop; exit; exit
        let insns = [
            I::MayGoto { off: 2 },
            ADD1,
            I::Jump {
                width: Width::W64,
                op: JmpOp::Lt,
                dst: 0,
                src: Operand::Imm(10),
                off: -3,
            },
            I::Exit,
        ];
        assert_eq!(run_injected(&insns, None, vec![0, 2]).unwrap(), 10);
        for pc in [0, 2] {
            let err = run_injected(&insns, Some(pc), vec![0, 2]).unwrap_err();
            assert_eq!(err.pc, pc);
            assert!(
                matches!(
                    err.kind,
                    crate::JitFaultKind::Cancelled {
                        reason: CancelReason::Terminated
                    }
                ),
                "{err:?}"
            );
        }
        // A slot that is no termination point changes nothing.
        assert_eq!(run_injected(&insns, Some(1), vec![0, 2]).unwrap(), 10);
    }

    #[test]
    fn one_load_is_the_default() {
        assert_eq!(TerminationMode::default(), TerminationMode::OneLoad);
    }
}
