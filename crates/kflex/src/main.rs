//! The `kflex` command: disassemble, test-run, benchmark and conformance-test eBPF extensions.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kflex: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
