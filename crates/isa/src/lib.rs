//! kflex-isa: the eBPF instruction set as kflex understands it.
//!
//! * [`insn`]: the raw 8-byte slot and opcode constants.
//! * [`decode`]: checked decoding of whole programs into [`decode::Instruction`]s, and the encoder.

#![warn(missing_docs)]

pub mod decode;
pub mod insn;

pub use decode::{DecodeError, Instruction, Program};
pub use insn::{Insn, op};
