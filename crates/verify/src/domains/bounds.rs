//! Signed and unsigned interval bounds at one width (32 or 64 bits), with their tnum, and the
//! refinement that makes the three descriptions agree.
//!
//! A [`View`] is a scalar seen at one width: for 32 bits, the low half of the register, with the
//! unsigned bounds zero-extended into `u64`, the signed bounds sign-extended into `i64` and the
//! tnum holding only the low 32 bits. Every transfer function of the domain works on views, so
//! the same code serves `ALU` and `ALU64` (and `JMP32` and `JMP`).
//!
//! Interval helpers compute exact integer results in `i128` first and then wrap them to the
//! width ([`fit_u`], [`fit_s`]): if the exact interval is narrower than the width and wraps to a
//! non-wrapping interval, the wrapped interval is exact; otherwise the result is the full range.

use super::tnum::Tnum;

/// Mask of the low 32 bits.
pub(crate) const LOW32: u64 = 0xffff_ffff;

/// Largest unsigned value of a width.
pub const fn umax_of(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// Smallest signed value of a width.
pub const fn smin_of(bits: u32) -> i64 {
    if bits >= 64 {
        i64::MIN
    } else {
        -(1i64 << (bits - 1))
    }
}

/// Largest signed value of a width.
pub const fn smax_of(bits: u32) -> i64 {
    if bits >= 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    }
}

/// The sign bit of a width.
const fn sign_bit(bits: u32) -> u64 {
    1u64 << (bits - 1)
}

/// `v` modulo `2^bits`, as an unsigned number.
pub const fn wrap_u(v: i128, bits: u32) -> u64 {
    (v as u128 & umax_of(bits) as u128) as u64
}

/// `v` modulo `2^bits`, as a signed number of that width (sign-extended into `i64`).
pub const fn wrap_s(v: i128, bits: u32) -> i64 {
    sext(wrap_u(v, bits), bits)
}

/// Sign-extends the low `bits` bits of `v`.
pub const fn sext(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        let shift = 64 - bits;
        ((v << shift) as i64) >> shift
    }
}

/// The unsigned bounds of `x mod 2^bits` for every integer `x` in `lo..=hi`.
pub fn fit_u(lo: i128, hi: i128, bits: u32) -> (u64, u64) {
    let full = (0, umax_of(bits));
    match hi.checked_sub(lo) {
        Some(span) if span >= 0 && span <= umax_of(bits) as i128 => {
            let (a, b) = (wrap_u(lo, bits), wrap_u(hi, bits));
            if a <= b { (a, b) } else { full }
        }
        _ => full,
    }
}

/// The signed bounds of `x mod 2^bits` (as a signed number) for every integer `x` in `lo..=hi`.
pub fn fit_s(lo: i128, hi: i128, bits: u32) -> (i64, i64) {
    let full = (smin_of(bits), smax_of(bits));
    match hi.checked_sub(lo) {
        Some(span) if span >= 0 && span <= umax_of(bits) as i128 => {
            let (a, b) = (wrap_s(lo, bits), wrap_s(hi, bits));
            if a <= b { (a, b) } else { full }
        }
        _ => full,
    }
}

/// Intersects the linear interval `lo..=hi` with the circular interval from `a` to `b` in the
/// domain `0..=max` (when `a > b` it is `a..=max` together with `0..=b`). Returns the hull of the
/// intersection, or `None` when it is empty.
fn intersect_circular(lo: u64, hi: u64, a: u64, b: u64) -> Option<(u64, u64)> {
    if a <= b {
        let (l, h) = (lo.max(a), hi.min(b));
        return (l <= h).then_some((l, h));
    }
    let low_part = (lo <= b).then(|| (lo, hi.min(b)));
    let high_part = (hi >= a).then(|| (lo.max(a), hi));
    match (low_part, high_part) {
        (Some((l, _)), Some((_, h))) => Some((l, h)),
        (Some(p), None) | (None, Some(p)) => Some(p),
        (None, None) => None,
    }
}

/// Tightens `lo..=hi` to the smallest and largest values whose low 32 bits lie in
/// `low_min..=low_max`. `None` when no value of the interval qualifies.
pub(crate) fn tighten_by_low32(lo: u64, hi: u64, low_min: u64, low_max: u64) -> Option<(u64, u64)> {
    const STEP: u64 = 1 << 32;
    let base = lo & !LOW32;
    let new_lo = match lo & LOW32 {
        l if l < low_min => base | low_min,
        l if l > low_max => base.checked_add(STEP)? | low_min,
        _ => lo,
    };
    let base = hi & !LOW32;
    let new_hi = match hi & LOW32 {
        h if h > low_max => base | low_max,
        h if h < low_min => base.checked_sub(STEP)? | low_max,
        _ => hi,
    };
    (new_lo <= new_hi).then_some((new_lo, new_hi))
}

/// Like [`tighten_by_low32`], for a low-half range that may wrap: the low 32 bits lie on the
/// circle from `a` to `b` (`a > b` means `a..=u32::MAX` together with `0..=b`). Rotating every
/// value by `2^32 - a` makes the low range start at 0; when the rotation would overflow, a
/// wrapping range gives no tightening (the input is returned unchanged).
pub(crate) fn tighten_by_low32_circular(lo: u64, hi: u64, a: u64, b: u64) -> Option<(u64, u64)> {
    if a <= b {
        return tighten_by_low32(lo, hi, a, b);
    }
    let off = a.wrapping_neg() & LOW32;
    let span = b.wrapping_sub(a) & LOW32;
    match (lo.checked_add(off), hi.checked_add(off)) {
        (Some(l), Some(h)) => {
            let (l, h) = tighten_by_low32(l, h, 0, span)?;
            Some((l - off, h - off))
        }
        _ => Some((lo, hi)),
    }
}

/// A scalar seen at one width: tnum and unsigned/signed bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Width in bits: 32 or 64.
    pub bits: u32,
    /// Known bits (only the low `bits` bits may be set or unknown).
    pub tnum: Tnum,
    /// Unsigned lower bound.
    pub umin: u64,
    /// Unsigned upper bound.
    pub umax: u64,
    /// Signed lower bound (sign-extended from the width).
    pub smin: i64,
    /// Signed upper bound (sign-extended from the width).
    pub smax: i64,
}

impl View {
    /// Every value of the width.
    pub const fn full(bits: u32) -> View {
        View {
            bits,
            tnum: Tnum::new(0, umax_of(bits)),
            umin: 0,
            umax: umax_of(bits),
            smin: smin_of(bits),
            smax: smax_of(bits),
        }
    }

    /// The single value `v` (truncated to the width).
    pub const fn constant(v: u64, bits: u32) -> View {
        let v = v & umax_of(bits);
        View {
            bits,
            tnum: Tnum::constant(v),
            umin: v,
            umax: v,
            smin: sext(v, bits),
            smax: sext(v, bits),
        }
    }

    /// A view from unsigned and signed integer hulls (exact integers, wrapped to the width) and
    /// a tnum; the result is normalised, falling back to the full range if inconsistent.
    pub fn from_parts(bits: u32, tnum: Tnum, u: (u64, u64), s: (i64, i64)) -> View {
        let mut v = View {
            bits,
            tnum: tnum.cast((bits / 8) as u8),
            umin: u.0,
            umax: u.1,
            smin: s.0,
            smax: s.1,
        };
        if v.sync() { v } else { View::full(bits) }
    }

    /// The single member, if there is only one.
    pub fn as_const(&self) -> Option<u64> {
        if self.umin == self.umax {
            Some(self.umin)
        } else {
            self.tnum.as_const()
        }
    }

    /// True when `v` (already truncated to the width) satisfies every bound.
    pub fn contains(&self, v: u64) -> bool {
        let s = sext(v, self.bits);
        self.tnum.contains(v)
            && self.umin <= v
            && v <= self.umax
            && self.smin <= s
            && s <= self.smax
    }

    /// The smallest view containing both (same width).
    pub fn join(&self, other: &View) -> View {
        View {
            bits: self.bits,
            tnum: self.tnum.union(other.tnum),
            umin: self.umin.min(other.umin),
            umax: self.umax.max(other.umax),
            smin: self.smin.min(other.smin),
            smax: self.smax.max(other.smax),
        }
    }

    /// True when every constraint of `self` is implied by those of `other`.
    pub fn covers(&self, other: &View) -> bool {
        other.tnum.le(self.tnum)
            && self.umin <= other.umin
            && other.umax <= self.umax
            && self.smin <= other.smin
            && other.smax <= self.smax
    }

    /// Key mapping signed order to unsigned order within the width.
    const fn skey(&self, s: i64) -> u64 {
        (s as u64 & umax_of(self.bits)) ^ sign_bit(self.bits)
    }

    /// Inverse of [`View::skey`].
    const fn unkey(&self, k: u64) -> i64 {
        sext(k ^ sign_bit(self.bits), self.bits)
    }

    /// Makes tnum, unsigned and signed bounds agree (each one is narrowed by what the others
    /// imply); never removes a member. Returns false when the view has no member.
    pub fn sync(&mut self) -> bool {
        for _ in 0..4 {
            let before = *self;
            if !self.sync_once() {
                return false;
            }
            if *self == before {
                break;
            }
        }
        true
    }

    fn sync_once(&mut self) -> bool {
        let bits = self.bits;
        if self.umin > self.umax || self.smin > self.smax {
            return false;
        }
        // Signed bounds as an unsigned circular interval, and vice versa.
        let (sa, sb) = (
            self.smin as u64 & umax_of(bits),
            self.smax as u64 & umax_of(bits),
        );
        let Some((umin, umax)) = intersect_circular(self.umin, self.umax, sa, sb) else {
            return false;
        };
        let (ka, kb) = (self.umin ^ sign_bit(bits), self.umax ^ sign_bit(bits));
        let (klo, khi) = (self.skey(self.smin), self.skey(self.smax));
        let Some((klo, khi)) = intersect_circular(klo, khi, ka, kb) else {
            return false;
        };
        self.umin = umin;
        self.umax = umax;
        self.smin = self.unkey(klo);
        self.smax = self.unkey(khi);
        // Bounds -> tnum.
        let Some(t) = self.tnum.intersect(Tnum::range(self.umin, self.umax)) else {
            return false;
        };
        self.tnum = t;
        // Tnum -> bounds: the nearest members inside the bounds.
        let (Some(umin), Some(umax)) = (
            self.tnum.min_member_ge(self.umin),
            self.tnum.max_member_le(self.umax),
        ) else {
            return false;
        };
        let wide = self.tnum.sign_extend(bits);
        let (Some(smin), Some(smax)) = (
            wide.min_member_ge_signed(self.smin),
            wide.max_member_le_signed(self.smax),
        ) else {
            return false;
        };
        self.umin = umin;
        self.umax = umax;
        self.smin = smin;
        self.smax = smax;
        self.umin <= self.umax && self.smin <= self.smax
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_wraps_only_when_consistent() {
        assert_eq!(fit_u(5, 15, 64), (5, 15));
        assert_eq!(fit_u(1 << 64, (1 << 64) + 3, 64), (0, 3));
        assert_eq!(fit_u(-1, 1, 64), (0, u64::MAX));
        assert_eq!(fit_u(-3, -1, 32), (0xffff_fffd, 0xffff_ffff));
        assert_eq!(fit_s(-3, 2, 32), (-3, 2));
        assert_eq!(
            fit_s(0x7fff_ffff, 0x8000_0000, 32),
            (i32::MIN as i64, i32::MAX as i64)
        );
        assert_eq!(
            fit_s(0x8000_0000, 0x8000_0001, 32),
            (i32::MIN as i64, i32::MIN as i64 + 1)
        );
    }

    #[test]
    fn circular_intersection() {
        assert_eq!(intersect_circular(0, 10, 3, 5), Some((3, 5)));
        assert_eq!(intersect_circular(0, 10, 20, 5), Some((0, 5)));
        assert_eq!(intersect_circular(8, 30, 20, 5), Some((20, 30)));
        assert_eq!(intersect_circular(0, 30, 20, 5), Some((0, 30)));
        assert_eq!(intersect_circular(8, 12, 20, 5), None);
    }

    #[test]
    fn low32_tightening() {
        let hi = 3u64 << 32;
        assert_eq!(
            tighten_by_low32(hi, hi + 100, 10, 20),
            Some((hi + 10, hi + 20))
        );
        assert_eq!(
            tighten_by_low32(hi + 30, (5 << 32) + 5, 10, 20),
            Some(((4 << 32) + 10, (4 << 32) + 20))
        );
        assert_eq!(tighten_by_low32(hi + 30, hi + 40, 10, 20), None);
        // Wrapping low range [-5, 5] as u32, values around 2^32: only -5..=5 around the block
        // boundary qualify.
        let (a, b) = (0xffff_fffb, 5);
        assert_eq!(
            tighten_by_low32_circular(hi - 1000, hi + 1000, a, b),
            Some((hi - 5, hi + 5))
        );
        assert_eq!(tighten_by_low32_circular(hi + 6, hi + 100, a, b), None);
        // Rotation overflow: no tightening, but nothing lost.
        assert_eq!(
            tighten_by_low32_circular(0, u64::MAX, a, b),
            Some((0, u64::MAX))
        );
    }

    #[test]
    fn sync_derives_signed_from_unsigned_and_tnum() {
        let mut v = View {
            umax: 100,
            ..View::full(64)
        };
        assert!(v.sync());
        assert_eq!((v.smin, v.smax), (0, 100));
        assert_eq!(v.tnum, Tnum::new(0, 127));
        let mut v = View {
            smin: -4,
            smax: -1,
            ..View::full(32)
        };
        assert!(v.sync());
        assert_eq!((v.umin, v.umax), (0xffff_fffc, 0xffff_ffff));
        let mut v = View {
            tnum: Tnum::new(1, 0xf0),
            umin: 2,
            umax: 200,
            ..View::full(64)
        };
        assert!(v.sync());
        assert_eq!((v.umin, v.umax), (17, 193));
    }

    #[test]
    fn sync_detects_empty() {
        let mut v = View {
            tnum: Tnum::new(1, 0xf0),
            umin: 2,
            umax: 16,
            ..View::full(64)
        };
        assert!(!v.sync());
        let mut v = View {
            umin: 5,
            umax: 10,
            smin: 20,
            smax: 30,
            ..View::full(64)
        };
        assert!(!v.sync());
    }
}
