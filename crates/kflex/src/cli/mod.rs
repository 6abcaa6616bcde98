//! Command-line interface: argument definitions and dispatch to one module per subcommand.

mod bench;
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
        /// Engine: jit or interp (default jit on x86-64 Linux).
        #[arg(long, value_parser = parse_engine)]
        engine: Option<kflex::Engine>,
    },
    /// bpf_conformance plugin protocol: program as hex on stdin, memory as the last argument.
    ConformancePlugin {
        /// Engine: jit or interp (default jit on x86-64 Linux).
        #[arg(long, value_parser = parse_engine)]
        engine: Option<kflex::Engine>,
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
    /// Benchmarks: `kflex bench datastructures` compares every engine with native code.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Arguments of `kflex run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The ELF object (omit with --raw or --hex).
    file: Option<PathBuf>,
    /// Program name (optional when the object has one program). Repeat it to run several programs
    /// in order in one runtime instance (maps and heap shared); each run is reported.
    #[arg(long)]
    program: Vec<String>,
    /// Engine: jit or interp (default jit on x86-64 Linux; unverified programs always run on the
    /// interpreter).
    #[arg(long, value_parser = parse_engine)]
    engine: Option<kflex::Engine>,
    /// Size of the extension heap (the arena map), e.g. 1M, 64M, 64G (K, M, G, T suffixes are
    /// powers of 1024).
    #[arg(long, value_parser = parse_size)]
    heap: Option<u64>,
    /// Time budget of one JIT run of a program with loops, e.g. 500us, 10ms, 2s (default 10ms);
    /// a run past it is cancelled.
    #[arg(long, value_parser = parse_duration)]
    budget: Option<std::time::Duration>,
    /// How the JIT guards heap accesses: segment (default; and-mask where the CPU or heap size
    /// rules it out), and-mask, base, writes-only or none.
    #[arg(long, value_parser = kflex::engine::parse_sfi)]
    sfi: Option<kflex::engine::SfiMode>,
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
    /// Print one JSON object per run instead of text.
    #[arg(long)]
    json: bool,
    /// Run the program without verifying it first (for deliberately unverifiable programs; the
    /// runtime's checks still apply).
    #[arg(long)]
    no_verify: bool,
    #[command(flatten)]
    backend: run::BackendArg,
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

/// Parses `--engine`.
fn parse_engine(s: &str) -> Result<kflex::Engine, String> {
    s.parse()
}

/// Parses a byte size: a number with an optional K, M, G or T suffix (powers of 1024; a trailing
/// `B` or `iB` is allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown size suffix in {s:?} (K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 4096, 64M, 64G)"))?;
    n.checked_mul(1u64 << shift)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("size {s:?} is zero or too large"))
}

/// Parses a duration: a number with a unit, `ns`, `us`, `ms`, `s` or `m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit (ns, us, ms, s or m)"))?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 10ms, 2s)"))?;
    let nanos_per = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (ns, us, ms, s or m)"
            ));
        }
    };
    n.checked_mul(nanos_per)
        .filter(|&v| v > 0)
        .map(std::time::Duration::from_nanos)
        .ok_or_else(|| format!("duration {s:?} is zero or too large"))
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Disasm { file, program } => disasm::run(&file, program.as_deref()),
        Command::Run(args) => run::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Conformance {
            dir,
            verbose,
            engine,
        } => conformance::run(&dir, verbose, engine.unwrap_or_default()),
        Command::ConformancePlugin { engine, args } => {
            Ok(plugin::run(&args, engine.unwrap_or_default()))
        }
        Command::Demo { repeat } => demo::run(repeat),
        Command::Bench(what) => bench::run(&what),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_duration, parse_size};
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for bad in ["", "10", "ms", "0ms", "1h", "-1s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64G"), Ok(64 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        for bad in ["", "M", "0", "12Q", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
