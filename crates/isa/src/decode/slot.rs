//! Decoding of a single instruction (one slot, or two for `lddw`): opcode, reserved fields and
//! register checks.

use super::{AluOp, AtomicOp, EndianKind, Instruction, JmpOp, Operand, Size, Width};
use crate::insn::{Insn, op};

/// Highest valid register number (r10, the read-only frame pointer).
pub const MAX_REG: u8 = 10;

fn reg(what: &str, r: u8) -> Result<u8, String> {
    if r > MAX_REG {
        Err(format!("{what} register r{r} out of range (max r10)"))
    } else {
        Ok(r)
    }
}

fn zero<T: Into<i64> + Copy>(what: &str, value: T) -> Result<(), String> {
    let v: i64 = value.into();
    if v != 0 {
        Err(format!("reserved {what} field must be 0, found {v}"))
    } else {
        Ok(())
    }
}

fn unknown(i: Insn) -> String {
    format!("unknown opcode {:#04x}", i.opcode)
}

impl Instruction {
    /// Decodes one instruction from its first slot and, for `lddw`, the following slot.
    ///
    /// Checks encodings, reserved fields and register numbers but not control-flow targets (that
    /// needs the whole program; see [`super::Program::decode`]). The error is a human-readable reason.
    pub fn decode(first: Insn, second: Option<Insn>) -> Result<Instruction, String> {
        match first.class() {
            op::LD => decode_ld(first, second),
            op::LDX => decode_ldx(first),
            op::ST => decode_st(first),
            op::STX => decode_stx(first),
            op::ALU => decode_alu(first, Width::W32),
            op::ALU64 => decode_alu(first, Width::W64),
            op::JMP => decode_jmp(first, Width::W64),
            _ => decode_jmp(first, Width::W32),
        }
    }
}

fn decode_ld(i: Insn, second: Option<Insn>) -> Result<Instruction, String> {
    let mode = i.opcode & 0xe0;
    if mode == op::ABS || mode == op::IND {
        return Err(format!(
            "legacy packet access (BPF_ABS/BPF_IND, opcode {:#04x}) is not supported",
            i.opcode
        ));
    }
    if !i.is_lddw() {
        return Err(unknown(i));
    }
    let dst = reg("destination", i.dst)?;
    zero("off", i.off)?;
    if i.src > op::PSEUDO_MAP_IDX_VALUE {
        return Err(format!("lddw with unknown pseudo source {}", i.src));
    }
    let Some(next) = second else {
        return Err("lddw is missing its second slot".to_string());
    };
    if next.opcode != 0 || next.dst != 0 || next.src != 0 || next.off != 0 {
        return Err(format!(
            "malformed second slot of lddw: opcode, registers and offset must be 0, found {next:?}"
        ));
    }
    Ok(Instruction::LoadImm64 {
        dst,
        pseudo: i.src,
        imm: u64::from(i.imm as u32) | (u64::from(next.imm as u32) << 32),
    })
}

fn decode_ldx(i: Insn) -> Result<Instruction, String> {
    let size = Size::from_opcode(i.opcode);
    let sign_extend = match i.opcode & 0xe0 {
        op::MEM => false,
        op::MEMSX if size != Size::DW => true,
        _ => return Err(unknown(i)),
    };
    let dst = reg("destination", i.dst)?;
    let src = reg("source", i.src)?;
    zero("imm", i.imm)?;
    Ok(Instruction::Load {
        size,
        dst,
        src,
        off: i.off,
        sign_extend,
    })
}

fn decode_st(i: Insn) -> Result<Instruction, String> {
    if i.opcode & 0xe0 != op::MEM {
        return Err(unknown(i));
    }
    let dst = reg("destination", i.dst)?;
    zero("src", i.src)?;
    Ok(Instruction::Store {
        size: Size::from_opcode(i.opcode),
        dst,
        off: i.off,
        src: Operand::Imm(i.imm),
    })
}

fn decode_stx(i: Insn) -> Result<Instruction, String> {
    let size = Size::from_opcode(i.opcode);
    let mode = i.opcode & 0xe0;
    if mode != op::MEM && mode != op::ATOMIC {
        return Err(unknown(i));
    }
    let dst = reg("destination", i.dst)?;
    let src = reg("source", i.src)?;
    let off = i.off;
    if mode == op::MEM {
        zero("imm", i.imm)?;
        return Ok(Instruction::Store {
            size,
            dst,
            off,
            src: Operand::Reg(src),
        });
    }
    match i.imm {
        op::LOAD_ACQ => {
            return Ok(Instruction::LoadAcquire {
                size,
                dst,
                src,
                off,
            });
        }
        op::STORE_REL => {
            return Ok(Instruction::StoreRelease {
                size,
                dst,
                src,
                off,
            });
        }
        _ => {}
    }
    let aop = match i.imm & !op::FETCH {
        _ if i.imm == op::XCHG => AtomicOp::Xchg,
        _ if i.imm == op::CMPXCHG => AtomicOp::Cmpxchg,
        x if x == i32::from(op::ADD) => AtomicOp::Add,
        x if x == i32::from(op::OR) => AtomicOp::Or,
        x if x == i32::from(op::AND) => AtomicOp::And,
        x if x == i32::from(op::XOR) => AtomicOp::Xor,
        _ => return Err(format!("unknown atomic operation (imm {:#x})", i.imm)),
    };
    if !matches!(size, Size::W | Size::DW) {
        return Err(format!(
            "atomic read-modify-write on {} bytes (only 4 and 8 are defined)",
            size.bytes()
        ));
    }
    Ok(Instruction::Atomic {
        size,
        op: aop,
        fetch: i.imm & op::FETCH != 0,
        dst,
        src,
        off,
    })
}

fn decode_alu(i: Insn, width: Width) -> Result<Instruction, String> {
    let code = i.opcode & 0xf0;
    let is_x = i.opcode & op::X != 0;
    let dst = reg("destination", i.dst)?;
    match code {
        op::NEG => {
            if is_x {
                return Err(unknown(i));
            }
            zero("src", i.src)?;
            zero("off", i.off)?;
            zero("imm", i.imm)?;
            Ok(Instruction::Neg { width, dst })
        }
        op::END => {
            let kind = match (width, is_x) {
                (Width::W32, false) => EndianKind::ToLe,
                (Width::W32, true) => EndianKind::ToBe,
                (Width::W64, false) => EndianKind::Swap,
                (Width::W64, true) => return Err(unknown(i)),
            };
            zero("src", i.src)?;
            zero("off", i.off)?;
            let bits = match i.imm {
                16 => 16,
                32 => 32,
                64 => 64,
                other => {
                    return Err(format!(
                        "byte swap width must be 16, 32 or 64, found {other}"
                    ));
                }
            };
            Ok(Instruction::Endian { dst, bits, kind })
        }
        op::MOV if is_x => {
            let src = reg("source", i.src)?;
            match (width, i.off) {
                (Width::W64, op::ADDR_SPACE_CAST) => Ok(Instruction::AddrSpaceCast {
                    dst,
                    src,
                    dst_as: ((i.imm as u32) >> 16) as u16,
                    src_as: i.imm as u32 as u16,
                }),
                (_, 0) => {
                    zero("imm", i.imm)?;
                    Ok(Instruction::Mov {
                        width,
                        dst,
                        src: Operand::Reg(src),
                    })
                }
                (_, 8) | (_, 16) | (Width::W64, 32) => {
                    zero("imm", i.imm)?;
                    Ok(Instruction::MovSx {
                        width,
                        dst,
                        src,
                        bits: i.off as u8,
                    })
                }
                (_, other) => Err(format!(
                    "invalid mov offset {other} (0, 8, 16{} allowed)",
                    if width == Width::W64 {
                        ", 32, or 1 for addr_space_cast"
                    } else {
                        ""
                    }
                )),
            }
        }
        op::MOV => {
            zero("src", i.src)?;
            zero("off", i.off)?;
            Ok(Instruction::Mov {
                width,
                dst,
                src: Operand::Imm(i.imm),
            })
        }
        _ => {
            let aop = AluOp::ALL
                .into_iter()
                .find(|a| a.code() == code)
                .ok_or_else(|| unknown(i))?;
            let aop = match (aop, i.off) {
                (AluOp::Div, 1) => AluOp::SDiv,
                (AluOp::Mod, 1) => AluOp::SMod,
                (AluOp::Div | AluOp::Mod, 0) => aop,
                (AluOp::Div | AluOp::Mod, other) => {
                    return Err(format!(
                        "invalid offset {other} for div/mod (0 unsigned, 1 signed)"
                    ));
                }
                (_, off) => {
                    zero("off", off)?;
                    aop
                }
            };
            let src = operand(i, is_x)?;
            Ok(Instruction::Alu {
                width,
                op: aop,
                dst,
                src,
            })
        }
    }
}

/// The second operand of an ALU or conditional jump: the src register (imm must be 0) or imm (src
/// must be 0).
fn operand(i: Insn, is_x: bool) -> Result<Operand, String> {
    if is_x {
        zero("imm", i.imm)?;
        Ok(Operand::Reg(reg("source", i.src)?))
    } else {
        zero("src", i.src)?;
        Ok(Operand::Imm(i.imm))
    }
}

fn decode_jmp(i: Insn, width: Width) -> Result<Instruction, String> {
    let code = i.opcode & 0xf0;
    let is_x = i.opcode & op::X != 0;
    let wide = width == Width::W64;
    match code {
        op::JA if !is_x => {
            zero("src", i.src)?;
            zero("dst", i.dst)?;
            if wide {
                zero("imm", i.imm)?;
                Ok(Instruction::Ja {
                    off: i32::from(i.off),
                })
            } else {
                zero("off", i.off)?;
                Ok(Instruction::Ja { off: i.imm })
            }
        }
        op::CALL if wide && is_x => {
            zero("src", i.src)?;
            zero("off", i.off)?;
            zero("imm", i.imm)?;
            Ok(Instruction::Callx {
                reg: reg("call target", i.dst)?,
            })
        }
        op::CALL if wide => {
            zero("dst", i.dst)?;
            zero("off", i.off)?;
            match i.src {
                0 => Ok(Instruction::Call { helper: i.imm }),
                op::PSEUDO_CALL => Ok(Instruction::CallLocal { imm: i.imm }),
                op::PSEUDO_KFUNC_CALL => Ok(Instruction::CallKfunc { btf_id: i.imm }),
                other => Err(format!("call with unknown source kind {other}")),
            }
        }
        op::EXIT if wide && !is_x => {
            zero("src", i.src)?;
            zero("dst", i.dst)?;
            zero("off", i.off)?;
            zero("imm", i.imm)?;
            Ok(Instruction::Exit)
        }
        op::JCOND if wide && !is_x => {
            if i.src != 0 {
                return Err(format!(
                    "conditional pseudo jump with source kind {} (only 0, may_goto, is defined)",
                    i.src
                ));
            }
            zero("dst", i.dst)?;
            zero("imm", i.imm)?;
            Ok(Instruction::MayGoto { off: i.off })
        }
        _ => {
            let jop = JmpOp::from_code(code).ok_or_else(|| unknown(i))?;
            let dst = reg("destination", i.dst)?;
            let src = operand(i, is_x)?;
            Ok(Instruction::Jump {
                width,
                op: jop,
                dst,
                src,
                off: i.off,
            })
        }
    }
}
