//! kflex-isa: the eBPF instruction set as kflex understands it.
//!
//! The crate covers RFC 9669 (cpu v1..v4) plus the Linux extensions kflex accepts: `may_goto`
//! (`JMP | JCOND`), `addr_space_cast` (ALU64 `MOV X` with off 1), load-acquire/store-release,
//! `gotol` (`JMP32 | JA` with a 32-bit immediate) and `callx`. No entry point panics on any
//! input: malformed programs and sources are reported as errors naming the slot or line.
//!
//! # Modules
//!
//! * [`insn`]: the raw 8-byte slot [`Insn`] (fields, byte conversion) and the opcode constants [`op`].
//! * [`decode`]: [`Program::decode`] validates a whole program (opcodes, reserved fields, registers,
//!   `lddw` pairs, control-flow targets, final instruction) and yields typed [`Instruction`]s;
//!   [`Instruction::encode`] is its inverse.
//! * [`disasm`]: text in the pseudo-C syntax of `llvm-objdump-19 -d` ([`disasm::format`] for one
//!   instruction, [`disasm::listing`] for a program).
//! * [`asm`]: [`asm::assemble`] for the bpf_conformance text dialect (`mov %r0, 1`, `ldxw %r0,
//!   [%r1+4]`, labels, `lock fetch add`, ...).
//! * [`conformance`]: [`conformance::ConformanceTest::parse`] for bpf_conformance `.data` files.
//!
//! # Example
//!
//! ```
//! use kflex_isa::{asm::assemble, disasm::listing, Program};
//!
//! let slots = assemble("mov %r0, 1\nadd32 %r0, 2\nexit").unwrap();
//! let program = Program::decode(&slots).unwrap();
//! assert_eq!(listing(&program), "       0:\tr0 = 0x1\n       1:\tw0 += 0x2\n       2:\texit\n");
//! ```

#![warn(missing_docs)]

pub mod asm;
pub mod conformance;
pub mod decode;
pub mod disasm;
pub mod insn;

pub use decode::{DecodeError, Instruction, Program};
pub use insn::{Insn, op};
