//! Heap (arena) accesses under KFlex's rules: any heap pointer may be dereferenced; the access
//! needs a guard unless the pointer is trusted and its offset since the last guard plus the
//! instruction offset and size stays inside the guard zone. Loads give unknown scalars (pointers
//! are never trusted from memory); only scalars and heap pointers may be stored into the heap.

use super::mem::{Access, Site, loaded};
use super::{CheckResult, Cx};
use crate::HeapAccess;
use crate::check::resources::live_resources;
use crate::domains::Scalar;
use crate::state::{RegState, State};

/// The largest |offset| from the last guard an access through `off` at instruction offset
/// `insn_off` may reach, including its size; `None` when unbounded.
fn reach(off: &Scalar, insn_off: i16, size: u8) -> Option<i64> {
    let extreme = off.smin.unsigned_abs().max(off.smax.unsigned_abs());
    let total = u128::from(extreme) + u128::from(insn_off.unsigned_abs()) + u128::from(size);
    i64::try_from(total).ok()
}

/// A load, store or atomic through a heap pointer: decides guard or elision, records the fact
/// and the cancellation entry, and leaves the base trusted at offset 0 after a guard.
pub fn access(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    base: &RegState,
    acc: &Access,
) -> CheckResult<RegState> {
    let RegState::Heap { trusted, off } = base else {
        return Err(cx.error(site.pc, state, "not a heap pointer", ""));
    };
    if let Access::Write(v) | Access::Atomic(v) = acc
        && v.is_pointer()
        && !matches!(v, RegState::Heap { .. })
    {
        return Err(cx.error(
            site.pc,
            state,
            format!(
                "storing a {} pointer into the heap is not allowed: the heap is shared with user space, so it would leak the pointer",
                v.type_name()
            ),
            "store only numbers and heap pointers into the heap",
        ));
    }
    let decision = match reach(off, site.off, site.size) {
        Some(r) if *trusted && u64::try_from(r).is_ok_and(|r| r <= cx.options.guard_zone) => {
            HeapAccess::Elided {
                reg: site.base,
                max_offset: r - i64::from(site.size),
            }
        }
        _ => HeapAccess::Guard { reg: site.base },
    };
    let live = live_resources(&*state, cx.input.helpers);
    cx.facts.heap_access(site.pc, decision, live);
    if matches!(decision, HeapAccess::Guard { .. }) {
        // The guard masks the base register into the heap in place.
        state.set_reg(
            site.base,
            RegState::Heap {
                trusted: true,
                off: Scalar::constant(0),
            },
        );
    }
    Ok(loaded(site, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_adds_offsets_and_size() {
        assert_eq!(reach(&Scalar::constant(16), -8, 4), Some(28));
        assert_eq!(reach(&Scalar::range_u(0, 100), 4, 8), Some(112));
        assert_eq!(reach(&Scalar::unknown(), 0, 8), None);
    }
}
