//! `kflex verify`: run the verifier over the programs of an object, or over bare bytecode, and
//! report each verdict with its statistics (text or JSON). Exit status 0 when every program is
//! accepted, 1 when one is rejected, 2 for bad input or usage.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use kflex::link;
use kflex_isa::Insn;
use kflex_isa::decode::Program;
use kflex_object::{FuncInfo, LineInfo, MapSpec, Object, ProgType};
use kflex_verify::{Stats, VerifyError, VerifyInput, VerifyOptions};
use serde_json::{Value, json};

use super::run::parse_prog_type;
use super::{CliError, EXIT_PROGRAM, VerifyArgs, read_file};

/// What one program's verification came to.
struct Report {
    program: String,
    accepted: bool,
    stats: Stats,
    /// The full error text on rejection.
    error: Option<String>,
    pc: Option<usize>,
    source: Option<String>,
    hint: Option<String>,
    /// Exploration log (printed to stderr at log level 2).
    log: String,
}

impl Report {
    fn accepted(program: &str, stats: Stats, log: String) -> Self {
        Report {
            program: program.to_string(),
            accepted: true,
            stats,
            error: None,
            pc: None,
            source: None,
            hint: None,
            log,
        }
    }

    fn rejected(program: &str, e: &VerifyError) -> Self {
        Report {
            program: program.to_string(),
            accepted: false,
            stats: e.stats.clone(),
            error: Some(e.to_string()),
            pc: e.pc,
            source: e.source.clone(),
            hint: e.effective_hint().filter(|h| !h.is_empty()),
            log: e.log.clone(),
        }
    }

    /// A program the verifier could not even start on (it does not decode, or has no type).
    fn refused(program: &str, pc: Option<usize>, source: Option<String>, message: String) -> Self {
        Report {
            program: program.to_string(),
            accepted: false,
            stats: Stats::default(),
            error: Some(message),
            pc,
            source,
            hint: None,
            log: String::new(),
        }
    }

    fn to_json(&self) -> Value {
        let s = &self.stats;
        json!({
            "program": self.program,
            "verdict": if self.accepted { "accept" } else { "reject" },
            "error": self.error,
            "pc": self.pc,
            "source": self.source,
            "hint": self.hint,
            "insns_processed": s.insns_processed,
            "states_explored": s.states_explored,
            "states_pruned": s.states_pruned,
            "peak_states": s.peak_states,
            "guards_emitted": s.guards_emitted,
            "guards_elided": s.guards_elided,
            "back_edges": s.back_edges,
            "time_us": u64::try_from(s.time.as_micros()).unwrap_or(u64::MAX),
        })
    }

    fn to_text(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        if self.accepted {
            let _ = writeln!(
                out,
                "program {}: accepted ({} insns processed, {} states explored, {} pruned, \
                 peak {}, guards {} emitted / {} elided, {} back-edges, {} us)",
                self.program,
                s.insns_processed,
                s.states_explored,
                s.states_pruned,
                s.peak_states,
                s.guards_emitted,
                s.guards_elided,
                s.back_edges,
                s.time.as_micros()
            );
        } else {
            let _ = writeln!(out, "program {}: rejected", self.program);
            for line in self.error.as_deref().unwrap_or("").lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        out
    }
}

/// One program to verify, borrowed from an object or built from bare bytecode.
struct Job<'a> {
    name: &'a str,
    insns: &'a [Insn],
    prog_type: Option<ProgType>,
    line_info: &'a [LineInfo],
    func_info: &'a [FuncInfo],
}

fn verify_one(job: &Job<'_>, maps: &[MapSpec], options: &VerifyOptions) -> Report {
    let line_of = |pc: usize| {
        let n = job.line_info.partition_point(|l| l.insn <= pc);
        let li = job.line_info.get(n.checked_sub(1)?)?;
        Some(format!("{}:{}: {}", li.file, li.line, li.source.trim()))
    };
    let code = match Program::decode(job.insns) {
        Ok(code) => code,
        Err(e) => {
            return Report::refused(
                job.name,
                Some(e.pc),
                line_of(e.pc),
                format!("instruction {} does not decode: {}", e.pc, e.reason),
            );
        }
    };
    let Some(prog_type) = job.prog_type else {
        return Report::refused(
            job.name,
            None,
            None,
            "the program's section names no program type kflex supports".to_string(),
        );
    };
    let helpers = match link::helper_registry(prog_type, &[]) {
        Ok(h) => h,
        Err(e) => return Report::refused(job.name, None, None, e.to_string()),
    };
    let input = VerifyInput {
        program: &code,
        prog_type,
        maps,
        helpers: &helpers,
        line_info: job.line_info,
        func_info: job.func_info,
    };
    match kflex_verify::verify(&input, options) {
        Ok(v) => Report::accepted(job.name, v.stats, v.log),
        Err(e) => Report::rejected(job.name, &e),
    }
}

fn verify_object(path: &Path, args: &VerifyArgs) -> Result<Vec<Report>, CliError> {
    if args.prog_type.is_some() {
        return Err(CliError::usage(
            "--prog-type applies to bare bytecode only (objects name it in the section)",
        ));
    }
    let bytes = read_file(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let object = Object::parse(&name, &bytes)
        .map_err(|e| CliError::usage(format!("{}: cannot load object: {e}", path.display())))?;
    let selected: Vec<&kflex_object::Program> = match &args.program {
        Some(p) => vec![object.program(p).ok_or_else(|| {
            let names: Vec<&str> = object.programs.iter().map(|p| p.name.as_str()).collect();
            CliError::usage(format!(
                "no program named {p:?} in {name} (programs: {})",
                names.join(", ")
            ))
        })?],
        None => object.programs.iter().collect(),
    };
    if selected.is_empty() {
        return Err(CliError::usage(format!("{name} has no programs")));
    }
    let options = verify_options(args);
    Ok(selected
        .into_iter()
        .map(|p| {
            let job = Job {
                name: &p.name,
                insns: &p.insns,
                prog_type: p.prog_type,
                line_info: &p.line_info,
                func_info: &p.func_info,
            };
            verify_one(&job, &object.maps, &options)
        })
        .collect())
}

fn bare_bytes(args: &VerifyArgs) -> Result<Option<Vec<u8>>, CliError> {
    let hex = |text: &str, what: &str| {
        kflex::hex::decode(text).map_err(|e| CliError::usage(format!("{what}: {e}")))
    };
    Ok(match (&args.raw, &args.hex, &args.hex_file) {
        (Some(path), _, _) => Some(read_file(path)?),
        (None, Some(text), _) => Some(hex(text, "--hex")?),
        (None, None, Some(path)) => {
            let text = String::from_utf8(read_file(path)?).map_err(|_| {
                CliError::usage(format!("{}: not hex text (not UTF-8)", path.display()))
            })?;
            Some(hex(&text, &format!("--hex-file {}", path.display()))?)
        }
        (None, None, None) => None,
    })
}

fn verify_bare(bytes: &[u8], args: &VerifyArgs) -> Result<Vec<Report>, CliError> {
    let ty = args
        .prog_type
        .as_deref()
        .ok_or_else(|| CliError::usage("bare bytecode needs --prog-type TYPE"))?;
    let prog_type = parse_prog_type(ty)?;
    if args.program.is_some() {
        return Err(CliError::usage("--program applies to objects only"));
    }
    let insns = Insn::slice_from_bytes(bytes).ok_or_else(|| {
        CliError::usage(format!(
            "bytecode is {} bytes, not a multiple of the 8-byte instruction size",
            bytes.len()
        ))
    })?;
    if insns.is_empty() {
        return Err(CliError::usage("the bytecode is empty"));
    }
    let job = Job {
        name: kflex::RAW_PROGRAM_NAME,
        insns: &insns,
        prog_type: Some(prog_type),
        line_info: &[],
        func_info: &[],
    };
    Ok(vec![verify_one(&job, &[], &verify_options(args))])
}

fn verify_options(args: &VerifyArgs) -> VerifyOptions {
    VerifyOptions {
        log_level: args.log_level,
        ..VerifyOptions::default()
    }
}

/// Runs the subcommand.
pub fn run(args: &VerifyArgs) -> Result<ExitCode, CliError> {
    let reports = match (bare_bytes(args)?, &args.file) {
        (Some(bytes), None) => verify_bare(&bytes, args)?,
        (None, Some(file)) => verify_object(file, args)?,
        (Some(_), Some(_)) => {
            return Err(CliError::usage(
                "give either an object FILE or bare bytecode (--raw, --hex, --hex-file), not both",
            ));
        }
        (None, None) => {
            return Err(CliError::usage(
                "give an object FILE, or --raw FILE / --hex HEX / --hex-file FILE with --prog-type",
            ));
        }
    };
    if args.log_level >= 2 {
        for r in &reports {
            if !r.log.is_empty() {
                eprintln!("--- verifier log: program {} ---", r.program);
                eprint!("{}", r.log);
                if !r.log.ends_with('\n') {
                    eprintln!();
                }
            }
        }
    }
    if args.json {
        let value = match reports.as_slice() {
            [one] => one.to_json(),
            many => Value::Array(many.iter().map(Report::to_json).collect()),
        };
        println!("{value}");
    } else {
        for r in &reports {
            print!("{}", r.to_text());
        }
    }
    Ok(if reports.iter().all(|r| r.accepted) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PROGRAM)
    })
}
