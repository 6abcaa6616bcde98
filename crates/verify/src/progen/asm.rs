//! A tiny assembler for generated programs: an instruction buffer with labels, and one
//! constructor per instruction form the generator uses.

use kflex_isa::{Insn, op};

/// A forward or backward jump target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Label(usize);

/// An instruction buffer with labels for jumps and calls.
#[derive(Default)]
pub(crate) struct Asm {
    pub(crate) insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// (instruction index, label, is a call whose offset goes in imm)
    fixups: Vec<(usize, Label, bool)>,
}

impl Asm {
    pub(crate) fn emit(&mut self, i: Insn) {
        self.insns.push(i);
    }
    pub(crate) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    pub(crate) fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }
    pub(crate) fn jump(&mut self, opcode: u8, dst: u8, src: u8, imm: i32, l: Label) {
        self.fixups.push((self.insns.len(), l, false));
        self.emit(Insn::new(opcode, dst, src, 0, imm));
    }
    pub(crate) fn call_local(&mut self, l: Label) {
        self.fixups.push((self.insns.len(), l, true));
        self.emit(Insn::new(op::JMP | op::CALL, 0, op::PSEUDO_CALL, 0, 0));
    }
    pub(crate) fn resolve(mut self) -> Vec<Insn> {
        for (at, l, is_call) in self.fixups {
            let target = self.labels[l.0].expect("every label is bound");
            let rel = target as i64 - at as i64 - 1;
            if is_call {
                self.insns[at].imm = rel as i32;
            } else {
                self.insns[at].off = i16::try_from(rel).expect("jump fits 16 bits");
            }
        }
        self.insns
    }
}

pub(crate) fn alu64(o: u8, dst: u8, imm: i32) -> Insn {
    Insn::new(op::ALU64 | o | op::K, dst, 0, 0, imm)
}
pub(crate) fn alu64x(o: u8, dst: u8, src: u8) -> Insn {
    Insn::new(op::ALU64 | o | op::X, dst, src, 0, 0)
}
pub(crate) fn mov(dst: u8, imm: i32) -> Insn {
    alu64(op::MOV, dst, imm)
}
pub(crate) fn movx(dst: u8, src: u8) -> Insn {
    alu64x(op::MOV, dst, src)
}
pub(crate) fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(op::LDX | op::MEM | size, dst, src, off, 0)
}
pub(crate) fn stx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(op::STX | op::MEM | size, dst, src, off, 0)
}
pub(crate) fn st(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
    Insn::new(op::ST | op::MEM | size, dst, 0, off, imm)
}
pub(crate) fn call(id: i32) -> Insn {
    Insn::new(op::JMP | op::CALL, 0, 0, 0, id)
}
pub(crate) fn exit() -> Insn {
    Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0)
}
pub(crate) fn size_bytes(size: u8) -> i16 {
    match size {
        op::B => 1,
        op::H => 2,
        op::W => 4,
        _ => 8,
    }
}
