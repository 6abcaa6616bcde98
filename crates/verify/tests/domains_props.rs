//! Soundness properties of the abstract domains: for random abstract values (built from random
//! concrete members, ranges and tnums) and random concrete members, every concrete result lies
//! inside the abstract result.
//!
//! The concrete semantics below are written independently from the domain code, from the eBPF
//! ISA: division by zero gives 0, modulo by zero keeps the dividend, shifts mask the amount,
//! 32-bit results are zero-extended.

use kflex_isa::decode::{AluOp, EndianKind, JmpOp, Width};
use kflex_verify::domains::{Scalar, Tnum};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Concrete semantics.

fn concrete_alu(op: AluOp, width: Width, x: u64, y: u64) -> u64 {
    match width {
        Width::W64 => {
            let (sx, sy) = (x as i64, y as i64);
            match op {
                AluOp::Add => x.wrapping_add(y),
                AluOp::Sub => x.wrapping_sub(y),
                AluOp::Mul => x.wrapping_mul(y),
                AluOp::Div => x.checked_div(y).unwrap_or(0),
                AluOp::Mod => x.checked_rem(y).unwrap_or(x),
                AluOp::SDiv => {
                    if y == 0 {
                        0
                    } else {
                        sx.wrapping_div(sy) as u64
                    }
                }
                AluOp::SMod => {
                    if y == 0 {
                        x
                    } else {
                        sx.wrapping_rem(sy) as u64
                    }
                }
                AluOp::Or => x | y,
                AluOp::And => x & y,
                AluOp::Xor => x ^ y,
                AluOp::Lsh => x << (y % 64),
                AluOp::Rsh => x >> (y % 64),
                AluOp::Arsh => (sx >> (y % 64)) as u64,
            }
        }
        Width::W32 => {
            let (x, y) = (x as u32, y as u32);
            let (sx, sy) = (x as i32, y as i32);
            let r = match op {
                AluOp::Add => x.wrapping_add(y),
                AluOp::Sub => x.wrapping_sub(y),
                AluOp::Mul => x.wrapping_mul(y),
                AluOp::Div => x.checked_div(y).unwrap_or(0),
                AluOp::Mod => x.checked_rem(y).unwrap_or(x),
                AluOp::SDiv => {
                    if y == 0 {
                        0
                    } else {
                        sx.wrapping_div(sy) as u32
                    }
                }
                AluOp::SMod => {
                    if y == 0 {
                        x
                    } else {
                        sx.wrapping_rem(sy) as u32
                    }
                }
                AluOp::Or => x | y,
                AluOp::And => x & y,
                AluOp::Xor => x ^ y,
                AluOp::Lsh => x << (y % 32),
                AluOp::Rsh => x >> (y % 32),
                AluOp::Arsh => (sx >> (y % 32)) as u32,
            };
            u64::from(r)
        }
    }
}

fn concrete_cmp(op: JmpOp, width: Width, x: u64, y: u64) -> bool {
    let (x, y) = match width {
        Width::W64 => (x, y),
        Width::W32 => (u64::from(x as u32), u64::from(y as u32)),
    };
    let (sx, sy) = match width {
        Width::W64 => (x as i64, y as i64),
        Width::W32 => (i64::from(x as u32 as i32), i64::from(y as u32 as i32)),
    };
    match op {
        JmpOp::Eq => x == y,
        JmpOp::Ne => x != y,
        JmpOp::Gt => x > y,
        JmpOp::Ge => x >= y,
        JmpOp::Lt => x < y,
        JmpOp::Le => x <= y,
        JmpOp::Sgt => sx > sy,
        JmpOp::Sge => sx >= sy,
        JmpOp::Slt => sx < sy,
        JmpOp::Sle => sx <= sy,
        JmpOp::Set => x & y != 0,
    }
}

fn concrete_movsx(width: Width, x: u64, bits: u8) -> u64 {
    let wide = match bits {
        8 => x as u8 as i8 as i64 as u64,
        16 => x as u16 as i16 as i64 as u64,
        _ => x as u32 as i32 as i64 as u64,
    };
    match width {
        Width::W64 => wide,
        Width::W32 => u64::from(wide as u32),
    }
}

fn concrete_endian(kind: EndianKind, bits: u8, x: u64) -> u64 {
    let swap = match kind {
        EndianKind::Swap => true,
        EndianKind::ToLe => cfg!(target_endian = "big"),
        EndianKind::ToBe => cfg!(target_endian = "little"),
    };
    match (bits, swap) {
        (16, false) => u64::from(x as u16),
        (16, true) => u64::from((x as u16).swap_bytes()),
        (32, false) => u64::from(x as u32),
        (32, true) => u64::from((x as u32).swap_bytes()),
        (_, false) => x,
        (_, true) => x.swap_bytes(),
    }
}

// ---------------------------------------------------------------------------------------------
// Generators.

/// A 64-bit value biased towards the interesting places: small numbers, the sign boundaries of
/// both widths and the top of the range.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        3 => 0u64..64,
        1 => (0u64..32).prop_map(|d| u64::MAX - d),
        1 => (0u64..32).prop_map(|d| (i64::MAX as u64).wrapping_add(d).wrapping_sub(16)),
        1 => (0u64..32).prop_map(|d| u64::from(u32::MAX).wrapping_add(d).wrapping_sub(16)),
        1 => (0u64..32).prop_map(|d| 0x8000_0000u64.wrapping_add(d).wrapping_sub(16)),
        1 => (any::<u32>(), 0u64..16).prop_map(|(hi, lo)| (u64::from(hi) << 32) | lo),
    ]
}

/// A distance below/above a member: exact, small, medium, or unbounded.
fn delta() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(0)),
        3 => (0u64..16).prop_map(Some),
        2 => (0u64..1 << 20).prop_map(Some),
        1 => any::<u64>().prop_map(Some),
    ]
}

/// A mask of unknown bits: none, low bits, random, or all.
fn mask() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        3 => (0u32..=64).prop_map(|n| if n == 64 { u64::MAX } else { (1u64 << n) - 1 }),
        2 => any::<u64>(),
        2 => Just(u64::MAX),
    ]
}

fn interval_u(x: u64, below: Option<u64>, above: Option<u64>) -> (u64, u64) {
    (
        below.map_or(0, |d| x.saturating_sub(d)),
        above.map_or(u64::MAX, |d| x.saturating_add(d)),
    )
}

fn interval_s(x: i64, below: Option<u64>, above: Option<u64>) -> (i64, i64) {
    let clamp = |d: u64| i64::try_from(d).unwrap_or(i64::MAX);
    (
        below.map_or(i64::MIN, |d| x.saturating_sub(clamp(d))),
        above.map_or(i64::MAX, |d| x.saturating_add(clamp(d))),
    )
}

/// An abstract scalar together with concrete members of it (the first is the seed member).
#[derive(Debug, Clone)]
struct Sample {
    abs: Scalar,
    raw: Scalar,
    members: Vec<u64>,
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        value(),
        mask(),
        proptest::collection::vec(delta(), 8),
        proptest::collection::vec(any::<u64>(), 10),
    )
        .prop_map(|(x, m, d, probes)| {
            let (umin, umax) = interval_u(x, d[0], d[1]);
            let (smin, smax) = interval_s(x as i64, d[2], d[3]);
            let (u32_min, u32_max) = interval_u(u64::from(x as u32), d[4], d[5]);
            let (s32_min, s32_max) = interval_s(i64::from(x as i32), d[6], d[7]);
            let raw = Scalar {
                tnum: Tnum::new(x, m),
                umin,
                umax,
                smin,
                smax,
                u32_min: u32_min as u32,
                u32_max: u32_max.min(u64::from(u32::MAX)) as u32,
                s32_min: s32_min.max(i64::from(i32::MIN)) as i32,
                s32_max: s32_max.min(i64::from(i32::MAX)) as i32,
            };
            let mut abs = raw;
            abs.normalize()
                .expect("a scalar with a member is never empty");
            let mut members = vec![x];
            let t = abs.tnum;
            let mut candidates: Vec<u64> = probes.iter().map(|r| t.value | (r & t.mask)).collect();
            candidates.extend([abs.umin, abs.umax, abs.smin as u64, abs.smax as u64]);
            for r in &probes {
                let span = abs.umax.wrapping_sub(abs.umin).wrapping_add(1);
                let c = if span == 0 {
                    *r
                } else {
                    abs.umin.wrapping_add(r % span)
                };
                candidates.extend(t.min_member_ge(c));
                candidates.extend(t.max_member_le(c));
                let sspan = (abs.smax as u64)
                    .wrapping_sub(abs.smin as u64)
                    .wrapping_add(1);
                let c = if sspan == 0 {
                    *r
                } else {
                    (abs.smin as u64).wrapping_add(r % sspan)
                };
                candidates.extend(t.min_member_ge_signed(c as i64).map(|v| v as u64));
            }
            candidates.extend(t.min_member_ge(abs.umin));
            candidates.extend(t.max_member_le(abs.umax));
            candidates.extend(t.min_member_ge_signed(abs.smin).map(|v| v as u64));
            candidates.extend(t.max_member_le_signed(abs.smax).map(|v| v as u64));
            for c in candidates {
                if raw.contains(c) && !members.contains(&c) {
                    members.push(c);
                }
            }
            Sample { abs, raw, members }
        })
}

fn width() -> impl Strategy<Value = Width> {
    prop_oneof![Just(Width::W32), Just(Width::W64)]
}

fn alu_op() -> impl Strategy<Value = AluOp> {
    proptest::sample::select(AluOp::ALL.to_vec())
}

fn jmp_op() -> impl Strategy<Value = JmpOp> {
    proptest::sample::select(JmpOp::ALL.to_vec())
}

/// `cases` per property, unless `PROPTEST_CASES` asks for a deeper (or shorter) run.
fn config(cases: u32) -> ProptestConfig {
    let env = std::env::var("PROPTEST_CASES").ok();
    ProptestConfig {
        cases: env.and_then(|v| v.parse().ok()).unwrap_or(cases),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn normalize_never_drops_a_member(s in sample()) {
        for &x in &s.members {
            prop_assert!(s.raw.contains(x));
            prop_assert!(s.abs.contains(x), "{:#x} dropped: {:?} -> {:?}", x, s.raw, s.abs);
        }
        // Normalising again changes nothing that matters: still every member.
        let mut again = s.abs;
        prop_assert!(again.normalize().is_ok());
        for &x in &s.members {
            prop_assert!(again.contains(x));
        }
    }

    #[test]
    fn alu_is_sound(op in alu_op(), w in width(), a in sample(), b in sample()) {
        let r = a.abs.alu(op, w, &b.abs);
        if w == Width::W32 {
            prop_assert!(r.umax <= u64::from(u32::MAX), "32-bit result not zero-extended: {:?}", r);
        }
        for &x in &a.members {
            for &y in &b.members {
                let c = concrete_alu(op, w, x, y);
                prop_assert!(
                    r.contains(c),
                    "{:?} {:?}: {:#x} op {:#x} = {:#x} not in {:?}\n a = {:?}\n b = {:?}",
                    op, w, x, y, c, r, a.abs, b.abs
                );
            }
        }
    }

    #[test]
    fn alu_with_constant_rhs_is_sound(
        op in alu_op(), w in width(), a in sample(), y in value(),
    ) {
        let r = a.abs.alu(op, w, &Scalar::constant(y));
        for &x in &a.members {
            let c = concrete_alu(op, w, x, y);
            prop_assert!(r.contains(c), "{:?} {:?}: {:#x} op {:#x} = {:#x} not in {:?}\n a = {:?}",
                op, w, x, y, c, r, a.abs);
        }
    }

    #[test]
    fn unary_ops_are_sound(w in width(), a in sample(), bits in prop_oneof![Just(8u8), Just(16), Just(32)]) {
        let neg = a.abs.neg(w);
        let mov = a.abs.mov(w);
        let movsx = a.abs.movsx(w, bits);
        for &x in &a.members {
            prop_assert!(neg.contains(concrete_alu(AluOp::Sub, w, 0, x)));
            let m = match w { Width::W64 => x, Width::W32 => u64::from(x as u32) };
            prop_assert!(mov.contains(m));
            if !(w == Width::W32 && bits == 32) {
                let c = concrete_movsx(w, x, bits);
                prop_assert!(movsx.contains(c), "movsx{} {:?} {:#x} -> {:#x} not in {:?} (a = {:?})",
                    bits, w, x, c, movsx, a.abs);
            }
        }
    }

    #[test]
    fn endian_is_sound(
        a in sample(),
        kind in prop_oneof![Just(EndianKind::ToLe), Just(EndianKind::ToBe), Just(EndianKind::Swap)],
        bits in prop_oneof![Just(16u8), Just(32), Just(64)],
    ) {
        let r = a.abs.endian(kind, bits);
        for &x in &a.members {
            let c = concrete_endian(kind, bits, x);
            prop_assert!(r.contains(c), "{:?}{} {:#x} -> {:#x} not in {:?}", kind, bits, x, c, r);
        }
    }

    #[test]
    fn load_is_sound(raw in any::<u64>(), size in prop_oneof![Just(1u8), Just(2), Just(4), Just(8)], sx in any::<bool>()) {
        let bits = u32::from(size) * 8;
        let v = if bits == 64 { raw } else { raw & ((1u64 << bits) - 1) };
        let loaded = if sx && bits < 64 {
            let shift = 64 - bits;
            (((v << shift) as i64) >> shift) as u64
        } else {
            v
        };
        prop_assert!(Scalar::load(size, sx).contains(loaded));
    }

    #[test]
    fn refine_keeps_every_satisfying_pair(
        op in jmp_op(), w in width(), taken in any::<bool>(), a in sample(), b in sample(),
    ) {
        let refined = Scalar::refine(op, w, &a.abs, &b.abs, taken);
        if let Some((ra, rb)) = refined {
            // Refinement only ever narrows.
            prop_assert!(a.abs.subsumes(&ra) && b.abs.subsumes(&rb));
        }
        for &x in &a.members {
            for &y in &b.members {
                if concrete_cmp(op, w, x, y) != taken {
                    continue;
                }
                let Some((ra, rb)) = refined else {
                    return Err(TestCaseError::fail(format!(
                        "{op:?} {w:?} taken={taken}: ({x:#x}, {y:#x}) satisfies it but the edge was \
                         declared impossible\n a = {:?}\n b = {:?}", a.abs, b.abs)));
                };
                prop_assert!(ra.contains(x) && rb.contains(y),
                    "{:?} {:?} taken={}: ({:#x}, {:#x}) lost\n a = {:?} -> {:?}\n b = {:?} -> {:?}",
                    op, w, taken, x, y, a.abs, ra, b.abs, rb);
            }
        }
    }

    #[test]
    fn refine_against_constant_keeps_members(
        op in jmp_op(), w in width(), taken in any::<bool>(), a in sample(), y in value(),
    ) {
        let refined = Scalar::refine(op, w, &a.abs, &Scalar::constant(y), taken);
        for &x in &a.members {
            if concrete_cmp(op, w, x, y) == taken {
                let (ra, rb) = refined.expect("satisfiable edge declared impossible");
                prop_assert!(ra.contains(x) && rb.contains(y), "{:?} {:?} {} {:#x} vs {:#x}: {:?}",
                    op, w, taken, x, y, ra);
            }
        }
    }

    #[test]
    fn join_and_widen_contain_both(a in sample(), b in sample()) {
        prop_assert_eq!(a.abs.join(&a.abs), a.abs);
        prop_assert_eq!(a.abs.widen(&a.abs), a.abs);
        let j = a.abs.join(&b.abs);
        let wd = a.abs.widen(&b.abs);
        for &x in a.members.iter().chain(&b.members) {
            prop_assert!(j.contains(x), "join lost {:#x}: {:?}", x, j);
            prop_assert!(wd.contains(x), "widen lost {:#x}: {:?}", x, wd);
        }
        prop_assert!(j.subsumes(&a.abs) && j.subsumes(&b.abs));
        prop_assert!(wd.subsumes(&a.abs) && wd.subsumes(&b.abs));
    }

    #[test]
    fn widening_stabilises(a in sample(), b in sample(), c in sample()) {
        // Once widened, widening again with anything already covered changes nothing.
        let w = a.abs.widen(&b.abs);
        prop_assert_eq!(w.widen(&b.abs), w);
        prop_assert_eq!(w.widen(&a.abs), w);
        // Along an ascending chain every change is a strict growth.
        let w2 = w.widen(&w.join(&c.abs));
        prop_assert!(w2.subsumes(&w) && w2.subsumes(&c.abs));
        prop_assert_eq!(w2.widen(&c.abs), w2);
    }

    #[test]
    fn widening_within_a_limit_contains_both_and_stabilises(
        a in sample(), b in sample(), limit in prop_oneof![Just(0u64), 1u64..1 << 20, any::<u64>()],
    ) {
        let w = a.abs.widen_within(&b.abs, limit);
        for &x in a.members.iter().chain(&b.members) {
            prop_assert!(w.contains(x), "widen_within lost {:#x}: {:?}", x, w);
        }
        prop_assert!(w.subsumes(&a.abs) && w.subsumes(&b.abs));
        prop_assert_eq!(w.widen_within(&b.abs, limit), w);
        prop_assert_eq!(w.widen_within(&a.abs, limit), w);
        // Never looser than the plain widening, and inside the limit when both inputs are.
        prop_assert!(a.abs.widen(&b.abs).subsumes(&w));
        let inside = |s: &Scalar| s.umax <= limit && s.smin >= 0;
        if i64::try_from(limit).is_ok() && inside(&a.abs) && inside(&b.abs) {
            prop_assert!(w.umax <= limit, "{:?} past {}", w, limit);
        }
    }

    #[test]
    fn subsumes_is_consistent_with_contains(a in sample(), b in sample()) {
        prop_assert!(a.abs.subsumes(&a.abs));
        if a.abs.subsumes(&b.abs) {
            for &x in &b.members {
                prop_assert!(a.abs.contains(x));
            }
        }
        // Some member of `b` outside `a` means `a` cannot subsume `b`.
        if b.members.iter().any(|&x| !a.abs.contains(x)) {
            prop_assert!(!a.abs.subsumes(&b.abs));
        }
    }

    #[test]
    fn tnum_ops_are_sound(x in value(), y in value(), mx in mask(), my in mask(), k in 0u32..64) {
        let (a, b) = (Tnum::new(x, mx), Tnum::new(y, my));
        // Members: the seeds and a few variations inside each mask.
        let xs = [x & !mx, x | mx, (x & !mx) | (mx & 0x5555_5555_5555_5555), x];
        let ys = [y & !my, y | my, (y & !my) | (my & 0xaaaa_aaaa_aaaa_aaaa), y];
        for &p in &xs {
            let p = a.value | (p & a.mask);
            prop_assert!(a.contains(p));
            for &q in &ys {
                let q = b.value | (q & b.mask);
                prop_assert!(a.add(b).contains(p.wrapping_add(q)));
                prop_assert!(a.sub(b).contains(p.wrapping_sub(q)));
                prop_assert!(a.mul(b).contains(p.wrapping_mul(q)), "{a:?} * {b:?}: {p:#x} * {q:#x}");
                prop_assert!(a.and(b).contains(p & q));
                prop_assert!(a.or(b).contains(p | q));
                prop_assert!(a.xor(b).contains(p ^ q));
                prop_assert!(a.union(b).contains(p) && a.union(b).contains(q));
                if let Some(i) = a.intersect(b) {
                    prop_assert_eq!(i.contains(p), b.contains(p));
                } else {
                    prop_assert!(!b.contains(p));
                }
            }
            prop_assert!(a.neg().contains(p.wrapping_neg()));
            prop_assert!(a.lsh(k).contains(p << k));
            prop_assert!(a.rsh(k).contains(p >> k));
            prop_assert!(a.arsh(k, 64).contains(((p as i64) >> k) as u64));
            prop_assert!(a.arsh(k % 32, 32).contains(u64::from(((p as u32 as i32) >> (k % 32)) as u32)));
            prop_assert!(a.cast(2).contains(p & 0xffff));
            prop_assert!(a.subreg().contains(p & 0xffff_ffff));
            prop_assert!(a.swap_bytes(4).contains(u64::from((p as u32).swap_bytes())));
            prop_assert!(a.sign_extend(16).contains(p as u16 as i16 as i64 as u64));
            let r = Tnum::range(p.min(y), p.max(y));
            prop_assert!(r.contains(p) && r.contains(y));
        }
    }
}

#[test]
fn generator_yields_varied_members() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = sample();
    let mut total = 0usize;
    let n = 2000;
    for _ in 0..n {
        let s = strategy.new_tree(&mut runner).expect("generate").current();
        total += s.members.len();
    }
    eprintln!("average members per sample: {}", total as f64 / n as f64);
    assert!(
        total >= n * 4,
        "samples too narrow: {total} members over {n} samples"
    );
}

/// A scalar with arbitrary (possibly contradictory, unnormalised) fields.
fn raw_scalar() -> impl Strategy<Value = Scalar> {
    (
        (value(), value(), value(), value()),
        (value(), value(), value(), value(), value()),
    )
        .prop_map(
            |((v, m, umin, umax), (smin, smax, u32b, s32b, extra))| Scalar {
                tnum: Tnum::new(v, m),
                umin,
                umax,
                smin: smin as i64,
                smax: smax as i64,
                u32_min: u32b as u32,
                u32_max: (u32b >> 32) as u32,
                s32_min: s32b as i32,
                s32_max: (extra >> 32) as i32,
            },
        )
}

proptest! {
    #![proptest_config(config(3000))]

    /// Checks run on whatever a caller builds: no operation may panic (overflow checks are on
    /// in test builds), and `normalize` either fails or yields something that contains every
    /// value the raw fields allowed.
    #[test]
    fn operations_never_panic_on_raw_fields(a in raw_scalar(), b in raw_scalar(), probe in value()) {
        let mut n = a;
        if n.normalize().is_ok() {
            if a.contains(probe) {
                prop_assert!(n.contains(probe));
            }
        } else {
            prop_assert!(!a.contains(probe), "normalize called {:?} empty but it holds {:#x}", a, probe);
        }
        for w in [Width::W32, Width::W64] {
            for op in AluOp::ALL {
                let _ = a.alu(op, w, &b);
            }
            for op in JmpOp::ALL {
                let _ = Scalar::refine(op, w, &a, &b, true);
                let _ = Scalar::refine(op, w, &a, &b, false);
            }
            let _ = (a.neg(w), a.mov(w), a.movsx(w, 8), a.movsx(w, 16), a.movsx(w, 32));
        }
        for kind in [EndianKind::ToLe, EndianKind::ToBe, EndianKind::Swap] {
            for bits in [16, 32, 64] {
                let _ = a.endian(kind, bits);
            }
        }
        let _ = (a.join(&b), a.widen(&b), a.subsumes(&b), a.is_const(), a.to_string());
    }
}

proptest! {
    #![proptest_config(config(4000))]

    /// On constants the domain is exact: every operation yields the concrete result and every
    /// comparison is decided.
    #[test]
    fn constants_are_exact(op in alu_op(), cmp in jmp_op(), w in width(), x in value(), y in value()) {
        let (a, b) = (Scalar::constant(x), Scalar::constant(y));
        prop_assert_eq!(a.alu(op, w, &b).is_const(), Some(concrete_alu(op, w, x, y)));
        prop_assert_eq!(Scalar::decide(cmp, w, &a, &b), Some(concrete_cmp(cmp, w, x, y)));
        prop_assert_eq!(a.neg(w).is_const(), Some(concrete_alu(AluOp::Sub, w, 0, x)));
        prop_assert_eq!(a.movsx(Width::W64, 8).is_const(), Some(concrete_movsx(Width::W64, x, 8)));
        prop_assert_eq!(
            a.endian(EndianKind::Swap, 32).is_const(),
            Some(concrete_endian(EndianKind::Swap, 32, x))
        );
    }
}

/// A tnum with at most `n` unknown bits at random positions, and all of its members.
fn small_tnum(n: usize) -> impl Strategy<Value = (Tnum, Vec<u64>)> {
    (any::<u64>(), proptest::collection::vec(0u32..64, 0..=n)).prop_map(|(v, positions)| {
        let mask = positions.iter().fold(0u64, |m, &p| m | 1 << p);
        let t = Tnum::new(v, mask);
        let bits: Vec<u32> = (0..64).filter(|b| mask >> b & 1 == 1).collect();
        let members = (0..1u64 << bits.len())
            .map(|combo| {
                bits.iter()
                    .enumerate()
                    .filter(|(i, _)| combo >> i & 1 == 1)
                    .fold(t.value, |acc, (_, b)| acc | 1 << b)
            })
            .collect();
        (t, members)
    })
}

/// The smallest tnum containing every value.
fn tnum_of(values: impl IntoIterator<Item = u64>) -> Tnum {
    let mut it = values.into_iter();
    let first = Tnum::constant(it.next().unwrap_or(0));
    it.fold(first, |t, v| t.union(Tnum::constant(v)))
}

proptest! {
    #![proptest_config(config(3000))]

    /// Exhaustively over small tnums: every operation is sound, and add, sub and the bitwise
    /// operations are optimal (no unknown bit that every concrete result agrees on).
    #[test]
    fn tnum_ops_exhaustive((a, xs) in small_tnum(6), (b, ys) in small_tnum(6)) {
        let pairs = || xs.iter().flat_map(|&x| ys.iter().map(move |&y| (x, y)));
        let exact = |f: fn(u64, u64) -> u64| tnum_of(pairs().map(|(x, y)| f(x, y)));
        prop_assert_eq!(a.add(b), exact(u64::wrapping_add));
        prop_assert_eq!(a.sub(b), exact(u64::wrapping_sub));
        prop_assert_eq!(a.and(b), exact(|x, y| x & y));
        prop_assert_eq!(a.or(b), exact(|x, y| x | y));
        prop_assert_eq!(a.xor(b), exact(|x, y| x ^ y));
        let mul = exact(u64::wrapping_mul);
        prop_assert!(mul.le(a.mul(b)), "mul {:?} * {:?}: exact {:?} not within {:?}", a, b, mul, a.mul(b));
        prop_assert_eq!(a.union(b), tnum_of(xs.iter().chain(&ys).copied()));
        // Members of both agree with the intersection.
        let common: Vec<u64> = xs.iter().copied().filter(|x| b.contains(*x)).collect();
        match a.intersect(b) {
            Some(i) => prop_assert_eq!(i, tnum_of(common)),
            None => prop_assert!(common.is_empty()),
        }
    }
}

/// A signed or unsigned interval of at most 16 values, with all of its members.
fn small_range() -> impl Strategy<Value = (Scalar, Vec<u64>)> {
    (value(), 0u64..16, any::<bool>()).prop_map(|(lo, d, signed)| {
        if signed {
            let lo = (lo as i64).min(i64::MAX - 15);
            let members = (0..=d).map(|i| (lo + i as i64) as u64).collect();
            (Scalar::range_s(lo, lo + d as i64), members)
        } else {
            let lo = lo.min(u64::MAX - 15);
            ((Scalar::range_u(lo, lo + d)), (lo..=lo + d).collect())
        }
    })
}

proptest! {
    #![proptest_config(config(1500))]

    /// Every operation and comparison over every pair of two whole small intervals.
    #[test]
    fn whole_small_ranges_are_sound((a, xs) in small_range(), (b, ys) in small_range()) {
        for w in [Width::W32, Width::W64] {
            for op in AluOp::ALL {
                let r = a.alu(op, w, &b);
                for &x in &xs {
                    for &y in &ys {
                        let c = concrete_alu(op, w, x, y);
                        prop_assert!(r.contains(c), "{:?} {:?}: {:#x}, {:#x} -> {:#x} not in {:?}\n a = {:?}\n b = {:?}",
                            op, w, x, y, c, r, a, b);
                    }
                }
            }
            for op in JmpOp::ALL {
                for taken in [false, true] {
                    let refined = Scalar::refine(op, w, &a, &b, taken);
                    for &x in &xs {
                        for &y in &ys {
                            if concrete_cmp(op, w, x, y) == taken {
                                let (ra, rb) = refined.expect("satisfiable edge declared impossible");
                                prop_assert!(ra.contains(x) && rb.contains(y));
                            }
                        }
                    }
                }
            }
        }
    }
}
