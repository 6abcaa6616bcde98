//! Control flow: loops (KFlex: no bound proof, back-edges recorded), may_goto, the budget,
//! BPF-to-BPF calls and exit rules.

mod support;

use kflex_object::ProgType::{SchedCls, Syscall, Xdp};
use kflex_verify::{TerminationKind, TerminationPoint, VerifyOptions};
use support::*;

#[test]
fn unbounded_loop_is_accepted_with_its_back_edge_recorded() {
    // while (bpf_get_prandom_u32() != 0) i++;  — Linux would reject (no bound); KFlex accepts on
    // purpose and records the back-edge as a termination point.
    let p = accept(
        "mov %r6, 0\nloop:\ncall 7\nadd %r6, 1\njne %r0, 0, loop\nmov %r0, %r6\nexit",
        SchedCls,
        &[],
    );
    assert_eq!(
        p.termination_points,
        vec![TerminationPoint {
            pc: 3,
            kind: TerminationKind::BackEdge { target: 1 }
        }]
    );
    assert_eq!(p.stats.back_edges, 1);
    assert!(p.cancellation.entries.contains_key(&3));
    assert!(p.stats.insns_processed < 1000, "{:?}", p.stats);
}

#[test]
fn counted_loop_converges_and_stays_safe() {
    // for (i = 0; i < 64; i++) sum += buf[i & 7] with an 8-byte stack buffer.
    let p = accept(
        "stdw [%r10-8], 0\nmov %r6, 0\nmov %r7, 0\nloop:\nmov %r1, %r6\nand %r1, 7\n\
         mov %r2, %r10\nadd %r2, -8\nadd %r2, %r1\nldxb %r3, [%r2]\nadd %r7, %r3\nadd %r6, 1\n\
         jlt %r6, 64, loop\nmov %r0, %r7\nexit",
        Xdp,
        &[],
    );
    assert_eq!(p.stats.back_edges, 1);
    assert!(p.stats.insns_processed < 5000, "{:?}", p.stats);
}

#[test]
fn loop_bodies_are_still_checked() {
    // The access goes out of the stack after enough iterations: widening must find it.
    reject(
        "stdw [%r10-8], 0\nmov %r6, %r10\nadd %r6, -8\nloop:\nldxb %r0, [%r6]\nadd %r6, -1\n\
         ja loop",
        Xdp,
        &[],
        "invalid read from stack",
    );
}

#[test]
fn complexity_budget_names_the_loop() {
    let options = VerifyOptions {
        max_processed: 50,
        ..VerifyOptions::default()
    };
    let e = check_with(
        "mov %r6, 0\nloop:\ncall 7\njeq %r0, 1, a\nadd %r6, 1\na:\njeq %r0, 2, b\nadd %r6, 2\nb:\n\
         jne %r0, 0, loop\nmov %r0, %r6\nexit",
        SchedCls,
        &[],
        &options,
    )
    .unwrap_err();
    assert!(e.rule.contains("too complex"), "{e}");
    assert!(e.rule.contains("50 instructions"), "{e}");
    assert!(e.rule.contains("loop starting at instruction 1"), "{e}");
    assert!(e.hint.contains("max_processed"), "{e}");
    assert_eq!(e.stats.insns_processed, 51);
}

#[test]
fn may_goto_explores_both_ways_and_is_a_termination_point() {
    let p = accept(
        "mov %r0, 0\nloop:\nmay_goto out\nadd %r0, 1\nja loop\nout:\nexit",
        Xdp,
        &[],
    );
    assert!(p.termination_points.contains(&TerminationPoint {
        pc: 1,
        kind: TerminationKind::MayGoto
    }));
    assert!(p.termination_points.contains(&TerminationPoint {
        pc: 3,
        kind: TerminationKind::BackEdge { target: 1 }
    }));
    assert!(p.insns[4].reachable, "the may_goto target is explored");
}

#[test]
fn scalar_branches_prune_infeasible_paths() {
    // r0 = 5; if r0 > 10 the bad access is dead code.
    let p = accept(
        "mov %r0, 5\njgt %r0, 10, bad\nexit\nbad:\nldxdw %r0, [%r10+8]\nexit",
        Xdp,
        &[],
    );
    assert!(!p.insns[3].reachable);
    assert!(p.insns[2].reachable);
}

#[test]
fn bpf_to_bpf_calls() {
    // The callee reads the caller's stack through r1 and returns a scalar; r6 survives.
    let p = accept(
        "stdw [%r10-8], 7\nmov %r6, 3\nmov %r1, %r10\nadd %r1, -8\ncall local f\n\
         add %r0, %r6\nexit\nf:\nldxdw %r0, [%r1]\nexit",
        Xdp,
        &[],
    );
    assert!(p.insns[8].reachable);
    // Caller r1-r5 are scratched by the call.
    reject(
        "mov %r1, 1\ncall local f\nmov %r0, %r1\nexit\nf:\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "R1 !read_ok",
    );
    // A callee may not return a pointer into its own stack.
    reject(
        "call local f\nmov %r0, 0\nexit\nf:\nmov %r0, %r10\nexit",
        Xdp,
        &[],
        "cannot return stack pointer",
    );
    // A callee may leave r0 unset (a void function, as Linux allows); reading the caller's r0
    // after such a call is what fails.
    accept(
        "mov %r6, 1\ncall local f\nmov %r0, %r6\nexit\nf:\nmov %r1, 1\nexit",
        Xdp,
        &[],
    );
    reject(
        "call local f\nexit\nf:\nexit",
        Xdp,
        &[],
        "R0 !read_ok: r0 is not initialised at program exit",
    );
    reject(
        "call local f\nadd %r0, 1\nexit\nf:\nexit",
        Xdp,
        &[],
        "R0 !read_ok",
    );
}

#[test]
fn call_depth_and_recursion_limits() {
    let mut src = String::from("call local f1\nexit\n");
    for i in 1..=8 {
        src.push_str(&format!("f{i}:\ncall local f{}\nexit\n", i + 1));
    }
    src.push_str("f9:\nmov %r0, 0\nexit\n");
    reject(&src, Xdp, &[], "too deep");
    reject(
        "call local f\nexit\nf:\ncall local f\nexit",
        Xdp,
        &[],
        "recursive call",
    );
}

#[test]
fn callx_and_kfuncs_are_rejected() {
    let e = reject("mov %r2, 7\ncall %r2\nmov %r0, 0\nexit", Xdp, &[], "callx");
    assert!(e.rule.contains("Linux rejects it too"), "{e}");
}

#[test]
fn exit_requires_an_initialised_r0() {
    reject("exit", Syscall, &[], "R0 !read_ok");
    reject(
        "mov %r1, 0\njeq %r1, 0, out\nmov %r0, 0\nout:\nexit",
        SchedCls,
        &[],
        "R0 !read_ok",
    );
    accept("mov %r0, 1\nexit", Syscall, &[]);
}

#[test]
fn unknown_helpers_are_rejected() {
    reject(
        "call 99999\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "unknown helper #99999",
    );
}
