//! kflex-isa: the eBPF instruction set as kflex understands it.
//!
//! * [`insn`]: the raw 8-byte slot and opcode constants.
//! * [`decode`]: checked decoding of whole programs into [`decode::Instruction`]s, and the encoder.
//! * [`disasm`]: llvm-objdump-19 style pseudo-C disassembly.
//! * [`asm`]: assembler for the bpf_conformance text dialect.
//! * [`conformance`]: parser for bpf_conformance `.data` test files.

#![warn(missing_docs)]

pub mod asm;
pub mod conformance;
pub mod decode;
pub mod disasm;
pub mod insn;

pub use decode::{DecodeError, Instruction, Program};
pub use insn::{Insn, op};
