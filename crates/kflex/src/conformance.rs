//! Running bpf_conformance tests: the `.data` files of the suite, and single programs as the upstream
//! runner's plugin does (r1 = input memory or 0, r2 = its length, helper 5 available).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use kflex_interp::{Limits, Vm};
use kflex_isa::Insn;
use kflex_isa::conformance::ConformanceTest;
use kflex_isa::decode::Program;
use kflex_jit::{JitEnv, JitOptions, JitProgram};
use kflex_runtime::helpers::{HelperRegistry, RetKind, Signature};
use kflex_runtime::{ExecEnv, HelperDef, MemoryMap, Region, RegionKind};

use crate::engine::Engine;

/// Instruction budget for one conformance program (the suite's programs are tiny; this stops
/// runaway loops quickly).
pub const CONFORMANCE_MAX_INSTRUCTIONS: u64 = 1 << 24;

/// Why a conformance program produced no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramError {
    /// The program was rejected before running (does not decode).
    Rejected(String),
    /// The program faulted while running.
    Fault(String),
}

impl std::fmt::Display for ProgramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgramError::Rejected(m) => write!(f, "rejected: {m}"),
            ProgramError::Fault(m) => write!(f, "fault: {m}"),
        }
    }
}

/// The registry conformance programs run with: only helper 5, which returns the monotonic clock
/// in nanoseconds (`bpf_ktime_get_ns`) so that execution continues after the call.
pub fn conformance_registry() -> &'static HelperRegistry {
    static REGISTRY: OnceLock<HelperRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        let mut r = HelperRegistry::empty();
        let def = HelperDef {
            id: 5,
            name: "bpf_ktime_get_ns".to_string(),
            sig: Signature::new(&[], RetKind::Scalar),
            func: Arc::new(move |_call| Ok(start.elapsed().as_nanos() as u64)),
        };
        // A fresh registry with one well-formed signature cannot fail to register it.
        let _ = r.register(def);
        r
    })
}

/// Decodes and runs one program on the interpreter ([`run_program_on`]).
pub fn run_program(insns: &[Insn], mem: &[u8]) -> Result<u64, ProgramError> {
    run_program_on(Engine::Interp, insns, mem)
}

/// Decodes and runs one program on `engine` over `mem` (copied into a writable input region):
/// r1 = its address (0 when empty), r2 = its length. Returns r0. The programs are not verified
/// (the suite tests instruction semantics); on the JIT the interpreter's instruction budget does
/// not apply.
pub fn run_program_on(engine: Engine, insns: &[Insn], mem: &[u8]) -> Result<u64, ProgramError> {
    let program = Program::decode(insns).map_err(|e| ProgramError::Rejected(e.to_string()))?;
    let mut buffer = mem.to_vec();
    let mut map = MemoryMap::new();
    let addr = if buffer.is_empty() {
        0
    } else {
        let start = buffer.as_mut_ptr() as u64;
        let region = Region {
            start,
            len: buffer.len() as u64,
            kind: RegionKind::Input,
            writable: true,
            elements: None,
        };
        // SAFETY: `buffer` is a live heap allocation of exactly `len` bytes that is not touched
        // through Rust references until `map` (and the run using it) is dropped below.
        unsafe { map.insert(region) }.map_err(|e| ProgramError::Fault(e.to_string()))?;
        start
    };
    let mut env = ExecEnv::default();
    let args = [addr, mem.len() as u64, 0, 0, 0];
    let result = match engine {
        Engine::Jit => {
            let jit = JitProgram::compile(&program, &JitOptions::default())
                .map_err(|e| ProgramError::Rejected(e.to_string()))?;
            let mut jenv = JitEnv::new(&mut map, conformance_registry(), &mut env);
            jit.run(args, &mut jenv)
                .map_err(|f| ProgramError::Fault(f.to_string()))
        }
        Engine::Interp => {
            let limits = Limits {
                max_instructions: CONFORMANCE_MAX_INSTRUCTIONS,
                ..Limits::default()
            };
            let mut vm = Vm {
                mem: &mut map,
                ctx: None,
                helpers: conformance_registry(),
                env: &mut env,
                limits,
            };
            kflex_interp::run(&program, args, &mut vm)
                .map(|o| o.retval)
                .map_err(|f| ProgramError::Fault(f.to_string()))
        }
    };
    drop(map);
    drop(buffer);
    result
}

/// The outcome of one `.data` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    /// The file.
    pub path: PathBuf,
    /// Whether the result matched the expectation.
    pub passed: bool,
    /// What happened (expected vs. actual, or the error).
    pub detail: String,
}

/// Runs one conformance test text: assemble (or take `-- raw`), decode, run, compare with
/// `-- result`. A program that fails to assemble, decode or run passes only if the test expects an
/// error.
pub fn run_test_text(text: &str) -> (bool, String) {
    run_test_text_on(Engine::Interp, text)
}

/// [`run_test_text`] on `engine`.
pub fn run_test_text_on(engine: Engine, text: &str) -> (bool, String) {
    let test = match ConformanceTest::parse(text) {
        Ok(t) => t,
        Err(e) => return (false, format!("cannot parse test file: {e}")),
    };
    let expects_error = test.other.iter().any(|(name, _)| name == "error");
    let insns = match &test.raw {
        Some(raw) => Ok(raw.clone()),
        None => kflex_isa::asm::assemble(&test.asm).map_err(|e| format!("assembly failed: {e}")),
    };
    let outcome = insns
        .and_then(|insns| run_program_on(engine, &insns, &test.mem).map_err(|e| e.to_string()));
    match (outcome, test.result) {
        (Ok(r0), Some(expected)) if r0 == expected => (true, format!("r0 = {r0:#x}")),
        (Ok(r0), Some(expected)) => (false, format!("expected r0 = {expected:#x}, got {r0:#x}")),
        (Ok(r0), None) if expects_error => (false, format!("expected an error, got r0 = {r0:#x}")),
        (Ok(r0), None) => (true, format!("r0 = {r0:#x} (no expected result)")),
        (Err(e), _) if expects_error => (true, format!("error as expected: {e}")),
        (Err(e), _) => (false, e),
    }
}

/// Runs one `.data` file on the interpreter.
pub fn run_file(path: &Path) -> FileOutcome {
    run_file_on(Engine::Interp, path)
}

/// Runs one `.data` file on `engine`.
pub fn run_file_on(engine: Engine, path: &Path) -> FileOutcome {
    let (passed, detail) = match std::fs::read_to_string(path) {
        Ok(text) => run_test_text_on(engine, &text),
        Err(e) => (false, format!("cannot read: {e}")),
    };
    FileOutcome {
        path: path.to_path_buf(),
        passed,
        detail,
    }
}

/// Every `.data` file in `dir`, sorted by name.
pub fn test_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "data") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Runs every `.data` file in `dir` on the interpreter.
pub fn run_dir(dir: &Path) -> std::io::Result<Vec<FileOutcome>> {
    run_dir_on(Engine::Interp, dir)
}

/// Runs every `.data` file in `dir` on `engine`.
pub fn run_dir_on(engine: Engine, dir: &Path) -> std::io::Result<Vec<FileOutcome>> {
    Ok(test_files(dir)?
        .iter()
        .map(|p| run_file_on(engine, p))
        .collect())
}
