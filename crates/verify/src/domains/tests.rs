//! Precision tests: the domain must be as precise as the Linux verifier on the common idioms
//! (an "always unknown" implementation is sound but fails these).

use kflex_isa::decode::{AluOp, EndianKind, JmpOp, Width};

use super::{Scalar, Tnum};

const W64: Width = Width::W64;
const W32: Width = Width::W32;

fn u(lo: u64, hi: u64) -> Scalar {
    Scalar::range_u(lo, hi)
}

fn s(lo: i64, hi: i64) -> Scalar {
    Scalar::range_s(lo, hi)
}

fn k(v: u64) -> Scalar {
    Scalar::constant(v)
}

fn bounds_u(x: &Scalar) -> (u64, u64) {
    (x.umin, x.umax)
}

fn bounds_s(x: &Scalar) -> (i64, i64) {
    (x.smin, x.smax)
}

#[test]
fn add_of_ranges_is_exact() {
    let r = u(0, 10).alu(AluOp::Add, W64, &k(5));
    assert_eq!(bounds_u(&r), (5, 15));
    assert_eq!(bounds_s(&r), (5, 15));
    assert_eq!((r.u32_min, r.u32_max), (5, 15));
    let r = u(0, 10).alu(AluOp::Add, W64, &u(100, 200));
    assert_eq!(bounds_u(&r), (100, 210));
}

#[test]
fn add_overflow_loses_unsigned_but_keeps_signed() {
    // [u64::MAX - 1, u64::MAX] + 1 wraps for one member only: unsigned bounds are lost, the
    // signed view [-2, -1] + 1 = [-1, 0] is still exact.
    let r = u(u64::MAX - 1, u64::MAX).alu(AluOp::Add, W64, &k(1));
    assert_eq!(bounds_s(&r), (-1, 0));
    assert!(r.contains(0) && r.contains(u64::MAX));
    // Both ends wrapping keeps the unsigned interval exact.
    let r = u(u64::MAX - 1, u64::MAX).alu(AluOp::Add, W64, &k(3));
    assert_eq!(bounds_u(&r), (1, 2));
}

#[test]
fn sub_and_neg() {
    let r = u(10, 20).alu(AluOp::Sub, W64, &u(1, 5));
    assert_eq!(bounds_u(&r), (5, 19));
    let r = u(1, 5).neg(W64);
    assert_eq!(bounds_s(&r), (-5, -1));
    let r = u(1, 5).neg(W32);
    assert_eq!(bounds_u(&r), (0xffff_fffb, 0xffff_ffff));
    assert_eq!(bounds_s(&r), (0xffff_fffb, 0xffff_ffff));
}

#[test]
fn mul_of_ranges() {
    assert_eq!(bounds_u(&u(2, 3).alu(AluOp::Mul, W64, &u(4, 5))), (8, 15));
    assert_eq!(
        bounds_s(&s(-3, 2).alu(AluOp::Mul, W64, &s(-4, 5))),
        (-15, 12)
    );
    let r = Scalar::unknown().alu(AluOp::Mul, W64, &k(8));
    assert_eq!(r.tnum.value & 7, 0);
    assert_eq!(
        r.tnum.mask & 7,
        0,
        "multiples of 8 have three known zero bits"
    );
}

#[test]
fn and_with_mask_bounds_the_result() {
    let r = Scalar::unknown().alu(AluOp::And, W64, &k(0xff));
    assert_eq!(bounds_u(&r), (0, 255));
    assert_eq!(bounds_s(&r), (0, 255));
    assert_eq!(r.tnum, Tnum::new(0, 0xff));
    let r = Scalar::unknown().alu(AluOp::And, W64, &k(0xfff0));
    assert_eq!(r.umax, 0xfff0);
    assert_eq!(r.tnum.mask, 0xfff0);
}

#[test]
fn or_and_xor() {
    let r = u(0, 7).alu(AluOp::Or, W64, &k(8));
    assert_eq!(bounds_u(&r), (8, 15));
    let r = u(0, 100).alu(AluOp::Xor, W64, &u(0, 3));
    assert_eq!(bounds_u(&r), (0, 127));
    assert_eq!(k(6).alu(AluOp::Xor, W64, &k(3)).is_const(), Some(5));
}

#[test]
fn right_shifts() {
    let r = Scalar::unknown().alu(AluOp::Rsh, W64, &k(60));
    assert_eq!(bounds_u(&r), (0, 15));
    let r = Scalar::unknown().alu(AluOp::Rsh, W32, &k(28));
    assert_eq!(bounds_u(&r), (0, 15));
    let r = s(-16, -8).alu(AluOp::Arsh, W64, &k(2));
    assert_eq!(bounds_s(&r), (-4, -2));
    let r = Scalar::unknown().alu(AluOp::Arsh, W64, &k(56));
    assert_eq!(bounds_s(&r), (-128, 127));
}

#[test]
fn left_shifts() {
    let r = u(1, 3).alu(AluOp::Lsh, W64, &k(4));
    assert_eq!(bounds_u(&r), (16, 48));
    assert_eq!(r.tnum.mask & 0xf, 0);
    // Variable amounts: every possible amount is considered.
    let r = k(1).alu(AluOp::Lsh, W64, &u(0, 3));
    assert_eq!(bounds_u(&r), (1, 8));
    // Amounts are masked to the width.
    assert_eq!(k(3).alu(AluOp::Lsh, W64, &k(65)).is_const(), Some(6));
    assert_eq!(k(3).alu(AluOp::Lsh, W32, &k(33)).is_const(), Some(6));
    assert_eq!(
        k(0x8000_0000).alu(AluOp::Lsh, W32, &k(1)).is_const(),
        Some(0)
    );
}

#[test]
fn unsigned_division_and_modulo() {
    assert_eq!(
        bounds_u(&u(100, 200).alu(AluOp::Div, W64, &k(10))),
        (10, 20)
    );
    assert_eq!(
        bounds_u(&u(100, 200).alu(AluOp::Div, W64, &u(2, 4))),
        (25, 100)
    );
    // Division by a power of two keeps the known bits.
    let x = Scalar::from_tnum(Tnum::new(0x100, 0xf0));
    assert_eq!(x.alu(AluOp::Div, W64, &k(16)).tnum, Tnum::new(0x10, 0xf));
    // Division by zero yields 0.
    assert_eq!(u(100, 200).alu(AluOp::Div, W64, &k(0)).is_const(), Some(0));
    let r = u(100, 200).alu(AluOp::Div, W64, &u(0, 4));
    assert_eq!(bounds_u(&r), (0, 200));
    // Modulo.
    let r = u(0, 1000).alu(AluOp::Mod, W64, &k(16));
    assert_eq!(bounds_u(&r), (0, 15));
    assert_eq!(r.tnum, Tnum::new(0, 15));
    assert_eq!(bounds_u(&u(20, 25).alu(AluOp::Mod, W64, &k(10))), (0, 5));
    assert_eq!(bounds_u(&u(3, 7).alu(AluOp::Mod, W64, &u(8, 9))), (3, 7));
    // Modulo by zero leaves the dividend unchanged.
    assert_eq!(bounds_u(&u(5, 7).alu(AluOp::Mod, W64, &k(0))), (5, 7));
    let r = Scalar::unknown().alu(AluOp::Mod, W32, &k(0));
    assert_eq!(
        bounds_u(&r),
        (0, u64::from(u32::MAX)),
        "32-bit modulo by zero zero-extends"
    );
}

#[test]
fn signed_division_and_modulo() {
    assert_eq!(
        bounds_s(&s(-100, 50).alu(AluOp::SDiv, W64, &k(10))),
        (-10, 5)
    );
    assert_eq!(
        bounds_s(&s(-100, 50).alu(AluOp::SDiv, W64, &s(-2, -2))),
        (-25, 50)
    );
    assert_eq!(
        k(i64::MIN as u64)
            .alu(AluOp::SDiv, W64, &k(u64::MAX))
            .is_const(),
        Some(i64::MIN as u64)
    );
    assert_eq!(k(7).alu(AluOp::SDiv, W64, &k(0)).is_const(), Some(0));
    assert_eq!(
        bounds_s(&s(-100, 100).alu(AluOp::SMod, W64, &k(7))),
        (-6, 6)
    );
    assert_eq!(
        bounds_s(&s(0, 100).alu(AluOp::SMod, W64, &s(-7, -3))),
        (0, 6)
    );
    assert_eq!(bounds_s(&s(-3, 3).alu(AluOp::SMod, W64, &s(5, 9))), (-3, 3));
    assert_eq!(bounds_s(&s(-3, 3).alu(AluOp::SMod, W64, &k(0))), (-3, 3));
    let r = k(0xffff_fff9).alu(AluOp::SMod, W32, &k(3));
    assert_eq!(r.is_const(), Some(0xffff_ffff));
}

#[test]
fn thirty_two_bit_ops_zero_extend() {
    let r = Scalar::unknown().alu(AluOp::Add, W32, &k(1));
    assert_eq!(bounds_u(&r), (0, u64::from(u32::MAX)));
    assert_eq!(r.smin, 0);
    assert_eq!(r.tnum.mask >> 32, 0);
    let r = Scalar::unknown().mov(W32);
    assert_eq!(bounds_u(&r), (0, u64::from(u32::MAX)));
    let r = k(0xdead_beef_0000_0005).alu(AluOp::Add, W32, &k(1));
    assert_eq!(r.is_const(), Some(6));
}

#[test]
fn sixty_four_bit_ops_track_the_low_half() {
    // (x & 0xff) + 0x1_0000_0000: the low half stays in [0, 255].
    let x = Scalar::unknown().alu(AluOp::And, W64, &k(0xff));
    let r = x.alu(AluOp::Add, W64, &k(1 << 32));
    assert_eq!((r.u32_min, r.u32_max), (0, 255));
    assert_eq!(bounds_u(&r), (1 << 32, (1 << 32) + 255));
}

#[test]
fn movsx_and_loads() {
    let r = Scalar::unknown().movsx(W64, 8);
    assert_eq!(bounds_s(&r), (-128, 127));
    let r = Scalar::unknown().movsx(W32, 16);
    assert_eq!((r.s32_min, r.s32_max), (-32768, 32767));
    assert_eq!(r.umax, u64::from(u32::MAX));
    // A non-negative byte stays as it is.
    assert_eq!(bounds_u(&u(3, 100).movsx(W64, 8)), (3, 100));
    assert_eq!(k(0xff).movsx(W64, 8).is_const(), Some(u64::MAX));
    assert_eq!(bounds_u(&Scalar::load(1, false)), (0, 255));
    assert_eq!(bounds_s(&Scalar::load(2, true)), (-32768, 32767));
    assert_eq!(bounds_u(&Scalar::load(4, false)), (0, u64::from(u32::MAX)));
    assert!(Scalar::load(8, false).is_unknown());
}

#[test]
fn byte_swaps() {
    assert_eq!(
        k(0x1234).endian(EndianKind::Swap, 16).is_const(),
        Some(0x3412)
    );
    assert_eq!(
        k(0x1122_3344_5566_7788)
            .endian(EndianKind::Swap, 64)
            .is_const(),
        Some(0x8877_6655_4433_2211)
    );
    let r = Scalar::unknown().endian(EndianKind::ToBe, 16);
    assert_eq!(bounds_u(&r), (0, 0xffff));
    let r = Scalar::unknown().endian(EndianKind::ToLe, 32);
    assert_eq!(bounds_u(&r), (0, u64::from(u32::MAX)));
    // Swapping a byte-sized value moves its unknown bits to the top byte of the width.
    let r = u(0, 255).endian(EndianKind::Swap, 32);
    assert_eq!(r.tnum, Tnum::new(0, 0xff00_0000));
}

#[test]
fn refine_unsigned_comparisons() {
    let any = Scalar::unknown();
    let (a, _) = Scalar::refine(JmpOp::Lt, W64, &any, &k(10), true).unwrap();
    assert_eq!(bounds_u(&a), (0, 9));
    let (a, _) = Scalar::refine(JmpOp::Lt, W64, &any, &k(10), false).unwrap();
    assert_eq!(a.umin, 10);
    let (a, _) = Scalar::refine(JmpOp::Gt, W64, &any, &k(10), true).unwrap();
    assert_eq!(a.umin, 11);
    let (a, _) = Scalar::refine(JmpOp::Le, W64, &u(5, 100), &k(10), true).unwrap();
    assert_eq!(bounds_u(&a), (5, 10));
    assert!(Scalar::refine(JmpOp::Gt, W64, &u(0, 5), &k(10), true).is_none());
    assert!(Scalar::refine(JmpOp::Gt, W64, &u(0, 5), &k(10), false).is_some());
    assert_eq!(Scalar::decide(JmpOp::Lt, W64, &u(0, 5), &k(10)), Some(true));
    assert_eq!(Scalar::decide(JmpOp::Lt, W64, &u(0, 50), &k(10)), None);
}

#[test]
fn refine_register_against_register_narrows_both() {
    let (a, b) = Scalar::refine(JmpOp::Lt, W64, &u(0, 100), &u(20, 50), true).unwrap();
    assert_eq!(bounds_u(&a), (0, 49));
    assert_eq!(bounds_u(&b), (20, 50));
    let (a, b) = Scalar::refine(JmpOp::Gt, W64, &u(0, 100), &u(20, 50), true).unwrap();
    assert_eq!(bounds_u(&a), (21, 100));
    assert_eq!(bounds_u(&b), (20, 50));
    let (a, b) = Scalar::refine(JmpOp::Ge, W64, &u(0, 30), &u(20, 50), true).unwrap();
    assert_eq!(bounds_u(&a), (20, 30));
    assert_eq!(bounds_u(&b), (20, 30));
    let (a, b) = Scalar::refine(JmpOp::Eq, W64, &u(0, 10), &u(5, 20), true).unwrap();
    assert_eq!(bounds_u(&a), (5, 10));
    assert_eq!(a, b);
}

#[test]
fn refine_signed_comparisons() {
    let any = Scalar::unknown();
    let (a, _) = Scalar::refine(JmpOp::Slt, W64, &any, &k(0), true).unwrap();
    assert_eq!(bounds_s(&a), (i64::MIN, -1));
    assert_eq!(a.umin, 1 << 63);
    let (a, _) = Scalar::refine(JmpOp::Sge, W64, &any, &k(0), true).unwrap();
    assert_eq!(a.umax, i64::MAX as u64);
    let (a, _) = Scalar::refine(JmpOp::Sgt, W64, &s(-10, 10), &k(u64::MAX), false).unwrap();
    assert_eq!(bounds_s(&a), (-10, -1));
}

#[test]
fn refine_equality_and_inequality() {
    let (a, _) = Scalar::refine(JmpOp::Eq, W64, &Scalar::unknown(), &k(42), true).unwrap();
    assert_eq!(a.is_const(), Some(42));
    let (a, _) = Scalar::refine(JmpOp::Ne, W64, &u(0, 10), &k(0), true).unwrap();
    assert_eq!(bounds_u(&a), (1, 10));
    let (a, _) = Scalar::refine(JmpOp::Eq, W64, &u(0, 10), &k(0), false).unwrap();
    assert_eq!(bounds_u(&a), (1, 10));
    assert!(Scalar::refine(JmpOp::Ne, W64, &k(3), &k(3), true).is_none());
    assert!(Scalar::refine(JmpOp::Eq, W64, &u(0, 10), &k(11), true).is_none());
}

#[test]
fn refine_jset() {
    let any = Scalar::unknown();
    let (a, _) = Scalar::refine(JmpOp::Set, W64, &any, &k(4), true).unwrap();
    assert_eq!(a.tnum.value, 4);
    assert_eq!(a.umin, 4);
    let (a, _) = Scalar::refine(JmpOp::Set, W64, &any, &k(0xf0), false).unwrap();
    assert_eq!(a.tnum.mask & 0xf0, 0);
    assert_eq!(a.tnum.value & 0xf0, 0);
    assert!(Scalar::refine(JmpOp::Set, W64, &u(0, 7), &k(8), true).is_none());
    assert!(Scalar::refine(JmpOp::Set, W64, &k(8), &k(8), false).is_none());
}

#[test]
fn refine_thirty_two_bit_comparisons() {
    let any = Scalar::unknown();
    let (a, _) = Scalar::refine(JmpOp::Lt, W32, &any, &k(10), true).unwrap();
    assert_eq!((a.u32_min, a.u32_max), (0, 9));
    // The upper half is still unknown, so only the largest value with a low half <= 9 is left.
    assert_eq!(a.umax, 0xffff_ffff_0000_0009);
    // A zero-extended value learns the 64-bit bound too.
    let x = any.mov(W32);
    let (a, _) = Scalar::refine(JmpOp::Lt, W32, &x, &k(10), true).unwrap();
    assert_eq!(bounds_u(&a), (0, 9));
    // A 32-bit comparison only looks at the low half.
    let x = k((7 << 32) | 5);
    assert_eq!(Scalar::decide(JmpOp::Eq, W32, &x, &k(5)), Some(true));
    let (a, _) = Scalar::refine(JmpOp::Slt, W32, &any, &k(0), true).unwrap();
    assert_eq!((a.s32_min, a.s32_max), (i32::MIN, -1));
}

#[test]
fn normalize_links_all_descriptions() {
    // Signed bounds crossing zero, unsigned bounds below the sign bit: non-negative part only.
    let mut x = Scalar {
        smin: -5,
        smax: 10,
        umax: 1 << 40,
        ..Scalar::unknown()
    };
    x.normalize().unwrap();
    assert_eq!(bounds_u(&x), (0, 10));
    assert_eq!(bounds_s(&x), (0, 10));
    // Low half known, high half zero: a constant.
    let mut x = Scalar {
        umax: u64::from(u32::MAX),
        s32_min: -1,
        s32_max: -1,
        ..Scalar::unknown()
    };
    x.normalize().unwrap();
    assert_eq!(x.is_const(), Some(0xffff_ffff));
    // 32-bit bounds tighten the 64-bit ones inside one 2^32 block.
    let mut x = Scalar {
        umin: 1 << 32,
        umax: (1 << 32) + 1000,
        u32_min: 10,
        u32_max: 20,
        ..Scalar::unknown()
    };
    x.normalize().unwrap();
    assert_eq!(bounds_u(&x), ((1 << 32) + 10, (1 << 32) + 20));
    // A sign-extended 32-bit value whose low half is in [-5, 5] is in [-5, 5].
    let mut x = Scalar {
        smin: i64::from(i32::MIN),
        smax: i64::from(i32::MAX),
        s32_min: -5,
        s32_max: 5,
        ..Scalar::unknown()
    };
    x.normalize().unwrap();
    assert_eq!(bounds_s(&x), (-5, 5));
    // Contradictions are detected.
    let mut x = Scalar {
        umin: 5,
        umax: 10,
        u32_min: 11,
        u32_max: 20,
        ..Scalar::unknown()
    };
    assert!(x.normalize().is_err());
    // The tnum narrows the bounds to actual members.
    let mut x = Scalar {
        tnum: Tnum::new(0, 0xf0),
        umin: 1,
        ..Scalar::unknown()
    };
    x.normalize().unwrap();
    assert_eq!(bounds_u(&x), (16, 240));
}

#[test]
fn join_widen_subsume() {
    let j = k(4).join(&k(6));
    assert_eq!(bounds_u(&j), (4, 6));
    assert_eq!(j.tnum, Tnum::new(4, 2));
    assert!(j.subsumes(&k(4)) && j.subsumes(&k(6)));
    assert!(!k(4).subsumes(&j));
    assert!(u(0, 10).subsumes(&u(2, 5)));
    assert!(!u(2, 5).subsumes(&u(0, 10)));
    assert!(Scalar::unknown().subsumes(&u(2, 5)));
    // Widening jumps to thresholds, then to the type extremes.
    let w = u(0, 10).widen(&u(0, 11));
    assert_eq!(bounds_u(&w), (0, 255));
    let w = w.widen(&u(0, 300));
    assert_eq!(bounds_u(&w), (0, 0xffff));
    let w = w.widen(&u(0, 1 << 40));
    assert_eq!(w.umax, i64::MAX as u64);
    // Bounds that did not move stay.
    let w = u(5, 10).widen(&u(6, 9));
    assert_eq!(bounds_u(&w), (5, 10));
    // A decreasing signed lower bound jumps down.
    let w = s(0, 10).widen(&s(-5, 10));
    assert!(w.smin <= -5 && w.smax == 10);
}

#[test]
fn display_is_kernel_like() {
    assert_eq!(k(42).to_string(), "42");
    assert_eq!(
        u(0, 255).to_string(),
        "scalar(smin=smin32=0,smax=umax=smax32=umax32=255,var_off=(0x0; 0xff))"
    );
    assert_eq!(k(u64::MAX).to_string(), "-1");
    assert_eq!(Scalar::unknown().to_string(), "scalar()");
}

#[test]
fn kernel_idioms() {
    // Sign-extending a byte by hand: (x << 56) s>> 56.
    let byte = Scalar::load(1, false);
    let r = byte
        .alu(AluOp::Lsh, W64, &k(56))
        .alu(AluOp::Arsh, W64, &k(56));
    assert_eq!(bounds_s(&r), (-128, 127));
    // Bounds check then scale: if (x > 10) return; x * 8 + 16.
    let (x, _) = Scalar::refine(JmpOp::Gt, W64, &Scalar::unknown(), &k(10), false).unwrap();
    let r = x.alu(AluOp::Mul, W64, &k(8)).alu(AluOp::Add, W64, &k(16));
    assert_eq!(bounds_u(&r), (16, 96));
    assert_eq!(r.tnum.mask & 7, 0);
    // A signed check alone does not bound an unsigned index, the lower check does.
    let (x, _) = Scalar::refine(JmpOp::Sgt, W64, &Scalar::unknown(), &k(10), false).unwrap();
    assert_eq!(x.umax, u64::MAX);
    let (x, _) = Scalar::refine(JmpOp::Slt, W64, &x, &k(0), false).unwrap();
    assert_eq!(bounds_u(&x), (0, 10));
    // 32-bit loop counter: w1 += 1 on [0, 99] stays below 100 and zero-extended.
    let i = u(0, 99).alu(AluOp::Add, W32, &k(1));
    assert_eq!(bounds_u(&i), (1, 100));
}
