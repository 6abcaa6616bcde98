//! Transfer functions of the scalar domain for ALU instructions, moves, byte swaps and loads.
//!
//! Every operation is computed on [`View`]s of the operation's width. A 32-bit result is
//! zero-extended; a 64-bit result of an operation whose low 32 result bits depend only on the
//! low 32 operand bits (add, sub, mul, and, or, xor, small left shifts) also gets its 32-bit
//! bounds from the same operation on the operands' 32-bit views.
//!
//! Semantics follow the eBPF ISA as executed by kflex: division by zero yields 0, modulo by
//! zero leaves the destination unchanged, `MIN / -1` wraps to `MIN`, `MIN % -1` is 0, and
//! shift amounts are masked to the width (`& 31` or `& 63`). Rejecting immediate shift
//! amounts outside the width, as Linux does, is the instruction checker's job.

use kflex_isa::decode::{AluOp, EndianKind, Width};

use super::bounds::{View, fit_s, fit_u, sext, smax_of, smin_of, umax_of};
use super::scalar::Scalar;
use super::tnum::Tnum;

/// Bit width of an operation width.
pub(crate) const fn width_bits(width: Width) -> u32 {
    match width {
        Width::W32 => 32,
        Width::W64 => 64,
    }
}

/// The concrete result of `op` at `bits` width on values already truncated to the width
/// (the result is truncated too).
fn concrete(op: AluOp, bits: u32, x: u64, y: u64) -> u64 {
    let m = umax_of(bits);
    let (sx, sy) = (sext(x, bits), sext(y, bits));
    let r = match op {
        AluOp::Add => x.wrapping_add(y),
        AluOp::Sub => x.wrapping_sub(y),
        AluOp::Mul => x.wrapping_mul(y),
        AluOp::Div => x.checked_div(y).unwrap_or(0),
        AluOp::Mod => x.checked_rem(y).unwrap_or(x),
        AluOp::SDiv if y == 0 => 0,
        AluOp::SDiv => (i128::from(sx) / i128::from(sy)) as u64,
        AluOp::SMod if y == 0 => x,
        AluOp::SMod => (i128::from(sx) % i128::from(sy)) as u64,
        AluOp::Or => x | y,
        AluOp::And => x & y,
        AluOp::Xor => x ^ y,
        AluOp::Lsh => x << (y & u64::from(bits - 1)),
        AluOp::Rsh => x >> (y & u64::from(bits - 1)),
        AluOp::Arsh => (sx >> (y & u64::from(bits - 1))) as u64,
    };
    r & m
}

/// Number of significant bits of `v` (0 for 0).
const fn bit_len(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Result view of `a op b` at the width of `a` (both views have the same width).
pub(crate) fn alu_view(op: AluOp, a: &View, b: &View) -> View {
    let bits = a.bits;
    if let (Some(x), Some(y)) = (a.as_const(), b.as_const()) {
        return View::constant(concrete(op, bits, x, y), bits);
    }
    let full_u = (0, umax_of(bits));
    let full_s = (smin_of(bits), smax_of(bits));
    let (au, bu) = (
        (i128::from(a.umin), i128::from(a.umax)),
        (i128::from(b.umin), i128::from(b.umax)),
    );
    let (as_, bs) = (
        (i128::from(a.smin), i128::from(a.smax)),
        (i128::from(b.smin), i128::from(b.smax)),
    );
    match op {
        AluOp::Add => View::from_parts(
            bits,
            a.tnum.add(b.tnum),
            fit_u(au.0 + bu.0, au.1 + bu.1, bits),
            fit_s(as_.0 + bs.0, as_.1 + bs.1, bits),
        ),
        AluOp::Sub => View::from_parts(
            bits,
            a.tnum.sub(b.tnum),
            fit_u(au.0 - bu.1, au.1 - bu.0, bits),
            fit_s(as_.0 - bs.1, as_.1 - bs.0, bits),
        ),
        AluOp::Mul => {
            let u = match (au.0.checked_mul(bu.0), au.1.checked_mul(bu.1)) {
                (Some(lo), Some(hi)) => fit_u(lo, hi, bits),
                _ => full_u,
            };
            let corners = [as_.0 * bs.0, as_.0 * bs.1, as_.1 * bs.0, as_.1 * bs.1];
            let s = fit_s(min4(corners), max4(corners), bits);
            View::from_parts(bits, a.tnum.mul(b.tnum), u, s)
        }
        AluOp::Div => udiv(a, b),
        AluOp::Mod => umod(a, b),
        AluOp::SDiv => sdiv(a, b),
        AluOp::SMod => smod(a, b),
        AluOp::And => {
            let u = (0, a.umax.min(b.umax));
            let s = match (a.smin >= 0, b.smin >= 0) {
                (true, true) => (0, a.smax.min(b.smax)),
                (true, false) => (0, a.smax),
                (false, true) => (0, b.smax),
                // Both may be negative: if both are, the result is at most the smaller one.
                _ if a.smax < 0 && b.smax < 0 => (full_s.0, a.smax.min(b.smax)),
                _ => full_s,
            };
            View::from_parts(bits, a.tnum.and(b.tnum), u, s)
        }
        AluOp::Or => {
            let hi = a.umax.saturating_add(b.umax).min(umax_of(bits));
            let u = (a.umin.max(b.umin), hi);
            let s = match (a.smax < 0, b.smax < 0) {
                (true, true) => (a.smin.max(b.smin), -1),
                (true, false) => (a.smin, -1),
                (false, true) => (b.smin, -1),
                _ if a.smin >= 0 && b.smin >= 0 => (a.smin.max(b.smin), full_s.1),
                _ => full_s,
            };
            View::from_parts(bits, a.tnum.or(b.tnum), u, s)
        }
        AluOp::Xor => {
            let len = bit_len(a.umax | b.umax);
            let u = (0, umax_of(len.max(1)).min(umax_of(bits)));
            View::from_parts(bits, a.tnum.xor(b.tnum), u, full_s)
        }
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => shift(op, a, b),
    }
}

fn min4(v: [i128; 4]) -> i128 {
    v.into_iter().min().unwrap_or(0)
}

fn max4(v: [i128; 4]) -> i128 {
    v.into_iter().max().unwrap_or(0)
}

/// Unsigned division; a zero divisor yields 0.
fn udiv(a: &View, b: &View) -> View {
    let bits = a.bits;
    if b.umax == 0 {
        return View::constant(0, bits);
    }
    if let Some(c) = b.as_const().filter(|c| c.is_power_of_two()) {
        // Division by 2^k is a right shift: keeps the known bits.
        return shift_const(AluOp::Rsh, a, c.trailing_zeros());
    }
    let lo_div = b.umin.max(1);
    let hi = a.umax / lo_div;
    let lo = if b.umin == 0 { 0 } else { a.umin / b.umax };
    View::from_parts(
        bits,
        Tnum::unknown(),
        (lo, hi),
        (smin_of(bits), smax_of(bits)),
    )
}

/// Unsigned modulo; a zero divisor leaves the dividend unchanged.
fn umod(a: &View, b: &View) -> View {
    let bits = a.bits;
    if b.umax == 0 {
        return *a;
    }
    let nonzero = if a.umax < b.umin.max(1) {
        *a
    } else if let Some(c) = b.as_const().filter(|&c| c != 0) {
        if a.umin / c == a.umax / c {
            let base = a.umin / c * c;
            View::from_parts(
                bits,
                Tnum::unknown(),
                (a.umin - base, a.umax - base),
                (smin_of(bits), smax_of(bits)),
            )
        } else {
            let tnum = if c.is_power_of_two() {
                a.tnum.and(Tnum::constant(c - 1))
            } else {
                Tnum::unknown()
            };
            View::from_parts(
                bits,
                tnum,
                (0, (c - 1).min(a.umax)),
                (smin_of(bits), smax_of(bits)),
            )
        }
    } else {
        View::from_parts(
            bits,
            Tnum::unknown(),
            (0, (b.umax - 1).min(a.umax)),
            (smin_of(bits), smax_of(bits)),
        )
    };
    if b.umin == 0 {
        nonzero.join(a)
    } else {
        nonzero
    }
}

/// The non-zero parts of a signed interval: negative part and positive part.
fn nonzero_parts(lo: i64, hi: i64) -> Vec<(i128, i128)> {
    let mut parts = Vec::with_capacity(2);
    if lo < 0 {
        parts.push((i128::from(lo), i128::from(hi.min(-1))));
    }
    if hi > 0 {
        parts.push((i128::from(lo.max(1)), i128::from(hi)));
    }
    parts
}

/// Signed division (truncating); a zero divisor yields 0 and `MIN / -1` wraps to `MIN`.
fn sdiv(a: &View, b: &View) -> View {
    let bits = a.bits;
    let divisors = nonzero_parts(b.smin, b.smax);
    let mut lo = i128::MAX;
    let mut hi = i128::MIN;
    if b.smin <= 0 && b.smax >= 0 {
        lo = 0;
        hi = 0;
    }
    // On each box where the dividend and the divisor keep their signs, truncating division is
    // monotone in each argument, so the extremes are at the corners.
    let mut dividends = Vec::with_capacity(2);
    if a.smin < 0 {
        dividends.push((i128::from(a.smin), i128::from(a.smax.min(-1))));
    }
    if a.smax >= 0 {
        dividends.push((i128::from(a.smin.max(0)), i128::from(a.smax)));
    }
    for &(xl, xh) in &dividends {
        for &(yl, yh) in &divisors {
            for q in [xl / yl, xl / yh, xh / yl, xh / yh] {
                lo = lo.min(q);
                hi = hi.max(q);
            }
        }
    }
    if lo > hi {
        return View::full(bits);
    }
    View::from_parts(
        bits,
        Tnum::unknown(),
        (0, umax_of(bits)),
        fit_s(lo, hi, bits),
    )
}

/// Signed modulo (sign of the dividend); a zero divisor leaves the dividend unchanged.
fn smod(a: &View, b: &View) -> View {
    let bits = a.bits;
    let divisors = nonzero_parts(b.smin, b.smax);
    if divisors.is_empty() {
        return *a;
    }
    let min_abs = divisors
        .iter()
        .map(|&(l, h)| if l < 0 { -h } else { l })
        .min()
        .unwrap_or(1);
    let max_abs = divisors
        .iter()
        .map(|&(l, h)| if l < 0 { -l } else { h })
        .max()
        .unwrap_or(1);
    let (xl, xh) = (i128::from(a.smin), i128::from(a.smax));
    let nonzero = if -min_abs < xl && xh < min_abs {
        // |x| < |y| for every pair: the remainder is the dividend itself.
        *a
    } else {
        let lo = if xl < 0 { xl.max(1 - max_abs) } else { 0 };
        let hi = if xh > 0 { xh.min(max_abs - 1) } else { 0 };
        View::from_parts(
            bits,
            Tnum::unknown(),
            (0, umax_of(bits)),
            fit_s(lo, hi, bits),
        )
    };
    if b.smin <= 0 && b.smax >= 0 {
        nonzero.join(a)
    } else {
        nonzero
    }
}

/// Shift of `a` by the amounts `b & (bits - 1)` (each possible amount is applied exactly and
/// the results are joined).
fn shift(op: AluOp, a: &View, b: &View) -> View {
    let bits = a.bits;
    let amount = alu_view(AluOp::And, b, &View::constant(u64::from(bits - 1), bits));
    let mut result: Option<View> = None;
    for k in amount.umin..=amount.umax.min(u64::from(bits - 1)) {
        if !amount.tnum.contains(k) {
            continue;
        }
        let r = shift_const(op, a, k as u32);
        result = Some(match result {
            Some(prev) => prev.join(&r),
            None => r,
        });
    }
    result.unwrap_or_else(|| View::full(bits))
}

/// Shift of `a` by the constant `k < bits`.
fn shift_const(op: AluOp, a: &View, k: u32) -> View {
    let bits = a.bits;
    let full_u = (0, umax_of(bits));
    let full_s = (smin_of(bits), smax_of(bits));
    match op {
        AluOp::Lsh => {
            let f = 1i128 << k;
            View::from_parts(
                bits,
                a.tnum.lsh(k),
                fit_u(i128::from(a.umin) * f, i128::from(a.umax) * f, bits),
                fit_s(i128::from(a.smin) * f, i128::from(a.smax) * f, bits),
            )
        }
        AluOp::Rsh => View::from_parts(bits, a.tnum.rsh(k), (a.umin >> k, a.umax >> k), full_s),
        _ => View::from_parts(
            bits,
            a.tnum.arsh(k, bits),
            full_u,
            (a.smin >> k, a.smax >> k),
        ),
    }
}

/// The low `bits` (8, 16 or 32) of a scalar as a view of that width.
pub(crate) fn truncate(s: &Scalar, bits: u32) -> View {
    if bits >= 64 {
        return s.view(64);
    }
    let w32 = s.view(32);
    let mut v = View::full(bits);
    for (lo, hi) in [
        (i128::from(s.umin), i128::from(s.umax)),
        (i128::from(s.smin), i128::from(s.smax)),
        (i128::from(w32.umin), i128::from(w32.umax)),
        (i128::from(w32.smin), i128::from(w32.smax)),
    ] {
        let (ul, uh) = fit_u(lo, hi, bits);
        let (sl, sh) = fit_s(lo, hi, bits);
        v.umin = v.umin.max(ul);
        v.umax = v.umax.min(uh);
        v.smin = v.smin.max(sl);
        v.smax = v.smax.min(sh);
    }
    v.tnum = s.tnum.cast((bits / 8) as u8);
    if v.sync() { v } else { View::full(bits) }
}

impl Scalar {
    /// `self op rhs` at `width` (ALU or ALU64): every [`AluOp`], with the ISA's division by
    /// zero and shift masking semantics; 32-bit results are zero-extended.
    pub fn alu(&self, op: AluOp, width: Width, rhs: &Scalar) -> Scalar {
        let (Some(lhs), Some(rhs)) = (self.normalized(), rhs.normalized()) else {
            // An operand without members: nothing reaches here, any result is sound.
            return Scalar::unknown();
        };
        match width {
            Width::W32 => Scalar::zero_extend(&alu_view(op, &lhs.view(32), &rhs.view(32))),
            Width::W64 => {
                let wide = alu_view(op, &lhs.view(64), &rhs.view(64));
                let low_bits_only = match op {
                    AluOp::Add | AluOp::Sub | AluOp::Mul | AluOp::And | AluOp::Or | AluOp::Xor => {
                        true
                    }
                    AluOp::Lsh => rhs.umax < 32,
                    _ => false,
                };
                let low = low_bits_only.then(|| alu_view(op, &lhs.view(32), &rhs.view(32)));
                Scalar::from_views(&wide, low.as_ref())
            }
        }
    }

    /// `-self` at `width`.
    pub fn neg(&self, width: Width) -> Scalar {
        Scalar::constant(0).alu(AluOp::Sub, width, self)
    }

    /// The value of `mov dst, self` at `width` (32-bit moves truncate and zero-extend).
    pub fn mov(&self, width: Width) -> Scalar {
        match width {
            Width::W64 => *self,
            Width::W32 => Scalar::zero_extend(&self.view(32)),
        }
    }

    /// The value of `movsx dst, self` at `width`: the low `bits` (8, 16, 32) sign-extended to
    /// the width, a 32-bit result zero-extended.
    pub fn movsx(&self, width: Width, bits: u8) -> Scalar {
        let n = u32::from(bits);
        if n >= width_bits(width) {
            return self.mov(width);
        }
        let low = truncate(self, n);
        let tnum = low.tnum.sign_extend(n);
        match width {
            Width::W64 => {
                let wide = View::from_parts(64, tnum, (0, u64::MAX), (low.smin, low.smax));
                Scalar::from_views(&wide, None)
            }
            Width::W32 => {
                let v32 =
                    View::from_parts(32, tnum.subreg(), (0, umax_of(32)), (low.smin, low.smax));
                Scalar::zero_extend(&v32)
            }
        }
    }

    /// The value of a byte-order conversion of the low `bits` (16, 32, 64; anything else is
    /// treated as 64), zero-extended.
    /// `ToLe`/`ToBe` convert from the host's order (a truncation or a byte swap).
    pub fn endian(&self, kind: EndianKind, bits: u8) -> Scalar {
        let n = match bits {
            16 => 16,
            32 => 32,
            _ => 64,
        };
        let swap = match kind {
            EndianKind::Swap => true,
            EndianKind::ToLe => cfg!(target_endian = "big"),
            EndianKind::ToBe => cfg!(target_endian = "little"),
        };
        let low = truncate(self, n);
        if swap {
            let t = low.tnum.swap_bytes((n / 8) as u8);
            if n == 64 {
                Scalar::from_tnum(t)
            } else {
                Scalar::zero_extend(&View::from_parts(
                    n,
                    t,
                    (0, umax_of(n)),
                    (smin_of(n), smax_of(n)),
                ))
            }
        } else if n == 64 {
            *self
        } else {
            Scalar::zero_extend(&low)
        }
    }

    /// The range of a value loaded from unknown memory: `size_bytes` (1, 2, 4, 8) bytes,
    /// zero-extended, or sign-extended when `sign_extend` (`BPF_MEMSX`).
    pub fn load(size_bytes: u8, sign_extend: bool) -> Scalar {
        let n = u32::from(size_bytes).clamp(1, 8) * 8;
        if n == 64 {
            Scalar::unknown()
        } else if sign_extend {
            Scalar::range_s(smin_of(n), smax_of(n))
        } else {
            Scalar::range_u(0, umax_of(n))
        }
    }
}
