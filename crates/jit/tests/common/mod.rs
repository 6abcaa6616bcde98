//! Shared helpers of the JIT integration tests: building programs and running them through both
//! engines.

#![allow(dead_code)]

use kflex_interp::{Vm, run};
use kflex_isa::decode::{Instruction, Program, encode_all};
use kflex_jit::{JitEnv, JitFault, JitOptions, JitProgram};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

/// Decodes `insns` (panics with the decode error: test programs must be valid).
pub fn program(insns: &[Instruction]) -> Program {
    Program::decode(&encode_all(insns)).expect("test program decodes")
}

/// Compiles and runs `program` with `args` and `helpers`.
pub fn jit_run(
    program: &Program,
    args: [u64; 5],
    helpers: &HelperRegistry,
) -> Result<u64, JitFault> {
    let jit = JitProgram::compile(program, &JitOptions::default()).expect("program compiles");
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    let mut jenv = JitEnv::new(&mut mem, helpers, &mut env);
    jit.run(args, &mut jenv)
}

/// Runs `program` through the reference interpreter.
pub fn interp_run(
    program: &Program,
    args: [u64; 5],
    helpers: &HelperRegistry,
) -> Result<u64, kflex_interp::Fault> {
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    let mut vm = Vm::new(&mut mem, helpers, &mut env);
    run(program, args, &mut vm).map(|o| o.retval)
}
