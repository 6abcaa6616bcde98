//! Runs the bpf_conformance suite (`shared/conformance/tests/*.data`) through the interpreter:
//! parse, assemble, decode, run with the `-- mem` bytes as input memory, compare r0.

use std::sync::Arc;

use kflex_interp::{Vm, run};
use kflex_isa::asm::assemble;
use kflex_isa::conformance::ConformanceTest;
use kflex_isa::decode::Program;
use kflex_runtime::helpers::{ArgKind, RetKind};
use kflex_runtime::{ExecEnv, HelperDef, HelperRegistry, MemoryMap, Region, RegionKind, Signature};

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
    let mut memory = test.mem.clone();
    let mut mem = MemoryMap::new();
    let addr = if memory.is_empty() {
        0
    } else {
        let start = memory.as_mut_ptr() as u64;
        let region = Region {
            start,
            len: memory.len() as u64,
            kind: RegionKind::Input,
            writable: true,
            elements: None,
        };
        // SAFETY: `memory` outlives `mem` (declared before it, dropped after it) and is not
        // touched through Rust references while the region is registered.
        unsafe { mem.insert(region) }.map_err(|e| format!("input region: {e}"))?;
        start
    };
    let mut env = ExecEnv::default();
    let mut vm = Vm::new(&mut mem, helpers, &mut env);
    let args = [addr, memory.len() as u64, 0, 0, 0];
    let out = run(&program, args, &mut vm).map_err(|f| format!("fault: {f}"))?;
    if out.retval != expected {
        return Err(format!("r0 = {:#x}, expected {expected:#x}", out.retval));
    }
    Ok(())
}

#[test]
fn bpf_conformance_suite() {
    let helpers = registry();
    kflex_testutil::run_conformance_suite("interpreter", |text| run_one(text, &helpers));
}
