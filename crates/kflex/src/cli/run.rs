//! `kflex run`: test-run one program of an object, or bare bytecode, and print the results. The
//! program is verified first (unless `--no-verify`); a rejected program is not run (exit 1).
//! `--backend linux` runs the same object in the Linux kernel instead (see [`linux`]).

mod linux;

use std::fmt::Write as _;
use std::process::ExitCode;

use kflex::{Extension, ExtensionOptions, ProgType, TestRunOptions, TestRunResult};
use kflex_isa::Insn;
use serde_json::{Value, json};

use super::{CliError, RunArgs, read_file};

/// `--backend`: which back end runs the object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// kflex's own runtime (interpreter or JIT).
    #[default]
    Kflex,
    /// The running Linux kernel: the object loaded through libbpf, run with BPF_PROG_TEST_RUN.
    Linux,
}

/// The `--backend` option of `kflex run`.
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArg {
    /// Back end: kflex (default) or linux (the same object loaded into the running kernel through
    /// libbpf and run with BPF_PROG_TEST_RUN; needs root or CAP_BPF, exits 3 when unavailable).
    #[arg(long, value_enum, default_value_t)]
    pub backend: Backend,
}

/// Runs the subcommand: every `--program` in order, in one extension instance (so maps and the
/// heap are shared between the runs), reporting each run.
pub fn run(args: &RunArgs) -> Result<ExitCode, CliError> {
    if args.backend.backend == Backend::Linux {
        return linux::run(args);
    }
    let ext = load(args)?;
    let programs = chosen_programs(args, ext.name(), ext.program_names())?;
    let (data_in, ctx_in) = inputs(args)?;
    let options = TestRunOptions {
        data_in,
        ctx_in,
        repeat: args.repeat,
        cpu: args.cpu,
        engine: args.engine,
        budget: args.budget,
    };
    for program in &programs {
        let result = ext.test_run(program, &options)?;
        let prog_type = ext.program(program)?.prog_type;
        let ringbufs = drain_ringbufs(&ext)?;
        if args.json {
            println!("{}", to_json(program, &result, args.repeat, &ringbufs));
        } else {
            print!(
                "{}",
                to_text(program, prog_type, &result, args.repeat, &ringbufs)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The programs to run: every `--program`, or the object's only program.
fn chosen_programs(
    args: &RunArgs,
    object: &str,
    names: &[String],
) -> Result<Vec<String>, CliError> {
    if !args.program.is_empty() {
        return Ok(args.program.clone());
    }
    match names {
        [only] => Ok(vec![only.clone()]),
        names => Err(CliError::usage(format!(
            "{object} has {} programs; choose with --program ({})",
            names.len(),
            names.join(", ")
        ))),
    }
}

/// `--packet` and `--ctx` file contents.
fn inputs(args: &RunArgs) -> Result<(Vec<u8>, Option<Vec<u8>>), CliError> {
    let data_in = match &args.packet {
        Some(p) => read_file(p)?,
        None => Vec::new(),
    };
    let ctx_in = match &args.ctx {
        Some(p) => Some(read_file(p)?),
        None => None,
    };
    Ok((data_in, ctx_in))
}

fn load(args: &RunArgs) -> Result<Extension, CliError> {
    let bare: Option<Vec<u8>> = match (&args.raw, &args.hex) {
        (Some(path), _) => Some(read_file(path)?),
        (None, Some(text)) => {
            Some(kflex::hex::decode(text).map_err(|e| CliError::usage(format!("--hex: {e}")))?)
        }
        (None, None) => None,
    };
    let options = ExtensionOptions {
        verify: !args.no_verify,
        engine: args.engine.unwrap_or_default(),
        heap_size: args.heap,
        jit: kflex::engine::JitConfig {
            sfi: args.sfi.unwrap_or_default(),
            ..kflex::engine::JitConfig::default()
        },
        ..ExtensionOptions::default()
    };
    match bare {
        Some(bytes) => {
            let ty = args
                .prog_type
                .as_deref()
                .ok_or_else(|| CliError::usage("bare bytecode needs --prog-type TYPE"))?;
            let prog_type = parse_prog_type(ty)?;
            let insns = Insn::slice_from_bytes(&bytes).ok_or_else(|| {
                CliError::usage(format!(
                    "bytecode is {} bytes, not a multiple of the 8-byte instruction size",
                    bytes.len()
                ))
            })?;
            Ok(Extension::from_raw(&insns, Some(prog_type), options)?)
        }
        None => {
            let file = args
                .file
                .as_ref()
                .ok_or_else(|| CliError::usage("give an object FILE, --raw FILE or --hex HEX"))?;
            if args.prog_type.is_some() {
                return Err(CliError::usage(
                    "--prog-type applies to bare bytecode only (objects name it in the section)",
                ));
            }
            Extension::load_file(file, options).map_err(|e| {
                let mut err = CliError::from(e);
                err.message = format!("{}: {}", file.display(), err.message);
                err
            })
        }
    }
}

/// Parses a program type name.
pub fn parse_prog_type(name: &str) -> Result<ProgType, CliError> {
    ProgType::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = ProgType::ALL.iter().map(|t| t.name()).collect();
        CliError::usage(format!(
            "unknown program type {name:?} (one of {})",
            names.join(", ")
        ))
    })
}

/// Ring-buffer records by map name.
pub type RingbufRecords = Vec<(String, Vec<Vec<u8>>)>;

/// Every ring buffer's pending records, by map name.
pub fn drain_ringbufs(ext: &Extension) -> Result<RingbufRecords, CliError> {
    let mut out = Vec::new();
    for m in ext.maps() {
        if m.spec().map_type == kflex::MapType::Ringbuf {
            out.push((m.name().to_string(), m.ringbuf_records()?));
        }
    }
    Ok(out)
}

/// r0 as a signed number: programs return `int`, so a value that fits in 32 bits is read as an
/// `i32` (Linux reports test-run return values as 32-bit too); wider values as an `i64`.
pub fn signed_retval(retval: u64) -> i64 {
    match u32::try_from(retval) {
        Ok(v) => i64::from(v as i32),
        Err(_) => retval as i64,
    }
}

/// The meaning of a return value for a program type (`XDP_PASS`, `TC_ACT_SHOT`, ...).
pub fn verdict_name(prog_type: Option<ProgType>, retval: u64) -> Option<&'static str> {
    let names: &[&str] = match prog_type? {
        ProgType::Xdp => &[
            "XDP_ABORTED",
            "XDP_DROP",
            "XDP_PASS",
            "XDP_TX",
            "XDP_REDIRECT",
        ],
        ProgType::SchedCls => {
            if retval == u64::from(u32::MAX) || retval == u64::MAX {
                return Some("TC_ACT_UNSPEC");
            }
            &[
                "TC_ACT_OK",
                "TC_ACT_RECLASSIFY",
                "TC_ACT_SHOT",
                "TC_ACT_PIPE",
                "TC_ACT_STOLEN",
                "TC_ACT_QUEUED",
                "TC_ACT_REPEAT",
                "TC_ACT_REDIRECT",
            ]
        }
        ProgType::SkSkb => &["SK_DROP", "SK_PASS"],
        _ => return None,
    };
    usize::try_from(retval)
        .ok()
        .and_then(|i| names.get(i))
        .copied()
}

fn to_json(program: &str, r: &TestRunResult, repeat: u32, ringbufs: &RingbufRecords) -> Value {
    let rb: serde_json::Map<String, Value> = ringbufs
        .iter()
        .map(|(name, recs)| {
            let v: Vec<Value> = recs.iter().map(|b| json!(kflex::hex::encode(b))).collect();
            (name.clone(), Value::Array(v))
        })
        .collect();
    json!({
        "program": program,
        "backend": "kflex",
        "retval": r.retval,
        "ns_per_run": r.ns_per_run,
        "instructions": r.instructions_per_run,
        "repeat": repeat.max(1),
        "data_out": kflex::hex::encode(&r.data_out),
        "ctx_out": r.ctx_out.as_deref().map(kflex::hex::encode),
        "trace": r.trace,
        "trace_dropped": r.trace_dropped,
        "ringbuf": rb,
        "resources_released": r.resources_released,
        "engine": r.engine.name(),
        "cancelled": r.cancelled,
        "cancel_reason": r.cancel_reason,
        "guards_emitted": r.guards_emitted,
        "guards_elided": r.guards_elided,
    })
}

fn to_text(
    program: &str,
    prog_type: Option<ProgType>,
    r: &TestRunResult,
    repeat: u32,
    ringbufs: &RingbufRecords,
) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "program {program}: r0 = {} ({:#x})",
        signed_retval(r.retval),
        r.retval
    );
    if let Some(v) = verdict_name(prog_type, r.retval) {
        let _ = write!(s, " {v}");
    }
    s.push('\n');
    match r.engine {
        kflex::Engine::Jit => {
            let _ = writeln!(
                s,
                "{} ns/run over {} run(s) on the JIT ({} heap guard(s), {} elided)",
                r.ns_per_run,
                repeat.max(1),
                r.guards_emitted,
                r.guards_elided
            );
        }
        kflex::Engine::Interp => {
            let _ = writeln!(
                s,
                "{} ns/run over {} run(s) on the interpreter, {} instructions/run",
                r.ns_per_run,
                repeat.max(1),
                r.instructions_per_run
            );
        }
    }
    if let Some(reason) = &r.cancel_reason {
        let _ = writeln!(s, "cancelled: {reason}");
    }
    let _ = writeln!(s, "data_out ({} bytes):", r.data_out.len());
    s.push_str(&kflex::hex::dump(&r.data_out, "  "));
    if let Some(ctx) = &r.ctx_out {
        let _ = writeln!(s, "ctx_out ({} bytes):", ctx.len());
        s.push_str(&kflex::hex::dump(ctx, "  "));
    }
    if !r.trace.is_empty() {
        let _ = writeln!(s, "trace:");
        for line in &r.trace {
            let _ = writeln!(s, "  {line}");
        }
        if r.trace_dropped > 0 {
            let _ = writeln!(s, "  ... {} more lines dropped", r.trace_dropped);
        }
    }
    for (name, recs) in ringbufs {
        let _ = writeln!(s, "ringbuf {name}: {} record(s)", recs.len());
        for (i, rec) in recs.iter().enumerate() {
            let _ = writeln!(
                s,
                "  record {i} ({} bytes): {}",
                rec.len(),
                kflex::hex::encode(rec)
            );
        }
    }
    if r.resources_released > 0 {
        let _ = writeln!(
            s,
            "released {} resource(s) the program still held at exit",
            r.resources_released
        );
    }
    s
}
