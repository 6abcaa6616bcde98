//! Conditional refinement: what a conditional jump proves about its operands on each edge.
//!
//! `Scalar::refine(op, width, a, b, taken)` narrows both operands to the values for which the
//! comparison `a op b` (at `width`) evaluates to `taken`. A 32-bit comparison refines the low
//! halves (the 32-bit bounds and the low tnum bits); [`Scalar::normalize`] then carries the
//! consequences to the 64-bit bounds. `None` means the edge cannot be taken.

use kflex_isa::decode::{JmpOp, Width};

use super::alu::width_bits;
use super::bounds::{View, sext, smax_of, smin_of, umax_of};
use super::scalar::Scalar;
use super::tnum::Tnum;

/// A comparison after normalising the direction: `>`-style conditions are expressed by
/// swapping the operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cond {
    Eq,
    Ne,
    Lt,
    Le,
    Slt,
    Sle,
    Set,
    NotSet,
}

/// The condition that holds on the given edge, and whether its operands are swapped.
fn edge_condition(op: JmpOp, taken: bool) -> (Cond, bool) {
    use Cond::*;
    match (op, taken) {
        (JmpOp::Eq, true) | (JmpOp::Ne, false) => (Eq, false),
        (JmpOp::Ne, true) | (JmpOp::Eq, false) => (Ne, false),
        (JmpOp::Lt, true) | (JmpOp::Ge, false) => (Lt, false),
        (JmpOp::Le, true) | (JmpOp::Gt, false) => (Le, false),
        (JmpOp::Gt, true) | (JmpOp::Le, false) => (Lt, true),
        (JmpOp::Ge, true) | (JmpOp::Lt, false) => (Le, true),
        (JmpOp::Slt, true) | (JmpOp::Sge, false) => (Slt, false),
        (JmpOp::Sle, true) | (JmpOp::Sgt, false) => (Sle, false),
        (JmpOp::Sgt, true) | (JmpOp::Sle, false) => (Slt, true),
        (JmpOp::Sge, true) | (JmpOp::Slt, false) => (Sle, true),
        (JmpOp::Set, true) => (Set, false),
        (JmpOp::Set, false) => (NotSet, false),
    }
}

/// Removes the single value `c` from the ends of the intervals of `v` (an interval that has
/// `c` strictly inside cannot express the hole). `None` when nothing is left.
fn exclude(v: &mut View, c: u64) -> Option<()> {
    let sc = sext(c, v.bits);
    if v.umin == c {
        v.umin = c.checked_add(1)?;
    }
    if v.umax == c {
        v.umax = c.checked_sub(1)?;
    }
    if v.smin == sc {
        v.smin = sc.checked_add(1)?;
    }
    if v.smax == sc {
        v.smax = sc.checked_sub(1)?;
    }
    (v.umin <= v.umax && v.smin <= v.smax).then_some(())
}

/// Refines two views of the same width under `cond`; `None` if no pair satisfies it.
fn refine_views(cond: Cond, a: &View, b: &View) -> Option<(View, View)> {
    let bits = a.bits;
    let (mut a, mut b) = (*a, *b);
    match cond {
        Cond::Eq => {
            let mut both = View {
                bits,
                tnum: a.tnum.intersect(b.tnum)?,
                umin: a.umin.max(b.umin),
                umax: a.umax.min(b.umax),
                smin: a.smin.max(b.smin),
                smax: a.smax.min(b.smax),
            };
            if !both.sync() {
                return None;
            }
            a = both;
            b = both;
        }
        Cond::Ne => match (a.as_const(), b.as_const()) {
            (Some(x), Some(y)) if x == y => return None,
            (_, Some(c)) => exclude(&mut a, c)?,
            (Some(c), _) => exclude(&mut b, c)?,
            _ => {}
        },
        Cond::Lt => {
            if b.umax == 0 || a.umin == umax_of(bits) {
                return None;
            }
            a.umax = a.umax.min(b.umax - 1);
            b.umin = b.umin.max(a.umin + 1);
        }
        Cond::Le => {
            a.umax = a.umax.min(b.umax);
            b.umin = b.umin.max(a.umin);
        }
        Cond::Slt => {
            if b.smax == smin_of(bits) || a.smin == smax_of(bits) {
                return None;
            }
            a.smax = a.smax.min(b.smax - 1);
            b.smin = b.smin.max(a.smin + 1);
        }
        Cond::Sle => {
            a.smax = a.smax.min(b.smax);
            b.smin = b.smin.max(a.smin);
        }
        Cond::Set => {
            if a.tnum.umax() & b.tnum.umax() == 0 {
                return None;
            }
            // A single possible common bit must be set on both sides.
            let common = a.tnum.umax() & b.tnum.umax();
            if common.is_power_of_two() {
                a.tnum = a.tnum.intersect(Tnum::new(common, !common))?;
                b.tnum = b.tnum.intersect(Tnum::new(common, !common))?;
            }
            // Both operands are non-zero.
            exclude(&mut a, 0)?;
            exclude(&mut b, 0)?;
        }
        Cond::NotSet => {
            if a.tnum.value & b.tnum.value != 0 {
                return None;
            }
            let width_mask = umax_of(bits);
            // Bits known to be 1 on one side are known to be 0 on the other.
            a.tnum = a.tnum.intersect(Tnum::new(0, !b.tnum.value & width_mask))?;
            b.tnum = b.tnum.intersect(Tnum::new(0, !a.tnum.value & width_mask))?;
        }
    }
    if !a.sync() || !b.sync() {
        return None;
    }
    Some((a, b))
}

impl Scalar {
    /// Narrows `a` and `b` to the values for which `a op b` at `width` is `taken` (true: the
    /// jump is taken; false: it falls through). Both operands are refined (pass a constant
    /// scalar for an immediate operand). `None` when that edge is impossible.
    pub fn refine(
        op: JmpOp,
        width: Width,
        a: &Scalar,
        b: &Scalar,
        taken: bool,
    ) -> Option<(Scalar, Scalar)> {
        let (a, b) = (&a.normalized()?, &b.normalized()?);
        let bits = width_bits(width);
        let (cond, swapped) = edge_condition(op, taken);
        let (va, vb) = (a.view(bits), b.view(bits));
        let (ra, rb) = if swapped {
            let (rb, ra) = refine_views(cond, &vb, &va)?;
            (ra, rb)
        } else {
            refine_views(cond, &va, &vb)?
        };
        let (mut na, mut nb) = (*a, *b);
        na.set_view(&ra);
        nb.set_view(&rb);
        na.normalize().ok()?;
        nb.normalize().ok()?;
        Some((na, nb))
    }

    /// Whether `a op b` at `width` is decided for every pair of members: `Some(true)` if it
    /// always holds, `Some(false)` if it never does, `None` if it depends on the values.
    pub fn decide(op: JmpOp, width: Width, a: &Scalar, b: &Scalar) -> Option<bool> {
        match (
            Scalar::refine(op, width, a, b, true),
            Scalar::refine(op, width, a, b, false),
        ) {
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            _ => None,
        }
    }
}
