//! Direct packet access: only inside the range proven by a comparison against `data_end`
//! (`if (data + N > data_end) return ...;`), and the range propagation such a comparison causes
//! (Linux `find_good_pkt_pointers`): every register and spill with the same packet id learns it.

use kflex_isa::decode::JmpOp;
use kflex_object::ProgType;

use super::mem::{Access, Site, loaded};
use super::{CheckResult, Cx};
use crate::hints;
use crate::state::{RegState, State};

/// Largest constant packet offset a comparison may prove (Linux `MAX_PACKET_OFF`).
const MAX_PACKET_OFF: i64 = 0xffff;

/// A load or store through a packet or packet-metadata pointer.
pub fn access(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    base: &RegState,
    acc: &Access,
) -> CheckResult<RegState> {
    let (off, fixed, range, what) = match base {
        RegState::Packet {
            off, fixed, range, ..
        } => (off, i64::from(*fixed), *range, "packet"),
        RegState::PacketMeta { off, range } => (
            off,
            off.is_const().map_or(0, |v| v as i64),
            *range,
            "packet metadata",
        ),
        _ => return Err(cx.error(site.pc, state, "not a packet pointer", "")),
    };
    match acc {
        Access::Atomic(_) => {
            return Err(cx.error(
                site.pc,
                state,
                format!(
                    "BPF_ATOMIC stores into R{} {what} is not allowed",
                    site.base
                ),
                "load the packet bytes, update them and store them back",
            ));
        }
        Access::Write(v) => {
            if !matches!(
                cx.input.prog_type,
                ProgType::Xdp | ProgType::SchedCls | ProgType::SkSkb
            ) {
                return Err(cx.error(
                    site.pc,
                    state,
                    format!(
                        "cannot write into {what}: {} programs may only read it",
                        cx.input.prog_type.name()
                    ),
                    "change packets through helpers this program type offers",
                ));
            }
            if v.is_pointer() && !cx.options.privileged {
                return Err(cx.error(
                    site.pc,
                    state,
                    format!("R{} leaks addr into {what}", site.base),
                    "store only scalars into packets",
                ));
            }
        }
        Access::Read { .. } => {}
    }
    let insn = i64::from(site.off);
    let size = i64::from(site.size);
    let start = i128::from(off.smin) + i128::from(insn);
    if start < 0 {
        return Err(cx.error(
            site.pc,
            state,
            format!(
                "R{} min value is negative: {what} access at offset {start} is before the {what} start",
                site.base
            ),
            "bound the offset you add to the packet pointer from below (use an unsigned type)",
        ));
    }
    let end = fixed + insn + size;
    if fixed + insn < 0 || end > i64::from(range) {
        return Err(cx.error(
            site.pc,
            state,
            format!(
                "invalid access to {what}, off={} size={size}, R{}({base}) range is {range}: the access is not inside the range checked against data_end",
                fixed + insn,
                site.base
            ),
            hints::packet_range(u64::try_from(end).unwrap_or(0)),
        ));
    }
    Ok(loaded(site, acc))
}

/// Which side of a comparison `a op b` proves `a <= b` (strictly or not) in which direction:
/// returns `Some(true)` when the taken branch proves `a <= b`, `Some(false)` for the fall-through.
fn proves_le(op: JmpOp) -> Option<bool> {
    match op {
        JmpOp::Gt | JmpOp::Ge => Some(false),
        JmpOp::Lt | JmpOp::Le => Some(true),
        _ => None,
    }
}

/// Refines both successor states of `if dst op src` when one side is a packet (or metadata)
/// pointer and the other its end. `taken`/`fall` are the successor states (either may be
/// `None` when already known infeasible).
pub fn refine_compare(
    dst_val: &RegState,
    src_val: &RegState,
    op: JmpOp,
    taken: Option<&mut State>,
    fall: Option<&mut State>,
) {
    // Normalise to `ptr <= end` proven on the branch `le_branch`.
    let (ptr, le_on_taken) = match (dst_val, src_val) {
        (p @ RegState::Packet { .. }, RegState::PacketEnd)
        | (p @ RegState::PacketMeta { .. }, RegState::Packet { .. }) => match proves_le(op) {
            Some(t) => (p, t),
            None => return,
        },
        (RegState::PacketEnd, p @ RegState::Packet { .. })
        | (RegState::Packet { .. }, p @ RegState::PacketMeta { .. }) => match proves_le(op) {
            // `end > p` taken means p < end: the reverse of the normal direction.
            Some(t) => (p, !t),
            None => return,
        },
        _ => return,
    };
    if let RegState::PacketMeta { .. } = ptr
        && !matches!(
            (dst_val, src_val),
            (
                _,
                RegState::Packet {
                    id: 0,
                    fixed: 0,
                    ..
                }
            ) | (
                RegState::Packet {
                    id: 0,
                    fixed: 0,
                    ..
                },
                _
            )
        )
    {
        return;
    }
    let target = if le_on_taken { taken } else { fall };
    let Some(state) = target else { return };
    mark_range(state, ptr);
}

/// Sets the range proven by `ptr <= end` on every copy of `ptr`'s packet id.
fn mark_range(state: &mut State, ptr: &RegState) {
    match ptr {
        RegState::Packet { id, fixed, .. } => {
            let new = i64::from(*fixed);
            if !(0..=MAX_PACKET_OFF).contains(&new) {
                return;
            }
            let (id, new) = (*id, new as u32);
            state.for_each_value_mut(|r| {
                if let RegState::Packet { id: i, range, .. } = r
                    && *i == id
                {
                    *range = (*range).max(new);
                }
            });
        }
        RegState::PacketMeta { off, .. } => {
            let Some(new) = off.is_const().filter(|v| *v <= MAX_PACKET_OFF as u64) else {
                return;
            };
            state.for_each_value_mut(|r| {
                if let RegState::PacketMeta { range, .. } = r {
                    *range = (*range).max(new as u32);
                }
            });
        }
        _ => {}
    }
}
