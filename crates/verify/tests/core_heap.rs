//! Heap (arena) accesses: guard or elision, KFlex's relaxations, cancellation entries.

mod support;

use kflex_object::ProgType::{Syscall, Xdp};
use kflex_runtime::helpers::ResourceKind;
use kflex_verify::{HeapAccess, Location, VerifyOptions};
use support::*;

#[test]
fn trusted_heap_pointers_with_small_offsets_need_no_guard() {
    let p = accept(
        "map_value %r1, 0, 64\nldxdw %r0, [%r1+8]\nstdw [%r1-16], 1\nexit",
        Syscall,
        &[arena()],
    );
    assert_eq!(
        p.insns[2].heap,
        Some(HeapAccess::Elided {
            reg: 1,
            max_offset: 72
        })
    );
    assert!(matches!(p.insns[3].heap, Some(HeapAccess::Elided { .. })));
    assert_eq!((p.stats.guards_emitted, p.stats.guards_elided), (0, 2));
    assert!(p.cancellation.entries.contains_key(&2));
}

#[test]
fn untrusted_pointers_are_guarded_once() {
    // A pointer loaded from the heap is untrusted: the first access is guarded, after which the
    // register is trusted at offset 0 and a nearby second access is elided.
    let p = accept(
        "map_value %r1, 0, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nldxdw %r0, [%r2+8]\n\
         ldxdw %r0, [%r2+16]\nexit",
        Syscall,
        &[arena()],
    );
    assert_eq!(p.insns[4].heap, Some(HeapAccess::Guard { reg: 2 }));
    assert_eq!(
        p.insns[5].heap,
        Some(HeapAccess::Elided {
            reg: 2,
            max_offset: 16
        })
    );
}

#[test]
fn offsets_beyond_the_guard_zone_are_guarded() {
    let small = VerifyOptions {
        guard_zone: 32,
        ..VerifyOptions::default()
    };
    // r2 is guarded at its first access; 64 bytes further is past a 32-byte guard zone.
    let src = "map_value %r1, 0, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nldxdw %r0, [%r2]\n\
               ldxdw %r0, [%r2+64]\nexit";
    let p = check_with(src, Syscall, &[arena()], &small).unwrap();
    assert_eq!(p.insns[5].heap, Some(HeapAccess::Guard { reg: 2 }));
    let p = accept(src, Syscall, &[arena()]);
    assert!(matches!(p.insns[5].heap, Some(HeapAccess::Elided { .. })));
    // A variable, unbounded offset always needs a guard.
    let p = accept(
        "map_value %r6, 0, 0\ncall 7\nadd %r6, %r0\nldxb %r0, [%r6]\nexit",
        Syscall,
        &[arena()],
    );
    assert_eq!(p.insns[4].heap, Some(HeapAccess::Guard { reg: 6 }));
}

#[test]
fn heap_globals_are_reached_without_guards_anywhere_in_the_heap() {
    // A pointer counted from the heap start (lddw of a heap global) needs no guard for an access
    // inside the heap (arena(): 16 pages), however far from the start, even with a tiny guard
    // zone; past the heap's end plus the zone it is guarded, and after a guard (or an unknown
    // offset) the guard zone rule applies again.
    let small = VerifyOptions {
        guard_zone: 32,
        ..VerifyOptions::default()
    };
    let heap = 16 * 4096;
    let inside = format!("map_value %r1, 0, {}\nldxdw %r0, [%r1+8]\nexit", heap - 16);
    let p = check_with(&inside, Syscall, &[arena()], &small).unwrap();
    assert!(matches!(p.insns[2].heap, Some(HeapAccess::Elided { .. })));
    let edge = format!("map_value %r1, 0, {}\nldxdw %r0, [%r1+24]\nexit", heap - 8);
    let p = check_with(&edge, Syscall, &[arena()], &small).unwrap();
    assert!(matches!(p.insns[2].heap, Some(HeapAccess::Elided { .. })));
    let past = format!("map_value %r1, 0, {}\nldxdw %r0, [%r1+40]\nexit", heap - 8);
    let p = check_with(&past, Syscall, &[arena()], &small).unwrap();
    assert_eq!(p.insns[2].heap, Some(HeapAccess::Guard { reg: 1 }));
    // A bounded index into a heap array: elided; unbounded: guarded.
    let bounded = "map_value %r6, 0, 4096\ncall 7\nand %r0, 1023\nlsh %r0, 5\nadd %r6, %r0\n\
                   ldxdw %r0, [%r6+24]\nexit";
    let p = check_with(bounded, Syscall, &[arena()], &small).unwrap();
    assert!(matches!(p.insns[6].heap, Some(HeapAccess::Elided { .. })));
    let unbounded = "map_value %r6, 0, 4096\ncall 7\nadd %r6, %r0\nldxdw %r0, [%r6]\nexit";
    let p = check_with(unbounded, Syscall, &[arena()], &small).unwrap();
    assert_eq!(p.insns[4].heap, Some(HeapAccess::Guard { reg: 6 }));
    // Once guarded, a pointer is relative to the guarded address, not the heap start.
    let regarded = format!(
        "map_value %r6, 0, 0\ncall 7\nadd %r6, %r0\nldxdw %r1, [%r6]\nldxdw %r0, [%r6+{}]\nexit",
        1024
    );
    let p = check_with(&regarded, Syscall, &[arena()], &small).unwrap();
    assert_eq!(p.insns[5].heap, Some(HeapAccess::Guard { reg: 6 }));
}

#[test]
fn an_access_guarded_on_one_path_is_guarded() {
    let p = accept(
        "map_value %r6, 0, 0\nmov %r0, 0\ncall 7\njeq %r0, 0, use\nldxdw %r6, [%r6]\ncast_kern %r6, %r6\n\
         use:\nldxdw %r0, [%r6]\nexit",
        Syscall,
        &[arena()],
    );
    let pc = 7;
    assert_eq!(p.insns[pc].heap, Some(HeapAccess::Guard { reg: 6 }));
    // The load on the other path is elided (lddw-derived, offset 0).
    assert!(matches!(p.insns[5].heap, Some(HeapAccess::Elided { .. })));
}

#[test]
fn pointers_other_than_heap_pointers_cannot_be_stored_into_the_heap() {
    reject(
        "map_value %r2, 0, 0\nstxdw [%r2], %r1\nmov %r0, 0\nexit",
        Syscall,
        &[arena()],
        "storing a ctx pointer into the heap is not allowed",
    );
    reject(
        "map_value %r2, 0, 0\nstxdw [%r2], %r10\nmov %r0, 0\nexit",
        Syscall,
        &[arena()],
        "storing a fp pointer into the heap",
    );
    // Heap pointers and numbers are fine; loads give scalars.
    accept(
        "map_value %r2, 0, 0\nstxdw [%r2], %r2\nstdw [%r2+8], 5\nldxdw %r3, [%r2]\nmov %r0, %r3\nexit",
        Syscall,
        &[arena()],
    );
    reject(
        "map_value %r2, 0, 0\nldxdw %r3, [%r2]\nldxdw %r0, [%r3]\nexit",
        Syscall,
        &[arena()],
        "invalid mem access 'scalar'",
    );
    reject(
        "cast_kern %r2, %r10\nmov %r0, 0\nexit",
        Syscall,
        &[arena()],
        "addr_space_cast of R10 (fp) prohibited",
    );
}

#[test]
fn cancellation_entries_name_live_references() {
    // A ringbuf sample is held in r6 across a heap access and a loop back-edge.
    let p = accept(
        "map_fd %r1, 0\nmov %r2, 8\nmov %r3, 0\ncall 131\nmov %r6, %r0\njeq %r6, 0, out\n\
         map_value %r7, 1, 0\nloop:\nldxdw %r0, [%r7]\njne %r0, 0, loop\n\
         mov %r1, %r6\nmov %r2, 0\ncall 133\nout:\nmov %r0, 0\nexit",
        Xdp,
        &[ringbuf(), arena()],
    );
    let load_pc = 9;
    assert!(p.insns[load_pc].heap.is_some());
    for pc in [load_pc, 10] {
        let live = &p.cancellation.entries[&pc];
        assert!(
            live.iter().any(|l| l.location == Location::Reg(6)
                && l.kind == ResourceKind::RingbufSample
                && l.acquired_at == 4
                && l.release_helper == 133),
            "pc {pc}: {live:?}"
        );
    }
    assert_eq!(p.stats.back_edges, 1);
}

#[test]
fn heap_addresses_may_be_stored_into_the_context() {
    // A syscall program reports heap addresses (a mailbox, its allocator state) to its caller
    // through the context; Linux accepts this for arena addresses.
    accept(
        "map_value %r2, 0, 64\nstxdw [%r1+8], %r2\nmov %r0, 0\nexit",
        Syscall,
        &[arena()],
    );
    // Other pointers still may not leak.
    reject(
        "map_value %r2, 0, 64\nstxdw [%r1+8], %r10\nmov %r0, 0\nexit",
        Syscall,
        &[arena()],
        "leaks addr into ctx",
    );
}

#[test]
fn casting_a_trusted_heap_pointer_keeps_it_trusted() {
    // clang casts a heap global's address (as1 -> as0) before each access; the cast does not
    // change the value, so the access stays elided.
    let p = accept(
        "map_value %r1, 0, 64\ncast_kern %r2, %r1\nldxdw %r0, [%r2+8]\nexit",
        Syscall,
        &[arena()],
    );
    assert_eq!(
        p.insns[3].heap,
        Some(HeapAccess::Elided {
            reg: 2,
            max_offset: 72
        })
    );
    // A number cast into a heap pointer is still untrusted.
    let p = accept(
        "map_value %r1, 0, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nldxdw %r0, [%r2+8]\nexit",
        Syscall,
        &[arena()],
    );
    assert_eq!(p.insns[4].heap, Some(HeapAccess::Guard { reg: 2 }));
}
