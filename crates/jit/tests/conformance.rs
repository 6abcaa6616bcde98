//! Runs the bpf_conformance suite (`shared/conformance/tests/*.data`) through the JIT: parse,
//! assemble, decode, compile, run with the `-- mem` bytes as input memory, compare r0.
//! `KFLEX_CONFORMANCE_ONLY=<name>` restricts the run to files whose name contains `<name>`.

use std::sync::Arc;

use kflex_isa::asm::assemble;
use kflex_isa::conformance::ConformanceTest;
use kflex_isa::decode::Program;
use kflex_jit::{JitEnv, JitOptions, JitProgram};
use kflex_runtime::helpers::{ArgKind, RetKind};
use kflex_runtime::{ExecEnv, HelperDef, HelperRegistry, MemoryMap, Signature};

/// The upstream suite calls helper 5 and expects execution to continue.
fn registry() -> HelperRegistry {
    let mut r = HelperRegistry::empty();
    r.register(HelperDef {
        id: 5,
        name: "conformance_helper".into(),
        sig: Signature::new(&[ArgKind::Any], RetKind::Scalar),
        func: Arc::new(|_| Ok(0x5eed)),
    })
    .expect("helper registers");
    r
}

/// Runs one test file; `Err` explains a failure.
fn run_one(text: &str, helpers: &HelperRegistry) -> Result<(), String> {
    let test = ConformanceTest::parse(text).map_err(|e| format!("parse: {e}"))?;
    let expected = test.result.ok_or("no -- result section")?;
    let slots = assemble(&test.asm).map_err(|e| format!("assemble: {e}"))?;
    let program = Program::decode(&slots).map_err(|e| format!("decode: {e}"))?;
    let jit = JitProgram::compile(&program, &JitOptions::default())
        .map_err(|e| format!("compile: {e}"))?;
    let mut memory = test.mem.clone();
    let addr = if memory.is_empty() {
        0
    } else {
        memory.as_mut_ptr() as u64
    };
    let mut mem = MemoryMap::new();
    let mut env = ExecEnv::default();
    let mut jenv = JitEnv::new(&mut mem, helpers, &mut env);
    let args = [addr, memory.len() as u64, 0, 0, 0];
    let r0 = jit
        .run(args, &mut jenv)
        .map_err(|f| format!("fault: {f}"))?;
    drop(memory);
    if r0 != expected {
        return Err(format!("r0 = {r0:#x}, expected {expected:#x}"));
    }
    Ok(())
}

#[test]
fn bpf_conformance_suite() {
    let helpers = registry();
    kflex_testutil::run_conformance_suite("jit", |text| run_one(text, &helpers));
}
