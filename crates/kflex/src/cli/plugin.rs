//! `kflex conformance-plugin`: the upstream bpf_conformance runner's plugin protocol.
//!
//! The program arrives on stdin as hex text; the memory, when the test has one, is the last
//! command-line argument in the same form. r1 points at the memory (0 if none), r2 holds its length.
//! On success r0 is printed in hex and the exit status is 0; when the program is rejected or faults
//! the error goes to stdout and the exit status is 1. `--engine jit|interp` (before the runner's
//! arguments) picks the engine.

use std::io::Read;
use std::process::ExitCode;

use kflex_isa::Insn;

use super::EXIT_PROGRAM;

/// Runs the plugin; never fails with a usage error (the protocol reports everything on stdout).
pub fn run(args: &[String], engine: kflex::Engine) -> ExitCode {
    match execute(args, engine) {
        Ok(r0) => {
            println!("{r0:x}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            println!("{message}");
            ExitCode::from(EXIT_PROGRAM)
        }
    }
}

fn execute(args: &[String], engine: kflex::Engine) -> Result<u64, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the program from stdin: {e}"))?;
    let code = kflex::hex::decode(&text).map_err(|e| format!("program: {e}"))?;
    let insns = Insn::slice_from_bytes(&code).ok_or_else(|| {
        format!(
            "program is {} bytes, not a multiple of the 8-byte instruction size",
            code.len()
        )
    })?;
    // The memory is the last argument; runner options (`--...`) before it are ignored.
    let mem = match args.last().filter(|a| !a.starts_with('-')) {
        Some(arg) => kflex::hex::decode(arg).map_err(|e| format!("memory: {e}"))?,
        None => Vec::new(),
    };
    kflex::conformance::run_program_on(engine, &insns, &mem).map_err(|e| e.to_string())
}
