//! Conditional-jump predicates.
//!
//! 64-bit jumps compare whole registers (an immediate is sign-extended to 64 bits); 32-bit jumps
//! (`JMP32`) compare the low halves (an immediate is used as a 32-bit value).

use kflex_isa::decode::{JmpOp, Width};

/// True if a jump with this operation and width is taken for `dst` and `src`.
#[inline]
pub fn taken(width: Width, op: JmpOp, dst: u64, src: u64) -> bool {
    match width {
        Width::W64 => compare64(op, dst, src),
        Width::W32 => compare32(op, dst as u32, src as u32),
    }
}

#[inline]
fn compare64(op: JmpOp, d: u64, s: u64) -> bool {
    match op {
        JmpOp::Eq => d == s,
        JmpOp::Ne => d != s,
        JmpOp::Set => d & s != 0,
        JmpOp::Gt => d > s,
        JmpOp::Ge => d >= s,
        JmpOp::Lt => d < s,
        JmpOp::Le => d <= s,
        JmpOp::Sgt => (d as i64) > (s as i64),
        JmpOp::Sge => (d as i64) >= (s as i64),
        JmpOp::Slt => (d as i64) < (s as i64),
        JmpOp::Sle => (d as i64) <= (s as i64),
    }
}

#[inline]
fn compare32(op: JmpOp, d: u32, s: u32) -> bool {
    match op {
        JmpOp::Eq => d == s,
        JmpOp::Ne => d != s,
        JmpOp::Set => d & s != 0,
        JmpOp::Gt => d > s,
        JmpOp::Ge => d >= s,
        JmpOp::Lt => d < s,
        JmpOp::Le => d <= s,
        JmpOp::Sgt => (d as i32) > (s as i32),
        JmpOp::Sge => (d as i32) >= (s as i32),
        JmpOp::Slt => (d as i32) < (s as i32),
        JmpOp::Sle => (d as i32) <= (s as i32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_and_signed_64() {
        let m1 = u64::MAX;
        assert!(taken(Width::W64, JmpOp::Gt, m1, 1));
        assert!(!taken(Width::W64, JmpOp::Sgt, m1, 1));
        assert!(taken(Width::W64, JmpOp::Slt, m1, 0));
        assert!(!taken(Width::W64, JmpOp::Lt, m1, 0));
        assert!(taken(Width::W64, JmpOp::Sle, 5, 5));
        assert!(taken(Width::W64, JmpOp::Ge, 5, 5));
        assert!(!taken(Width::W64, JmpOp::Gt, 5, 5));
        assert!(taken(Width::W64, JmpOp::Sge, 0, m1));
        assert!(taken(Width::W64, JmpOp::Le, 0, 0));
        assert!(taken(Width::W64, JmpOp::Set, 0b110, 0b100));
        assert!(!taken(Width::W64, JmpOp::Set, 0b010, 0b100));
        assert!(taken(Width::W64, JmpOp::Ne, 1 << 32, 0));
        assert!(!taken(Width::W64, JmpOp::Eq, 1 << 32, 0));
    }

    #[test]
    fn jmp32_uses_low_halves() {
        assert!(taken(Width::W32, JmpOp::Eq, 1 << 32, 0));
        assert!(!taken(Width::W32, JmpOp::Ne, 0xffff_ffff_0000_0007, 7));
        assert!(taken(Width::W32, JmpOp::Slt, 0x8000_0000, 0));
        assert!(!taken(Width::W32, JmpOp::Lt, 0x8000_0000, 0));
        assert!(taken(Width::W32, JmpOp::Sgt, 0x1_0000_0001, 0xffff_ffff));
        assert!(!taken(Width::W32, JmpOp::Set, 0x1_0000_0000, 0x1_0000_0000));
    }
}
