//! The accept/reject suite in assembly: one test per rule of the verifier (issue 3). Each case
//! states kflex's verdict (with a substring of the broken rule for rejections) and what the
//! running Linux kernel says about the same bytes (checked when `bpf(2)` is available):
//! `Same`, `Rejects(..)` for kflex's deliberate relaxations (names start with `relaxation_`),
//! `Accepts` where kflex is deliberately stricter than privileged Linux (names start with
//! `stricter_`), or `Skip` where a raw load cannot express the case.

mod suite_support;

use kflex_object::ProgType::{SchedCls, SocketFilter, Syscall, Xdp};
use kflex_verify::{HeapAccess, TerminationKind, VerifyOptions};
use suite_support::{Linux, Subject, Want, asm, case, check_with, maps};

use Linux::{Accepts, Rejects, Same, Skip};
use Want::{Accept, Reject};

macro_rules! suite {
    ($($(#[$doc:meta])* $name:ident: $t:expr, $want:expr, $linux:expr, $src:expr;)*) => {$(
        $(#[$doc])*
        #[test]
        fn $name() {
            let _ = case(stringify!($name), $t, $src, $want, $linux);
        }
    )*};
}

/// Looks up `arr[0]` into r0 and skips to `out` when it is NULL (needs an `out:` label).
const LOOKUP_ARR: &str = "
    stw [%r10-4], 0
    mov %r2, %r10
    add %r2, -4
    map_fd %r1, 0
    call 1
    jeq %r0, 0, out
";

suite! {
    // ---- Registers, ALU, stack. ----
    /// Every ALU operation and width on initialised scalars.
    accept_alu_every_operation_and_width: Xdp, Accept, Same, "
        mov %r0, 7
        add %r0, 3
        sub32 %r0, 1
        mul %r0, 3
        div %r0, 2
        sdiv %r0, -3
        mod %r0, 5
        smod %r0, 3
        or %r0, 16
        and32 %r0, 255
        lsh %r0, 3
        rsh %r0, 1
        arsh %r0, 2
        xor %r0, 1
        neg %r0
        be16 %r0
        bswap64 %r0
        movsx832 %r1, %r0
        movsx3264 %r1, %r1
        mov %r0, 2
        exit";
    reject_uninitialised_register_read: Xdp, Reject("R2"), Same, "
        mov %r0, %r2
        exit";
    reject_exit_without_return_value: Xdp, Reject("R0"), Same, "
        exit";
    /// Reading stack bytes never written: privileged Linux allows it (allow_uninit_stack).
    stricter_uninitialised_stack_read_rejected: Xdp, Reject("stack"), Accepts, "
        ldxdw %r0, [%r10-8]
        mov %r0, 2
        exit";
    accept_spilled_pointer_keeps_its_type: Xdp, Accept, Same, "
        stxdw [%r10-8], %r1
        ldxdw %r2, [%r10-8]
        ldxw %r0, [%r2+12]
        mov %r0, 2
        exit";
    reject_stack_write_below_frame: Xdp, Reject("stack"), Same, "
        stdw [%r10-520], 0
        mov %r0, 2
        exit";
    reject_stack_write_above_frame_pointer: Xdp, Reject("stack"), Same, "
        stdw [%r10+0], 0
        mov %r0, 2
        exit";
    reject_frame_pointer_write: Xdp, Reject("frame pointer"), Same, "
        mov %r10, 0
        mov %r0, 2
        exit";
    reject_division_by_immediate_zero: Xdp, Reject("div"), Same, "
        mov %r0, 1
        div %r0, 0
        exit";
    reject_shift_by_width_or_more: Xdp, Reject("shift"), Same, "
        mov %r0, 1
        lsh %r0, 64
        exit";
    reject_scalar_dereference: Xdp, Reject("R1"), Same, "
        mov %r1, 4096
        ldxw %r0, [%r1+0]
        exit";

    // ---- Branches and refinement. ----
    accept_branch_bounds_variable_map_offset: Xdp, Accept, Same, &format!("{LOOKUP_ARR}
        ldxw %r1, [%r0+0]
        jgt %r1, 24, out
        add %r0, %r1
        ldxdw %r2, [%r0+0]
    out:
        mov %r0, 2
        exit");
    reject_variable_map_offset_without_bound: Xdp, Reject("R0"), Same, &format!("{LOOKUP_ARR}
        ldxw %r1, [%r0+0]
        add %r0, %r1
        ldxdw %r2, [%r0+0]
    out:
        mov %r0, 2
        exit");
    reject_bound_one_byte_too_loose: Xdp, Reject("outside the 32-byte region"), Same, &format!("{LOOKUP_ARR}
        ldxw %r1, [%r0+0]
        jgt %r1, 25, out
        add %r0, %r1
        ldxdw %r2, [%r0+0]
    out:
        mov %r0, 2
        exit");
    accept_jmp32_refinement: Xdp, Accept, Same, &format!("{LOOKUP_ARR}
        ldxw %r1, [%r0+0]
        jgt32 %r1, 24, out
        add %r0, %r1
        ldxdw %r2, [%r0+0]
    out:
        mov %r0, 2
        exit");
    accept_signed_range_refinement: Xdp, Accept, Same, &format!("{LOOKUP_ARR}
        ldxdw %r1, [%r0+0]
        jsgt %r1, 24, out
        jslt %r1, 0, out
        add %r0, %r1
        ldxdw %r2, [%r0+0]
    out:
        mov %r0, 2
        exit");
    accept_impossible_branch_not_explored: Xdp, Accept, Same, "
        mov %r1, 5
        jgt %r1, 10, bad
        mov %r0, 2
        exit
    bad:
        mov %r0, %r5
        exit";

    // ---- BPF-to-BPF calls. ----
    accept_bpf_to_bpf_call: Xdp, Accept, Same, "
        mov %r1, 3
        call local f
        mov %r0, 2
        exit
    f:
        mov %r0, %r1
        add %r0, 1
        exit";
    accept_callee_writes_caller_stack: Xdp, Accept, Same, "
        mov %r1, %r10
        add %r1, -8
        call local f
        ldxdw %r0, [%r10-8]
        mov %r0, 2
        exit
    f:
        stdw [%r1+0], 7
        mov %r0, 0
        exit";
    reject_callee_reads_argument_never_passed: Xdp, Reject("R3"), Same, "
        mov %r1, 1
        call local f
        mov %r0, 2
        exit
    f:
        mov %r0, %r3
        exit";
    reject_caller_saved_register_after_helper_call: Xdp, Reject("R1"), Same, "
        mov %r1, 1
        call 7
        mov %r0, %r1
        exit";
    accept_callee_saved_register_survives_helper_call: Xdp, Accept, Same, "
        mov %r6, 2
        call 7
        mov %r0, %r6
        exit";

    // ---- Context access per program type. ----
    accept_xdp_context_scalar_fields: Xdp, Accept, Same, "
        ldxw %r2, [%r1+12]
        ldxw %r3, [%r1+16]
        mov %r0, 2
        exit";
    reject_xdp_context_write: Xdp, Reject("bpf_context"), Same, "
        mov %r2, 0
        stxw [%r1+12], %r2
        mov %r0, 2
        exit";
    reject_xdp_context_past_end: Xdp, Reject("bpf_context"), Same, "
        ldxw %r0, [%r1+24]
        mov %r0, 2
        exit";
    reject_skb_context_misaligned: SocketFilter, Reject("bpf_context"), Same, "
        ldxw %r0, [%r1+2]
        mov %r0, 0
        exit";
    accept_skb_narrow_reads: SocketFilter, Accept, Same, "
        ldxb %r2, [%r1+0]
        ldxh %r3, [%r1+16]
        mov %r0, 0
        exit";
    accept_sched_cls_writes_mark: SchedCls, Accept, Same, "
        mov %r2, 1
        stxw [%r1+8], %r2
        mov %r0, 0
        exit";
    reject_socket_filter_writes_mark: SocketFilter, Reject("bpf_context"), Same, "
        mov %r2, 1
        stxw [%r1+8], %r2
        mov %r0, 0
        exit";
    reject_socket_filter_direct_packet_access: SocketFilter, Reject("bpf_context"), Same, "
        ldxw %r2, [%r1+76]
        mov %r0, 0
        exit";
    reject_context_variable_offset: Xdp, Reject("R6"), Same, "
        mov %r6, %r1
        call 7
        and %r0, 4
        add %r6, %r0
        ldxw %r0, [%r6+12]
        mov %r0, 2
        exit";
    reject_modified_context_pointer_dereference: Xdp, Reject("ctx"), Same, "
        add %r1, 4
        ldxw %r0, [%r1+8]
        mov %r0, 2
        exit";
    accept_syscall_context_read_write: Syscall, Accept, Same, "
        ldxdw %r2, [%r1+0]
        stxdw [%r1+8], %r2
        mov %r0, 0
        exit";
    reject_syscall_context_misaligned: Syscall, Reject("bpf_context"), Same, "
        ldxw %r2, [%r1+3]
        mov %r0, 0
        exit";

    // ---- Packet access. ----
    accept_packet_read_inside_checked_range: Xdp, Accept, Same, "
        ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r4, %r2
        add %r4, 14
        jgt %r4, %r3, out
        ldxh %r0, [%r2+12]
    out:
        mov %r0, 2
        exit";
    reject_packet_read_without_check: Xdp, Reject("packet"), Same, "
        ldxw %r2, [%r1+0]
        ldxh %r0, [%r2+12]
        mov %r0, 2
        exit";
    reject_packet_read_past_checked_range: Xdp, Reject("packet"), Same, "
        ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r4, %r2
        add %r4, 14
        jgt %r4, %r3, out
        ldxw %r0, [%r2+12]
    out:
        mov %r0, 2
        exit";
    accept_packet_check_with_end_on_the_left: Xdp, Accept, Same, "
        ldxw %r2, [%r1+0]
        ldxw %r3, [%r1+4]
        mov %r4, %r2
        add %r4, 14
        jlt %r3, %r4, out
        ldxh %r0, [%r2+12]
    out:
        mov %r0, 2
        exit";
    accept_sched_cls_packet_write: SchedCls, Accept, Same, "
        ldxw %r2, [%r1+76]
        ldxw %r3, [%r1+80]
        mov %r4, %r2
        add %r4, 8
        jgt %r4, %r3, out
        stw [%r2+4], 0
    out:
        mov %r0, 0
        exit";
    reject_packet_end_arithmetic: Xdp, Reject("R3"), Same, "
        ldxw %r3, [%r1+4]
        add %r3, 1
        mov %r0, 2
        exit";

    // ---- Maps and helpers. ----
    accept_map_lookup_with_null_check: Xdp, Accept, Same, &format!("{LOOKUP_ARR}
        ldxdw %r1, [%r0+24]
        stxdw [%r0+0], %r1
        lock add [%r0+8], %r1
    out:
        mov %r0, 2
        exit");
    reject_map_lookup_without_null_check: Xdp, Reject("R0"), Same, "
        stdw [%r10-8], 0
        mov %r2, %r10
        add %r2, -8
        map_fd %r1, 1
        call 1
        ldxdw %r1, [%r0+0]
        mov %r0, 2
        exit";
    reject_map_value_read_past_end: Xdp, Reject("outside the 32-byte region"), Same, &format!("{LOOKUP_ARR}
        ldxdw %r1, [%r0+25]
    out:
        mov %r0, 2
        exit");
    reject_map_value_negative_offset: Xdp, Reject("outside the 32-byte region"), Same, &format!("{LOOKUP_ARR}
        ldxdw %r1, [%r0-8]
    out:
        mov %r0, 2
        exit");
    accept_map_update_from_stack: Xdp, Accept, Same, "
        stdw [%r10-8], 1
        stdw [%r10-24], 2
        stdw [%r10-16], 3
        mov %r2, %r10
        add %r2, -8
        mov %r3, %r10
        add %r3, -24
        mov %r4, 0
        map_fd %r1, 1
        call 2
        mov %r0, 2
        exit";
    /// A helper key in stack bytes never written: privileged Linux reads them anyway.
    stricter_helper_key_in_uninitialised_stack_rejected: Xdp, Reject("stack"), Accepts, "
        mov %r2, %r10
        add %r2, -8
        map_fd %r1, 1
        call 1
        mov %r0, 2
        exit";
    reject_scalar_passed_as_map: Xdp, Reject("R1"), Same, "
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        mov %r1, 0
        call 1
        mov %r0, 2
        exit";
    reject_missing_helper_argument: Xdp, Reject("R2"), Same, "
        map_fd %r1, 0
        call 1
        mov %r0, 2
        exit";
    reject_unknown_helper: Xdp, Reject("unknown"), Same, "
        call 12345
        mov %r0, 2
        exit";
    reject_helper_of_another_program_type: SocketFilter, Reject("44"), Same, "
        mov %r2, 0
        call 44
        mov %r0, 0
        exit";
    accept_read_only_map_read: Xdp, Accept, Same, "
        map_value %r1, 4, 0
        ldxdw %r0, [%r1+8]
        mov %r0, 2
        exit";
    reject_read_only_map_write: Xdp, Reject("read-only"), Same, "
        map_value %r1, 4, 0
        stdw [%r1+0], 1
        mov %r0, 2
        exit";
    reject_map_pointer_arithmetic: Xdp, Reject("R1"), Same, "
        map_fd %r1, 0
        add %r1, 8
        mov %r0, 2
        exit";
    reject_context_pointer_multiplication: Xdp, Reject("R1"), Same, "
        mul %r1, 2
        mov %r0, 2
        exit";

    // ---- Ring buffer and references. ----
    accept_ringbuf_reserve_then_submit: Xdp, Accept, Same, "
        map_fd %r1, 2
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, out
        stdw [%r0+8], 1
        mov %r1, %r0
        mov %r2, 0
        call 132
    out:
        mov %r0, 2
        exit";
    accept_ringbuf_submit_or_discard_per_path: Xdp, Accept, Same, "
        map_fd %r1, 2
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, out
        mov %r6, %r0
        call 7
        mov %r1, %r6
        mov %r2, 0
        jgt %r0, 100, discard
        call 132
        ja out
    discard:
        call 133
    out:
        mov %r0, 2
        exit";
    reject_ringbuf_reservation_leaked: Xdp, Reject("nreleased"), Same, "
        map_fd %r1, 2
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, out
        stdw [%r0+0], 1
    out:
        mov %r0, 2
        exit";
    reject_ringbuf_leaked_on_one_path: Xdp, Reject("nreleased"), Same, "
        map_fd %r1, 2
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, out
        mov %r6, %r0
        call 7
        jgt %r0, 100, out
        mov %r1, %r6
        mov %r2, 0
        call 132
    out:
        mov %r0, 2
        exit";
    reject_ringbuf_submitted_twice: Xdp, Reject("!read_ok"), Same, "
        map_fd %r1, 2
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, out
        mov %r6, %r0
        mov %r1, %r6
        mov %r2, 0
        call 132
        mov %r1, %r6
        mov %r2, 0
        call 132
    out:
        mov %r0, 2
        exit";
    reject_ringbuf_without_null_check: Xdp, Reject("R0"), Same, "
        map_fd %r1, 2
        mov %r2, 16
        mov %r3, 0
        call 131
        stdw [%r0+0], 1
        mov %r1, %r0
        mov %r2, 0
        call 132
        mov %r0, 2
        exit";
    reject_ringbuf_write_past_record: Xdp, Reject("outside the 16-byte region"), Same, "
        map_fd %r1, 2
        mov %r2, 16
        mov %r3, 0
        call 131
        jeq %r0, 0, out
        stdw [%r0+16], 1
        mov %r1, %r0
        mov %r2, 0
        call 132
    out:
        mov %r0, 2
        exit";
    reject_ringbuf_size_not_constant: Xdp, Reject("R2"), Same, "
        call 7
        mov %r2, %r0
        map_fd %r1, 2
        mov %r3, 0
        call 131
        jeq %r0, 0, out
        mov %r1, %r0
        mov %r2, 0
        call 133
    out:
        mov %r0, 2
        exit";
    reject_release_of_memory_never_acquired: Xdp, Reject("R1"), Same, &format!("{LOOKUP_ARR}
        mov %r1, %r0
        mov %r2, 0
        call 132
    out:
        mov %r0, 2
        exit");

    // ---- Loops and heap (KFlex relaxations). ----
    accept_bounded_loop: Xdp, Accept, Same, "
        mov %r1, 0
        mov %r0, 0
    loop:
        add %r0, %r1
        add %r1, 1
        jlt %r1, 10, loop
        mov %r0, 2
        exit";
    /// Linux cannot prove `while (bpf_get_prandom_u32());` terminates; kflex accepts it and makes
    /// the back-edge a termination point.
    relaxation_unbounded_loop_accepted: Xdp, Accept, Rejects("infinite loop"), "
    loop:
        call 7
        jne %r0, 0, loop
        mov %r0, 2
        exit";
    /// Two million iterations exceed Linux's 1M-instruction budget; kflex widens and accepts.
    relaxation_long_loop_accepted: Xdp, Accept, Rejects("too large"), "
        mov %r1, 0
    loop:
        add %r1, 1
        jlt %r1, 2000000, loop
        mov %r0, 2
        exit";
    accept_may_goto_loop: Xdp, Accept, Same, "
        mov %r1, 0
    loop:
        may_goto out
        add %r1, 1
        ja loop
    out:
        mov %r0, 2
        exit";
    reject_unsafe_access_inside_loop: Xdp, Reject("outside the 32-byte region"), Same, &format!("{LOOKUP_ARR}
        mov %r1, 0
    loop:
        ldxdw %r2, [%r0+0]
        add %r0, 8
        add %r1, 1
        jlt %r1, 5, loop
    out:
        mov %r0, 2
        exit");
    accept_heap_access_through_cast: Syscall, Accept, Same, "
        map_value %r1, 3, 0
        cast_kern %r1, %r1
        ldxdw %r2, [%r1+8]
        stxdw [%r1+16], %r2
        mov %r0, 0
        exit";
    accept_heap_pointer_loaded_from_heap_and_cast: Syscall, Accept, Same, "
        map_value %r1, 3, 0
        cast_kern %r1, %r1
        ldxdw %r2, [%r1+0]
        cast_kern %r2, %r2
        ldxdw %r0, [%r2+8]
        mov %r0, 0
        exit";
}

#[test]
fn reject_call_stack_too_deep() {
    // main -> f1 -> ... -> f8: nine frames, one more than Linux and kflex allow.
    let mut src = String::from("call local f1\nmov %r0, 2\nexit\n");
    for i in 1..=8 {
        if i < 8 {
            src += &format!("f{i}:\ncall local f{}\nmov %r0, 0\nexit\n", i + 1);
        } else {
            src += &format!("f{i}:\nmov %r0, 0\nexit\n");
        }
    }
    let _ = case(
        "reject_call_stack_too_deep",
        Xdp,
        &src,
        Reject("call"),
        Same,
    );
}

/// Heap accesses through a trusted `lddw` pointer near the heap start need no guard; kflex
/// dereferences the arena's address directly, which Linux (without a cast) refuses.
#[test]
fn relaxation_heap_dereference_without_cast_accepted_and_guard_elided() {
    let v = case(
        "relaxation_heap_dereference_without_cast_accepted_and_guard_elided",
        Syscall,
        "map_value %r1, 3, 64\nldxdw %r0, [%r1+8]\nmov %r0, 0\nexit",
        Accept,
        Rejects("R1 invalid mem access 'scalar'"),
    )
    .expect("accepted");
    assert!(
        matches!(v.insns[2].heap, Some(HeapAccess::Elided { reg: 1, .. })),
        "{:?}",
        v.insns[2].heap
    );
    assert!(v.cancellation.entries.contains_key(&2));
}

/// A pointer cast from a number (here loaded from the heap) is untrusted: the access needs a
/// guard, and a cancellation entry. (Casting a trusted heap pointer keeps it trusted.)
#[test]
fn heap_access_through_untrusted_pointer_is_guarded() {
    let v = case(
        "heap_access_through_untrusted_pointer_is_guarded",
        Syscall,
        "map_value %r1, 3, 0\ncast_kern %r1, %r1\nldxdw %r1, [%r1+0]\ncast_kern %r1, %r1\n\
         ldxdw %r0, [%r1+8]\nmov %r0, 0\nexit",
        Accept,
        Same,
    )
    .expect("accepted");
    assert!(matches!(v.insns[3].heap, Some(HeapAccess::Elided { .. })));
    assert_eq!(v.insns[5].heap, Some(HeapAccess::Guard { reg: 1 }));
    assert!(v.cancellation.entries.contains_key(&5));
}

/// Storing a context pointer into the heap would leak a kernel address to user space; Linux
/// (privileged) does not check stores into arenas.
#[test]
fn stricter_context_pointer_stored_into_heap_rejected() {
    let _ = case(
        "stricter_context_pointer_stored_into_heap_rejected",
        Syscall,
        "map_value %r2, 3, 0\ncast_kern %r2, %r2\nstxdw [%r2+0], %r1\nmov %r0, 0\nexit",
        Reject("heap"),
        Accepts,
    );
}

/// The back-edge of a loop is a termination point with a (here empty) cancellation entry.
#[test]
fn back_edges_and_may_goto_are_termination_points() {
    let v = case(
        "back_edges_and_may_goto_are_termination_points",
        Xdp,
        "mov %r1, 0\nloop:\nmay_goto out\nadd %r1, 1\nja loop\nout:\nmov %r0, 2\nexit",
        Accept,
        Same,
    )
    .expect("accepted");
    let kinds: Vec<_> = v
        .termination_points
        .iter()
        .map(|t| (t.pc, t.kind))
        .collect();
    assert!(kinds.contains(&(1, TerminationKind::MayGoto)), "{kinds:?}");
    assert!(
        kinds.contains(&(3, TerminationKind::BackEdge { target: 1 })),
        "{kinds:?}"
    );
    for t in &v.termination_points {
        assert_eq!(v.cancellation.entries.get(&t.pc), Some(&Vec::new()));
    }
}

/// A ringbuf record held across a loop back-edge is listed, with its register, in the
/// cancellation table of the back-edge.
#[test]
fn cancellation_table_lists_resources_live_at_back_edge() {
    let v = case(
        "cancellation_table_lists_resources_live_at_back_edge",
        Xdp,
        "map_fd %r1, 2\nmov %r2, 16\nmov %r3, 0\ncall 131\njeq %r0, 0, out\nmov %r6, %r0\n\
         loop:\ncall 7\njne %r0, 0, loop\nmov %r1, %r6\nmov %r2, 0\ncall 132\nout:\nmov %r0, 2\nexit",
        Accept,
        Rejects("infinite loop"),
    )
    .expect("accepted");
    let back = v
        .termination_points
        .iter()
        .find(|t| matches!(t.kind, TerminationKind::BackEdge { .. }))
        .expect("a back-edge");
    let live = &v.cancellation.entries[&back.pc];
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].location, kflex_verify::Location::Reg(6));
    assert_eq!(
        live[0].release_helper, 133,
        "released by bpf_ringbuf_discard"
    );
}

/// The complexity budget ends verification with an error naming it.
#[test]
fn reject_complexity_budget_exhausted() {
    let insns = asm("mov %r1, 0\nloop:\nadd %r1, 1\njlt %r1, 100000, loop\nmov %r0, 2\nexit");
    let maps = maps();
    let subject = Subject {
        name: "reject_complexity_budget_exhausted",
        prog_type: Xdp,
        insns: &insns,
        maps: &maps,
        line_info: &[],
        func_info: &[],
    };
    let options = VerifyOptions {
        max_processed: 5,
        ..VerifyOptions::default()
    };
    let _ = check_with(&subject, Reject("complex"), Skip, &options);
}

/// Unprivileged programs may not return a pointer (Linux: `R0 leaks addr as return value`).
#[test]
fn reject_pointer_returned_when_unprivileged() {
    let insns = asm("mov %r0, %r10\nexit");
    let maps = maps();
    let subject = Subject {
        name: "reject_pointer_returned_when_unprivileged",
        prog_type: SocketFilter,
        insns: &insns,
        maps: &maps,
        line_info: &[],
        func_info: &[],
    };
    let options = VerifyOptions {
        privileged: false,
        ..VerifyOptions::default()
    };
    let _ = check_with(&subject, Reject("leak"), Skip, &options);
}

// ---- Return values and locks. ----
/// Locks live in map values; Linux needs BTF describing `struct bpf_spin_lock` in the value to
/// accept these, which a raw load cannot give, so the Linux side is skipped.
const LOCK_ARR: &str = "
    stw [%r10-4], 0
    mov %r2, %r10
    add %r2, -4
    map_fd %r1, 0
    call 1
    jeq %r0, 0, out
    mov %r6, %r0
";

suite! {
    /// Linux 6.18 puts no range on xdp return values (the driver treats unknown ones as aborts).
    accept_xdp_return_value_unrestricted_like_linux: Xdp, Accept, Same, "
        mov %r0, 100
        exit";
    accept_privileged_program_may_return_pointer: SocketFilter, Accept, Same, "
        mov %r0, %r1
        exit";
    accept_spin_lock_released_on_every_path: Xdp, Accept, Skip, &format!("{LOCK_ARR}
        mov %r1, %r6
        call 93
        ldxdw %r2, [%r6+8]
        add %r2, 1
        stxdw [%r6+8], %r2
        mov %r1, %r6
        call 94
    out:
        mov %r0, 2
        exit");
    reject_spin_lock_held_at_exit: Xdp, Reject("lock"), Skip, &format!("{LOCK_ARR}
        mov %r1, %r6
        call 93
    out:
        mov %r0, 2
        exit");
    reject_spin_lock_released_on_one_path_only: Xdp, Reject("lock"), Skip, &format!("{LOCK_ARR}
        mov %r1, %r6
        call 93
        ldxdw %r2, [%r6+8]
        jgt %r2, 10, out
        mov %r1, %r6
        call 94
    out:
        mov %r0, 2
        exit");
    reject_helper_call_not_allowed_under_lock: Xdp, Reject("lock"), Skip, &format!("{LOCK_ARR}
        mov %r1, %r6
        call 93
        call 7
        mov %r1, %r6
        call 94
    out:
        mov %r0, 2
        exit");
    reject_unlock_without_lock: Xdp, Reject("lock"), Skip, &format!("{LOCK_ARR}
        mov %r1, %r6
        call 94
    out:
        mov %r0, 2
        exit");
}

/// KFlex lets an extension hold several locks at once (Linux allows one), as long as each is
/// released on every path.
#[test]
fn relaxation_two_locks_held_at_once_accepted() {
    let src = format!(
        "{LOCK_ARR}
        stdw [%r10-16], 1
        mov %r2, %r10
        add %r2, -16
        map_fd %r1, 1
        call 1
        jeq %r0, 0, out
        mov %r7, %r0
        mov %r1, %r6
        call 93
        mov %r1, %r7
        call 93
        mov %r1, %r7
        call 94
        mov %r1, %r6
        call 94
    out:
        mov %r0, 2
        exit"
    );
    let _ = case(
        "relaxation_two_locks_held_at_once_accepted",
        Xdp,
        &src,
        Accept,
        Skip,
    );
}
