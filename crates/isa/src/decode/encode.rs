//! Encoding of decoded instructions back into raw slots.

use super::{EndianKind, Instruction, Operand};
use crate::insn::{Insn, op};

impl Instruction {
    /// Encodes the instruction into one slot, or two for `lddw`.
    ///
    /// For every valid instruction `i`, `Instruction::decode` of the result yields `i` again. `Ja`
    /// uses the 16-bit form when the offset fits and `gotol` otherwise.
    pub fn encode(&self) -> Vec<Insn> {
        let one = |opcode, dst, src, off, imm| vec![Insn::new(opcode, dst, src, off, imm)];
        match *self {
            Instruction::Alu {
                width,
                op,
                dst,
                src,
            } => {
                let (x, s, imm) = split_operand(src);
                one(op.code() | x | width.alu_class(), dst, s, op.off(), imm)
            }
            Instruction::Neg { width, dst } => one(op::NEG | width.alu_class(), dst, 0, 0, 0),
            Instruction::Mov { width, dst, src } => {
                let (x, s, imm) = split_operand(src);
                one(op::MOV | x | width.alu_class(), dst, s, 0, imm)
            }
            Instruction::MovSx {
                width,
                dst,
                src,
                bits,
            } => one(
                op::MOV | op::X | width.alu_class(),
                dst,
                src,
                i16::from(bits),
                0,
            ),
            Instruction::AddrSpaceCast {
                dst,
                src,
                dst_as,
                src_as,
            } => one(
                op::ALU64 | op::MOV | op::X,
                dst,
                src,
                op::ADDR_SPACE_CAST,
                ((u32::from(dst_as) << 16) | u32::from(src_as)) as i32,
            ),
            Instruction::Endian { dst, bits, kind } => {
                let opcode = match kind {
                    EndianKind::ToLe => op::ALU | op::END | op::TO_LE,
                    EndianKind::ToBe => op::ALU | op::END | op::TO_BE,
                    EndianKind::Swap => op::ALU64 | op::END,
                };
                one(opcode, dst, 0, 0, i32::from(bits))
            }
            Instruction::LoadImm64 { dst, pseudo, imm } => vec![
                Insn::new(op::LD | op::IMM | op::DW, dst, pseudo, 0, imm as u32 as i32),
                Insn::new(0, 0, 0, 0, (imm >> 32) as u32 as i32),
            ],
            Instruction::Load {
                size,
                dst,
                src,
                off,
                sign_extend,
            } => {
                let mode = if sign_extend { op::MEMSX } else { op::MEM };
                one(op::LDX | mode | size.opcode_bits(), dst, src, off, 0)
            }
            Instruction::Store {
                size,
                dst,
                off,
                src,
            } => match src {
                Operand::Imm(imm) => one(op::ST | op::MEM | size.opcode_bits(), dst, 0, off, imm),
                Operand::Reg(r) => one(op::STX | op::MEM | size.opcode_bits(), dst, r, off, 0),
            },
            Instruction::Atomic {
                size,
                op: aop,
                fetch,
                dst,
                src,
                off,
            } => one(
                op::STX | op::ATOMIC | size.opcode_bits(),
                dst,
                src,
                off,
                aop.imm(fetch),
            ),
            Instruction::LoadAcquire {
                size,
                dst,
                src,
                off,
            } => one(
                op::STX | op::ATOMIC | size.opcode_bits(),
                dst,
                src,
                off,
                op::LOAD_ACQ,
            ),
            Instruction::StoreRelease {
                size,
                dst,
                src,
                off,
            } => one(
                op::STX | op::ATOMIC | size.opcode_bits(),
                dst,
                src,
                off,
                op::STORE_REL,
            ),
            Instruction::Ja { off } => match i16::try_from(off) {
                Ok(o) => one(op::JMP | op::JA, 0, 0, o, 0),
                Err(_) => one(op::JMP32 | op::JA, 0, 0, 0, off),
            },
            Instruction::Jump {
                width,
                op: jop,
                dst,
                src,
                off,
            } => {
                let (x, s, imm) = split_operand(src);
                one(jop.code() | x | width.jmp_class(), dst, s, off, imm)
            }
            Instruction::MayGoto { off } => one(op::JMP | op::JCOND, 0, 0, off, 0),
            Instruction::Call { helper } => one(op::JMP | op::CALL, 0, 0, 0, helper),
            Instruction::CallLocal { imm } => one(op::JMP | op::CALL, 0, op::PSEUDO_CALL, 0, imm),
            Instruction::CallKfunc { btf_id } => {
                one(op::JMP | op::CALL, 0, op::PSEUDO_KFUNC_CALL, 0, btf_id)
            }
            Instruction::Callx { reg } => one(op::JMP | op::CALL | op::X, reg, 0, 0, 0),
            Instruction::Exit => one(op::JMP | op::EXIT, 0, 0, 0, 0),
        }
    }
}

/// Splits an operand into (source bit, src field, imm field).
fn split_operand(src: Operand) -> (u8, u8, i32) {
    match src {
        Operand::Reg(r) => (op::X, r, 0),
        Operand::Imm(imm) => (op::K, 0, imm),
    }
}

/// Encodes a sequence of instructions into raw slots.
pub fn encode_all(insns: &[Instruction]) -> Vec<Insn> {
    insns.iter().flat_map(Instruction::encode).collect()
}
