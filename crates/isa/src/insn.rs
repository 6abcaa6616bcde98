//! The raw 8-byte eBPF instruction slot and the opcode constants of RFC 9669 plus Linux extensions.
//!
//! An [`Insn`] is one 64-bit slot exactly as it is stored in an object file (little endian). It is not
//! validated; see [`crate::decode`] for the checked view of a whole program.

/// One raw 8-byte eBPF instruction slot (`struct bpf_insn`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Insn {
    /// The opcode byte: class in the low 3 bits, the rest depends on the class.
    pub opcode: u8,
    /// Destination register number (low nibble of byte 1).
    pub dst: u8,
    /// Source register number (high nibble of byte 1).
    pub src: u8,
    /// Signed 16-bit offset.
    pub off: i16,
    /// Signed 32-bit immediate.
    pub imm: i32,
}

impl Insn {
    /// Size of one instruction slot in bytes.
    pub const SIZE: usize = 8;

    /// Builds an instruction from its fields.
    pub const fn new(opcode: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            opcode,
            dst,
            src,
            off,
            imm,
        }
    }

    /// Reads one slot from 8 little-endian bytes.
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Insn {
            opcode: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Writes the slot as 8 little-endian bytes. Register numbers are truncated to 4 bits.
    pub fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.opcode,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }

    /// Reads a whole program; the length must be a multiple of 8 (the caller reports which section).
    pub fn slice_from_bytes(bytes: &[u8]) -> Option<Vec<Insn>> {
        if !bytes.len().is_multiple_of(Self::SIZE) {
            return None;
        }
        Some(
            bytes
                .chunks_exact(Self::SIZE)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    Insn::from_bytes(b)
                })
                .collect(),
        )
    }

    /// Serialises a whole program.
    pub fn slice_to_bytes(insns: &[Insn]) -> Vec<u8> {
        insns.iter().flat_map(|i| i.to_bytes()).collect()
    }

    /// The instruction class (low 3 bits of the opcode).
    pub const fn class(self) -> u8 {
        self.opcode & 0x07
    }

    /// True for the first slot of a 16-byte `lddw` (BPF_LD | BPF_IMM | BPF_DW).
    pub const fn is_lddw(self) -> bool {
        self.opcode == op::LD | op::IMM | op::DW
    }
}

impl std::fmt::Debug for Insn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Insn {{ op: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {} }}",
            self.opcode, self.dst, self.src, self.off, self.imm
        )
    }
}

/// Opcode field constants (names follow `linux/bpf.h` without the `BPF_` prefix).
pub mod op {
    // Classes.
    /// Non-standard load (only `lddw` remains valid).
    pub const LD: u8 = 0x00;
    /// Load into register.
    pub const LDX: u8 = 0x01;
    /// Store immediate.
    pub const ST: u8 = 0x02;
    /// Store register (and atomics).
    pub const STX: u8 = 0x03;
    /// 32-bit arithmetic.
    pub const ALU: u8 = 0x04;
    /// 64-bit jumps.
    pub const JMP: u8 = 0x05;
    /// 32-bit jumps.
    pub const JMP32: u8 = 0x06;
    /// 64-bit arithmetic.
    pub const ALU64: u8 = 0x07;

    // Source operand.
    /// Immediate operand (`BPF_K`).
    pub const K: u8 = 0x00;
    /// Register operand (`BPF_X`).
    pub const X: u8 = 0x08;

    // ALU operations (high nibble).
    /// dst += src
    pub const ADD: u8 = 0x00;
    /// dst -= src
    pub const SUB: u8 = 0x10;
    /// dst *= src
    pub const MUL: u8 = 0x20;
    /// dst /= src (off=1: signed)
    pub const DIV: u8 = 0x30;
    /// dst |= src
    pub const OR: u8 = 0x40;
    /// dst &= src
    pub const AND: u8 = 0x50;
    /// dst <<= src
    pub const LSH: u8 = 0x60;
    /// dst >>= src (logical)
    pub const RSH: u8 = 0x70;
    /// dst = -dst
    pub const NEG: u8 = 0x80;
    /// dst %= src (off=1: signed)
    pub const MOD: u8 = 0x90;
    /// dst ^= src
    pub const XOR: u8 = 0xa0;
    /// dst = src (off=8/16/32: sign extension; ALU64 off=1: addr_space_cast)
    pub const MOV: u8 = 0xb0;
    /// dst >>= src (arithmetic)
    pub const ARSH: u8 = 0xc0;
    /// Byte swap (`BPF_END`).
    pub const END: u8 = 0xd0;

    /// `BPF_END` in class ALU: convert to little endian (`BPF_TO_LE`, source bit clear).
    pub const TO_LE: u8 = 0x00;
    /// `BPF_END` in class ALU: convert to big endian (`BPF_TO_BE`, source bit set).
    pub const TO_BE: u8 = 0x08;

    // Jump operations (high nibble).
    /// Unconditional jump (JMP: 16-bit offset; JMP32: 32-bit `gotol` in imm).
    pub const JA: u8 = 0x00;
    /// ==
    pub const JEQ: u8 = 0x10;
    /// > unsigned
    pub const JGT: u8 = 0x20;
    /// >= unsigned
    pub const JGE: u8 = 0x30;
    /// & != 0
    pub const JSET: u8 = 0x40;
    /// !=
    pub const JNE: u8 = 0x50;
    /// > signed
    pub const JSGT: u8 = 0x60;
    /// >= signed
    pub const JSGE: u8 = 0x70;
    /// Function call.
    pub const CALL: u8 = 0x80;
    /// Return.
    pub const EXIT: u8 = 0x90;
    /// < unsigned
    pub const JLT: u8 = 0xa0;
    /// <= unsigned
    pub const JLE: u8 = 0xb0;
    /// < signed
    pub const JSLT: u8 = 0xc0;
    /// <= signed
    pub const JSLE: u8 = 0xd0;
    /// Linux `may_goto` (JMP | JCOND, src=0).
    pub const JCOND: u8 = 0xe0;

    // Memory sizes.
    /// 4 bytes.
    pub const W: u8 = 0x00;
    /// 2 bytes.
    pub const H: u8 = 0x08;
    /// 1 byte.
    pub const B: u8 = 0x10;
    /// 8 bytes.
    pub const DW: u8 = 0x18;

    // Memory modes.
    /// 64-bit immediate (`lddw`).
    pub const IMM: u8 = 0x00;
    /// Legacy packet access, absolute (rejected).
    pub const ABS: u8 = 0x20;
    /// Legacy packet access, indirect (rejected).
    pub const IND: u8 = 0x40;
    /// Regular memory access.
    pub const MEM: u8 = 0x60;
    /// Sign-extending load (v4).
    pub const MEMSX: u8 = 0x80;
    /// Atomic operation (imm selects which).
    pub const ATOMIC: u8 = 0xc0;

    // Atomic operations (imm field).
    /// Set in imm of atomics that return the old value.
    pub const FETCH: i32 = 0x01;
    /// Exchange (always with fetch).
    pub const XCHG: i32 = 0xe0 | FETCH;
    /// Compare and exchange (always with fetch; compares with r0).
    pub const CMPXCHG: i32 = 0xf0 | FETCH;
    /// Load-acquire (Linux 6.15).
    pub const LOAD_ACQ: i32 = 0x100;
    /// Store-release (Linux 6.15).
    pub const STORE_REL: i32 = 0x110;

    // Pseudo source registers.
    /// `lddw` src: imm is a map fd (kflex: index of the map in the object).
    pub const PSEUDO_MAP_FD: u8 = 1;
    /// `lddw` src: imm is a map fd, next imm an offset into its value.
    pub const PSEUDO_MAP_VALUE: u8 = 2;
    /// `lddw` src: imm is a BTF id of a kernel variable.
    pub const PSEUDO_BTF_ID: u8 = 3;
    /// `lddw` src: imm is a pc-relative subprogram address.
    pub const PSEUDO_FUNC: u8 = 4;
    /// `lddw` src: imm is a map index (fd_array).
    pub const PSEUDO_MAP_IDX: u8 = 5;
    /// `lddw` src: imm is a map index, next imm an offset.
    pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;
    /// `call` src: imm is a pc-relative BPF-to-BPF call.
    pub const PSEUDO_CALL: u8 = 1;
    /// `call` src: imm is a kfunc BTF id.
    pub const PSEUDO_KFUNC_CALL: u8 = 2;

    /// ALU64 MOV off value marking `addr_space_cast`.
    pub const ADDR_SPACE_CAST: i16 = 1;
}
