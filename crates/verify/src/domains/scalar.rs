//! The scalar domain: a tnum plus 64-bit and 32-bit signed/unsigned bounds, kept consistent by
//! [`Scalar::normalize`] (the counterpart of Linux's `reg_bounds_sync`).
//!
//! Transfer functions live in `alu.rs` (arithmetic) and `refine.rs` (conditional jumps); this
//! module holds the representation, the lattice operations (join, widen, subsumption) and the
//! normalisation between the 64-bit and the 32-bit descriptions.

use std::fmt;

use super::bounds::{
    LOW32, View, fit_s, fit_u, smax_of, smin_of, tighten_by_low32_circular, umax_of,
};
use super::tnum::Tnum;

/// The scalar has no concrete member (an infeasible path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Empty;

impl fmt::Display for Empty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the scalar's bounds contradict each other (no possible value)")
    }
}

impl std::error::Error for Empty {}

/// An abstract 64-bit scalar: the set of values satisfying every component at once.
///
/// The 32-bit bounds describe the low half of the register (`x as u32`, `x as u32 as i32`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scalar {
    /// Known bits.
    pub tnum: Tnum,
    /// Unsigned 64-bit lower bound.
    pub umin: u64,
    /// Unsigned 64-bit upper bound.
    pub umax: u64,
    /// Signed 64-bit lower bound.
    pub smin: i64,
    /// Signed 64-bit upper bound.
    pub smax: i64,
    /// Unsigned lower bound of the low 32 bits.
    pub u32_min: u32,
    /// Unsigned upper bound of the low 32 bits.
    pub u32_max: u32,
    /// Signed lower bound of the low 32 bits.
    pub s32_min: i32,
    /// Signed upper bound of the low 32 bits.
    pub s32_max: i32,
}

impl Default for Scalar {
    fn default() -> Self {
        Scalar::unknown()
    }
}

impl Scalar {
    /// The single value `v`.
    pub const fn constant(v: u64) -> Self {
        Scalar {
            tnum: Tnum::constant(v),
            umin: v,
            umax: v,
            smin: v as i64,
            smax: v as i64,
            u32_min: v as u32,
            u32_max: v as u32,
            s32_min: v as i32,
            s32_max: v as i32,
        }
    }

    /// Every 64-bit value.
    pub const fn unknown() -> Self {
        Scalar {
            tnum: Tnum::unknown(),
            umin: 0,
            umax: u64::MAX,
            smin: i64::MIN,
            smax: i64::MAX,
            u32_min: 0,
            u32_max: u32::MAX,
            s32_min: i32::MIN,
            s32_max: i32::MAX,
        }
    }

    /// Every value in `lo..=hi` (unsigned); empty ranges give [`Scalar::unknown`].
    pub fn range_u(lo: u64, hi: u64) -> Self {
        if lo > hi {
            return Scalar::unknown();
        }
        let mut s = Scalar {
            umin: lo,
            umax: hi,
            ..Scalar::unknown()
        };
        s.normalize().map_or(Scalar::unknown(), |()| s)
    }

    /// Every value in `lo..=hi` (signed); empty ranges give [`Scalar::unknown`].
    pub fn range_s(lo: i64, hi: i64) -> Self {
        if lo > hi {
            return Scalar::unknown();
        }
        let mut s = Scalar {
            smin: lo,
            smax: hi,
            ..Scalar::unknown()
        };
        s.normalize().map_or(Scalar::unknown(), |()| s)
    }

    /// Every value matching the tnum.
    pub fn from_tnum(tnum: Tnum) -> Self {
        let mut s = Scalar {
            tnum,
            ..Scalar::unknown()
        };
        s.normalize().map_or(Scalar::unknown(), |()| s)
    }

    /// Every value whose low 32 bits are in `lo..=hi` and whose high 32 bits are zero (the
    /// result of a 32-bit operation).
    pub fn range_u32(lo: u32, hi: u32) -> Self {
        Scalar::range_u(u64::from(lo), u64::from(hi))
    }

    /// True when `v` satisfies every component.
    pub fn contains(&self, v: u64) -> bool {
        self.tnum.contains(v)
            && (self.umin..=self.umax).contains(&v)
            && (self.smin..=self.smax).contains(&(v as i64))
            && (self.u32_min..=self.u32_max).contains(&(v as u32))
            && (self.s32_min..=self.s32_max).contains(&(v as i32))
    }

    /// The single member, if there is exactly one.
    pub fn is_const(&self) -> Option<u64> {
        if self.umin == self.umax {
            Some(self.umin)
        } else {
            self.tnum.as_const()
        }
    }

    /// True when nothing is known.
    pub fn is_unknown(&self) -> bool {
        *self == Scalar::unknown()
    }

    /// The scalar seen at `bits` width (32: the low half; 64: the whole register).
    pub fn view(&self, bits: u32) -> View {
        if bits == 32 {
            View {
                bits: 32,
                tnum: self.tnum.subreg(),
                umin: u64::from(self.u32_min),
                umax: u64::from(self.u32_max),
                smin: i64::from(self.s32_min),
                smax: i64::from(self.s32_max),
            }
        } else {
            View {
                bits: 64,
                tnum: self.tnum,
                umin: self.umin,
                umax: self.umax,
                smin: self.smin,
                smax: self.smax,
            }
        }
    }

    /// Replaces the components of one width with `view` (the other width is left as is; call
    /// [`Scalar::normalize`] afterwards).
    pub fn set_view(&mut self, view: &View) {
        if view.bits == 32 {
            self.tnum = self.tnum.with_subreg(view.tnum);
            self.u32_min = view.umin as u32;
            self.u32_max = view.umax as u32;
            self.s32_min = view.smin as i32;
            self.s32_max = view.smax as i32;
        } else {
            self.tnum = view.tnum;
            self.umin = view.umin;
            self.umax = view.umax;
            self.smin = view.smin;
            self.smax = view.smax;
        }
    }

    /// The register holding the result `view` of a narrower operation (8, 16 or 32 bits),
    /// zero-extended to 64 bits (a 64-bit view is taken as it is).
    pub fn zero_extend(view: &View) -> Scalar {
        if view.bits >= 64 {
            return Scalar::from_views(view, None);
        }
        let mut s = Scalar {
            tnum: view.tnum.cast((view.bits / 8) as u8),
            umin: view.umin,
            umax: view.umax,
            smin: view.umin as i64,
            smax: view.umax as i64,
            ..Scalar::unknown()
        };
        if view.bits == 32 {
            s.s32_min = view.smin as i32;
            s.s32_max = view.smax as i32;
        }
        let fallback = Scalar::range_u(0, umax_of(view.bits));
        s.normalize().map_or(fallback, |()| s)
    }

    /// A 64-bit register from a 64-bit result view and, when known, a view of its low half.
    pub fn from_views(wide: &View, low: Option<&View>) -> Scalar {
        let mut s = Scalar::unknown();
        s.set_view(wide);
        if let Some(low) = low {
            s.set_view(low);
        }
        if s.normalize().is_ok() {
            return s;
        }
        let mut s = Scalar::unknown();
        s.set_view(wide);
        s.normalize().map_or(Scalar::unknown(), |()| s)
    }

    /// Mutual refinement of the tnum and all four pairs of bounds (the counterpart of Linux's
    /// `reg_bounds_sync`): each description is narrowed by what the others imply, across the
    /// signed/unsigned boundary and between the 64-bit value and its low 32 bits. Never removes
    /// a concrete member. `Err(Empty)` when no value satisfies every component.
    pub fn normalize(&mut self) -> Result<(), Empty> {
        // Fast paths: constants and the unknown scalar are common and already consistent.
        if let Some(c) = self.tnum.as_const() {
            return if self.contains(c) {
                *self = Scalar::constant(c);
                Ok(())
            } else {
                Err(Empty)
            };
        }
        if self.is_unknown() {
            return Ok(());
        }
        for _ in 0..6 {
            let before = *self;
            self.normalize_once()?;
            if *self == before {
                break;
            }
        }
        Ok(())
    }

    /// A normalised copy, or `None` when the scalar has no member.
    pub fn normalized(&self) -> Option<Scalar> {
        let mut s = *self;
        s.normalize().ok().map(|()| s)
    }

    fn normalize_once(&mut self) -> Result<(), Empty> {
        let mut wide = self.view(64);
        let mut low = self.view(32);
        if !wide.sync() || !low.sync() {
            return Err(Empty);
        }
        // 64 -> 32: the low halves of the 64-bit intervals.
        for (lo, hi) in [
            (i128::from(wide.umin), i128::from(wide.umax)),
            (i128::from(wide.smin), i128::from(wide.smax)),
        ] {
            let (ul, uh) = fit_u(lo, hi, 32);
            let (sl, sh) = fit_s(lo, hi, 32);
            low.umin = low.umin.max(ul);
            low.umax = low.umax.min(uh);
            low.smin = low.smin.max(sl);
            low.smax = low.smax.min(sh);
        }
        low.tnum = low.tnum.intersect(wide.tnum.subreg()).ok_or(Empty)?;
        if !low.sync() {
            return Err(Empty);
        }
        // 32 -> 64: the low half constrains where inside each 2^32 block a value may lie.
        wide.tnum = wide
            .tnum
            .intersect(wide.tnum.with_subreg(low.tnum))
            .ok_or(Empty)?;
        // The signed 32-bit range is a circular range of low halves (it wraps when it
        // crosses zero).
        let low_ranges = [
            (low.umin, low.umax),
            (low.smin as u64 & LOW32, low.smax as u64 & LOW32),
        ];
        const SIGN: u64 = 1 << 63;
        for (lmin, lmax) in low_ranges {
            (wide.umin, wide.umax) =
                tighten_by_low32_circular(wide.umin, wide.umax, lmin, lmax).ok_or(Empty)?;
            // Flipping the sign bit maps signed order to unsigned order and keeps the low half.
            let (a, b) = tighten_by_low32_circular(
                wide.smin as u64 ^ SIGN,
                wide.smax as u64 ^ SIGN,
                lmin,
                lmax,
            )
            .ok_or(Empty)?;
            (wide.smin, wide.smax) = ((a ^ SIGN) as i64, (b ^ SIGN) as i64);
        }
        if !wide.sync() {
            return Err(Empty);
        }
        self.set_view(&wide);
        self.set_view(&low);
        // Keep whatever the 64-bit pass learnt about the low bits as well.
        self.tnum = wide
            .tnum
            .intersect(wide.tnum.with_subreg(low.tnum))
            .ok_or(Empty)?;
        Ok(())
    }

    /// The smallest scalar containing both (componentwise hull, bitwise tnum join).
    pub fn join(&self, other: &Scalar) -> Scalar {
        let mut s = Scalar::from_views(
            &self.view(64).join(&other.view(64)),
            Some(&self.view(32).join(&other.view(32))),
        );
        // The hull of two normalised scalars is already consistent; normalising only tightens.
        let _ = s.normalize();
        s
    }

    /// Widening for loop heads: every bound of `newer` that moved outside `self` jumps to the
    /// next threshold (0 or the type extremes, signed and unsigned, at each width); the tnum
    /// is joined bitwise (it has finite height). Contains both inputs, and repeated widening
    /// reaches a fixpoint after finitely many steps.
    pub fn widen(&self, newer: &Scalar) -> Scalar {
        let wide = widen_view(&self.view(64), &newer.view(64));
        let low = widen_view(&self.view(32), &newer.view(32));
        Scalar::from_views(&wide, Some(&low))
    }

    /// [`Scalar::widen`] with one more threshold, `limit`, tried first: when both inputs lie in
    /// `0..=limit`, the result is the plain widening cut back to `0..=limit`. It still contains
    /// both inputs, and repeated widening still reaches a fixpoint after finitely many steps (a
    /// bound can stop at `limit` once, then only move on to the plain thresholds). Used for heap
    /// offsets counted from the heap start, so a loop does not push them past the heap's end.
    pub fn widen_within(&self, newer: &Scalar, limit: u64) -> Scalar {
        let wide = self.widen(newer);
        let inside = |s: &Scalar| s.umax <= limit && s.smin >= 0;
        if i64::try_from(limit).is_err() || !inside(self) || !inside(newer) || inside(&wide) {
            return wide;
        }
        let mut cut = wide;
        cut.umax = cut.umax.min(limit);
        cut.smin = cut.smin.max(0);
        cut.smax = cut.smax.min(limit as i64);
        cut.normalize().map_or(wide, |()| cut)
    }

    /// True when every member of `other` is a member of `self` (componentwise inclusion; exact
    /// for normalised scalars up to the precision of the representation).
    pub fn subsumes(&self, other: &Scalar) -> bool {
        self.view(64).covers(&other.view(64)) && self.view(32).covers(&other.view(32))
    }
}

/// Unsigned thresholds of a width, ascending.
fn u_thresholds(bits: u32) -> Vec<u64> {
    let mut t = vec![
        0,
        u64::from(u8::MAX),
        u64::from(u16::MAX),
        smax_of(bits) as u64,
    ];
    t.push(umax_of(bits));
    if bits == 64 {
        t.insert(3, u64::from(u32::MAX));
    }
    t
}

/// Signed thresholds of a width, ascending.
fn s_thresholds(bits: u32) -> Vec<i64> {
    let mut t = vec![smin_of(bits), -1, 0, smax_of(bits)];
    if bits == 64 {
        t.insert(1, i64::from(i32::MIN));
        t.insert(5, i64::from(i32::MAX));
    }
    t
}

fn widen_view(old: &View, newer: &View) -> View {
    let ut = u_thresholds(old.bits);
    let st = s_thresholds(old.bits);
    let umin = if newer.umin < old.umin {
        ut.iter()
            .rev()
            .copied()
            .find(|&t| t <= newer.umin)
            .unwrap_or(0)
    } else {
        old.umin
    };
    let umax = if newer.umax > old.umax {
        ut.iter()
            .copied()
            .find(|&t| t >= newer.umax)
            .unwrap_or(umax_of(old.bits))
    } else {
        old.umax
    };
    let smin = if newer.smin < old.smin {
        st.iter()
            .rev()
            .copied()
            .find(|&t| t <= newer.smin)
            .unwrap_or(smin_of(old.bits))
    } else {
        old.smin
    };
    let smax = if newer.smax > old.smax {
        st.iter()
            .copied()
            .find(|&t| t >= newer.smax)
            .unwrap_or(smax_of(old.bits))
    } else {
        old.smax
    };
    let mut tnum = old.tnum.union(newer.tnum);
    let moved = (umin, umax, smin, smax) != (old.umin, old.umax, old.smin, old.smax);
    if moved {
        // Let the tnum follow the widened bounds, or normalisation would pull them back in.
        tnum = tnum.union(Tnum::range(umin, umax));
        if smin < 0 && smax >= 0 {
            let top = umax_of(old.bits);
            tnum = tnum
                .union(Tnum::range(0, smax as u64))
                .union(Tnum::range(smin as u64 & top, top));
        }
    }
    View {
        bits: old.bits,
        tnum: tnum.cast((old.bits / 8) as u8),
        umin,
        umax,
        smin,
        smax,
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Scalar {
    /// Kernel-log style: `42`, or `scalar(umin=..,umax=..,var_off=(value; mask))` listing only
    /// the components that carry information.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = self.is_const() {
            let signed = c as i64;
            return if c <= u64::from(u32::MAX) || signed >= i64::from(i32::MIN) && signed < 0 {
                write!(f, "{signed}")
            } else {
                write!(f, "{c:#x}")
            };
        }
        // Non-default bounds, with equal values merged as in the kernel's log
        // (`smax=umax=255`).
        let bounds: [(&str, i128, bool); 8] = [
            ("smin", self.smin.into(), self.smin == i64::MIN),
            ("smax", self.smax.into(), self.smax == i64::MAX),
            ("umin", self.umin.into(), self.umin == 0),
            ("umax", self.umax.into(), self.umax == u64::MAX),
            ("smin32", self.s32_min.into(), self.s32_min == i32::MIN),
            ("smax32", self.s32_max.into(), self.s32_max == i32::MAX),
            ("umin32", self.u32_min.into(), self.u32_min == 0),
            ("umax32", self.u32_max.into(), self.u32_max == u32::MAX),
        ];
        let mut done = [false; 8];
        let mut parts = Vec::new();
        for i in 0..bounds.len() {
            let (name, value, default) = bounds[i];
            if default || done[i] {
                continue;
            }
            let mut names = vec![name];
            for j in i + 1..bounds.len() {
                let (other, v, d) = bounds[j];
                if !d && !done[j] && v == value {
                    names.push(other);
                    done[j] = true;
                }
            }
            parts.push(format!("{}={value}", names.join("=")));
        }
        if !self.tnum.is_unknown() {
            parts.push(format!(
                "var_off=({:#x}; {:#x})",
                self.tnum.value, self.tnum.mask
            ));
        }
        write!(f, "scalar({})", parts.join(","))
    }
}
