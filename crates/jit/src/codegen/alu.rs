//! ALU instructions: arithmetic, shifts, division, moves, sign extension, byte swaps and `lddw`.
//!
//! 32-bit operations use 32-bit x86 instructions, which zero the upper half of the destination as
//! BPF requires. x86 masks shift counts to 6 (64-bit) or 5 (32-bit) bits, exactly as BPF does.
//! Division never traps: a zero divisor and the `MIN / -1` case are branched around.

use dynasmrt::{DynasmApi, DynasmLabelApi};
use kflex_isa::decode::{AluOp, EndianKind, Operand, Width};
use kflex_isa::op;

use super::{Emitter, reg, x64, x86};
use crate::error::{JitError, JitFaultKind};

/// Code address of slot `pc`, in the interpreter's encoding (see [`crate::CODE_ADDRESS_BASE`]).
pub(crate) fn code_address(pc: usize) -> u64 {
    crate::CODE_ADDRESS_BASE | ((pc as u64 & 0x1fff_ffff) << 3)
}

/// `dst = dst op src`.
pub(super) fn alu(e: &mut Emitter<'_>, width: Width, op: AluOp, dst: u8, src: Operand) {
    match op {
        AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => shift(e, width, op, dst, src),
        AluOp::Div | AluOp::SDiv | AluOp::Mod | AluOp::SMod => divide(e, width, op, dst, src),
        _ => match src {
            Operand::Reg(s) => binary_reg(e, width, op, reg(dst), reg(s)),
            Operand::Imm(i) => binary_imm(e, width, op, reg(dst), i),
        },
    }
}

fn binary_reg(e: &mut Emitter<'_>, width: Width, op: AluOp, d: u8, s: u8) {
    let o = &mut e.ops;
    match (width, op) {
        (Width::W64, AluOp::Add) => x64!(o ; add Rq(d), Rq(s)),
        (Width::W64, AluOp::Sub) => x64!(o ; sub Rq(d), Rq(s)),
        (Width::W64, AluOp::Mul) => x64!(o ; imul Rq(d), Rq(s)),
        (Width::W64, AluOp::Or) => x64!(o ; or Rq(d), Rq(s)),
        (Width::W64, AluOp::And) => x64!(o ; and Rq(d), Rq(s)),
        (Width::W64, AluOp::Xor) => x64!(o ; xor Rq(d), Rq(s)),
        (Width::W32, AluOp::Add) => x64!(o ; add Rd(d), Rd(s)),
        (Width::W32, AluOp::Sub) => x64!(o ; sub Rd(d), Rd(s)),
        (Width::W32, AluOp::Mul) => x64!(o ; imul Rd(d), Rd(s)),
        (Width::W32, AluOp::Or) => x64!(o ; or Rd(d), Rd(s)),
        (Width::W32, AluOp::And) => x64!(o ; and Rd(d), Rd(s)),
        (Width::W32, AluOp::Xor) => x64!(o ; xor Rd(d), Rd(s)),
        // Shifts and divisions are routed elsewhere by `alu`.
        _ => {}
    }
}

fn binary_imm(e: &mut Emitter<'_>, width: Width, op: AluOp, d: u8, i: i32) {
    if super::peephole::alu_imm8(e, width, op, d, i) {
        return;
    }
    let o = &mut e.ops;
    match (width, op) {
        (Width::W64, AluOp::Add) => x64!(o ; add Rq(d), i),
        (Width::W64, AluOp::Sub) => x64!(o ; sub Rq(d), i),
        (Width::W64, AluOp::Mul) => x64!(o ; imul Rq(d), Rq(d), i),
        (Width::W64, AluOp::Or) => x64!(o ; or Rq(d), i),
        (Width::W64, AluOp::And) => x64!(o ; and Rq(d), i),
        (Width::W64, AluOp::Xor) => x64!(o ; xor Rq(d), i),
        (Width::W32, AluOp::Add) => x64!(o ; add Rd(d), i),
        (Width::W32, AluOp::Sub) => x64!(o ; sub Rd(d), i),
        (Width::W32, AluOp::Mul) => x64!(o ; imul Rd(d), Rd(d), i),
        (Width::W32, AluOp::Or) => x64!(o ; or Rd(d), i),
        (Width::W32, AluOp::And) => x64!(o ; and Rd(d), i),
        (Width::W32, AluOp::Xor) => x64!(o ; xor Rd(d), i),
        _ => {}
    }
}

/// Shift of `d` by `cl` at the given width.
fn shift_cl(e: &mut Emitter<'_>, width: Width, op: AluOp, d: u8) {
    let o = &mut e.ops;
    match (width, op) {
        (Width::W64, AluOp::Lsh) => x64!(o ; shl Rq(d), cl),
        (Width::W64, AluOp::Rsh) => x64!(o ; shr Rq(d), cl),
        (Width::W64, _) => x64!(o ; sar Rq(d), cl),
        (Width::W32, AluOp::Lsh) => x64!(o ; shl Rd(d), cl),
        (Width::W32, AluOp::Rsh) => x64!(o ; shr Rd(d), cl),
        (Width::W32, _) => x64!(o ; sar Rd(d), cl),
    }
}

fn shift(e: &mut Emitter<'_>, width: Width, op: AluOp, dst: u8, src: Operand) {
    let d = reg(dst);
    match src {
        Operand::Imm(i) => {
            let n = match width {
                Width::W64 => (i & 63) as i8,
                Width::W32 => (i & 31) as i8,
            };
            let o = &mut e.ops;
            match (width, op) {
                (Width::W64, AluOp::Lsh) => x64!(o ; shl Rq(d), n),
                (Width::W64, AluOp::Rsh) => x64!(o ; shr Rq(d), n),
                (Width::W64, _) => x64!(o ; sar Rq(d), n),
                (Width::W32, AluOp::Lsh) => x64!(o ; shl Rd(d), n),
                (Width::W32, AluOp::Rsh) => x64!(o ; shr Rd(d), n),
                (Width::W32, _) => x64!(o ; sar Rd(d), n),
            }
        }
        Operand::Reg(s) => {
            let s = reg(s);
            if s == x86::RCX {
                shift_cl(e, width, op, d);
            } else if d == x86::RCX {
                // The count must be in cl, which holds the value being shifted: shift a copy.
                x64!(e.ops ; mov r11, rcx ; mov rcx, Rq(s));
                shift_cl(e, width, op, x86::R11);
                x64!(e.ops ; mov rcx, r11);
            } else {
                x64!(e.ops ; mov r11, rcx ; mov rcx, Rq(s));
                shift_cl(e, width, op, d);
                x64!(e.ops ; mov rcx, r11);
            }
        }
    }
}

/// Division and modulo with BPF's edge cases (see `kflex_interp::alu`). The operands go through
/// rax/rdx (saved on the native stack around the sequence); the result is built in r11.
fn divide(e: &mut Emitter<'_>, width: Width, op: AluOp, dst: u8, src: Operand) {
    let d = reg(dst);
    let o = &mut e.ops;
    match src {
        Operand::Reg(s) => x64!(o ; mov r11, Rq(reg(s))),
        Operand::Imm(i) => x64!(o ; mov r11, i),
    }
    let signed = matches!(op, AluOp::SDiv | AluOp::SMod);
    let quotient = matches!(op, AluOp::Div | AluOp::SDiv);
    x64!(o ; push rax ; push rdx ; mov rax, Rq(d));
    match width {
        Width::W64 => {
            x64!(o ; test r11, r11 ; jz >zero);
            if signed {
                x64!(o ; cmp r11, -1 ; je >minus_one ; cqo ; idiv r11);
            } else {
                x64!(o ; xor edx, edx ; div r11);
            }
            if quotient {
                x64!(o ; mov r11, rax);
            } else {
                x64!(o ; mov r11, rdx);
            }
            x64!(o ; jmp >done);
            if signed {
                // x / -1 is -x (wrapping: MIN stays MIN); x % -1 is 0.
                x64!(o ; minus_one:);
                if quotient {
                    x64!(o ; neg rax ; mov r11, rax);
                } else {
                    x64!(o ; xor r11d, r11d);
                }
                x64!(o ; jmp >done);
            }
            // Division by zero yields 0; modulo by zero keeps the dividend.
            x64!(o ; zero:);
            if quotient {
                x64!(o ; xor r11d, r11d);
            } else {
                x64!(o ; mov r11, rax);
            }
            x64!(o ; done: ; pop rdx ; pop rax ; mov Rq(d), r11);
        }
        Width::W32 => {
            x64!(o ; test r11d, r11d ; jz >zero);
            if signed {
                x64!(o ; cmp r11d, -1 ; je >minus_one ; cdq ; idiv r11d);
            } else {
                x64!(o ; xor edx, edx ; div r11d);
            }
            if quotient {
                x64!(o ; mov r11d, eax);
            } else {
                x64!(o ; mov r11d, edx);
            }
            x64!(o ; jmp >done);
            if signed {
                x64!(o ; minus_one:);
                if quotient {
                    x64!(o ; neg eax ; mov r11d, eax);
                } else {
                    x64!(o ; xor r11d, r11d);
                }
                x64!(o ; jmp >done);
            }
            x64!(o ; zero:);
            if quotient {
                x64!(o ; xor r11d, r11d);
            } else {
                x64!(o ; mov r11d, eax);
            }
            x64!(o ; done: ; pop rdx ; pop rax ; mov Rd(d), r11d);
        }
    }
}

/// `dst = -dst`.
pub(super) fn neg(e: &mut Emitter<'_>, width: Width, dst: u8) {
    let d = reg(dst);
    match width {
        Width::W64 => x64!(e.ops ; neg Rq(d)),
        Width::W32 => x64!(e.ops ; neg Rd(d)),
    }
}

/// `dst = src` (32-bit moves zero-extend).
pub(super) fn mov(e: &mut Emitter<'_>, width: Width, dst: u8, src: Operand) {
    let d = reg(dst);
    let o = &mut e.ops;
    match (width, src) {
        (Width::W64, Operand::Reg(s)) => {
            if reg(s) != d {
                x64!(o ; mov Rq(d), Rq(reg(s)));
            }
        }
        (Width::W32, Operand::Reg(s)) => x64!(o ; mov Rd(d), Rd(reg(s))),
        (_, Operand::Imm(0)) => x64!(o ; xor Rd(d), Rd(d)),
        (Width::W64, Operand::Imm(i)) if i > 0 => x64!(o ; mov Rd(d), i),
        (Width::W64, Operand::Imm(i)) => x64!(o ; mov Rq(d), i),
        (Width::W32, Operand::Imm(i)) => x64!(o ; mov Rd(d), i),
    }
}

/// `dst = (s8/s16/s32) src`, then truncated to the operation width.
pub(super) fn movsx(e: &mut Emitter<'_>, width: Width, dst: u8, src: u8, bits: u8) {
    let (d, s) = (reg(dst), reg(src));
    let o = &mut e.ops;
    match (width, bits) {
        (Width::W64, 8) => x64!(o ; movsx Rq(d), Rb(s)),
        (Width::W64, 16) => x64!(o ; movsx Rq(d), Rw(s)),
        (Width::W64, 32) => x64!(o ; movsxd Rq(d), Rd(s)),
        (Width::W32, 8) => x64!(o ; movsx Rd(d), Rb(s)),
        (Width::W32, 16) => x64!(o ; movsx Rd(d), Rw(s)),
        // Sign-extending 32 bits to 32 bits is a plain 32-bit move; other widths keep the value.
        (Width::W32, _) => x64!(o ; mov Rd(d), Rd(s)),
        (Width::W64, _) => {
            if d != s {
                x64!(o ; mov Rq(d), Rq(s));
            }
        }
    }
}

/// Byte-order conversion (the host is little-endian: `ToLe` truncates, `ToBe` swaps).
pub(super) fn endian(e: &mut Emitter<'_>, dst: u8, bits: u8, kind: EndianKind) {
    let d = reg(dst);
    let o = &mut e.ops;
    match (kind, bits) {
        (EndianKind::ToLe, 16) => x64!(o ; movzx Rd(d), Rw(d)),
        (EndianKind::ToLe, 32) => x64!(o ; mov Rd(d), Rd(d)),
        (EndianKind::ToLe, _) => {}
        (_, 16) => x64!(o ; rol Rw(d), 8 ; movzx Rd(d), Rw(d)),
        (_, 32) => x64!(o ; bswap Rd(d)),
        (_, _) => x64!(o ; bswap Rq(d)),
    }
}

/// Loads a 64-bit immediate into `d`, with the shortest encoding.
pub(super) fn load_u64(e: &mut Emitter<'_>, d: u8, v: u64) {
    let o = &mut e.ops;
    if v == 0 {
        x64!(o ; xor Rd(d), Rd(d));
    } else if let Ok(small) = u32::try_from(v) {
        x64!(o ; mov Rd(d), small as i32);
    } else if let Ok(signed) = i32::try_from(v as i64) {
        x64!(o ; mov Rq(d), signed);
    } else {
        x64!(o ; mov Rq(d), QWORD v as i64);
    }
}

/// `lddw`: plain immediates, `PSEUDO_FUNC` code addresses; other pseudo sources fault when
/// executed (as in the interpreter: the loader should have resolved them).
pub(super) fn load_imm64(
    e: &mut Emitter<'_>,
    pc: usize,
    dst: u8,
    pseudo: u8,
    imm: u64,
) -> Result<(), JitError> {
    match pseudo {
        0 => load_u64(e, reg(dst), imm),
        op::PSEUDO_FUNC => {
            let t = e.jump_target(pc, i64::from(imm as u32 as i32))?;
            load_u64(e, reg(dst), code_address(t));
        }
        _ => {
            let stub = e.static_fault(pc, JitFaultKind::UnresolvedPseudo { pseudo, imm });
            x64!(e.ops ; jmp =>stub);
        }
    }
    Ok(())
}
