//! `kflex run --backend linux`: the same object loaded into the running kernel through libbpf
//! ([`kflex_linux::backend`]) and run with `BPF_PROG_TEST_RUN`, reported like a kflex run
//! (`retval`, `data_out`, `ctx_out`, `ns_per_run`; `engine` and `backend` are `linux`).
//!
//! Options that only mean something to kflex's runtime (`--engine`, `--heap`, `--budget`,
//! `--sfi`, `--no-verify`, `--cpu`, bare bytecode) are refused rather than ignored. When the kernel
//! cannot be used the command says why and exits with [`EXIT_UNAVAILABLE`].

use std::fmt::Write as _;
use std::process::ExitCode;

use kflex_linux::backend::{
    BackendError, LinuxExtension, TestRunInput, TestRunOutput, backend_available,
};
use kflex_object::ProgType;
use serde_json::{Value, json};

use super::super::{CliError, EXIT_PROGRAM, EXIT_USAGE, RunArgs, read_file};
use super::{chosen_programs, inputs, signed_retval, verdict_name};

/// Exit status when the Linux back end cannot run here (no root/CAP_BPF, no BPF, no arena).
pub const EXIT_UNAVAILABLE: u8 = 3;

/// Runs every chosen program of the object, in order, in one loaded instance (maps and the arena
/// are shared between the runs).
pub fn run(args: &RunArgs) -> Result<ExitCode, CliError> {
    refuse_kflex_only_options(args)?;
    let file = args
        .file
        .as_ref()
        .ok_or_else(|| CliError::usage("--backend linux runs an ELF object FILE"))?;
    backend_available().map_err(|why| CliError {
        code: EXIT_UNAVAILABLE,
        message: format!("the Linux back end cannot run here: {why}"),
    })?;
    let bytes = read_file(file)?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "object".into());
    let ext = LinuxExtension::load(&name, &bytes).map_err(|e| CliError {
        code: exit_code(&e),
        message: format!("{}: {e}", file.display()),
    })?;
    let names: Vec<String> = ext.programs().iter().map(|p| p.name.clone()).collect();
    let programs = chosen_programs(args, &name, &names)?;
    let (data_in, ctx_in) = inputs(args)?;
    let input = TestRunInput {
        data_in: &data_in,
        ctx_in: ctx_in.as_deref(),
        repeat: args.repeat,
    };
    for program in &programs {
        let prog_type = ext.program_info(program).map_err(usage)?.prog_type;
        let out = ext.test_run(program, &input).map_err(|e| CliError {
            code: exit_code(&e),
            message: e.to_string(),
        })?;
        if args.json {
            println!("{}", to_json(program, &out, args.repeat));
        } else {
            print!("{}", to_text(program, prog_type, &out, args.repeat));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn refuse_kflex_only_options(args: &RunArgs) -> Result<(), CliError> {
    let given: Vec<&str> = [
        (args.engine.is_some(), "--engine"),
        (args.heap.is_some(), "--heap"),
        (args.budget.is_some(), "--budget"),
        (args.sfi.is_some(), "--sfi"),
        (args.no_verify, "--no-verify"),
        (args.cpu != 0, "--cpu"),
        (args.raw.is_some(), "--raw"),
        (args.hex.is_some(), "--hex"),
        (args.prog_type.is_some(), "--prog-type"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if given.is_empty() {
        Ok(())
    } else {
        Err(CliError::usage(format!(
            "{} appl{} to the kflex back end only, not to --backend linux",
            given.join(", "),
            if given.len() == 1 { "ies" } else { "y" }
        )))
    }
}

/// Rejected programs and failed runs are program errors (exit 1), like kflex's; missing names,
/// bad input and unusable objects are usage errors (exit 2).
fn exit_code(e: &BackendError) -> u8 {
    match e {
        BackendError::Unavailable(_) => EXIT_UNAVAILABLE,
        BackendError::Rejected { .. } | BackendError::Op { .. } => EXIT_PROGRAM,
        BackendError::Open { .. } | BackendError::NotFound { .. } | BackendError::Invalid(_) => {
            EXIT_USAGE
        }
    }
}

fn usage(e: BackendError) -> CliError {
    CliError {
        code: exit_code(&e),
        message: e.to_string(),
    }
}

fn to_json(program: &str, out: &TestRunOutput, repeat: u32) -> Value {
    json!({
        "program": program,
        "backend": "linux",
        "engine": "linux",
        "retval": out.retval,
        "ns_per_run": out.duration_ns,
        "kernel_timed": out.kernel_timed,
        "repeat": repeat.max(1),
        "data_out": kflex::hex::encode(&out.data_out),
        "ctx_out": out.ctx_out.as_deref().map(kflex::hex::encode),
    })
}

fn to_text(program: &str, prog_type: Option<ProgType>, out: &TestRunOutput, repeat: u32) -> String {
    let retval = u64::from(out.retval);
    let mut s = String::new();
    let _ = write!(
        s,
        "program {program}: r0 = {} ({retval:#x})",
        signed_retval(retval)
    );
    if let Some(v) = verdict_name(prog_type, retval) {
        let _ = write!(s, " {v}");
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "{} ns/run over {} run(s) in the Linux kernel ({})",
        out.duration_ns,
        repeat.max(1),
        if out.kernel_timed {
            "timed by BPF_PROG_TEST_RUN"
        } else {
            "wall-clock per BPF_PROG_TEST_RUN call"
        }
    );
    let _ = writeln!(s, "data_out ({} bytes):", out.data_out.len());
    s.push_str(&kflex::hex::dump(&out.data_out, "  "));
    if let Some(ctx) = &out.ctx_out {
        let _ = writeln!(s, "ctx_out ({} bytes):", ctx.len());
        s.push_str(&kflex::hex::dump(ctx, "  "));
    }
    s
}
