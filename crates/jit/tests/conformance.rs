//! Runs the bpf_conformance suite (`shared/conformance/tests/*.data`) through the JIT: parse,
//! assemble, decode, compile, run with the `-- mem` bytes as input memory, compare r0.
//! `KFLEX_CONFORMANCE_ONLY=<name>` restricts the run to files whose name contains `<name>`.

use std::path::PathBuf;
use std::sync::Arc;

use kflex_isa::asm::assemble;
use kflex_isa::conformance::ConformanceTest;
use kflex_isa::decode::Program;
use kflex_jit::{JitEnv, JitOptions, JitProgram};
use kflex_runtime::helpers::{ArgKind, RetKind};
use kflex_runtime::{ExecEnv, HelperDef, HelperRegistry, MemoryMap, Signature};

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
    let Some(dir) = kflex_testutil::conformance_dir() else {
        return;
    };
    let only = std::env::var("KFLEX_CONFORMANCE_ONLY").ok();
    let entries = std::fs::read_dir(&dir).expect("read the conformance directory");
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .filter(|p| {
            only.as_deref()
                .is_none_or(|o| p.to_string_lossy().contains(o))
        })
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
    println!("conformance (jit): {passed}/{} passed", files.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if only.is_none() {
        assert_eq!(files.len(), SUITE_SIZE, "suite size changed");
        assert_eq!(passed, SUITE_SIZE);
    }
}
