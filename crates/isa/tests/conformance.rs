//! Assembles every bpf_conformance test and checks it against the `-- raw` words where present.

use std::path::PathBuf;

use kflex_isa::conformance::ConformanceTest;
use kflex_isa::decode::Program;
use kflex_isa::disasm::listing;

use kflex_testutil::conformance_dir;

#[test]
fn all_conformance_programs_assemble_and_decode() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "data"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 313,
        "expected 313 tests, found {}",
        files.len()
    );

    let mut with_raw = 0;
    let mut raw_sections = 0;
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        raw_sections += usize::from(text.lines().any(|l| l.trim() == "-- raw"));
        let test = match ConformanceTest::parse(&text) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        assert!(test.result.is_some(), "{name}: no result");
        let slots = match test.program() {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: assemble: {e}"));
                continue;
            }
        };
        if let Some(raw) = &test.raw {
            with_raw += 1;
            if raw != &slots {
                failures.push(format!("{name}: raw mismatch: {raw:?} vs {slots:?}"));
            }
        }
        match Program::decode(&slots) {
            Ok(p) => assert!(!listing(&p).is_empty()),
            Err(e) => failures.push(format!("{name}: decode: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(raw_sections > 0, "the suite has files with -- raw");
    assert_eq!(with_raw, raw_sections, "files with -- raw");
}
