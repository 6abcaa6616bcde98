//! Pure arithmetic of the eBPF ALU classes, with the exact Linux semantics.
//!
//! Everything here works on register values only; the dispatch loop resolves operands first:
//! a 64-bit operation sees its immediate sign-extended to 64 bits, a 32-bit operation sees the
//! immediate as a 32-bit value. 32-bit results are zero-extended to 64 bits.

use kflex_isa::decode::{AluOp, EndianKind, Width};

/// Applies a 64-bit ALU operation.
///
/// Division by zero yields 0, modulo by zero leaves `dst` unchanged, `i64::MIN / -1` yields
/// `i64::MIN` and `i64::MIN % -1` yields 0; signed modulo takes the sign of the dividend; shift
/// amounts are masked to 6 bits.
#[inline]
pub fn alu64(op: AluOp, dst: u64, src: u64) -> u64 {
    match op {
        AluOp::Add => dst.wrapping_add(src),
        AluOp::Sub => dst.wrapping_sub(src),
        AluOp::Mul => dst.wrapping_mul(src),
        AluOp::Div => dst.checked_div(src).unwrap_or(0),
        AluOp::SDiv => {
            if src == 0 {
                0
            } else {
                (dst as i64).wrapping_div(src as i64) as u64
            }
        }
        AluOp::Mod => dst.checked_rem(src).unwrap_or(dst),
        AluOp::SMod => {
            if src == 0 {
                dst
            } else {
                (dst as i64).wrapping_rem(src as i64) as u64
            }
        }
        AluOp::Or => dst | src,
        AluOp::And => dst & src,
        AluOp::Xor => dst ^ src,
        AluOp::Lsh => dst << (src & 63),
        AluOp::Rsh => dst >> (src & 63),
        AluOp::Arsh => ((dst as i64) >> (src & 63)) as u64,
    }
}

/// Applies a 32-bit ALU operation to the low halves of `dst` and `src`; the result is
/// zero-extended. Same edge cases as [`alu64`] at 32 bits (modulo by zero keeps the low half of
/// `dst`, zero-extended); shift amounts are masked to 5 bits.
#[inline]
pub fn alu32(op: AluOp, dst: u64, src: u64) -> u64 {
    let d = dst as u32;
    let s = src as u32;
    let r = match op {
        AluOp::Add => d.wrapping_add(s),
        AluOp::Sub => d.wrapping_sub(s),
        AluOp::Mul => d.wrapping_mul(s),
        AluOp::Div => d.checked_div(s).unwrap_or(0),
        AluOp::SDiv => {
            if s == 0 {
                0
            } else {
                (d as i32).wrapping_div(s as i32) as u32
            }
        }
        AluOp::Mod => d.checked_rem(s).unwrap_or(d),
        AluOp::SMod => {
            if s == 0 {
                d
            } else {
                (d as i32).wrapping_rem(s as i32) as u32
            }
        }
        AluOp::Or => d | s,
        AluOp::And => d & s,
        AluOp::Xor => d ^ s,
        AluOp::Lsh => d << (s & 31),
        AluOp::Rsh => d >> (s & 31),
        AluOp::Arsh => ((d as i32) >> (s & 31)) as u32,
    };
    u64::from(r)
}

/// Applies an ALU operation of the given width.
#[inline]
pub fn alu(width: Width, op: AluOp, dst: u64, src: u64) -> u64 {
    match width {
        Width::W64 => alu64(op, dst, src),
        Width::W32 => alu32(op, dst, src),
    }
}

/// Two's-complement negation at the given width (32-bit results zero-extended).
#[inline]
pub fn neg(width: Width, dst: u64) -> u64 {
    match width {
        Width::W64 => dst.wrapping_neg(),
        Width::W32 => u64::from((dst as u32).wrapping_neg()),
    }
}

/// Register move: 32-bit moves keep the low half and zero-extend it.
#[inline]
pub fn mov(width: Width, src: u64) -> u64 {
    match width {
        Width::W64 => src,
        Width::W32 => u64::from(src as u32),
    }
}

/// Sign-extending move (`movsx`): sign-extends the low `bits` (8, 16 or 32) of `src` to the
/// operation width; a 32-bit result is then zero-extended to 64 bits.
#[inline]
pub fn movsx(width: Width, src: u64, bits: u8) -> u64 {
    let wide = sign_extend(src, bits);
    match width {
        Width::W64 => wide,
        Width::W32 => u64::from(wide as u32),
    }
}

/// Sign-extends the low `bits` bits of `value` to 64 bits (`bits` of 64 or more returns `value`).
#[inline]
pub fn sign_extend(value: u64, bits: u8) -> u64 {
    match bits {
        8 => value as u8 as i8 as i64 as u64,
        16 => value as u16 as i16 as i64 as u64,
        32 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

/// Byte-order conversion of the low `bits` (16, 32 or 64) of `value`; the result is
/// zero-extended. `ToLe`/`ToBe` convert from host order (on little-endian hosts `ToLe` only
/// truncates); `Swap` always reverses the bytes.
#[inline]
pub fn endian(kind: EndianKind, bits: u8, value: u64) -> u64 {
    match (kind, bits) {
        (EndianKind::ToLe, 16) => u64::from((value as u16).to_le()),
        (EndianKind::ToLe, 32) => u64::from((value as u32).to_le()),
        (EndianKind::ToLe, _) => value.to_le(),
        (EndianKind::ToBe, 16) => u64::from((value as u16).to_be()),
        (EndianKind::ToBe, 32) => u64::from((value as u32).to_be()),
        (EndianKind::ToBe, _) => value.to_be(),
        (EndianKind::Swap, 16) => u64::from((value as u16).swap_bytes()),
        (EndianKind::Swap, 32) => u64::from((value as u32).swap_bytes()),
        (EndianKind::Swap, _) => value.swap_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN64: u64 = i64::MIN as u64;
    const NEG1: u64 = u64::MAX;

    #[test]
    fn division_edge_cases_64() {
        assert_eq!(alu64(AluOp::Div, 7, 0), 0);
        assert_eq!(alu64(AluOp::Div, 7, 2), 3);
        assert_eq!(alu64(AluOp::Div, NEG1, 2), u64::MAX / 2);
        assert_eq!(alu64(AluOp::SDiv, 7, 0), 0);
        assert_eq!(alu64(AluOp::SDiv, MIN64, NEG1), MIN64);
        assert_eq!(alu64(AluOp::SDiv, (-7i64) as u64, 2), (-3i64) as u64);
        assert_eq!(alu64(AluOp::Mod, 7, 0), 7);
        assert_eq!(alu64(AluOp::SMod, 7, 0), 7);
        assert_eq!(alu64(AluOp::SMod, MIN64, NEG1), 0);
        assert_eq!(alu64(AluOp::SMod, (-7i64) as u64, 3), (-1i64) as u64);
        assert_eq!(alu64(AluOp::SMod, 7, (-3i64) as u64), 1);
        assert_eq!(alu64(AluOp::Mod, (-7i64) as u64, 3), ((-7i64) as u64) % 3);
    }

    #[test]
    fn division_edge_cases_32() {
        let hi = 0xdead_beef_0000_0000u64;
        assert_eq!(alu32(AluOp::Div, hi | 7, 0), 0);
        assert_eq!(alu32(AluOp::Div, hi | 7, hi | 2), 3);
        assert_eq!(alu32(AluOp::SDiv, 0x8000_0000, 0xffff_ffff), 0x8000_0000);
        assert_eq!(alu32(AluOp::SDiv, hi | 0xffff_fff9, 2), 0xffff_fffd);
        assert_eq!(
            alu32(AluOp::Mod, hi | 7, 0),
            7,
            "mod by zero keeps low half"
        );
        assert_eq!(alu32(AluOp::SMod, hi | 0xffff_fff9, 0), 0xffff_fff9);
        assert_eq!(alu32(AluOp::SMod, 0x8000_0000, 0xffff_ffff), 0);
        assert_eq!(alu32(AluOp::SMod, 0xffff_fff9, 3), 0xffff_ffff);
        // The divisor's high half is ignored: 0x1_0000_0000 is zero at 32 bits.
        assert_eq!(alu32(AluOp::Div, 9, 0x1_0000_0000), 0);
    }

    #[test]
    fn shifts_mask_the_amount() {
        assert_eq!(alu64(AluOp::Lsh, 1, 65), 2);
        assert_eq!(alu64(AluOp::Rsh, 4, 66), 1);
        assert_eq!(alu64(AluOp::Arsh, MIN64, 127), NEG1);
        assert_eq!(alu32(AluOp::Lsh, 1, 33), 2);
        assert_eq!(alu32(AluOp::Rsh, 0xffff_ffff_8000_0000, 31), 1);
        assert_eq!(alu32(AluOp::Arsh, 0x8000_0000, 31), 0xffff_ffff);
        assert_eq!(alu32(AluOp::Arsh, 0x8000_0000, 63), 0xffff_ffff);
    }

    #[test]
    fn wrapping_and_zero_extension() {
        assert_eq!(alu64(AluOp::Add, NEG1, 2), 1);
        assert_eq!(alu32(AluOp::Add, 0xffff_ffff, 1), 0);
        assert_eq!(alu32(AluOp::Sub, 0, 1), 0xffff_ffff);
        assert_eq!(alu32(AluOp::Mul, 0x1_0000_0003, 0x1_0000_0005), 15);
        assert_eq!(alu32(AluOp::Or, 0xffff_0000_0000_0000, 1), 1);
        assert_eq!(alu64(AluOp::Xor, 0xff, 0x0f), 0xf0);
        assert_eq!(alu64(AluOp::And, 0xff, 0x0f), 0x0f);
    }

    #[test]
    fn neg_mov_movsx() {
        assert_eq!(neg(Width::W64, 1), NEG1);
        assert_eq!(neg(Width::W32, 1), 0xffff_ffff);
        assert_eq!(neg(Width::W32, 0x5_0000_0000), 0);
        assert_eq!(mov(Width::W32, NEG1), 0xffff_ffff);
        assert_eq!(mov(Width::W64, NEG1), NEG1);
        assert_eq!(movsx(Width::W64, 0x80, 8), 0xffff_ffff_ffff_ff80);
        assert_eq!(movsx(Width::W64, 0x7f, 8), 0x7f);
        assert_eq!(movsx(Width::W64, 0x1234_8000, 16), 0xffff_ffff_ffff_8000);
        assert_eq!(movsx(Width::W64, 0x1_8000_0000, 32), 0xffff_ffff_8000_0000);
        assert_eq!(movsx(Width::W32, 0x80, 8), 0xffff_ff80);
        assert_eq!(movsx(Width::W32, 0xffff_8000, 16), 0xffff_8000);
    }

    #[test]
    fn byte_order() {
        let v = 0x0102_0304_0506_0708u64;
        assert_eq!(endian(EndianKind::ToLe, 16, v), 0x0708);
        assert_eq!(endian(EndianKind::ToLe, 32, v), 0x0506_0708);
        assert_eq!(endian(EndianKind::ToLe, 64, v), v);
        assert_eq!(endian(EndianKind::ToBe, 16, v), 0x0807);
        assert_eq!(endian(EndianKind::ToBe, 32, v), 0x0807_0605);
        assert_eq!(endian(EndianKind::ToBe, 64, v), 0x0807_0605_0403_0201);
        assert_eq!(endian(EndianKind::Swap, 16, v), 0x0807);
        assert_eq!(endian(EndianKind::Swap, 32, v), 0x0807_0605);
        assert_eq!(endian(EndianKind::Swap, 64, v), 0x0807_0605_0403_0201);
    }
}
