//! Shared helpers for kflex's integration tests.
//!
//! * [`skip`]: report a skipped test so that it shows in `cargo test` output even when the test
//!   harness captures output (the `print!` macros are captured; this writes to stderr directly).
//! * [`conformance_dir`]: where the bpf_conformance suite is (`../shared/conformance/tests` beside
//!   the repository, or `KFLEX_CONFORMANCE_DIR`).
//! * [`compile_c`]: compile a C extension with `clang-19 -O2 -g -target bpf -mcpu=v4` against the
//!   repository's SDK headers.

#![warn(missing_docs)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The clang used for extensions (overridable with `KFLEX_CLANG`, as in the examples' build).
pub fn clang() -> String {
    std::env::var("KFLEX_CLANG").unwrap_or_else(|_| "clang-19".to_string())
}

/// Prints `SKIPPED: <reason>` to stderr, bypassing the test harness's output capture.
pub fn skip(reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The SDK include directory (`sdk/include`).
pub fn sdk_include() -> PathBuf {
    repo_root().join("sdk/include")
}

/// The bpf_conformance test directory, if present; otherwise reports the skip and returns `None`.
pub fn conformance_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("KFLEX_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => repo_root().join("../shared/conformance/tests"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        skip(&format!(
            "bpf_conformance suite not found at {}",
            dir.display()
        ));
        None
    }
}

/// True if the extension compiler is installed; otherwise reports the skip.
pub fn have_clang() -> bool {
    let ok = Command::new(clang())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip(&format!(
            "{} not found (run scripts/install-deps.sh)",
            clang()
        ));
    }
    ok
}

/// Compiles the C file `src` into a BPF object and returns its bytes, or `None` (after reporting
/// the skip) when clang is not installed. Panics with clang's diagnostics if compilation fails.
pub fn compile_c(src: &Path) -> Option<Vec<u8>> {
    compile_c_with(src, &[])
}

/// Like [`compile_c`], with extra compiler arguments (e.g. `-DNAME=value`).
pub fn compile_c_with(src: &Path, extra: &[&str]) -> Option<Vec<u8>> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    if !have_clang() {
        return None;
    }
    let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("prog");
    let out = std::env::temp_dir().join(format!(
        "kflex-test-{stem}-{}-{}.o",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let res = Command::new(clang())
        .args(["-O2", "-g", "-target", "bpf", "-mcpu=v4", "-Wall", "-c"])
        .arg("-I")
        .arg(sdk_include())
        .args(extra)
        .arg(src)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run clang");
    assert!(
        res.status.success(),
        "{} failed on {}:\n{}",
        clang(),
        src.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    let bytes = std::fs::read(&out).expect("read compiled object");
    let _ = std::fs::remove_file(&out);
    Some(bytes)
}

/// Number of tests in the bpf_conformance suite beside the repository.
pub const CONFORMANCE_SUITE_SIZE: usize = 313;

/// Runs every `.data` file of the bpf_conformance suite through `run_one` (which gets the file's
/// text and explains a failure in its `Err`), prints `conformance (<engine>): N/M passed`, and
/// asserts that every test passed and that the suite has all of its tests.
/// `KFLEX_CONFORMANCE_ONLY=<text>` restricts the run to files whose path contains `<text>` (the
/// suite-size checks are then skipped). Reports a skip when the suite is absent.
pub fn run_conformance_suite(engine: &str, run_one: impl Fn(&str) -> Result<(), String>) {
    let Some(dir) = conformance_dir() else {
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
    let mut passed = 0;
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let result = std::fs::read_to_string(path)
            .map_err(|e| format!("read: {e}"))
            .and_then(|text| run_one(&text));
        match result {
            Ok(()) => passed += 1,
            Err(why) => failures.push(format!("{name}: {why}")),
        }
    }
    println!("conformance ({engine}): {passed}/{} passed", files.len());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if only.is_none() {
        assert_eq!(files.len(), CONFORMANCE_SUITE_SIZE, "suite size changed");
        assert_eq!(passed, CONFORMANCE_SUITE_SIZE);
    }
}
