//! Termination checks: how a runaway program is stopped at its loop back-edges and `may_goto`s.
//!
//! Every run has a terminate word, the first field of its state block (so JIT code finds it at
//! `[r9]`), installed as its [`kflex_runtime::exec::Invocation`]'s word. While the run may
//! continue the word holds the address of a readable word, whose low byte is never zero; to stop
//! the run a watchdog ([`kflex_runtime::exec::watchdog`]) stores the address of the process-wide
//! [`trap_page`](kflex_runtime::exec::trap_page) into it, which is page-aligned (low byte zero).
//! Checks are emitted at the termination points the verifier reports
//! ([`crate::JitOptions::termination_points`]):
//!
//! * at a **back-edge**, before the jump (whether or not it is then taken), as selected by
//!   [`TerminationMode`]:
//!   - [`TerminationMode::OneLoad`] (KFlex's check): `r11 = [r9]; r11 = [r11]` — the second load
//!     goes through the word and faults once it points at the trap page; the fault handler
//!     cancels the run with `CancelReason::Terminated`. No compare, no branch.
//!   - [`TerminationMode::CompareBranch`]: `test byte [r9], 0xff; jz stop` — a poisoned word's
//!     low byte is zero; the out-of-line stub stops the run (same result).
//!   - [`TerminationMode::None`]: nothing (for tests and trusted callers).
//!
//!   A back-edge whose target is itself a `may_goto` termination point gets no check: the
//!   `may_goto` at the loop head runs right after the jump and checks the word (with the exit
//!   semantics below), so the loop stays stoppable and its exit branch is honoured.
//! * at a **`may_goto`** (any mode but `None`): the same one-instruction low-byte test, and when
//!   the invocation's time budget is exhausted the `may_goto` takes its goto branch (the loop's
//!   exit path) instead of cancelling; otherwise Linux's per-frame counter decides as before.
//!
//! Before, the state block held a pointer to a word inside the invocation record: the back-edge
//! check was three dependent loads and the `may_goto` test loaded the word through the pointer
//! and compared it with a 64-bit trap-page constant (`mov r10, imm64; cmp; je`).
//!
//! # Choice of the default
//!
//! Measured with `cargo bench -p kflex-jit --bench termination -- --warm-up-time 1
//! --measurement-time 2` (a 1,000,000-iteration counting loop whose back-edge carries the check,
//! and the same loop headed by a `may_goto`; no watchdog armed; medians of 101 runs on a shared,
//! noisy two-core machine). Back-edge: no checks 0.250 ms, `OneLoad` 0.248 ms (within noise),
//! `CompareBranch` 0.251 ms (within noise; +27 % with the former pointer-and-constant compare).
//! `may_goto` loop: +17 % for the poison test over the counter alone (+44 % before). The two
//! dependent loads of `OneLoad` hit L1 and sit off the loop's critical path and add no branch,
//! so `OneLoad` stays the default; `CompareBranch` remains for hosts that cannot take the fault
//! path (for example when the fault handler cannot be installed).

use std::collections::BTreeSet;

use dynasmrt::{DynamicLabel, DynasmApi, DynasmLabelApi};

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
            // The word (first field of the state block), then a load through it: the trap page
            // once poisoned.
            x64!(e.ops
                ; mov r11, [r9]
                ; mov r11, [r11]
            );
        }
        Some(TerminationMode::CompareBranch) => {
            let stop = e.code_fault(pc, code::TERMINATED);
            jump_if_poisoned(e, stop);
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
        jump_if_poisoned(e, exit);
    }
}

/// `if word is poisoned goto l` (clobbers only the flags): one memory test of the word's low
/// byte, which is zero exactly when the word holds the page-aligned trap page address (a live
/// word's low byte is never zero, see `kflex_runtime::exec::Invocation::terminate_word`).
fn jump_if_poisoned(e: &mut Emitter<'_>, l: DynamicLabel) {
    x64!(e.ops
        ; test BYTE [r9], -1
        ; jz =>l
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
        let insns = COUNT_LOOP;
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

    /// The instructions of slot `pc`'s code (up to the next slot's).
    fn slot_code(insns: &[I], mode: TerminationMode, points: Vec<usize>, pc: usize) -> Vec<Ix> {
        let program = Program::decode(&encode_all(insns)).unwrap();
        let options = JitOptions {
            termination: mode,
            termination_points: points,
            ..JitOptions::default()
        };
        let jit = JitProgram::compile(&program, &options).unwrap();
        let (start, end) = (
            jit.code_offset(pc).unwrap(),
            jit.code_offset(pc + 1).unwrap(),
        );
        let bytes = &jit.code()[start..end];
        let mut decoder = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
        decoder.iter().collect()
    }

    /// The memory operands (base register, displacement) of `code`, in order.
    fn memory_operands(code: &[Ix]) -> Vec<(Register, u64)> {
        code.iter()
            .filter(|i| (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory))
            .map(|i| (i.memory_base(), i.memory_displacement64()))
            .collect()
    }

    use iced_x86::{Decoder, DecoderOptions, Instruction as Ix, Mnemonic, OpKind, Register};

    const COUNT_LOOP: [I; 3] = [
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

    #[test]
    fn one_load_back_edge_is_two_dependent_loads_from_the_state_block() {
        let code = slot_code(&COUNT_LOOP, TerminationMode::OneLoad, vec![1], 1);
        assert_eq!(
            memory_operands(&code),
            vec![(Register::R9, 0), (Register::R11, 0)],
            "the word at [r9], then a load through it: {code:?}"
        );
        let other_branches = code
            .iter()
            .filter(|i| i.mnemonic() != Mnemonic::Jb)
            .filter(|i| format!("{:?}", i.mnemonic()).starts_with('J'))
            .count();
        assert_eq!(other_branches, 0, "no branch but the loop's own: {code:?}");
    }

    #[test]
    fn poison_tests_are_one_byte_test_of_the_word_and_a_branch() {
        let compare = slot_code(&COUNT_LOOP, TerminationMode::CompareBranch, vec![1], 1);
        let may_goto = [I::MayGoto { off: 2 }, ADD1, I::Ja { off: -3 }, I::Exit];
        let checked = slot_code(&may_goto, TerminationMode::OneLoad, vec![0, 2], 0);
        for code in [&compare, &checked] {
            let first = code[0];
            assert_eq!(first.mnemonic(), Mnemonic::Test, "{code:?}");
            assert_eq!(
                (first.memory_base(), first.memory_displacement64()),
                (Register::R9, 0)
            );
            assert_eq!(first.immediate8(), 0xff);
            assert_eq!(code[1].mnemonic(), Mnemonic::Je);
            assert!(
                code.iter().all(|i| i.op0_register() != Register::R10),
                "no trap-page constant: {code:?}"
            );
        }
        // The may_goto's own counter compare follows the poison test.
        let unchecked = slot_code(&may_goto, TerminationMode::None, vec![0, 2], 0);
        assert_eq!(checked.len(), unchecked.len() + 2);
    }

    #[test]
    fn the_live_and_poisoned_words_differ_in_their_low_byte() {
        use kflex_runtime::exec::{Invocation, trap_page};
        use std::sync::atomic::Ordering;
        let inv = Invocation::new(0, 0);
        let word = std::sync::atomic::AtomicU64::new(0);
        // SAFETY: `word` outlives every use of `inv`.
        unsafe { inv.use_terminate_word(&word) };
        assert_ne!(word.load(Ordering::Relaxed) & 0xff, 0);
        inv.request_termination();
        assert_eq!(word.load(Ordering::Relaxed), trap_page() as u64);
        assert_eq!(word.load(Ordering::Relaxed) & 0xff, 0);
    }

    #[test]
    fn one_load_is_the_default() {
        assert_eq!(TerminationMode::default(), TerminationMode::OneLoad);
    }
}
