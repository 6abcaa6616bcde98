//! Runs the bpf_conformance suite (`shared/conformance/tests/*.data`) through the interpreter:
//! parse, assemble, decode, run with the `-- mem` bytes as input memory, compare r0.

use std::path::PathBuf;
use std::sync::Arc;

use kflex_interp::{Vm, run};
use kflex_isa::asm::assemble;
use kflex_isa::conformance::ConformanceTest;
use kflex_isa::decode::Program;
use kflex_runtime::helpers::{ArgKind, RetKind};
use kflex_runtime::{ExecEnv, HelperDef, HelperRegistry, MemoryMap, Region, RegionKind, Signature};

/// Number of tests in the suite; every one must pass.
const SUITE_SIZE: usize = 313;

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
    let Some(dir) = kflex_testutil::conformance_dir() else {
        return;
    };
    let entries = std::fs::read_dir(&dir).expect("read the conformance directory");
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    files.sort();
    let helpers = registry();
    let mut passed = 0;
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let result = std::fs::read_to_string(path)
            .map_err(|e| format!("read: {e}"))
            .and_then(|text| run_one(&text, &helpers));
        match result {
            Ok(()) => passed += 1,
            Err(why) => failures.push(format!("{name}: {why}")),
        }
    }
    println!("conformance: {passed}/{} passed", files.len());
    for f in &failures {
        println!("FAILED {f}");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(files.len(), SUITE_SIZE, "suite size changed");
    assert_eq!(passed, SUITE_SIZE);
}
