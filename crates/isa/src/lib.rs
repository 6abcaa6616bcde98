//! kflex-isa: the eBPF instruction set as kflex understands it.
//!
//! * [`insn`]: the raw 8-byte slot and opcode constants.

pub mod insn;

pub use insn::{Insn, op};
