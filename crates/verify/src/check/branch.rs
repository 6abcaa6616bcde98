//! Conditional jumps: both successors with refined states (scalar bounds through the domain,
//! NULL checks on or-null pointers, packet ranges from comparisons against `data_end`), and the
//! rules on pointer comparisons.

use kflex_isa::decode::{JmpOp, Operand, Width};

use super::{CheckResult, Cx, packet};
use crate::domains::Scalar;
use crate::state::{RegState, State};

/// The successors of a conditional jump: the fall-through and the taken state, `None` for a
/// direction that cannot happen.
pub struct Successors {
    /// The state at `pc + 1`.
    pub fall: Option<State>,
    /// The state at the jump target.
    pub taken: Option<State>,
}

/// `if dst op src goto target`.
pub fn cond_jump(
    cx: &mut Cx<'_>,
    pc: usize,
    state: State,
    width: Width,
    op: JmpOp,
    dst: u8,
    src: Operand,
) -> CheckResult<Successors> {
    let a = cx.read_reg(pc, &state, dst)?.clone();
    let b = match src {
        Operand::Reg(r) => cx.read_reg(pc, &state, r)?.clone(),
        Operand::Imm(i) => RegState::constant(i64::from(i) as u64),
    };
    let src_reg = match src {
        Operand::Reg(r) => Some(r),
        Operand::Imm(_) => None,
    };
    match (&a, &b) {
        (RegState::Scalar(x), RegState::Scalar(y)) => {
            let side = |taken: bool| {
                Scalar::refine(op, width, x, y, taken).map(|(nx, ny)| {
                    let mut s = state.clone();
                    s.set_reg(dst, RegState::Scalar(nx));
                    if let Some(r) = src_reg {
                        s.set_reg(r, RegState::Scalar(ny));
                    }
                    s
                })
            };
            let fall = side(false);
            let taken = side(true);
            Ok(Successors { fall, taken })
        }
        _ => pointer_jump(cx, pc, state, width, op, dst, &a, &b),
    }
}

/// Whether a pointer of this kind can never be NULL.
fn never_null(r: &RegState) -> bool {
    r.is_pointer() && !r.is_or_null() && !matches!(r, RegState::Heap { .. })
}

/// A comparison with a pointer on at least one side.
#[allow(clippy::too_many_arguments)]
fn pointer_jump(
    cx: &mut Cx<'_>,
    pc: usize,
    state: State,
    width: Width,
    op: JmpOp,
    dst: u8,
    a: &RegState,
    b: &RegState,
) -> CheckResult<Successors> {
    let is_zero = |r: &RegState| r.const_value() == Some(0);
    let null_test = matches!(op, JmpOp::Eq | JmpOp::Ne) && width == Width::W64;
    // NULL check of an or-null pointer: `if (p == 0)` / `if (p != 0)`.
    if null_test && ((a.is_or_null() && is_zero(b)) || (b.is_or_null() && is_zero(a))) {
        let ptr = if a.is_or_null() { a } else { b };
        let (mut null_state, mut ok_state) = (state.clone(), state);
        mark_ptr_or_null(&mut null_state, ptr, true);
        mark_ptr_or_null(&mut ok_state, ptr, false);
        let (fall, taken) = if op == JmpOp::Eq {
            (ok_state, null_state)
        } else {
            (null_state, ok_state)
        };
        return Ok(Successors {
            fall: Some(fall),
            taken: Some(taken),
        });
    }
    // A pointer that cannot be NULL compared with 0: only one direction is possible.
    if null_test && ((never_null(a) && is_zero(b)) || (never_null(b) && is_zero(a))) {
        return Ok(if op == JmpOp::Eq {
            Successors {
                fall: Some(state),
                taken: None,
            }
        } else {
            Successors {
                fall: None,
                taken: Some(state),
            }
        });
    }
    let packet_kind = |r: &RegState| {
        matches!(
            r,
            RegState::Packet { .. } | RegState::PacketEnd | RegState::PacketMeta { .. }
        )
    };
    let packets = packet_kind(a) && packet_kind(b);
    if !packets && !cx.options.privileged {
        return Err(cx.error(
            pc,
            &state,
            format!("R{dst} pointer comparison prohibited"),
            "unprivileged programs may compare pointers only against NULL or packet pointers \
             against each other",
        ));
    }
    // Any other comparison (including a maybe-NULL pointer against something other than 0)
    // tells nothing: both ways are explored unchanged, as Linux does for privileged programs.
    let mut fall = state.clone();
    let mut taken = state;
    if packets && width == Width::W64 {
        packet::refine_compare(a, b, op, Some(&mut taken), Some(&mut fall));
    }
    Ok(Successors {
        fall: Some(fall),
        taken: Some(taken),
    })
}

/// After a NULL check of `ptr`: every copy (same id) becomes the constant 0 on the NULL side,
/// or a non-NULL pointer on the other (Linux `mark_ptr_or_null_regs`). On the NULL side a
/// reference the pointer stood for was never acquired, so it is forgotten.
pub fn mark_ptr_or_null(state: &mut State, ptr: &RegState, is_null: bool) {
    let id = ptr.id();
    if id == 0 {
        return;
    }
    state.for_each_value_mut(|r| {
        if r.is_or_null() && r.id() == id {
            if is_null {
                *r = RegState::constant(0);
            } else {
                match r {
                    RegState::MapValue { or_null, .. }
                    | RegState::Mem { or_null, .. }
                    | RegState::HostRef { or_null, .. } => *or_null = false,
                    _ => {}
                }
            }
        }
    });
    if is_null && let Some(ref_id) = ptr.ref_id() {
        state.resources.forget(ref_id);
    }
}
