//! The `kflex` command: disassemble, test-run, benchmark and conformance-test eBPF extensions.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kflex: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Lets a closed output pipe end the process quietly, as command-line tools do (`kflex ... | head`):
/// Rust starts programs with SIGPIPE ignored, which turns the closed pipe into a panic in `println!`.
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE and no Rust code relies on SIGPIPE being ignored.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
