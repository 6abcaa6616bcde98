//! Calls: helper calls (checked by [`super::helper`] through the [`CallState`] adapter here),
//! BPF-to-BPF calls with a new frame, and the rejection of `callx` and kfuncs.

use kflex_hooks::{BPF_FUNC_SKB_STORE_BYTES, BPF_FUNC_XDP_ADJUST_HEAD, BPF_FUNC_XDP_ADJUST_META};

use super::helper::{ArgVal, CallState, RetVal, check_helper_call, unknown_helper};
use super::resources::{LockTarget, ResourceView, Resources};
use super::{CheckResult, Cx};
use crate::Location;
use crate::domains::Scalar;
use crate::state::{Frame, MAX_CALL_FRAMES, RegState, State};

/// The verifier state as the helper-call rules see it.
struct CallView<'s> {
    state: &'s mut State,
    next_id: &'s mut u32,
    /// Linux's `bpf_capable`: only then are constant map keys tracked.
    privileged: bool,
}

fn bounds(off: &Scalar) -> (i64, i64) {
    (off.smin, off.smax)
}

impl ResourceView for CallView<'_> {
    fn resources(&self) -> &Resources {
        self.state.resources()
    }
    fn ref_holders(&self) -> Vec<(Location, u32)> {
        self.state.ref_holders()
    }
    fn lock_holders(&self) -> Vec<(Location, LockTarget)> {
        self.state.lock_holders()
    }
}

impl CallState for CallView<'_> {
    fn arg(&self, reg: u8) -> ArgVal {
        match self.state.reg(reg) {
            RegState::Uninit => ArgVal::Uninit,
            RegState::Scalar(s) => ArgVal::Scalar {
                umin: s.umin,
                umax: s.umax,
            },
            RegState::Ctx { off } => ArgVal::Ctx {
                off: i64::from(*off),
            },
            RegState::Stack { frame, off } => {
                let (min, max) = bounds(off);
                ArgVal::Stack {
                    frame: *frame,
                    min,
                    max,
                }
            }
            RegState::MapPtr { map } => ArgVal::MapPtr { map: *map },
            RegState::MapValue {
                map,
                off,
                id,
                or_null,
            } => {
                let (min, max) = bounds(off);
                ArgVal::MapValue {
                    map: *map,
                    id: *id,
                    min,
                    max,
                    nullable: *or_null,
                }
            }
            RegState::Packet {
                off, fixed, range, ..
            } => {
                let (min, max) = bounds(off);
                // The helper rules measure the range from the packet start; with a variable
                // part only the part proven past this pointer's own constant offset counts.
                let extra = u64::from(*range).saturating_sub(u64::try_from(*fixed).unwrap_or(0));
                let range = u64::try_from(max).map_or(0, |m| m.saturating_add(extra));
                ArgVal::Packet { min, max, range }
            }
            RegState::Mem {
                ref_id,
                size,
                off,
                or_null,
                ..
            } => {
                let (min, max) = bounds(off);
                ArgVal::Mem {
                    ref_id: *ref_id,
                    size: u64::from(*size),
                    min,
                    max,
                    nullable: *or_null,
                }
            }
            RegState::HostRef {
                ref_id,
                kind,
                or_null,
                ..
            } => ArgVal::HostRef {
                ref_id: *ref_id,
                kind: *kind,
                nullable: *or_null,
            },
            RegState::Heap { .. } => ArgVal::Heap { off: None },
            RegState::CtxVarOff { .. } => ArgVal::Other("ctx with a variable offset".to_string()),
            other => ArgVal::Other(other.type_name().to_string()),
        }
    }

    fn stack_initialised(&self, frame: u8, off: i64, len: u64) -> Result<(), i64> {
        let Some(stack) = self.state.stack(frame) else {
            return Err(off);
        };
        let hi = off.saturating_add(i64::try_from(len).unwrap_or(i64::MAX));
        match stack.first_uninit(off, hi) {
            Some(at) => Err(at),
            None => Ok(()),
        }
    }

    fn const_map_key(&self, reg: u8, size: u64) -> Option<u64> {
        if !self.privileged {
            return None;
        }
        let RegState::Stack { frame, off } = self.state.reg(reg) else {
            return None;
        };
        let off = off.is_const()? as i64;
        self.state
            .stack(*frame)?
            .const_map_key(off, u8::try_from(size).ok()?)
    }

    fn mark_stack_written(&mut self, frame: u8, off: i64, len: u64) {
        let hi = off.saturating_add(i64::try_from(len).unwrap_or(0)).min(0);
        if let Some(stack) = self.state.stack_mut(frame) {
            stack.write_unknown(off.max(-(crate::state::STACK_SIZE as i64)), hi);
        }
    }

    fn fresh_id(&mut self) -> u32 {
        *self.next_id = self.next_id.wrapping_add(1).max(1);
        *self.next_id
    }

    fn resources_mut(&mut self) -> &mut Resources {
        &mut self.state.resources
    }

    fn invalidate_ref(&mut self, id: u32) {
        self.state.for_each_value_mut(|r| {
            if r.ref_id() == Some(id) {
                *r = RegState::Uninit;
            }
        });
    }

    fn set_r0(&mut self, r0: RetVal) {
        let v = match r0 {
            RetVal::Scalar => RegState::unknown(),
            RetVal::Zero => RegState::constant(0),
            RetVal::MapValueOrNull { map, id } => RegState::MapValue {
                map,
                off: Scalar::constant(0),
                id,
                or_null: true,
            },
            RetVal::MapValue { map, id } => RegState::MapValue {
                map,
                off: Scalar::constant(0),
                id,
                or_null: false,
            },
            RetVal::MemOrNull { size, id, ref_id } => RegState::Mem {
                ref_id,
                size: u32::try_from(size).unwrap_or(u32::MAX),
                off: Scalar::constant(0),
                id,
                or_null: true,
            },
            RetVal::HostRefOrNull { ref_id, kind, id } => RegState::HostRef {
                ref_id,
                kind,
                id,
                or_null: true,
            },
        };
        self.state.set_reg(0, v);
    }

    fn scratch_args(&mut self) {
        for r in 1..=5 {
            self.state.set_reg(r, RegState::Uninit);
        }
    }

    fn describe(&self) -> String {
        self.state.to_string()
    }
}

/// Helpers after which packet pointers are invalid (the packet may have moved or changed size).
fn changes_packet(id: u32) -> bool {
    [
        BPF_FUNC_SKB_STORE_BYTES,
        BPF_FUNC_XDP_ADJUST_HEAD,
        BPF_FUNC_XDP_ADJUST_META,
    ]
    .contains(&id)
}

/// What a helper call tells the facts, read from its arguments before the call scratches them.
struct CallFacts {
    /// For the map helpers (lookup, update, delete): the map r1 holds, `Some(None)` when r1 is
    /// not a constant map pointer.
    map: Option<Option<u32>>,
    /// The lowest stack offset (from its frame's r10) of any stack pointer among the arguments:
    /// memory arguments extend upwards from the pointer, so the helper touches nothing below it.
    stack_low: Option<i64>,
}

fn call_facts(state: &State, def: &kflex_runtime::helpers::HelperDef) -> CallFacts {
    use kflex_runtime::helpers::ids;
    let map = [
        ids::MAP_LOOKUP_ELEM,
        ids::MAP_UPDATE_ELEM,
        ids::MAP_DELETE_ELEM,
    ]
    .contains(&def.id)
    .then(|| match state.reg(1) {
        RegState::MapPtr { map } => Some(*map),
        _ => None,
    });
    // Every argument the signature names, whatever its kind: a helper is handed only those.
    let args = u8::try_from(def.sig.args.len()).unwrap_or(5).min(5);
    let stack_low = (1..=args)
        .filter_map(|r| match state.reg(r) {
            RegState::Stack { off, .. } => Some(off.smin),
            _ => None,
        })
        .min();
    CallFacts { map, stack_low }
}

/// `call helper`.
pub fn helper(cx: &mut Cx<'_>, pc: usize, state: &mut State, helper: i32) -> CheckResult {
    let def = u32::try_from(helper)
        .ok()
        .and_then(|id| cx.input.helpers.get(id));
    let Some(def) = def else {
        return Err(Box::new(unknown_helper(
            cx.input,
            pc,
            i64::from(helper),
            Some(state.to_string()),
        )));
    };
    let input = cx.input;
    let privileged = cx.options.privileged;
    let facts = call_facts(state, def);
    let mut view = CallView {
        state,
        next_id: cx.id_counter(),
        privileged,
    };
    check_helper_call(&mut view, pc, def, input)?;
    if let Some(map) = facts.map {
        cx.facts.map_call(pc, map);
    }
    if let Some(low) = facts.stack_low {
        cx.facts.stack_touched(low);
    }
    if changes_packet(def.id) {
        let privileged = cx.options.privileged;
        state.for_each_value_mut(|r| {
            if matches!(
                r,
                RegState::Packet { .. } | RegState::PacketEnd | RegState::PacketMeta { .. }
            ) {
                *r = if privileged {
                    RegState::unknown()
                } else {
                    RegState::Uninit
                };
            }
        });
    }
    Ok(())
}

/// `call pc + 1 + imm`: a new frame for the subprogram at `target`, with r1-r5 passed. Returns
/// the first instruction of the callee.
pub fn local(cx: &mut Cx<'_>, pc: usize, state: &mut State, target: usize) -> CheckResult<usize> {
    if state.frames.len() >= MAX_CALL_FRAMES {
        return Err(cx.error(
            pc,
            state,
            format!("the call stack of {MAX_CALL_FRAMES} frames is too deep"),
            "call subprograms less deeply nested (at most 8 frames, including the entry function)",
        ));
    }
    if state.frames.iter().any(|f| f.subprog == target) {
        return Err(cx.error(
            pc,
            state,
            format!("recursive call to the subprogram at instruction {target}"),
            "rewrite the recursion as a loop",
        ));
    }
    let depth = u8::try_from(state.frames.len()).unwrap_or(u8::MAX);
    let mut frame = Frame::new(depth, target, Some(pc));
    for r in 1..=5u8 {
        frame.regs[usize::from(r)] = state.reg(r).clone();
    }
    state.frames.push(frame);
    Ok(target)
}

/// `callx reg`: rejected, as Linux does.
pub fn callx(cx: &Cx<'_>, pc: usize, state: &State, reg: u8) -> Box<crate::VerifyError> {
    cx.error(
        pc,
        state,
        format!(
            "callx (an indirect call through R{reg}) is not allowed: the target of every call must be known (Linux rejects it too)"
        ),
        "call helpers by number and subprograms directly; pass callbacks to helpers that take them",
    )
}

/// A call of a kernel function by BTF id: kflex has no kfuncs.
pub fn kfunc(cx: &Cx<'_>, pc: usize, state: &State, btf_id: i32) -> Box<crate::VerifyError> {
    cx.error(
        pc,
        state,
        format!("kernel function calls (kfunc BTF id {btf_id}) are not supported by kflex"),
        "call helpers from the registry instead",
    )
}
