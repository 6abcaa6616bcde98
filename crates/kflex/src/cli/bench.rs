//! `kflex bench datastructures`: the data-structure benchmark on every engine, as a table on
//! stdout, and optionally JSON and an SVG chart.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kflex::bench::{self, BenchConfig, EngineKind, Engines, Report};
use kflex_datastructures::Structure;

use super::{CliError, EXIT_PROGRAM};

/// What `kflex bench` measures.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Update, lookup and delete of every data-structure extension over uniform and Zipfian key
    /// streams, on native code, kflex's JIT (SFI and perf mode) and interpreter, and the Linux
    /// kernel; ns/op and the ratio to native measured in the same run.
    Datastructures(DatastructuresArgs),
}

/// Arguments of `kflex bench datastructures`.
#[derive(Debug, Args)]
pub struct DatastructuresArgs {
    /// 10,000 keys and one repetition instead of 100,000 keys and three to nine repetitions.
    #[arg(long)]
    quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also draw the ratios to native as an SVG bar chart into this file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Only these structures (comma-separated: list, rbtree, hash, skiplist, countsketch,
    /// countmin, lru).
    #[arg(long, value_delimiter = ',', value_parser = parse_structure)]
    structures: Option<Vec<Structure>>,
    /// Only these engines (comma-separated: native, kflex-jit, kflex-jit-perf, kflex-interp,
    /// linux); native is always measured, as the reference.
    #[arg(long, value_delimiter = ',', value_parser = parse_engine)]
    engines: Option<Vec<EngineKind>>,
}

fn parse_structure(s: &str) -> Result<Structure, String> {
    s.trim().parse()
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    s.trim().parse()
}

/// Runs `kflex bench ...`.
pub fn run(command: &BenchCommand) -> Result<ExitCode, CliError> {
    match command {
        BenchCommand::Datastructures(args) => datastructures(args),
    }
}

fn datastructures(args: &DatastructuresArgs) -> Result<ExitCode, CliError> {
    let mut config = if args.quick {
        BenchConfig::quick()
    } else {
        BenchConfig::full()
    };
    if let Some(s) = &args.structures {
        config.structures = dedup(s);
    }
    if let Some(e) = &args.engines {
        config.engines = dedup(e);
    }
    let missing: Vec<&str> = config
        .structures
        .iter()
        .filter(|s| !s.is_available())
        .map(|s| s.name())
        .collect();
    config.structures.retain(|s| s.is_available());
    if config.structures.is_empty() {
        return Err(CliError::usage(
            "no structure to measure: this build has none of the requested structures",
        ));
    }

    let progress = progress_bar();
    let mut report = bench::run(&config, &mut Engines::new(), &progress);
    if !missing.is_empty() {
        report.notes.push(format!(
            "not measured (not part of this build): {}",
            missing.join(", ")
        ));
    }

    print!("{}", header(&config, &report));
    print!("{}", report.table());
    for f in &report.failures {
        println!(
            "FAILED {} {} on {}: {}",
            f.structure, f.keys, f.engine, f.error
        );
    }
    if let Some(path) = &args.json {
        write(path, &report.to_json())?;
    }
    if let Some(path) = &args.svg {
        let title = format!(
            "kflex data-structure benchmark: ratio to native ({} keys{})",
            config.keys,
            if config.quick { ", quick" } else { "" }
        );
        write(
            path,
            &bench::svg::chart(&report.results, &report.engines, &title),
        )?;
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROGRAM)
    })
}

/// What was measured and how, above the table.
fn header(config: &BenchConfig, report: &Report) -> String {
    let mut out = format!(
        "kflex bench datastructures: {} keys of 32 B, values of 64 B, uniform and Zipf (s = 0.99) \
         streams; {}-{} repetitions per phase, ns/op from each batch's median over them; ratio = \
         native ns/op / engine ns/op (higher is better, 1.0 = native)\n",
        config.keys,
        config.min_repetitions.min(config.max_repetitions),
        config.max_repetitions
    );
    for n in &report.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out.push('\n');
    out
}

fn dedup<T: PartialEq + Copy>(xs: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(xs.len());
    for &x in xs {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    // No steady tick: a ticker thread would compete with the measurement for the CPU; the bar
    // redraws whenever the runner reports the next phase.
    bar
}

fn write(path: &std::path::Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text)
        .map_err(|e| CliError::usage(format!("cannot write {}: {e}", path.display())))
}
