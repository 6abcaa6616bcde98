//! Tristate numbers: 64-bit values where each bit is known 0, known 1 or unknown.
//!
//! A [`Tnum`] stands for the set of every `x` with `x & !mask == value`. All operations are
//! sound over-approximations: for any members `x` of `a` and `y` of `b`, `op(x, y)` is a member
//! of `a.op(b)`. The arithmetic follows the carry-propagation reasoning of the Linux verifier's
//! tnum library; the code here is an independent implementation.

use std::fmt;

/// The sign bit of a 64-bit value.
const SIGN: u64 = 1 << 63;

/// A tristate number: bits set in `mask` are unknown, the other bits are given by `value`.
///
/// Invariant: `value & mask == 0`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tnum {
    /// The known bits (only meaningful where `mask` is 0).
    pub value: u64,
    /// The unknown bits.
    pub mask: u64,
}

impl fmt::Debug for Tnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(value={:#x}; mask={:#x})", self.value, self.mask)
    }
}

impl fmt::Display for Tnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Bit mask of the low `bytes * 8` bits (`bytes >= 8` gives all ones).
const fn low_mask(bytes: u8) -> u64 {
    if bytes >= 8 {
        u64::MAX
    } else {
        (1u64 << (bytes as u32 * 8)) - 1
    }
}

impl Tnum {
    /// The tnum whose only member is `v`.
    pub const fn constant(v: u64) -> Self {
        Tnum { value: v, mask: 0 }
    }

    /// The tnum with every bit unknown.
    pub const fn unknown() -> Self {
        Tnum {
            value: 0,
            mask: u64::MAX,
        }
    }

    /// Builds a tnum from raw parts, clearing value bits that are also unknown.
    pub const fn new(value: u64, mask: u64) -> Self {
        Tnum {
            value: value & !mask,
            mask,
        }
    }

    /// The smallest tnum containing every value in `min..=max` (unsigned). Returns
    /// [`Tnum::unknown`] when `min > max`.
    pub const fn range(min: u64, max: u64) -> Self {
        if min > max {
            return Tnum::unknown();
        }
        let differ = min ^ max;
        let bits = 64 - differ.leading_zeros();
        if bits >= 64 {
            return Tnum::unknown();
        }
        let delta = (1u64 << bits) - 1;
        Tnum::new(min & !delta, delta)
    }

    /// True when every bit is known.
    pub const fn is_const(self) -> bool {
        self.mask == 0
    }

    /// The single member, if every bit is known.
    pub const fn as_const(self) -> Option<u64> {
        if self.mask == 0 {
            Some(self.value)
        } else {
            None
        }
    }

    /// True when every bit is unknown.
    pub const fn is_unknown(self) -> bool {
        self.mask == u64::MAX
    }

    /// True when `v` is a member.
    pub const fn contains(self, v: u64) -> bool {
        v & !self.mask == self.value
    }

    /// True when every member of `self` is a member of `other` (subset order).
    pub const fn le(self, other: Tnum) -> bool {
        self.mask & !other.mask == 0 && self.value & !other.mask == other.value
    }

    /// Smallest member (unsigned).
    pub const fn umin(self) -> u64 {
        self.value
    }

    /// Largest member (unsigned).
    pub const fn umax(self) -> u64 {
        self.value | self.mask
    }

    /// Smallest member as a signed 64-bit number.
    pub const fn smin(self) -> i64 {
        (self.value | (self.mask & SIGN)) as i64
    }

    /// Largest member as a signed 64-bit number.
    pub const fn smax(self) -> i64 {
        (self.value | (self.mask & !SIGN)) as i64
    }

    /// Sum: unknown bits spread through every position a carry can reach.
    pub const fn add(self, other: Tnum) -> Tnum {
        let sum_mask = self.mask.wrapping_add(other.mask);
        let sum_value = self.value.wrapping_add(other.value);
        // Bits where the all-unknown-ones sum differs from the all-unknown-zeros sum may carry.
        let carries = sum_mask.wrapping_add(sum_value) ^ sum_value;
        let unknown = carries | self.mask | other.mask;
        Tnum::new(sum_value, unknown)
    }

    /// Difference: unknown bits spread through every position a borrow can reach.
    pub const fn sub(self, other: Tnum) -> Tnum {
        let diff = self.value.wrapping_sub(other.value);
        let highest = diff.wrapping_add(self.mask);
        let lowest = diff.wrapping_sub(other.mask);
        let unknown = (highest ^ lowest) | self.mask | other.mask;
        Tnum::new(diff, unknown)
    }

    /// Two's-complement negation.
    pub const fn neg(self) -> Tnum {
        Tnum::constant(0).sub(self)
    }

    /// Bitwise and.
    pub const fn and(self, other: Tnum) -> Tnum {
        let maybe_one = (self.value | self.mask) & (other.value | other.mask);
        let value = self.value & other.value;
        Tnum::new(value, maybe_one & !value)
    }

    /// Bitwise or.
    pub const fn or(self, other: Tnum) -> Tnum {
        let value = self.value | other.value;
        Tnum::new(value, (self.mask | other.mask) & !value)
    }

    /// Bitwise exclusive or.
    pub const fn xor(self, other: Tnum) -> Tnum {
        let unknown = self.mask | other.mask;
        Tnum::new(self.value ^ other.value, unknown)
    }

    /// Product (wrapping): long multiplication where each partial product is itself a tnum.
    ///
    /// The exact product of the known parts is computed once; the uncertainty of every partial
    /// product (a known 1 bit of `self` times the unknown part of `other`, or an unknown bit of
    /// `self` times any member of `other`) is summed as tnums with value 0.
    pub const fn mul(self, other: Tnum) -> Tnum {
        let exact = self.value.wrapping_mul(other.value);
        let mut uncertainty = Tnum::constant(0);
        let mut a = self;
        let mut b = other;
        while a.value | a.mask != 0 {
            if a.value & 1 != 0 {
                uncertainty = uncertainty.add(Tnum::new(0, b.mask));
            } else if a.mask & 1 != 0 {
                uncertainty = uncertainty.add(Tnum::new(0, b.value | b.mask));
            }
            a = a.rsh(1);
            b = b.lsh(1);
        }
        Tnum::constant(exact).add(uncertainty)
    }

    /// Left shift by a constant amount (`shift >= 64` gives 0).
    pub const fn lsh(self, shift: u32) -> Tnum {
        if shift >= 64 {
            return Tnum::constant(0);
        }
        Tnum::new(self.value << shift, self.mask << shift)
    }

    /// Logical right shift by a constant amount (`shift >= 64` gives 0).
    pub const fn rsh(self, shift: u32) -> Tnum {
        if shift >= 64 {
            return Tnum::constant(0);
        }
        Tnum::new(self.value >> shift, self.mask >> shift)
    }

    /// Arithmetic right shift by a constant amount at `bits` width (32 or 64): the sign bit of
    /// that width (known or unknown) is replicated. A 32-bit result is zero-extended.
    pub const fn arsh(self, shift: u32, bits: u32) -> Tnum {
        if bits == 32 {
            let shift = if shift > 31 { 31 } else { shift };
            let value = ((self.value as u32 as i32) >> shift) as u32 as u64;
            let mask = ((self.mask as u32 as i32) >> shift) as u32 as u64;
            Tnum::new(value, mask)
        } else {
            let shift = if shift > 63 { 63 } else { shift };
            let value = ((self.value as i64) >> shift) as u64;
            let mask = ((self.mask as i64) >> shift) as u64;
            Tnum::new(value, mask)
        }
    }

    /// Truncation to the low `bytes` bytes (1, 2, 4; 8 or more keeps everything).
    pub const fn cast(self, bytes: u8) -> Tnum {
        let keep = low_mask(bytes);
        Tnum::new(self.value & keep, self.mask & keep)
    }

    /// The low 32 bits, zero-extended.
    pub const fn subreg(self) -> Tnum {
        self.cast(4)
    }

    /// Keeps the high 32 bits of `self` and replaces the low 32 bits with those of `low`.
    pub const fn with_subreg(self, low: Tnum) -> Tnum {
        const HIGH: u64 = 0xffff_ffff_0000_0000;
        let low = low.subreg();
        Tnum::new(
            (self.value & HIGH) | low.value,
            (self.mask & HIGH) | low.mask,
        )
    }

    /// Sign-extends the low `bits` bits (8, 16, 32) to 64 bits; the sign bit may be unknown.
    pub const fn sign_extend(self, bits: u32) -> Tnum {
        if bits >= 64 || bits == 0 {
            return self;
        }
        let shift = 64 - bits;
        let value = ((self.value << shift) as i64 >> shift) as u64;
        let mask = ((self.mask << shift) as i64 >> shift) as u64;
        Tnum::new(value, mask)
    }

    /// Reverses the bytes of the low `bytes` bytes (2, 4 or 8), zero-extending the result.
    pub const fn swap_bytes(self, bytes: u8) -> Tnum {
        match bytes {
            2 => Tnum::new(
                (self.value as u16).swap_bytes() as u64,
                (self.mask as u16).swap_bytes() as u64,
            ),
            4 => Tnum::new(
                (self.value as u32).swap_bytes() as u64,
                (self.mask as u32).swap_bytes() as u64,
            ),
            _ => Tnum::new(self.value.swap_bytes(), self.mask.swap_bytes()),
        }
    }

    /// Intersection: the members of both. `None` when some bit is known with different values
    /// on the two sides (the intersection is empty).
    pub const fn intersect(self, other: Tnum) -> Option<Tnum> {
        let both_known = !self.mask & !other.mask;
        if (self.value ^ other.value) & both_known != 0 {
            return None;
        }
        let value = self.value | other.value;
        Some(Tnum::new(value, self.mask & other.mask))
    }

    /// Union (join): the smallest tnum containing the members of both.
    pub const fn union(self, other: Tnum) -> Tnum {
        let unknown = self.mask | other.mask | (self.value ^ other.value);
        Tnum::new(self.value, unknown)
    }

    /// The smallest member `>= x` (unsigned), if any.
    pub const fn min_member_ge(self, x: u64) -> Option<u64> {
        if x > self.umax() {
            return None;
        }
        // Agree with `x` on every unknown bit; the fixed bits come from `value`.
        let candidate = self.value | (x & self.mask);
        let differ = candidate ^ x;
        if differ == 0 {
            return Some(x);
        }
        let top = 63 - differ.leading_zeros();
        let top_bit = 1u64 << top;
        let below = top_bit - 1;
        if candidate & top_bit != 0 {
            // Already above `x` at `top`: minimise every unknown bit below it.
            return Some(candidate & !(self.mask & below));
        }
        // Below `x` at `top` (a fixed 0 where `x` has 1): raise the lowest unknown bit above
        // `top` that is 0 in `x`, and clear every unknown bit below it.
        let above = !(below | top_bit);
        let free = self.mask & above & !x;
        if free == 0 {
            return None;
        }
        let raise = free & free.wrapping_neg();
        let cleared = candidate & !(self.mask & (raise - 1));
        Some(cleared | raise)
    }

    /// The largest member `<= x` (unsigned), if any.
    pub const fn max_member_le(self, x: u64) -> Option<u64> {
        // Complementing every member maps "largest <= x" to "smallest >= !x".
        let flipped = Tnum::new(!self.value & !self.mask, self.mask);
        match flipped.min_member_ge(!x) {
            Some(y) => Some(!y),
            None => None,
        }
    }

    /// The tnum of `x ^ (1 << 63)` for members `x`: turns signed order into unsigned order.
    pub const fn flip_sign(self) -> Tnum {
        if self.mask & SIGN != 0 {
            self
        } else {
            Tnum::new(self.value ^ SIGN, self.mask)
        }
    }

    /// The smallest member `>= x` in signed order, if any.
    pub const fn min_member_ge_signed(self, x: i64) -> Option<i64> {
        match self.flip_sign().min_member_ge(x as u64 ^ SIGN) {
            Some(y) => Some((y ^ SIGN) as i64),
            None => None,
        }
    }

    /// The largest member `<= x` in signed order, if any.
    pub const fn max_member_le_signed(self, x: i64) -> Option<i64> {
        match self.flip_sign().max_member_le(x as u64 ^ SIGN) {
            Some(y) => Some((y ^ SIGN) as i64),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(t: Tnum) -> Vec<u64> {
        // Enumerates members of tnums with few unknown bits.
        let bits: Vec<u32> = (0..64).filter(|b| t.mask >> b & 1 == 1).collect();
        assert!(bits.len() <= 12);
        (0..1u64 << bits.len())
            .map(|combo| {
                let mut v = t.value;
                for (i, b) in bits.iter().enumerate() {
                    if combo >> i & 1 == 1 {
                        v |= 1 << b;
                    }
                }
                v
            })
            .collect()
    }

    #[test]
    fn range_covers_interval_tightly() {
        let t = Tnum::range(16, 31);
        assert_eq!(t, Tnum::new(16, 15));
        assert_eq!(Tnum::range(5, 5), Tnum::constant(5));
        assert!(Tnum::range(0, u64::MAX).is_unknown());
        let t = Tnum::range(3, 9);
        assert_eq!((t.umin(), t.umax()), (0, 15));
    }

    #[test]
    fn add_of_constants_is_exact() {
        assert_eq!(
            Tnum::constant(40).add(Tnum::constant(2)),
            Tnum::constant(42)
        );
        assert_eq!(
            Tnum::constant(u64::MAX).add(Tnum::constant(2)),
            Tnum::constant(1)
        );
        assert_eq!(
            Tnum::constant(3).sub(Tnum::constant(5)).as_const(),
            Some(u64::MAX - 1)
        );
    }

    #[test]
    fn add_spreads_only_through_possible_carries() {
        // x in {0, 1} plus 2 is {2, 3}: bit 0 unknown, bit 1 known one.
        let t = Tnum::new(0, 1).add(Tnum::constant(2));
        assert_eq!(t, Tnum::new(2, 1));
        // x in {0, 1} plus 1 is {1, 2}: bits 0 and 1 unknown.
        let t = Tnum::new(0, 1).add(Tnum::constant(1));
        assert_eq!(t, Tnum::new(0, 3));
    }

    #[test]
    fn bitwise_ops_are_exact_on_known_bits() {
        let x = Tnum::new(0b1000, 0b0110);
        assert_eq!(x.and(Tnum::constant(0b0011)), Tnum::new(0, 0b0010));
        assert_eq!(x.or(Tnum::constant(0b0001)), Tnum::new(0b1001, 0b0110));
        assert_eq!(x.xor(Tnum::constant(0b1111)), Tnum::new(0b0001, 0b0110));
    }

    #[test]
    fn mul_by_power_of_two_is_a_shift() {
        let x = Tnum::new(0b100, 0b011);
        assert_eq!(x.mul(Tnum::constant(8)), x.lsh(3));
        assert_eq!(Tnum::constant(7).mul(Tnum::constant(6)), Tnum::constant(42));
    }

    #[test]
    fn mul_contains_all_products() {
        let a = Tnum::new(0b1010, 0b0101);
        let b = Tnum::new(0b0100, 0b1001);
        let r = a.mul(b);
        for x in members(a) {
            for y in members(b) {
                assert!(r.contains(x.wrapping_mul(y)), "{x} * {y}");
            }
        }
    }

    #[test]
    fn arsh_replicates_unknown_sign() {
        let t = Tnum::new(0, 1 << 63).arsh(4, 64);
        assert_eq!(t.mask, 0xf800_0000_0000_0000);
        let t = Tnum::constant(0x8000_0000).arsh(31, 32);
        assert_eq!(t, Tnum::constant(0xffff_ffff));
    }

    #[test]
    fn intersect_detects_conflicts() {
        assert_eq!(Tnum::constant(1).intersect(Tnum::constant(2)), None);
        assert_eq!(
            Tnum::new(0, 3).intersect(Tnum::new(2, 1)),
            Some(Tnum::new(2, 1))
        );
    }

    #[test]
    fn union_and_subset() {
        let u = Tnum::constant(4).union(Tnum::constant(6));
        assert_eq!(u, Tnum::new(4, 2));
        assert!(Tnum::constant(4).le(u));
        assert!(!u.le(Tnum::constant(4)));
        assert!(u.le(Tnum::unknown()));
    }

    #[test]
    fn member_search_matches_enumeration() {
        let tnums = [
            Tnum::new(0b1000_0001, 0b0110_0100),
            Tnum::new(0, 0b1011),
            Tnum::constant(17),
            Tnum::new(0b10_0000, 0b0101_0010),
        ];
        for t in tnums {
            let all = members(t);
            for x in 0..300u64 {
                let ge = all.iter().copied().filter(|&m| m >= x).min();
                let le = all.iter().copied().filter(|&m| m <= x).max();
                assert_eq!(t.min_member_ge(x), ge, "{t} >= {x}");
                assert_eq!(t.max_member_le(x), le, "{t} <= {x}");
            }
        }
    }

    #[test]
    fn signed_member_search_crosses_zero() {
        // Members: 0x8000..0 | {0, 1} and {0, 1}: signed order puts the negative ones first.
        let t = Tnum::new(0, SIGN | 1);
        assert_eq!(t.min_member_ge_signed(i64::MIN), Some(i64::MIN));
        assert_eq!(t.min_member_ge_signed(-5), Some(0));
        assert_eq!(t.max_member_le_signed(-1), Some(i64::MIN + 1));
        assert_eq!(t.max_member_le_signed(i64::MAX), Some(1));
    }

    #[test]
    fn swap_and_sign_extend() {
        assert_eq!(Tnum::constant(0x1234).swap_bytes(2), Tnum::constant(0x3412));
        assert_eq!(
            Tnum::new(0x80, 0).sign_extend(8).as_const(),
            Some(u64::MAX - 0x7f)
        );
        assert_eq!(Tnum::new(0, 0x80).sign_extend(8).mask, !0x7f);
    }
}
