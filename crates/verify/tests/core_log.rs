//! The exploration log and error reports, for assembly and for C compiled at test time.

mod support;

use std::path::Path;

use kflex_isa::decode::Program;
use kflex_object::Object;
use kflex_object::ProgType::Xdp;
use kflex_verify::{TerminationKind, VerifiedProgram, VerifyError, VerifyOptions};
use support::*;

#[test]
fn level_two_log_shows_each_instruction_and_state() {
    let options = VerifyOptions {
        log_level: 2,
        ..VerifyOptions::default()
    };
    let p = check_with(
        "mov %r2, %r10\nadd %r2, -8\nmov %r0, 0\nexit",
        Xdp,
        &[],
        &options,
    )
    .unwrap();
    assert!(
        p.log.contains("1: r2 += -0x8 ; R1=ctx() R2=fp0 R10=fp0"),
        "{}",
        p.log
    );
    assert!(
        p.log.contains("3: exit ; R0=0 R1=ctx() R2=fp-8 R10=fp0"),
        "{}",
        p.log
    );
    assert!(
        p.log.contains(
            "processed 4 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states"
        ),
        "{}",
        p.log
    );
    let quiet = check("mov %r0, 0\nexit", Xdp, &[]).unwrap();
    assert!(quiet.log.is_empty());
}

#[test]
fn errors_carry_the_state_and_the_log() {
    let options = VerifyOptions {
        log_level: 1,
        ..VerifyOptions::default()
    };
    let e = check_with(
        "stdw [%r10-8], 3\nldxdw %r0, [%r10-16]\nexit",
        Xdp,
        &[],
        &options,
    )
    .unwrap_err();
    assert_eq!(e.pc, Some(1));
    assert_eq!(e.disasm.as_deref(), Some("r0 = *(u64 *)(r10 - 0x10)"));
    assert_eq!(e.state.as_deref(), Some("R1=ctx() R10=fp0 fp-8=3"));
    assert!(e.log.contains("processed 2 insns"), "{}", e.log);
    assert_eq!(e.stats.insns_processed, 2);
    let text = e.to_string();
    assert!(text.contains("at instruction 1"), "{text}");
    assert!(
        text.contains("hint: initialise the 8 stack byte(s) at fp-16"),
        "{text}"
    );
}

fn verify_c(file: &str) -> Option<Result<VerifiedProgram, VerifyError>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(file);
    let bytes = kflex_testutil::compile_c(&path)?;
    let obj = Object::parse(file, &bytes).unwrap();
    let prog = &obj.programs[0];
    let code = Program::decode(&prog.insns).unwrap();
    Some(verify_object_program(
        &obj,
        prog,
        &code,
        &VerifyOptions::default(),
    ))
}

#[test]
fn c_packet_read_without_check_names_the_source_line() {
    let Some(result) = verify_c("core_unchecked_packet.c") else {
        return;
    };
    let e = result.expect_err("unchecked packet access must be rejected");
    assert!(e.rule.contains("invalid access to packet"), "{e}");
    let source = e.source.as_deref().unwrap_or("");
    assert!(
        source.contains("core_unchecked_packet.c") && source.contains("data[23]"),
        "{e}"
    );
    assert!(e.hint.contains("data_end"), "{e}");
}

#[test]
fn c_unbounded_loop_is_accepted_with_a_back_edge() {
    let Some(result) = verify_c("core_loop_walk.c") else {
        return;
    };
    let p = result.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        p.termination_points
            .iter()
            .any(|t| matches!(t.kind, TerminationKind::BackEdge { target } if target <= t.pc)),
        "{:?}",
        p.termination_points
    );
    assert!(p.stats.time.as_millis() < 500);
}
