//! Guard elision across the ways compiled code moves heap pointers around: copies, spills and
//! fills, `addr_space_cast`, NULL checks, loop heads (widening) and subprogram calls. Each case
//! asserts the fact of the interesting access, and where trust must not survive, that it does
//! not.

mod support;

use kflex_object::MapSpec;
use kflex_object::ProgType::Syscall;
use kflex_verify::{HeapAccess, VerifiedProgram, VerifyOptions};
use support::*;

/// A 32-byte guard zone: small enough that only the heap-size rule, not the zone, can elide an
/// access far from the last guard.
fn small_zone() -> VerifyOptions {
    VerifyOptions {
        guard_zone: 32,
        ..VerifyOptions::default()
    }
}

/// A heap of `pages` 4 KiB pages.
fn heap(pages: u32) -> MapSpec {
    MapSpec {
        max_entries: pages,
        ..arena()
    }
}

fn is_elided(p: &VerifiedProgram, pc: usize) -> bool {
    matches!(p.insns[pc].heap, Some(HeapAccess::Elided { .. }))
}

/// Loads an untrusted heap pointer into r2 (pcs 0-2) and guards it at pc 3.
const GUARDED_R2: &str =
    "map_value %r1, 0, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nldxdw %r0, [%r2+8]\n";

#[test]
fn copies_of_a_guarded_pointer_are_trusted() {
    // mov after the guard, then cast of the copy: both accesses elided.
    let src = format!(
        "{GUARDED_R2}mov %r3, %r2\nldxdw %r0, [%r3+16]\ncast_kern %r4, %r3\nstdw [%r4+24], 1\nexit"
    );
    let p = accept(&src, Syscall, &[arena()]);
    assert_eq!(p.insns[4].heap, Some(HeapAccess::Guard { reg: 2 }));
    assert_eq!(
        p.insns[6].heap,
        Some(HeapAccess::Elided {
            reg: 3,
            max_offset: 16
        })
    );
    assert!(is_elided(&p, 8));
}

#[test]
fn a_copy_taken_before_the_guard_stays_untrusted() {
    // The guard masks r2 in place; r3 still holds the unmasked value, which may lie anywhere.
    let src = "map_value %r1, 0, 0\nldxdw %r2, [%r1]\nmov %r3, %r2\ncast_kern %r2, %r2\n\
               ldxdw %r0, [%r2+8]\ncast_kern %r3, %r3\nldxdw %r0, [%r3+8]\nexit";
    let p = accept(src, Syscall, &[arena()]);
    assert_eq!(p.insns[5].heap, Some(HeapAccess::Guard { reg: 2 }));
    assert_eq!(p.insns[7].heap, Some(HeapAccess::Guard { reg: 3 }));
}

#[test]
fn spills_and_fills_keep_a_guarded_pointer_trusted() {
    let src = format!(
        "{GUARDED_R2}stxdw [%r10-8], %r2\nmov %r2, 0\nldxdw %r5, [%r10-8]\nldxdw %r0, [%r5+32]\nexit"
    );
    let p = accept(&src, Syscall, &[arena()]);
    assert_eq!(
        p.insns[8].heap,
        Some(HeapAccess::Elided {
            reg: 5,
            max_offset: 32
        })
    );
    // A partial fill of a spilled pointer is refused (as Linux does).
    let src =
        format!("{GUARDED_R2}stxdw [%r10-8], %r2\nldxw %r5, [%r10-8]\nldxdw %r0, [%r5+32]\nexit");
    reject(&src, Syscall, &[arena()], "invalid size of register fill");
}

#[test]
fn null_checks_keep_a_guarded_pointer_trusted() {
    let src = format!("{GUARDED_R2}jeq %r2, 0, out\nldxdw %r0, [%r2+40]\nout:\nmov %r0, 0\nexit");
    let p = accept(&src, Syscall, &[arena()]);
    assert!(is_elided(&p, 6));
    let src =
        format!("{GUARDED_R2}jne %r2, 0, use\nmov %r0, 0\nexit\nuse:\nldxdw %r0, [%r2+40]\nexit");
    let p = accept(&src, Syscall, &[arena()]);
    assert!(is_elided(&p, 8));
}

#[test]
fn subprograms_see_the_callers_trusted_pointers() {
    // The callee is explored with the caller's registers: r1 arrives guarded.
    let src =
        format!("{GUARDED_R2}mov %r1, %r2\ncall local f\nexit\nf:\nldxdw %r0, [%r1+48]\nexit");
    let p = accept(&src, Syscall, &[arena()]);
    assert_eq!(
        p.insns[8].heap,
        Some(HeapAccess::Elided {
            reg: 1,
            max_offset: 48
        })
    );
    // An untrusted argument is guarded in the callee.
    let src = "map_value %r1, 0, 0\nldxdw %r1, [%r1]\ncast_kern %r1, %r1\ncall local f\nexit\nf:\nldxdw %r0, [%r1+48]\nexit";
    let p = accept(src, Syscall, &[arena()]);
    assert_eq!(p.insns[6].heap, Some(HeapAccess::Guard { reg: 1 }));
}

#[test]
fn a_guarded_pointer_stays_trusted_around_a_loop() {
    // r2 is guarded before the loop and not changed in it: every access in the loop is elided,
    // however often the loop head is widened.
    let src = format!(
        "{GUARDED_R2}mov %r6, 0\nloop:\nldxdw %r0, [%r2+16]\nadd %r6, 1\njlt %r6, 100, loop\nexit"
    );
    let p = accept(&src, Syscall, &[arena()]);
    assert!(is_elided(&p, 6));
    // Untrusted on one way into the loop head: guarded.
    let src = "map_value %r7, 0, 0\nmov %r6, 0\ncall 7\njeq %r0, 0, loop\nldxdw %r7, [%r7]\n\
               cast_kern %r7, %r7\nloop:\nldxdw %r0, [%r7+16]\nadd %r6, 1\njlt %r6, 100, loop\nexit";
    let p = accept(src, Syscall, &[arena()]);
    assert_eq!(p.insns[7].heap, Some(HeapAccess::Guard { reg: 7 }));
}

/// An outer loop whose counter indexes a heap array through a pointer counted from the heap start
/// (spilled across an inner loop): `slot = &table[i & 1023]`, then the inner loop reads it.
/// Each outer iteration brings the inner loop head a new constant offset, so the loop head is
/// widened; the offset must stop at the heap's end, not jump to 2^31.
fn indexed_walk(table: u32) -> String {
    format!(
        "map_value %r6, 0, {table}\nmov %r7, 0\nouter:\nmov %r1, %r7\nand %r1, 1023\nlsh %r1, 6\n\
         mov %r2, %r6\nadd %r2, %r1\nstxdw [%r10-8], %r2\nmov %r8, 0\ninner:\nldxdw %r3, [%r10-8]\n\
         ldxdw %r0, [%r3+8]\nadd %r8, 1\njlt %r8, 20, inner\nadd %r7, 1\njlt %r7, 2000, outer\nexit"
    )
}

#[test]
fn widening_keeps_heap_global_offsets_inside_the_heap() {
    // 1024 pages (4 MiB): table at 64 KiB, 1024 entries of 64 bytes.
    let p = check_with(&indexed_walk(65536), Syscall, &[heap(1024)], &small_zone()).unwrap();
    assert!(
        is_elided(&p, 11),
        "access through the widened start pointer: {:?}",
        p.insns[11].heap
    );
    // The same walk in a heap too small for the table (16 pages = 64 KiB): the table's entries
    // lie past the heap's end plus the zone, so the access is guarded.
    let p = check_with(&indexed_walk(65536), Syscall, &[heap(16)], &small_zone()).unwrap();
    assert_eq!(p.insns[11].heap, Some(HeapAccess::Guard { reg: 3 }));
}

#[test]
fn widening_still_converges_when_a_start_pointer_walks_off_the_heap() {
    // A start pointer advanced by a constant on every iteration: the widened offset first stops
    // at the heap size, then goes unbounded (the access is then guarded), and the loop converges.
    let src = "map_value %r6, 0, 0\nmov %r7, 0\nloop:\nldxdw %r0, [%r6+0]\nadd %r6, 64\nadd %r7, 1\n\
               jlt %r7, 100000, loop\nexit";
    let p = check_with(src, Syscall, &[heap(1024)], &small_zone()).unwrap();
    assert_eq!(p.insns[3].heap, Some(HeapAccess::Guard { reg: 6 }));
    assert!(p.stats.insns_processed < 1000, "{:?}", p.stats);
}
