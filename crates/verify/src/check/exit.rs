//! `exit`: the return from a subprogram (back to the caller's frame) or from the program.
//!
//! Return-value rules enforced, as Linux does for the program types kflex runs (xdp, tc,
//! socket_filter, sk_skb and syscall have no return range in the kernel's `check_return_code`):
//! r0 must be initialised at program exit; a pointer in r0 is a leak, rejected unless privileged.
//! A subprogram may return with r0 unset (a `void` function, as Linux allows): the caller's r0
//! is then uninitialised, so reading it is what fails. No value range
//! is enforced (Linux checks XDP actions only at run time). A subprogram may not return a
//! pointer into its own stack. References and locks still held when the program exits are
//! rejected; they may stay held across a subprogram return (KFlex allows releasing them later).

use super::resources::check_exit_resources;
use super::{CheckResult, Cx};
use crate::state::{RegState, State};

/// `exit` at `pc`: `Some(return pc)` after a subprogram return, `None` when the program ends.
pub fn exit(cx: &mut Cx<'_>, pc: usize, state: &mut State) -> CheckResult<Option<usize>> {
    let r0 = match state.reg(0) {
        RegState::Uninit if state.depth() == 0 => {
            return Err(cx.error(
                pc,
                state,
                "R0 !read_ok: r0 is not initialised at program exit",
                "set the return value on every path (`return ...;`)",
            ));
        }
        r0 => r0.clone(),
    };
    if state.depth() == 0 {
        if r0.is_pointer() && !cx.options.privileged {
            return Err(cx.error(
                pc,
                state,
                format!("R0 leaks addr as return value ({})", r0.type_name()),
                "return a number, not a pointer",
            ));
        }
        if let Err(rule) = check_exit_resources(&state.resources) {
            return Err(cx.error(pc, state, rule, ""));
        }
        return Ok(None);
    }
    let depth = state.depth();
    if let RegState::Stack { frame, .. } = r0
        && frame >= depth
    {
        return Err(cx.error(
            pc,
            state,
            "cannot return stack pointer to the caller frame",
            "return a pointer into the caller's stack or a map value, not into the callee's stack",
        ));
    }
    let callee = state.frames.pop();
    let Some(callsite) = callee.and_then(|f| f.callsite) else {
        return Err(cx.error(pc, state, "subprogram frame without a call site", ""));
    };
    // Pointers into the popped frame's stack are dangling now.
    state.for_each_value_mut(|r| {
        if let RegState::Stack { frame, .. } = r
            && *frame >= depth
        {
            *r = RegState::Uninit;
        }
    });
    for r in 1..=5 {
        state.set_reg(r, RegState::Uninit);
    }
    state.set_reg(0, r0);
    Ok(Some(callsite + 1))
}
