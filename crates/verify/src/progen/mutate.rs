//! Mutations: fragments that break exactly one verifier rule, so that the program must be
//! rejected by kflex and by Linux.

use kflex_isa::{Insn, op};
use kflex_object::ProgType;

use super::asm::*;
use super::{ARRAY_VALUE, Gen, MAP_RINGBUF, has_packet};

/// Rules a mutation can break (each is rejected by Linux and must be by kflex).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Reads a caller-saved register after a helper call clobbered it.
    ClobberedAfterCall,
    /// Dereferences a map lookup result without the NULL check.
    MapNoNullCheck,
    /// Reads a map value past its end.
    MapOutOfBounds,
    /// Adds an unbounded scalar to a map value pointer, then dereferences it.
    MapUnboundedOffset,
    /// Reads the packet without a `data + N > data_end` check (xdp/tc).
    PacketNoCheck,
    /// Reads the packet past the checked range (xdp/tc).
    PacketBeyondCheck,
    /// Reads a context offset outside the struct, or misaligned (syscall).
    CtxBadOffset,
    /// Writes a read-only context field (not syscall).
    CtxWriteReadonly,
    /// Accesses the context through a variable offset.
    CtxVariableOffset,
    /// Writes below the 512-byte stack.
    StackOutOfBounds,
    /// Reads a stack slot never written.
    StackUninitRead,
    /// Divides by the immediate 0.
    DivByZeroImm,
    /// Shifts by an immediate at least the operand width.
    ShiftTooLarge,
    /// Calls a helper id nobody defines.
    UnknownHelper,
    /// Passes a scalar where a map pointer is expected.
    HelperBadArg,
    /// Reserves ring-buffer memory and never submits it.
    RingbufLeak,
    /// Writes ring-buffer memory without the NULL check.
    RingbufNoNullCheck,
    /// Reserves a ring-buffer record of unknown size.
    RingbufVariableSize,
    /// Multiplies the context pointer.
    PointerMultiply,
    /// Writes the frame pointer.
    WriteFramePointer,
}

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 20] = [
        Mutation::ClobberedAfterCall,
        Mutation::MapNoNullCheck,
        Mutation::MapOutOfBounds,
        Mutation::MapUnboundedOffset,
        Mutation::PacketNoCheck,
        Mutation::PacketBeyondCheck,
        Mutation::CtxBadOffset,
        Mutation::CtxWriteReadonly,
        Mutation::CtxVariableOffset,
        Mutation::StackOutOfBounds,
        Mutation::StackUninitRead,
        Mutation::DivByZeroImm,
        Mutation::ShiftTooLarge,
        Mutation::UnknownHelper,
        Mutation::HelperBadArg,
        Mutation::RingbufLeak,
        Mutation::RingbufNoNullCheck,
        Mutation::RingbufVariableSize,
        Mutation::PointerMultiply,
        Mutation::WriteFramePointer,
    ];

    /// Whether the mutation makes sense for programs of type `t`.
    pub fn applies_to(self, t: ProgType) -> bool {
        match self {
            Mutation::PacketNoCheck | Mutation::PacketBeyondCheck => has_packet(t),
            Mutation::CtxWriteReadonly => t != ProgType::Syscall,
            _ => true,
        }
    }
}

impl Gen {
    /// Emits the fragment that breaks one rule.
    pub(crate) fn mutation(&mut self, m: Mutation) {
        let r = self.scalar();
        match m {
            Mutation::ClobberedAfterCall => {
                self.asm.emit(call(7));
                let clobbered = self.rng.pick(&[1, 2, 3, 4, 5]);
                self.asm.emit(alu64x(op::ADD, r, clobbered));
            }
            Mutation::MapNoNullCheck => {
                let array = self.rng.chance(50);
                self.lookup(array, None);
                self.asm.emit(ldx(op::DW, r, 0, 0));
            }
            Mutation::MapOutOfBounds => {
                self.lookup(true, None);
                let out = self.asm.label();
                self.asm.jump(op::JMP | op::JEQ | op::K, 0, 0, 0, out);
                let off = ARRAY_VALUE - 8 + 1 + self.rng.below(16) as i16;
                self.asm.emit(ldx(op::DW, r, 0, off));
                self.asm.bind(out);
            }
            Mutation::MapUnboundedOffset => {
                // A value loaded from the map is an unknown 32-bit scalar: no bound.
                self.lookup(true, None);
                let out = self.asm.label();
                self.asm.jump(op::JMP | op::JEQ | op::K, 0, 0, 0, out);
                self.asm.emit(ldx(op::W, 2, 0, 0));
                self.asm.emit(alu64x(op::ADD, 0, 2));
                self.asm.emit(ldx(op::B, r, 0, 0));
                self.asm.bind(out);
            }
            Mutation::PacketNoCheck => {
                self.packet_regs();
                self.asm.emit(ldx(op::B, r, 2, self.rng.below(8) as i16));
            }
            Mutation::PacketBeyondCheck => {
                self.packet_regs();
                let n = 1 + self.rng.below(32) as i32;
                self.asm.emit(movx(4, 2));
                self.asm.emit(alu64(op::ADD, 4, n));
                let out = self.asm.label();
                self.asm.jump(op::JMP | op::JGT | op::X, 4, 3, 0, out);
                self.asm.emit(ldx(op::W, r, 2, (n - 3) as i16));
                self.asm.bind(out);
            }
            Mutation::CtxBadOffset => {
                let (off, size) = match self.t() {
                    // 20: egress_ifindex, which only devmap programs may read.
                    ProgType::Xdp => (20 + 4 * self.rng.below(8) as i16, op::W),
                    ProgType::Syscall => (1 + 4 * self.rng.below(8) as i16, op::W),
                    _ => (192 + 4 * self.rng.below(8) as i16, op::W),
                };
                self.asm.emit(ldx(size, r, 6, off));
            }
            Mutation::CtxWriteReadonly => {
                let off = match self.t() {
                    ProgType::Xdp => self.rng.pick(&[12, 16]),
                    _ => self.rng.pick(&[0, 16, 40]),
                };
                self.asm.emit(stx(op::W, 6, r, off));
            }
            Mutation::CtxVariableOffset => {
                // An unknown offset (a random number masked to 0 or 4).
                self.asm.emit(call(7));
                self.asm.emit(movx(2, 0));
                self.asm.emit(alu64(op::AND, 2, 4));
                self.asm.emit(movx(1, 6));
                self.asm.emit(alu64x(op::ADD, 1, 2));
                self.asm.emit(ldx(op::W, r, 1, 0));
            }
            Mutation::StackOutOfBounds => {
                let off = self.rng.pick(&[-520, -1024, 0, 8]);
                self.asm.emit(stx(op::DW, 10, r, off));
            }
            Mutation::StackUninitRead => {
                let off = -256 - 8 * self.rng.below(16) as i16;
                self.asm.emit(ldx(op::DW, r, 10, off));
            }
            Mutation::DivByZeroImm => {
                let o = self.rng.pick(&[op::DIV, op::MOD]);
                let class = self.rng.pick(&[op::ALU, op::ALU64]);
                self.asm.emit(Insn::new(class | o | op::K, r, 0, 0, 0));
            }
            Mutation::ShiftTooLarge => {
                let o = self.rng.pick(&[op::LSH, op::RSH, op::ARSH]);
                let (class, bits) = self.rng.pick(&[(op::ALU, 32), (op::ALU64, 64)]);
                let imm = bits + self.rng.below(8) as i32;
                self.asm.emit(Insn::new(class | o | op::K, r, 0, 0, imm));
            }
            Mutation::UnknownHelper => {
                self.asm.emit(call(10_000 + self.rng.below(1000) as i32));
            }
            Mutation::HelperBadArg => self.lookup(true, Some(r)),
            Mutation::RingbufLeak => {
                self.ringbuf_reserve(16);
                let out = self.asm.label();
                self.asm.jump(op::JMP | op::JEQ | op::K, 0, 0, 0, out);
                self.asm.emit(stx(op::DW, 0, r, 0));
                self.asm.bind(out);
            }
            Mutation::RingbufNoNullCheck => {
                self.ringbuf_reserve(16);
                self.asm.emit(stx(op::DW, 0, r, 0));
                self.asm.emit(movx(1, 0));
                self.asm.emit(mov(2, 0));
                self.asm.emit(call(132));
            }
            Mutation::RingbufVariableSize => {
                // A random size: not a known constant.
                self.asm.emit(call(7));
                self.asm.emit(movx(2, 0));
                self.asm.emit(alu64(op::AND, 2, 56));
                self.lddw_map(1, op::PSEUDO_MAP_FD, MAP_RINGBUF, 0);
                self.asm.emit(mov(3, 0));
                self.asm.emit(call(131));
                let out = self.asm.label();
                self.asm.jump(op::JMP | op::JEQ | op::K, 0, 0, 0, out);
                self.asm.emit(movx(1, 0));
                self.asm.emit(mov(2, 0));
                self.asm.emit(call(133));
                self.asm.bind(out);
            }
            Mutation::PointerMultiply => {
                self.asm.emit(movx(1, 6));
                self.asm.emit(alu64(op::MUL, 1, 2));
                self.asm.emit(ldx(op::W, r, 1, 0));
            }
            Mutation::WriteFramePointer => self.asm.emit(mov(10, 0)),
        }
    }
}
