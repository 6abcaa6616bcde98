//! Helpers shared by the crate's unit tests.

use kflex_isa::Insn;
use kflex_isa::decode::Program;

/// Assembles and decodes `src` (a test's own program: panics if it is malformed).
pub(crate) fn program(src: &str) -> Program {
    let slots: Vec<Insn> = kflex_isa::asm::assemble(src).expect("assembles");
    Program::decode(&slots).expect("decodes")
}
