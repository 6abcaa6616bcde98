//! Command-line interface: argument definitions and dispatch to one module per subcommand.

mod conformance;
mod demo;
mod disasm;
mod plugin;
mod run;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit status when a program was rejected or faulted (or a conformance test failed).
pub const EXIT_PROGRAM: u8 = 1;
/// Exit status for bad input or usage.
pub const EXIT_USAGE: u8 = 2;

/// kflex: safe, fast, flexible eBPF extensions.
#[derive(Debug, Parser)]
#[command(name = "kflex", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Disassemble the programs of an object, with C source lines from line info.
    Disasm {
        /// The ELF object (clang -target bpf).
        file: PathBuf,
        /// Only this program.
        #[arg(long)]
        program: Option<String>,
    },
    /// Test-run a program (like BPF_PROG_TEST_RUN); it is verified first unless --no-verify.
    Run(RunArgs),
    /// Verify the programs of an object, or bare bytecode (exit 0 accepted, 1 rejected, 2 usage).
    Verify(VerifyArgs),
    /// Run every bpf_conformance `.data` test in a directory.
    Conformance {
        /// Directory holding the `.data` files.
        dir: PathBuf,
        /// Also list the tests that pass.
        #[arg(long)]
        verbose: bool,
    },
    /// bpf_conformance plugin protocol: program as hex on stdin, memory as the last argument.
    ConformancePlugin {
        /// Options of the upstream runner, then the memory as hex (the last argument).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Verify, test-run and benchmark every bundled example extension.
    Demo {
        /// Runs per benchmark.
        #[arg(long, default_value_t = 100_000)]
        repeat: u32,
    },
}

/// Arguments of `kflex run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The ELF object (omit with --raw or --hex).
    file: Option<PathBuf>,
    /// Program name (optional when the object has one program).
    #[arg(long)]
    program: Option<String>,
    /// Bare bytecode file (8-byte little-endian instruction slots).
    #[arg(long, conflicts_with_all = ["file", "hex"])]
    raw: Option<PathBuf>,
    /// Bare bytecode as hex text (two hex digits per byte, white space optional).
    #[arg(long, conflicts_with_all = ["file", "raw"])]
    hex: Option<String>,
    /// Program type of bare bytecode (xdp, socket_filter, sched_cls, sk_skb, syscall).
    #[arg(long)]
    prog_type: Option<String>,
    /// File with the input packet (data_in).
    #[arg(long)]
    packet: Option<PathBuf>,
    /// File with the input context (ctx_in).
    #[arg(long)]
    ctx: Option<PathBuf>,
    /// Number of runs (timing is the mean).
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// CPU number the run is considered to execute on.
    #[arg(long, default_value_t = 0)]
    cpu: u32,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Run the program without verifying it first (for deliberately unverifiable programs; the
    /// runtime's checks still apply).
    #[arg(long)]
    no_verify: bool,
}

/// Arguments of `kflex verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The ELF object (omit with --raw, --hex or --hex-file).
    file: Option<PathBuf>,
    /// Only this program (default: every program of the object).
    #[arg(long)]
    program: Option<String>,
    /// Bare bytecode file (8-byte little-endian instruction slots).
    #[arg(long, conflicts_with_all = ["file", "hex", "hex_file"])]
    raw: Option<PathBuf>,
    /// Bare bytecode as hex text (two hex digits per byte, white space optional).
    #[arg(long, conflicts_with_all = ["file", "raw", "hex_file"])]
    hex: Option<String>,
    /// File holding bare bytecode as hex text (for programs too long for one argument).
    #[arg(long, conflicts_with_all = ["file", "raw", "hex"])]
    hex_file: Option<PathBuf>,
    /// Program type of bare bytecode (xdp, socket_filter, sched_cls, sk_skb, syscall).
    #[arg(long)]
    prog_type: Option<String>,
    /// 0: verdicts only, 1: summary and error context, 2: also the per-instruction exploration
    /// log on stderr.
    #[arg(long, default_value_t = 1)]
    log_level: u8,
    /// Print JSON: one object per program (an array of them when several are verified).
    #[arg(long)]
    json: bool,
}

/// An error to report on stderr with an exit status.
#[derive(Debug)]
pub struct CliError {
    /// Exit status.
    pub code: u8,
    /// Message.
    pub message: String,
}

impl CliError {
    /// A bad-input/usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }
}

impl From<kflex::Error> for CliError {
    fn from(e: kflex::Error) -> Self {
        CliError {
            code: if e.is_program_error() {
                EXIT_PROGRAM
            } else {
                EXIT_USAGE
            },
            message: e.to_string(),
        }
    }
}

/// Reads a whole file, mapping errors to exit status 2.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Disasm { file, program } => disasm::run(&file, program.as_deref()),
        Command::Run(args) => run::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Conformance { dir, verbose } => conformance::run(&dir, verbose),
        Command::ConformancePlugin { args } => Ok(plugin::run(&args)),
        Command::Demo { repeat } => demo::run(repeat),
    }
}
