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

/// Smallest page the heap is measured in: the runtime gives the arena map's `max_entries` pages of
/// at least this size (rounded up to a power of two), so the heap has at least
/// `max_entries * MIN_HEAP_PAGE` bytes.
const MIN_HEAP_PAGE: u64 = 4096;

/// The heap's guaranteed size in bytes: that of the program's arena map.
pub(crate) fn heap_size(input: &crate::VerifyInput<'_>) -> Option<u64> {
    input
        .maps
        .iter()
        .find(|m| m.map_type == kflex_object::MapType::Arena)
        .map(|m| u64::from(m.max_entries) * MIN_HEAP_PAGE)
}

/// For a pointer at `off` from the heap start: the largest distance from the heap an access
/// at instruction offset `insn_off` of `size` bytes may reach outside `[0, heap)` (0 when it
/// stays inside), `None` when unbounded.
fn reach_outside(off: &Scalar, insn_off: i16, size: u8, heap: u64) -> Option<u64> {
    let lo = i128::from(off.smin) + i128::from(insn_off);
    let hi = i128::from(off.smax) + i128::from(insn_off) + i128::from(size);
    let below = (-lo).max(0);
    let above = (hi - i128::from(heap)).max(0);
    u64::try_from(below.max(above)).ok()
}

/// A load, store or atomic through a heap pointer: decides guard or elision, records the fact
/// and the cancellation entry, and leaves the base trusted at offset 0 after a guard.
///
/// A trusted pointer is elided when the access stays within the guard zone of its last guard;
/// a pointer still counted from the heap start (an `lddw` of a heap global) also when the access
/// stays inside the heap (plus the guard zone on either side): heap globals and the arrays in
/// them are reached without guards wherever they lie.
pub fn access(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    base: &RegState,
    acc: &Access,
) -> CheckResult<RegState> {
    let RegState::Heap {
        trusted,
        off,
        start,
    } = base
    else {
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
    let zone = cx.options.guard_zone;
    let in_heap = *trusted
        && *start
        && heap_size(cx.input)
            .and_then(|heap| reach_outside(off, site.off, site.size, heap))
            .is_some_and(|r| r <= zone);
    let decision = match reach(off, site.off, site.size) {
        Some(r) if *trusted && u64::try_from(r).is_ok_and(|r| r <= zone) => HeapAccess::Elided {
            reg: site.base,
            max_offset: r - i64::from(site.size),
        },
        Some(r) if in_heap => HeapAccess::Elided {
            reg: site.base,
            max_offset: r - i64::from(site.size),
        },
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
                start: false,
            },
        );
    }
    Ok(loaded(site, acc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_outside_is_zero_inside_the_heap_and_the_overhang_otherwise() {
        let heap = 1 << 20;
        assert_eq!(reach_outside(&Scalar::constant(0), 0, 8, heap), Some(0));
        assert_eq!(
            reach_outside(&Scalar::range_u(100_000, 900_000), 96, 8, heap),
            Some(0)
        );
        assert_eq!(
            reach_outside(&Scalar::constant(heap - 8), 4, 8, heap),
            Some(4)
        );
        assert_eq!(reach_outside(&Scalar::constant(8), -16, 8, heap), Some(8));
        assert_eq!(
            reach_outside(&Scalar::unknown(), 0, 8, heap),
            Some(1u64 << 63)
        );
    }

    #[test]
    fn reach_adds_offsets_and_size() {
        assert_eq!(reach(&Scalar::constant(16), -8, 4), Some(28));
        assert_eq!(reach(&Scalar::range_u(0, 100), 4, 8), Some(112));
        assert_eq!(reach(&Scalar::unknown(), 0, 8), None);
    }
}
