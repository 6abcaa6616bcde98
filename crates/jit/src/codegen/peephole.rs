//! Shorter instruction choices for common operand shapes, with exactly the flags or results of
//! the general form.
//!
//! dynasm encodes an immediate it only knows at run time in its 32-bit form; these helpers encode
//! the forms a compiler would: `test r, r` for a comparison with zero (3 bytes instead of 7:
//! both clear CF and OF and set ZF, SF and PF from `r`, and no BPF condition reads AF), and the
//! sign-extended 8-bit immediate where the value fits.

use dynasmrt::DynasmApi;
use kflex_isa::decode::{AluOp, Width};

use super::{Emitter, x64};

/// REX prefix (W for 64-bit operands, R and B from the register numbers), or nothing when no
/// bit is needed.
fn rex(out: &mut Vec<u8>, wide: bool, r: u8, b: u8) {
    let rex = 0x40 | (u8::from(wide) << 3) | (((r >> 3) & 1) << 2) | ((b >> 3) & 1);
    if rex != 0x40 {
        out.push(rex);
    }
}

/// `test d, d`.
fn test_self(width: Width, d: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(3);
    rex(&mut out, width == Width::W64, d, d);
    out.extend_from_slice(&[0x85, 0xc0 | ((d & 7) << 3) | (d & 7)]);
    out
}

/// `<op> d, imm8` (opcode 0x83 with extension `ext`; the byte is sign-extended).
fn group1_imm8(width: Width, ext: u8, d: u8, imm: i8) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    rex(&mut out, width == Width::W64, 0, d);
    out.extend_from_slice(&[0x83, 0xc0 | (ext << 3) | (d & 7), imm as u8]);
    out
}

/// `cmp d, imm` at `width`, in its shortest form with the same flags.
pub(super) fn cmp_imm(e: &mut Emitter<'_>, width: Width, d: u8, imm: i32) {
    let bytes = match (imm, i8::try_from(imm)) {
        (0, _) => test_self(width, d),
        (_, Ok(b)) => group1_imm8(width, 7, d, b),
        (_, Err(_)) => {
            let o = &mut e.ops;
            match width {
                Width::W64 => x64!(o ; cmp Rq(d), imm),
                Width::W32 => x64!(o ; cmp Rd(d), imm),
            }
            return;
        }
    };
    e.ops.extend(bytes);
}

/// `d = d op imm` for add, sub, and, or and xor at `width` with an immediate that fits in a
/// sign-extended byte; false (nothing emitted) for anything else.
pub(super) fn alu_imm8(e: &mut Emitter<'_>, width: Width, op: AluOp, d: u8, imm: i32) -> bool {
    let Ok(b) = i8::try_from(imm) else {
        return false;
    };
    let ext = match op {
        AluOp::Add => 0,
        AluOp::Or => 1,
        AluOp::And => 4,
        AluOp::Sub => 5,
        AluOp::Xor => 6,
        _ => return false,
    };
    e.ops.extend(group1_imm8(width, ext, d, b));
    true
}

#[cfg(test)]
mod tests {
    use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Register};

    use super::*;

    fn decode(bytes: &[u8]) -> Instruction {
        let insn = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE).decode();
        assert_eq!(insn.len(), bytes.len(), "{bytes:02x?}");
        insn
    }

    fn gpr(width: Width, n: u8) -> Register {
        let base = match width {
            Width::W64 => Register::RAX,
            Width::W32 => Register::EAX,
        };
        // iced numbers the general registers of one width consecutively from rax/eax.
        let r = base as u32 + u32::from(n);
        Register::values().find(|&x| x as u32 == r).unwrap()
    }

    #[test]
    fn every_register_encodes_to_the_intended_instruction() {
        for width in [Width::W64, Width::W32] {
            let wide = width == Width::W64;
            for d in 0..16u8 {
                let t = decode(&test_self(width, d));
                let code = if wide {
                    Code::Test_rm64_r64
                } else {
                    Code::Test_rm32_r32
                };
                assert_eq!(t.code(), code);
                assert_eq!(
                    (t.op0_register(), t.op1_register()),
                    (gpr(width, d), gpr(width, d))
                );
                for (ext, c64, c32) in [
                    (0, Code::Add_rm64_imm8, Code::Add_rm32_imm8),
                    (1, Code::Or_rm64_imm8, Code::Or_rm32_imm8),
                    (4, Code::And_rm64_imm8, Code::And_rm32_imm8),
                    (5, Code::Sub_rm64_imm8, Code::Sub_rm32_imm8),
                    (6, Code::Xor_rm64_imm8, Code::Xor_rm32_imm8),
                    (7, Code::Cmp_rm64_imm8, Code::Cmp_rm32_imm8),
                ] {
                    for imm in [-128i8, -1, 0, 5, 127] {
                        let i = decode(&group1_imm8(width, ext, d, imm));
                        assert_eq!(i.code(), if wide { c64 } else { c32 });
                        assert_eq!(i.op0_register(), gpr(width, d));
                        assert_eq!(i.immediate(1) as i64, i64::from(imm));
                    }
                }
            }
        }
    }
}
