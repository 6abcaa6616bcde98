//! The accept/reject suite in C: each program under `tests/c/` is compiled at test time with
//! `clang-19 -O2 -g -target bpf -mcpu=v4 -I sdk/include`, verified by kflex (with the object's
//! line and function info) and, when `bpf(2)` is available, loaded into the running kernel on the
//! same bytes. Names say which rule each case covers; `relaxation_` cases are accepted by kflex on
//! purpose where Linux refuses.

mod suite_support;

use std::path::Path;

use kflex_object::Object;
use kflex_verify::{VerifiedProgram, VerifyError};
use suite_support::{Linux, Subject, Want, check};

use Linux::{Rejects, Same};
use Want::{Accept, Reject};

/// Compiles `tests/c/<file>.c` and checks its only program; `None` when clang is missing.
fn c_case(file: &str, want: Want, linux: Linux) -> Option<Result<VerifiedProgram, VerifyError>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(format!("{file}.c"));
    let bytes = kflex_testutil::compile_c(&src)?;
    let obj = Object::parse(file, &bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
    let prog = obj
        .programs
        .iter()
        .find(|p| p.name == file)
        .unwrap_or_else(|| panic!("{file}: no program named {file}"));
    let prog_type = prog.prog_type.expect("known program type");
    Some(check(
        &Subject {
            name: file,
            prog_type,
            insns: &prog.insns,
            maps: &obj.maps,
            line_info: &prog.line_info,
            func_info: &prog.func_info,
        },
        want,
        linux,
    ))
}

macro_rules! c_suite {
    ($($(#[$doc:meta])* $name:ident: $file:literal, $want:expr, $linux:expr;)*) => {$(
        $(#[$doc])*
        #[test]
        fn $name() {
            let _ = c_case($file, $want, $linux);
        }
    )*};
}

c_suite! {
    accept_xdp_headers_parsed_behind_bounds_checks: "xdp_parse_checked", Accept, Same;
    reject_xdp_header_read_past_checked_range: "xdp_parse_unchecked", Reject("packet"), Same;
    accept_map_counter_with_null_check_and_atomic_add: "map_counter", Accept, Same;
    reject_map_lookup_dereferenced_without_null_check: "map_null_deref", Reject("or_null"), Same;
    reject_map_value_indexed_without_bound: "map_value_unbounded_index", Reject("map_value pointer"), Same;
    accept_ringbuf_record_reserved_and_submitted: "ringbuf_event", Accept, Same;
    reject_ringbuf_record_leaked_on_one_path: "ringbuf_leak", Reject("nreleased"), Same;
    /// `while (bpf_get_prandom_u32() & 1)`: Linux cannot bound it, kflex accepts on purpose.
    relaxation_unbounded_while_loop_accepted: "unbounded_loop", Accept, Rejects("too large");
    accept_counted_loop_over_packet_bytes: "bounded_loop", Accept, Same;
    accept_static_subprogram_with_stack_pointer_argument: "subprogram", Accept, Same;
    reject_socket_filter_direct_packet_read: "socket_direct_packet", Reject("bpf_context"), Same;
    accept_classifier_writes_mark_and_priority: "tc_set_mark", Accept, Same;
    reject_socket_filter_writes_mark: "socket_set_mark", Reject("bpf_context"), Same;
    reject_context_read_past_struct_end: "ctx_out_of_bounds", Reject("bpf_context"), Same;
    accept_syscall_reads_and_writes_arguments: "syscall_args", Accept, Same;
    accept_heap_counters_in_arena: "heap_counter", Accept, Same;
    reject_helper_of_another_program_type: "helper_wrong_type", Reject("44"), Same;
    accept_can_loop_loop: "may_goto_loop", Accept, Same;
}

/// A rejection names the C source line of the offending instruction (from `.BTF.ext`).
#[test]
fn reject_error_names_the_c_source_line() {
    let Some(result) = c_case("error_names_source_line", Reject("or_null"), Same) else {
        return;
    };
    let err = result.expect_err("rejected");
    let source = err
        .source
        .clone()
        .expect("the error carries the source line");
    assert!(source.contains("error_names_source_line.c"), "{source}");
    assert!(source.contains("BAD READ"), "{source}");
    assert!(err.to_string().contains("BAD READ"), "{err}");
}

/// The loop of a C program is reported as a termination point.
#[test]
fn unbounded_c_loop_back_edge_is_a_termination_point() {
    let Some(result) = c_case("unbounded_loop", Accept, Rejects("too large")) else {
        return;
    };
    let verified = result.expect("accepted");
    assert!(
        verified
            .termination_points
            .iter()
            .any(|t| matches!(t.kind, kflex_verify::TerminationKind::BackEdge { .. })),
        "{:?}",
        verified.termination_points
    );
}
