//! `kflex conformance DIR [--engine jit|interp]`: run every bpf_conformance `.data` test in a
//! directory on one engine.

use std::path::Path;
use std::process::ExitCode;

use super::{CliError, EXIT_PROGRAM};

/// Runs the subcommand.
pub fn run(dir: &Path, verbose: bool, engine: kflex::Engine) -> Result<ExitCode, CliError> {
    let outcomes = kflex::conformance::run_dir_on(engine, dir)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", dir.display())))?;
    let mut passed = 0usize;
    let mut failed = 0usize;
    for o in &outcomes {
        let name = o
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if o.passed {
            passed += 1;
            if verbose {
                println!("PASS {name}: {}", o.detail);
            }
        } else {
            failed += 1;
            println!("FAIL {name}: {}", o.detail);
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::from(EXIT_PROGRAM)
    } else {
        ExitCode::SUCCESS
    })
}
