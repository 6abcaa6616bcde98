//! State pruning ignores numbers in registers no continuation reads (dead registers), and only
//! those: a difference in a live register, a pointer, or a caller's callee-saved register still
//! keeps the states apart, so every path that can fail is still explored.

mod support;

use kflex_object::ProgType::Syscall;
use support::*;

/// Two paths join at `join` differing only in r3 (and r7, which decided the branch), both of
/// which are dead there: r3 is overwritten before it is read.
const DEAD_R3: &str = "call 7\nmov %r7, %r0\nmov %r3, 1\njeq %r7, 0, join\nmov %r3, 2\njoin:\n\
                       mov %r3, 0\nmov %r0, %r3\nexit";

#[test]
fn states_differing_only_in_a_dead_register_prune_each_other() {
    let p = accept(DEAD_R3, Syscall, &[]);
    assert_eq!(p.stats.states_pruned, 1, "{:?}", p.stats);
    // The same join where r3 is read: both values are explored.
    let live = DEAD_R3.replace("join:\nmov %r3, 0\n", "join:\n");
    let q = accept(&live, Syscall, &[]);
    assert_eq!(q.stats.states_pruned, 0, "{:?}", q.stats);
}

#[test]
fn a_live_register_that_differs_is_still_checked_on_every_path() {
    // r3 is 0 on the first path explored and 100 on the other; it indexes an 8-byte map value
    // after the join, so the second path must be rejected, not pruned.
    let src = "mov %r6, 0\nstxw [%r10-4], %r6\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -4\n\
               call 1\njeq %r0, 0, out\nmov %r7, %r0\ncall 7\nmov %r3, 100\njeq %r0, 0, join\n\
               mov %r3, 0\njoin:\nmov %r8, 1\nadd %r7, %r3\nldxb %r0, [%r7]\nout:\nmov %r0, 0\nexit";
    reject(src, Syscall, &[array(8)], "at offset 100..101");
}

#[test]
fn a_callers_live_register_keeps_states_apart_inside_a_callee() {
    // r6 differs between the two calls of f and is read after the return (as an offset into an
    // 8-byte map value): the call with r6 = 64 must fail even though f's own registers match.
    let src = "mov %r9, 0\nstxw [%r10-4], %r9\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -4\n\
               call 1\njeq %r0, 0, out\nmov %r7, %r0\ncall 7\nmov %r6, 0\njeq %r0, 0, go\n\
               mov %r6, 64\ngo:\ncall local f\nadd %r7, %r6\nldxb %r0, [%r7]\nout:\nmov %r0, 0\n\
               exit\nf:\nmov %r0, 0\nexit";
    reject(src, Syscall, &[array(8)], "at offset 64..65");
}
