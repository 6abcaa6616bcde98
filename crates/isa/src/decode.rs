//! Checked decoding of eBPF programs into [`Instruction`]s, and the inverse encoder.
//!
//! [`Program::decode`] validates a whole slice of raw slots: every opcode must be defined by RFC 9669
//! (cpu v1..v4) or by the Linux extensions kflex supports (`may_goto`, `addr_space_cast`,
//! load-acquire/store-release, `gotol`, `callx`), every reserved field must be zero, every used register
//! must be r0..r10, and every control-flow target must land on the first slot of an instruction inside
//! the program. Decoding never panics, whatever the input.

use crate::insn::{Insn, op};

/// Operand width of an ALU or jump instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Width {
    /// 32-bit (`BPF_ALU`, `BPF_JMP32`): the result is zero-extended.
    W32,
    /// 64-bit (`BPF_ALU64`, `BPF_JMP`).
    W64,
}

impl Width {
    /// The instruction class of an ALU instruction of this width.
    pub const fn alu_class(self) -> u8 {
        match self {
            Width::W32 => op::ALU,
            Width::W64 => op::ALU64,
        }
    }

    /// The instruction class of a conditional jump of this width.
    pub const fn jmp_class(self) -> u8 {
        match self {
            Width::W32 => op::JMP32,
            Width::W64 => op::JMP,
        }
    }
}

/// Size of a memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// 1 byte (`u8`).
    B,
    /// 2 bytes (`u16`).
    H,
    /// 4 bytes (`u32`).
    W,
    /// 8 bytes (`u64`).
    DW,
}

impl Size {
    /// Number of bytes accessed (1, 2, 4 or 8).
    pub const fn bytes(self) -> u8 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    /// The size bits of the opcode (`BPF_B`, `BPF_H`, `BPF_W`, `BPF_DW`).
    pub const fn opcode_bits(self) -> u8 {
        match self {
            Size::B => op::B,
            Size::H => op::H,
            Size::W => op::W,
            Size::DW => op::DW,
        }
    }

    /// Extracts the size from a load/store opcode.
    pub const fn from_opcode(opcode: u8) -> Size {
        match opcode & 0x18 {
            op::B => Size::B,
            op::H => Size::H,
            op::W => Size::W,
            _ => Size::DW,
        }
    }
}

/// Second operand of an ALU, store or conditional-jump instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    /// A register r0..r10 (`BPF_X`).
    Reg(u8),
    /// A signed 32-bit immediate (`BPF_K`), sign-extended for 64-bit operations.
    Imm(i32),
}

/// Binary ALU operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// Wrapping addition.
    Add,
    /// Wrapping subtraction.
    Sub,
    /// Wrapping multiplication.
    Mul,
    /// Unsigned division (division by zero yields 0).
    Div,
    /// Signed division (off = 1).
    SDiv,
    /// Bitwise or.
    Or,
    /// Bitwise and.
    And,
    /// Left shift (amount masked to the width).
    Lsh,
    /// Logical right shift.
    Rsh,
    /// Unsigned modulo (modulo zero leaves dst unchanged).
    Mod,
    /// Signed modulo (off = 1).
    SMod,
    /// Bitwise exclusive or.
    Xor,
    /// Arithmetic right shift.
    Arsh,
}

impl AluOp {
    /// All binary ALU operations.
    pub const ALL: [AluOp; 13] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::SDiv,
        AluOp::Or,
        AluOp::And,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Mod,
        AluOp::SMod,
        AluOp::Xor,
        AluOp::Arsh,
    ];

    /// The operation bits of the opcode (high nibble).
    pub const fn code(self) -> u8 {
        match self {
            AluOp::Add => op::ADD,
            AluOp::Sub => op::SUB,
            AluOp::Mul => op::MUL,
            AluOp::Div | AluOp::SDiv => op::DIV,
            AluOp::Or => op::OR,
            AluOp::And => op::AND,
            AluOp::Lsh => op::LSH,
            AluOp::Rsh => op::RSH,
            AluOp::Mod | AluOp::SMod => op::MOD,
            AluOp::Xor => op::XOR,
            AluOp::Arsh => op::ARSH,
        }
    }

    /// The `off` field this operation is encoded with (1 for the signed division forms, else 0).
    pub const fn off(self) -> i16 {
        match self {
            AluOp::SDiv | AluOp::SMod => 1,
            _ => 0,
        }
    }
}

/// Conditional jump comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JmpOp {
    /// `==`
    Eq,
    /// `>` unsigned
    Gt,
    /// `>=` unsigned
    Ge,
    /// `dst & src != 0`
    Set,
    /// `!=`
    Ne,
    /// `>` signed
    Sgt,
    /// `>=` signed
    Sge,
    /// `<` unsigned
    Lt,
    /// `<=` unsigned
    Le,
    /// `<` signed
    Slt,
    /// `<=` signed
    Sle,
}

impl JmpOp {
    /// All conditional jump comparisons.
    pub const ALL: [JmpOp; 11] = [
        JmpOp::Eq,
        JmpOp::Gt,
        JmpOp::Ge,
        JmpOp::Set,
        JmpOp::Ne,
        JmpOp::Sgt,
        JmpOp::Sge,
        JmpOp::Lt,
        JmpOp::Le,
        JmpOp::Slt,
        JmpOp::Sle,
    ];

    /// The operation bits of the opcode (high nibble).
    pub const fn code(self) -> u8 {
        match self {
            JmpOp::Eq => op::JEQ,
            JmpOp::Gt => op::JGT,
            JmpOp::Ge => op::JGE,
            JmpOp::Set => op::JSET,
            JmpOp::Ne => op::JNE,
            JmpOp::Sgt => op::JSGT,
            JmpOp::Sge => op::JSGE,
            JmpOp::Lt => op::JLT,
            JmpOp::Le => op::JLE,
            JmpOp::Slt => op::JSLT,
            JmpOp::Sle => op::JSLE,
        }
    }

    const fn from_code(code: u8) -> Option<JmpOp> {
        Some(match code {
            op::JEQ => JmpOp::Eq,
            op::JGT => JmpOp::Gt,
            op::JGE => JmpOp::Ge,
            op::JSET => JmpOp::Set,
            op::JNE => JmpOp::Ne,
            op::JSGT => JmpOp::Sgt,
            op::JSGE => JmpOp::Sge,
            op::JLT => JmpOp::Lt,
            op::JLE => JmpOp::Le,
            op::JSLT => JmpOp::Slt,
            op::JSLE => JmpOp::Sle,
            _ => return None,
        })
    }
}

/// Read-modify-write atomic operation (`BPF_STX | BPF_ATOMIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `*p += src`
    Add,
    /// `*p |= src`
    Or,
    /// `*p &= src`
    And,
    /// `*p ^= src`
    Xor,
    /// `src = xchg(*p, src)`
    Xchg,
    /// `r0 = cmpxchg(*p, r0, src)`
    Cmpxchg,
}

impl AtomicOp {
    /// All atomic read-modify-write operations.
    pub const ALL: [AtomicOp; 6] = [
        AtomicOp::Add,
        AtomicOp::Or,
        AtomicOp::And,
        AtomicOp::Xor,
        AtomicOp::Xchg,
        AtomicOp::Cmpxchg,
    ];

    /// The `imm` value encoding this operation (with `FETCH` set when `fetch` is true; exchange
    /// operations always fetch).
    pub const fn imm(self, fetch: bool) -> i32 {
        let f = if fetch { op::FETCH } else { 0 };
        match self {
            AtomicOp::Add => op::ADD as i32 | f,
            AtomicOp::Or => op::OR as i32 | f,
            AtomicOp::And => op::AND as i32 | f,
            AtomicOp::Xor => op::XOR as i32 | f,
            AtomicOp::Xchg => op::XCHG,
            AtomicOp::Cmpxchg => op::CMPXCHG,
        }
    }
}

/// Kind of a byte-order instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndianKind {
    /// `BPF_ALU | BPF_END | BPF_TO_LE`: convert to little endian (truncate on little-endian hosts).
    ToLe,
    /// `BPF_ALU | BPF_END | BPF_TO_BE`: convert to big endian.
    ToBe,
    /// `BPF_ALU64 | BPF_END`: unconditional byte swap (v4).
    Swap,
}

/// One decoded, structurally valid eBPF instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Instruction {
    /// `dst = dst op src`.
    Alu {
        /// Operand width.
        width: Width,
        /// Operation.
        op: AluOp,
        /// Destination register.
        dst: u8,
        /// Second operand.
        src: Operand,
    },
    /// `dst = -dst`.
    Neg {
        /// Operand width.
        width: Width,
        /// Destination register.
        dst: u8,
    },
    /// `dst = src`.
    Mov {
        /// Operand width.
        width: Width,
        /// Destination register.
        dst: u8,
        /// Source operand.
        src: Operand,
    },
    /// `dst = (s8/s16/s32) src`, sign-extending move (v4).
    MovSx {
        /// Operand width (32-bit forms zero-extend the sign-extended 32-bit result).
        width: Width,
        /// Destination register.
        dst: u8,
        /// Source register.
        src: u8,
        /// Source bits: 8, 16, or 32 (32 only for `W64`).
        bits: u8,
    },
    /// `dst = addr_space_cast(src, dst_as, src_as)` (ALU64 MOV X with off = 1).
    AddrSpaceCast {
        /// Destination register.
        dst: u8,
        /// Source register.
        src: u8,
        /// Destination address space (imm bits 16..32).
        dst_as: u16,
        /// Source address space (imm bits 0..16).
        src_as: u16,
    },
    /// Byte-order conversion of the low `bits` of `dst`.
    Endian {
        /// Destination register.
        dst: u8,
        /// 16, 32 or 64.
        bits: u8,
        /// Conversion kind.
        kind: EndianKind,
    },
    /// `dst = imm64` (`lddw`, two slots).
    LoadImm64 {
        /// Destination register.
        dst: u8,
        /// Pseudo source (`src` field, 0..=6, see `op::PSEUDO_*`).
        pseudo: u8,
        /// `slot0.imm as u32 | (slot1.imm as u32) << 32`.
        imm: u64,
    },
    /// `dst = *(size *)(src + off)`, optionally sign-extending (`BPF_MEMSX`).
    Load {
        /// Access size.
        size: Size,
        /// Destination register.
        dst: u8,
        /// Base register.
        src: u8,
        /// Offset from the base.
        off: i16,
        /// Sign-extend the loaded value (v4).
        sign_extend: bool,
    },
    /// `*(size *)(dst + off) = src`.
    Store {
        /// Access size.
        size: Size,
        /// Base register.
        dst: u8,
        /// Offset from the base.
        off: i16,
        /// Stored value: immediate (`BPF_ST`) or register (`BPF_STX`).
        src: Operand,
    },
    /// Atomic read-modify-write on `*(size *)(dst + off)` with `src`.
    Atomic {
        /// Access size (`W` or `DW`).
        size: Size,
        /// Operation.
        op: AtomicOp,
        /// Return the old value in `src` (`r0` for cmpxchg); always true for xchg and cmpxchg.
        fetch: bool,
        /// Base register.
        dst: u8,
        /// Operand register.
        src: u8,
        /// Offset from the base.
        off: i16,
    },
    /// `dst = load_acquire((size *)(src + off))`.
    LoadAcquire {
        /// Access size.
        size: Size,
        /// Destination register.
        dst: u8,
        /// Base register.
        src: u8,
        /// Offset from the base.
        off: i16,
    },
    /// `store_release((size *)(dst + off), src)`.
    StoreRelease {
        /// Access size.
        size: Size,
        /// Base register.
        dst: u8,
        /// Value register.
        src: u8,
        /// Offset from the base.
        off: i16,
    },
    /// Unconditional jump to `pc + 1 + off` (`ja` with a 16-bit offset, `gotol` with 32 bits).
    Ja {
        /// Relative target.
        off: i32,
    },
    /// `if dst op src goto pc + 1 + off`.
    Jump {
        /// Comparison width.
        width: Width,
        /// Comparison.
        op: JmpOp,
        /// Left operand register.
        dst: u8,
        /// Right operand.
        src: Operand,
        /// Relative target.
        off: i16,
    },
    /// Linux `may_goto`: jumps to `pc + 1 + off` once the loop budget is exhausted.
    MayGoto {
        /// Relative target.
        off: i16,
    },
    /// Call of helper number `helper`.
    Call {
        /// Helper id.
        helper: i32,
    },
    /// BPF-to-BPF call of the subprogram at `pc + 1 + imm`.
    CallLocal {
        /// Relative target.
        imm: i32,
    },
    /// Call of a kernel function by BTF id.
    CallKfunc {
        /// BTF id.
        btf_id: i32,
    },
    /// Indirect call through a register holding a helper id or subprogram address.
    Callx {
        /// Register holding the target.
        reg: u8,
    },
    /// Return from the (sub)program with r0.
    Exit,
}

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
    /// needs the whole program; see [`Program::decode`]). The error is a human-readable reason.
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

    /// Number of slots the instruction occupies (2 for `lddw`, else 1).
    pub const fn slot_count(&self) -> usize {
        match self {
            Instruction::LoadImm64 { .. } => 2,
            _ => 1,
        }
    }

    /// The pc-relative displacement of a jump, `may_goto`, local call or `PSEUDO_FUNC` `lddw`,
    /// i.e. the target is `pc + 1 + displacement`; `None` for other instructions.
    pub const fn relative_target(&self) -> Option<i64> {
        match *self {
            Instruction::Ja { off } => Some(off as i64),
            Instruction::Jump { off, .. } | Instruction::MayGoto { off } => Some(off as i64),
            Instruction::CallLocal { imm } => Some(imm as i64),
            Instruction::LoadImm64 { pseudo, imm, .. } if pseudo == op::PSEUDO_FUNC => {
                Some(imm as u32 as i32 as i64)
            }
            _ => None,
        }
    }

    /// The absolute slot index targeted by this instruction at `pc`, if it has a relative target
    /// and the target is non-negative.
    pub fn target(&self, pc: usize) -> Option<usize> {
        let rel = self.relative_target()?;
        let t = i64::try_from(pc).ok()?.checked_add(1)?.checked_add(rel)?;
        usize::try_from(t).ok()
    }

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

/// Error from [`Program::decode`]: the slot index and why it is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instruction {pc}: {reason}")]
pub struct DecodeError {
    /// Index of the offending slot.
    pub pc: usize,
    /// Human-readable reason.
    pub reason: String,
}

/// A decoded, structurally valid program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    slots: Vec<Insn>,
    insns: Vec<Option<Instruction>>,
}

impl Program {
    /// Decodes and validates a whole program (see the module documentation for the rules).
    pub fn decode(slots: &[Insn]) -> Result<Program, DecodeError> {
        if slots.is_empty() {
            return Err(DecodeError {
                pc: 0,
                reason: "empty program".to_string(),
            });
        }
        let mut insns: Vec<Option<Instruction>> = Vec::with_capacity(slots.len());
        let mut pc = 0;
        while let Some(&first) = slots.get(pc) {
            let second = pc.checked_add(1).and_then(|n| slots.get(n)).copied();
            let insn =
                Instruction::decode(first, second).map_err(|reason| DecodeError { pc, reason })?;
            insns.push(Some(insn));
            if insn.slot_count() == 2 {
                insns.push(None);
            }
            pc += insn.slot_count();
        }
        for (pc, insn) in insns.iter().enumerate() {
            let Some(insn) = insn else { continue };
            if insn.relative_target().is_none() {
                continue;
            }
            let err = |what: &str| DecodeError {
                pc,
                reason: format!(
                    "{} target {} {what}",
                    target_kind(insn),
                    pc as i64 + 1 + insn.relative_target().unwrap_or(0)
                ),
            };
            match insn.target(pc) {
                Some(t) if t < insns.len() => {
                    if insns.get(t).is_some_and(Option::is_none) {
                        return Err(err("is the second slot of a lddw"));
                    }
                }
                _ => {
                    return Err(err(&format!("is outside the program (0..{})", insns.len())));
                }
            }
        }
        let last = insns.iter().rev().find_map(|i| i.as_ref());
        let last_pc = insns.iter().rposition(Option::is_some).unwrap_or(0);
        match last {
            Some(Instruction::Exit | Instruction::Ja { .. }) => {}
            _ => {
                return Err(DecodeError {
                    pc: last_pc,
                    reason: "last instruction must be exit or an unconditional jump".to_string(),
                });
            }
        }
        Ok(Program {
            slots: slots.to_vec(),
            insns,
        })
    }

    /// The raw slots the program was decoded from.
    pub fn slots(&self) -> &[Insn] {
        &self.slots
    }

    /// Number of slots (a `lddw` counts twice).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: an empty program does not decode.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The instruction starting at slot `pc`; `None` for the second slot of a `lddw` or out of range.
    pub fn get(&self, pc: usize) -> Option<&Instruction> {
        self.insns.get(pc).and_then(Option::as_ref)
    }

    /// Iterates over `(pc, instruction)` pairs in slot order, skipping `lddw` second slots.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Instruction)> + '_ {
        self.insns
            .iter()
            .enumerate()
            .filter_map(|(pc, i)| i.as_ref().map(|i| (pc, i)))
    }
}

fn target_kind(insn: &Instruction) -> &'static str {
    match insn {
        Instruction::CallLocal { .. } => "call",
        Instruction::MayGoto { .. } => "may_goto",
        Instruction::LoadImm64 { .. } => "subprogram address",
        _ => "jump",
    }
}

/// Encodes a sequence of instructions into raw slots.
pub fn encode_all(insns: &[Instruction]) -> Vec<Insn> {
    insns.iter().flat_map(Instruction::encode).collect()
}

#[cfg(test)]
mod tests;
