//! Algebraic properties of the ALU that must hold for all operands.

use kflex_interp::alu::{alu32, alu64};
use kflex_isa::decode::AluOp;
use proptest::prelude::*;

proptest! {
    #[test]
    fn alu32_results_fit_in_32_bits(a: u64, b: u64, i in 0usize..AluOp::ALL.len()) {
        prop_assert!(alu32(AluOp::ALL[i], a, b) <= u64::from(u32::MAX));
    }

    #[test]
    fn alu32_agrees_with_alu64_on_low_halves(a: u64, b: u64) {
        let (a32, b32) = (u64::from(a as u32), u64::from(b as u32));
        for op in [AluOp::Add, AluOp::Sub, AluOp::Mul, AluOp::Or, AluOp::And, AluOp::Xor,
                   AluOp::Div, AluOp::Mod] {
            prop_assert_eq!(alu32(op, a, b), alu64(op, a32, b32) & 0xffff_ffff, "{:?}", op);
        }
    }

    #[test]
    fn signed_division_identity_64(d: i64, s: i64) {
        prop_assume!(s != 0);
        let q = alu64(AluOp::SDiv, d as u64, s as u64) as i64;
        let r = alu64(AluOp::SMod, d as u64, s as u64) as i64;
        prop_assert_eq!(q.wrapping_mul(s).wrapping_add(r), d);
        prop_assert!(r == 0 || (r < 0) == (d < 0), "remainder takes the dividend's sign");
        prop_assert!(r.unsigned_abs() < s.unsigned_abs());
    }

    #[test]
    fn signed_division_identity_32(d: i32, s: i32, hi: u32) {
        prop_assume!(s != 0);
        let dd = (u64::from(hi) << 32) | u64::from(d as u32);
        let q = alu32(AluOp::SDiv, dd, s as u32 as u64) as u32 as i32;
        let r = alu32(AluOp::SMod, dd, s as u32 as u64) as u32 as i32;
        prop_assert_eq!(q.wrapping_mul(s).wrapping_add(r), d);
        prop_assert!(r == 0 || (r < 0) == (d < 0));
    }

    #[test]
    fn unsigned_division_identity(d: u64, s: u64) {
        let q = alu64(AluOp::Div, d, s);
        let r = alu64(AluOp::Mod, d, s);
        if s == 0 {
            prop_assert_eq!((q, r), (0, d));
        } else {
            prop_assert_eq!(q * s + r, d);
            prop_assert!(r < s);
        }
    }
}
