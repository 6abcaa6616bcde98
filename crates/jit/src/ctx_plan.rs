//! Per-run addresses for context accesses compiled inline.
//!
//! The JIT compiles each of the first [`MAX_INLINE`] entries of a program's context table as an
//! inline access through one word of a *plan*: the address the access reads or writes, or 0 when
//! the access must go to the context trampoline. The run builds the plan from its [`CtxDirect`]
//! before entering the code ([`build`]), so the generated code needs no knowledge of the program
//! type: a covered access becomes two loads, a test and the access itself, like Linux's
//! `convert_ctx_access` rewrites plus one indirection.
//!
//! Encoding of a load's word: the address of the bytes to load with the access's size, except
//! that bit 0 set on a 4-byte load means "load 8 bytes at the address without bit 0" (a packet
//! pointer cell: `data` is read with a 4-byte load but yields the full pointer). NULL fields
//! point at a zero cell. Store words address the image bytes to write. All cases mirror
//! [`CtxDirect::serve`], so results equal the trampoline's.

use crate::CtxAccess;
use crate::ctx_direct::{CtxDirect, Resolved};

/// Context-table entries (by index) compiled inline; later entries always call the trampoline.
pub(crate) const MAX_INLINE: usize = 32;

/// One plan: a word per inline context-table entry.
pub(crate) type Plan = [u64; MAX_INLINE];

/// The plan of runs without a direct context: every access goes to the trampoline.
pub(crate) static NO_PLAN: Plan = [0; MAX_INLINE];

/// The cell NULL fields (and packet pointers of runs without a packet) are loaded from.
static ZERO_CELL: u64 = 0;

/// Bit 0 of a 4-byte load's word: load the 8-byte cell instead.
pub(crate) const WIDE: u64 = 1;

/// The plan of a run whose context is described by `direct`, for a program with context table
/// `table`.
#[cfg(test)]
pub(crate) fn build(direct: &CtxDirect, table: &[CtxAccess]) -> Plan {
    let mut plan = [0; MAX_INLINE];
    build_into(&mut plan, direct, table);
    plan
}

/// [`build`] into `plan`: the words of `table`'s entries, the only ones code compiled with
/// that table reads (the rest are left as they are).
pub(crate) fn build_into(plan: &mut Plan, direct: &CtxDirect, table: &[CtxAccess]) {
    for (word, access) in plan.iter_mut().zip(table) {
        *word = entry(direct, access);
    }
}

/// Sets the words of `table`'s entries to 0 (every access goes to the trampoline): the plan of
/// runs without a direct context.
pub(crate) fn clear_into(plan: &mut Plan, table: &[CtxAccess]) {
    for word in plan.iter_mut().take(table.len()) {
        *word = 0;
    }
}

/// The plan word of `access` (see the module docs).
fn entry(direct: &CtxDirect, access: &CtxAccess) -> u64 {
    let zero = &raw const ZERO_CELL as u64;
    match (direct.resolve(access), access.write, access.size) {
        (Some(Resolved::Image(addr)), _, _) => addr,
        // Pointer and NULL values are 64-bit: served inline for 4- and 8-byte loads only.
        (Some(Resolved::Zero), false, 4 | 8) => zero,
        (Some(Resolved::Cell(cell)), false, 4) => cell | WIDE,
        (Some(Resolved::Cell(cell)), false, 8) => cell,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_address_image_cells_or_the_zero_cell() {
        static LOADS: [u8; 16] = [2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 5, 5, 5, 5];
        static STORES: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0];
        let image = [0u8; 16];
        let cells = [0u64; 3];
        let (img, cel) = (image.as_ptr() as u64, cells.as_ptr() as u64);
        // SAFETY: the plan is only inspected, never used for an access.
        let d = unsafe { CtxDirect::new(img, 16, cel, &LOADS, &STORES, false) };
        let table: Vec<CtxAccess> = [
            (0, 0, 4, false),
            (1, 4, 4, false),
            (2, 8, 2, false),
            (3, 12, 4, false),
            (4, 8, 4, true),
            (5, 0, 4, true),
            (6, 0, 2, false),
            (7, 9, 2, false),
        ]
        .into_iter()
        .map(CtxAccess::from)
        .collect();
        let plan = build(&d, &table);
        let zero = &raw const ZERO_CELL as u64;
        assert_eq!(plan[0], cel | WIDE, "4-byte data load: the whole cell");
        assert_eq!(plan[1], (cel + 8) | WIDE, "data_end");
        assert_eq!(plan[2], img + 8, "plain");
        assert_eq!(plan[3], zero, "NULL field");
        assert_eq!(plan[4], img + 8, "plain store");
        assert_eq!(plan[5], 0, "store the hook serves");
        assert_eq!(plan[6], 0, "2-byte pointer load: trampoline");
        assert_eq!(plan[7], 0, "misaligned");
        assert!(plan[8..].iter().all(|&w| w == 0));
        // SAFETY: as above.
        let none = unsafe { CtxDirect::new(img, 16, 0, &LOADS, &STORES, false) };
        assert_eq!(build(&none, &table)[0], zero, "no packet: pointers read 0");
    }
}
