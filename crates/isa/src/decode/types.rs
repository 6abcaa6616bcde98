//! The decoded instruction type and its operand enums.

use crate::insn::op;

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

    /// The comparison encoded by the operation bits of a jump opcode, if any.
    pub const fn from_code(code: u8) -> Option<JmpOp> {
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

impl Instruction {
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
}
