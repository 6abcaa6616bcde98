//! Register and stack rules: initialisation, r10, pointer arithmetic, spills and fills.

mod support;

use kflex_object::ProgType::{SchedCls, Xdp};
use support::*;

#[test]
fn reading_an_uninitialised_register_is_rejected() {
    let e = reject("mov %r0, %r3\nexit", Xdp, &[], "R3 !read_ok");
    assert_eq!(e.pc, Some(0));
    assert!(e.hint.contains("scratched"), "{e}");
    reject("add %r0, 1\nexit", Xdp, &[], "R0 !read_ok");
}

#[test]
fn r10_is_read_only() {
    reject(
        "mov %r10, 0\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "frame pointer is read only",
    );
    reject(
        "add %r10, 8\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "frame pointer is read only",
    );
    accept("mov %r1, %r10\nadd %r1, -8\nmov %r0, 0\nexit", Xdp, &[]);
}

#[test]
fn scalar_alu_is_tracked_precisely_enough_to_prove_bounds() {
    // r2 = (r0 & 7) * 8 is at most 56: a stack access at fp-64 + r2 stays inside.
    accept(
        "mov %r0, 0\nstdw [%r10-64], 0\nstdw [%r10-56], 0\nstdw [%r10-48], 0\nstdw [%r10-40], 0\n\
         stdw [%r10-32], 0\nstdw [%r10-24], 0\nstdw [%r10-16], 0\nstdw [%r10-8], 0\n\
         call 7\nand %r0, 7\nlsh %r0, 3\nmov %r1, %r10\nadd %r1, -64\nadd %r1, %r0\n\
         ldxdw %r0, [%r1]\nexit",
        Xdp,
        &[],
    );
}

#[test]
fn pointer_arithmetic_rules() {
    reject(
        "mov %r1, %r10\nadd32 %r1, 8\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "32-bit pointer arithmetic prohibited",
    );
    reject(
        "mov %r1, %r10\nand %r1, 8\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "bitwise operator &= on pointer prohibited",
    );
    reject(
        "mov %r1, %r10\nmul %r1, 2\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "pointer arithmetic with *= operator prohibited",
    );
    reject(
        "mov %r2, %r10\nmov %r3, %r10\nadd %r2, %r3\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "pointer += pointer prohibited",
    );
    reject(
        "mov %r2, 8\nsub %r2, %r10\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "tried to subtract pointer from scalar",
    );
    reject(
        "map_fd %r1, 0\nadd %r1, 8\nmov %r0, 0\nexit",
        Xdp,
        &[array(8)],
        "pointer arithmetic on map_ptr prohibited",
    );
    // A variable amount on the context pointer is rejected; a constant is allowed but the
    // moved pointer may not be dereferenced.
    let var_ctx = "mov %r6, %r1\ncall 7\nadd %r6, %r0\nmov %r0, 0\nexit";
    let e = check_with(var_ctx, Xdp, &[], &unprivileged()).unwrap_err();
    assert!(
        e.rule
            .contains("variable ctx pointer arithmetic prohibited"),
        "{e}"
    );
    // Privileged: an unbounded amount is rejected at the addition (as Linux), a bounded one
    // at the access, naming the rule.
    reject(
        "mov %r6, %r1\ncall 7\nadd %r6, %r0\nldxw %r0, [%r6]\nexit",
        Xdp,
        &[],
        "ctx pointer offset out of bounds",
    );
    reject(
        "mov %r6, %r1\ncall 7\nand %r0, 7\nadd %r6, %r0\nldxw %r0, [%r6]\nexit",
        Xdp,
        &[],
        "the context can only be accessed at a constant offset; R6 has a variable offset in 0..=7",
    );
    reject(
        "add %r1, 4\nldxw %r0, [%r1]\nexit",
        Xdp,
        &[],
        "dereference of modified ctx ptr",
    );
}

#[test]
fn constant_division_by_zero_and_oversized_shifts_are_rejected_as_in_linux() {
    reject("mov %r0, 1\ndiv %r0, 0\nexit", Xdp, &[], "div by zero");
    reject("mov %r0, 1\nmod32 %r0, 0\nexit", Xdp, &[], "div by zero");
    reject(
        "mov %r0, 1\nlsh32 %r0, 32\nexit",
        Xdp,
        &[],
        "invalid shift 32",
    );
    reject(
        "mov %r0, 1\narsh %r0, 64\nexit",
        Xdp,
        &[],
        "invalid shift 64",
    );
    accept("mov %r0, 1\nlsh %r0, 63\ndiv %r0, 3\nexit", Xdp, &[]);
    // A register divisor of 0 is defined at run time (the result is 0).
    accept("mov %r0, 1\nmov %r1, 0\ndiv %r0, %r1\nexit", Xdp, &[]);
}

#[test]
fn unbounded_variable_offsets_are_rejected() {
    reject(
        "call 7\nmov %r1, %r10\nlsh %r0, 32\nadd %r1, %r0\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "pointer offset out of bounds",
    );
}

#[test]
fn pointer_leaks_need_privilege() {
    let src = "mov32 %r0, %r1\nexit";
    check(src, Xdp, &[]).expect("privileged programs may truncate pointers");
    let e = check_with(src, Xdp, &[], &unprivileged()).unwrap_err();
    assert!(e.rule.contains("partial copy of pointer prohibited"), "{e}");
    let ret_ptr = "mov %r0, %r10\nexit";
    check(ret_ptr, Xdp, &[]).expect("privileged may return a pointer (Linux allow_ptr_leaks)");
    let e = check_with(ret_ptr, Xdp, &[], &unprivileged()).unwrap_err();
    assert!(e.rule.contains("R0 leaks addr as return value"), "{e}");
}

#[test]
fn spilled_pointers_are_filled_with_their_state() {
    // Spill ctx, clobber r1, fill it back and read a context field through it.
    let p = accept(
        "stxdw [%r10-8], %r1\nmov %r1, 0\nldxdw %r1, [%r10-8]\nldxw %r0, [%r1]\nexit",
        Xdp,
        &[],
    );
    assert!(p.insns[3].ctx.is_some());
    reject(
        "stxdw [%r10-8], %r1\nldxw %r2, [%r10-8]\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "invalid size of register fill",
    );
    // A partial overwrite turns the slot into plain bytes: the fill is a scalar.
    reject(
        "stxdw [%r10-8], %r1\nstb [%r10-8], 0\nldxdw %r1, [%r10-8]\nldxw %r0, [%r1]\nexit",
        Xdp,
        &[],
        "invalid mem access 'scalar'",
    );
}

#[test]
fn uninitialised_stack_reads_are_rejected() {
    let e = reject(
        "stw [%r10-8], 1\nldxdw %r0, [%r10-8]\nexit",
        Xdp,
        &[],
        "invalid read from stack",
    );
    assert!(e.rule.contains("fp-4"), "{e}");
    accept(
        "stw [%r10-8], 1\nstw [%r10-4], 2\nldxdw %r0, [%r10-8]\nexit",
        Xdp,
        &[],
    );
}

#[test]
fn stack_bounds_and_alignment() {
    reject(
        "stdw [%r10-520], 0\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "the stack is fp-512..fp0",
    );
    reject(
        "stdw [%r10], 0\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "the stack is fp-512..fp0",
    );
    reject(
        "stw [%r10-6], 0\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "misaligned stack access",
    );
}

#[test]
fn variable_stack_offsets_within_bounds() {
    let zero_16 = "stdw [%r10-16], 0\nstdw [%r10-8], 0\n";
    // Variable read over initialised bytes.
    accept(
        &format!(
            "{zero_16}call 7\nand %r0, 8\nmov %r1, %r10\nadd %r1, -16\nadd %r1, %r0\nldxdw %r0, [%r1]\nexit"
        ),
        SchedCls,
        &[],
    );
    // Variable read that may touch uninitialised bytes.
    reject(
        "stdw [%r10-8], 0\ncall 7\nand %r0, 8\nmov %r1, %r10\nadd %r1, -16\nadd %r1, %r0\nldxdw %r0, [%r1]\nexit",
        SchedCls,
        &[],
        "invalid read from stack",
    );
    // Variable write that may leave the stack.
    reject(
        "call 7\nand %r0, 16\nmov %r1, %r10\nadd %r1, -8\nadd %r1, %r0\nstxdw [%r1], %r0\nmov %r0, 0\nexit",
        SchedCls,
        &[],
        "the stack is fp-512..fp0",
    );
}

#[test]
fn packet_pointer_difference_is_a_scalar() {
    accept(
        "ldxw %r2, [%r1]\nldxw %r3, [%r1+4]\nmov %r0, %r3\nsub %r0, %r2\nexit",
        Xdp,
        &[],
    );
}
