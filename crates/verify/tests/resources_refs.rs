//! References and locks through the real `verify` engine: ring-buffer reservations (leaks on
//! every path or on one path, double and bogus releases), spin locks (pairs, several at once,
//! a missing unlock, helpers under a lock), a host acquire/release helper pair, and the
//! cancellation table at a loop back-edge.

mod support;

use std::sync::Arc;

use kflex_object::MapSpec;
use kflex_object::ProgType::{self, Syscall, Xdp};
use kflex_runtime::helpers::{ArgKind, HelperDef, ResourceKind, RetKind, Signature, ids};
use kflex_verify::{Location, TerminationKind, VerifiedProgram, VerifyError, VerifyOptions};
use support::{array, helpers_for, program, ringbuf, verify_decoded};

fn check_with_helpers(
    src: &str,
    prog_type: ProgType,
    maps: &[MapSpec],
    extra: &[HelperDef],
) -> Result<VerifiedProgram, Box<VerifyError>> {
    let mut helpers = helpers_for(prog_type);
    for h in extra {
        helpers.register(h.clone()).unwrap();
    }
    verify_decoded(
        &program(src),
        prog_type,
        maps,
        &helpers,
        &VerifyOptions::default(),
    )
    .map_err(Box::new)
}

fn accepts(src: &str, maps: &[MapSpec]) -> VerifiedProgram {
    check_with_helpers(src, Syscall, maps, &[])
        .unwrap_or_else(|e| panic!("rejected:\n{e}\n--\n{src}"))
}

fn rejects(src: &str, maps: &[MapSpec], needles: &[&str]) -> VerifyError {
    match check_with_helpers(src, Syscall, maps, &[]) {
        Ok(_) => panic!("accepted, expected a rejection ({needles:?}):\n{src}"),
        Err(e) => {
            for n in needles {
                assert!(e.rule.contains(n), "rule {:?} lacks {n:?}\n{e}", e.rule);
            }
            *e
        }
    }
}

/// Reserves 16 bytes of ring buffer 0 at instruction 4 (`call 131`) into r6; NULL goes to `out`.
const RESERVE: &str = "map_fd %r1, 0\nmov %r2, 16\nmov %r3, 0\ncall 131\n\
                       mov %r6, %r0\njeq %r6, 0, out\n";
/// Instruction index of the reservation's call.
const RESERVE_PC: usize = 4;
const OUT: &str = "out:\nmov %r0, 0\nexit";

// --- Ring-buffer references ---------------------------------------------------------------------

#[test]
fn reservation_without_submit_is_a_leak() {
    let src = format!("{RESERVE}stdw [%r6+0], 7\n{OUT}");
    let e = rejects(
        &src,
        &[ringbuf()],
        &[
            "unreleased reference at exit",
            "ringbuf sample",
            &format!("acquired at instruction {RESERVE_PC}"),
            "(leaked)",
        ],
    );
    assert_eq!(e.disasm.as_deref(), Some("exit"), "the leaking exit: {e}");
}

#[test]
fn reservation_with_submit_or_discard_is_accepted() {
    for release in [ids::RINGBUF_SUBMIT, ids::RINGBUF_DISCARD] {
        let src =
            format!("{RESERVE}stdw [%r6+8], 7\nmov %r1, %r6\nmov %r2, 0\ncall {release}\n{OUT}");
        let p = accepts(&src, &[ringbuf()]);
        assert!(p.insns.iter().all(|f| f.heap.is_none()));
    }
}

#[test]
fn leak_on_one_path_only_is_rejected() {
    // Submitted when a random bit is set, forgotten otherwise.
    let src = format!(
        "{RESERVE}call 7\nand %r0, 1\njeq %r0, 0, skip\n\
         mov %r1, %r6\nmov %r2, 0\ncall 132\nskip:\n{OUT}"
    );
    rejects(
        &src,
        &[ringbuf()],
        &["unreleased reference at exit", "ringbuf sample"],
    );
    // Released on both paths (submit on one, discard on the other) it is accepted.
    let both = format!(
        "{RESERVE}call 7\nand %r0, 1\nmov %r1, %r6\nmov %r2, 0\njeq %r0, 0, discard\n\
         call 132\nja out\ndiscard:\ncall 133\n{OUT}"
    );
    accepts(&both, &[ringbuf()]);
}

#[test]
fn double_submit_is_rejected() {
    let src = format!(
        "{RESERVE}mov %r1, %r6\nmov %r2, 0\ncall 132\nmov %r1, %r6\nmov %r2, 0\ncall 132\n{OUT}"
    );
    // After the first submit every copy of the sample pointer is dead: reading r6 again (the
    // `r1 = r6` before the second submit, right after the first call) is refused.
    let e = rejects(&src, &[ringbuf()], &["R6 !read_ok"]);
    assert_eq!(e.pc, Some(RESERVE_PC + 6), "{e}");
    // A copy spilled to the stack before the first submit is no way around it.
    let spilled = format!(
        "{RESERVE}stxdw [%r10-8], %r6\nmov %r1, %r6\nmov %r2, 0\ncall 132\n\
         ldxdw %r1, [%r10-8]\nmov %r2, 0\ncall 132\n{OUT}"
    );
    let e = rejects(
        &spilled,
        &[ringbuf()],
        &["R1 !read_ok: argument 1 of bpf_ringbuf_submit is not initialised"],
    );
    assert_eq!(e.pc, Some(RESERVE_PC + 9), "the second submit: {e}");
}

#[test]
fn submit_of_a_pointer_never_reserved_is_rejected() {
    // A stack buffer is not a reservation.
    let src = "stdw [%r10-16], 0\nmov %r1, %r10\nadd %r1, -16\nmov %r2, 0\ncall 132\n\
               mov %r0, 0\nexit";
    rejects(
        src,
        &[ringbuf()],
        &[
            "R1 type=fp expected=ringbuf sample",
            "argument 1 of bpf_ringbuf_submit must be an acquired ringbuf sample reference",
        ],
    );
    // Nor is a pointer into the middle of one.
    let inner = format!("{RESERVE}mov %r1, %r6\nadd %r1, 8\nmov %r2, 0\ncall 132\n{OUT}");
    rejects(
        &inner,
        &[ringbuf()],
        &["R1 must point to the start of the reference passed to bpf_ringbuf_submit"],
    );
    // Nor a reservation not yet checked against NULL.
    let unchecked = "map_fd %r1, 0\nmov %r2, 16\nmov %r3, 0\ncall 131\nmov %r1, %r0\n\
                     mov %r2, 0\ncall 132\nmov %r0, 0\nexit";
    rejects(unchecked, &[ringbuf()], &["R1 may be NULL"]);
}

// --- Spin locks ---------------------------------------------------------------------------------

/// Looks up key 0 of map `map` (16-byte values, locks at offsets 0 and 8) into `reg`.
fn lookup(map: u32, reg: u8) -> String {
    format!(
        "stw [%r10-4], 0\nmap_fd %r1, {map}\nmov %r2, %r10\nadd %r2, -4\ncall 1\n\
         mov %r{reg}, %r0\njeq %r{reg}, 0, out\n"
    )
}

fn call_lock(helper: u32, reg: u8, off: i32) -> String {
    format!("mov %r1, %r{reg}\nadd %r1, {off}\ncall {helper}\n")
}

fn lock(reg: u8, off: i32) -> String {
    call_lock(ids::SPIN_LOCK, reg, off)
}

fn unlock(reg: u8, off: i32) -> String {
    call_lock(ids::SPIN_UNLOCK, reg, off)
}

fn lock_maps() -> [MapSpec; 2] {
    [array(16), array(16)]
}

#[test]
fn lock_then_unlock_is_accepted() {
    let src = format!(
        "{}{}stdw [%r6+8], 1\n{}{OUT}",
        lookup(0, 6),
        lock(6, 0),
        unlock(6, 0)
    );
    accepts(&src, &lock_maps());
}

#[test]
fn two_locks_released_in_reverse_order_are_accepted() {
    // Take the lock of map 0's value, then map 1's; release map 0's first (not LIFO).
    let src = format!(
        "{}{}{}{}{}{}{OUT}",
        lookup(0, 6),
        lookup(1, 7),
        lock(6, 0),
        lock(7, 0),
        unlock(6, 0),
        unlock(7, 0)
    );
    accepts(&src, &lock_maps());
    // Two locks in one value (offsets 0 and 8) work the same way.
    let same_value = format!(
        "{}{}{}{}{}{OUT}",
        lookup(0, 6),
        lock(6, 0),
        lock(6, 8),
        unlock(6, 0),
        unlock(6, 8)
    );
    accepts(&same_value, &lock_maps());
}

#[test]
fn taking_a_held_lock_again_is_a_deadlock() {
    let src = format!(
        "{}{}{}{}{OUT}",
        lookup(0, 6),
        lock(6, 0),
        lock(6, 0),
        unlock(6, 0)
    );
    rejects(&src, &lock_maps(), &["already held", "this would deadlock"]);
}

#[test]
fn unlock_missing_on_one_branch_is_rejected() {
    let src = format!(
        "{}{}ldxdw %r1, [%r6+8]\njeq %r1, 0, skip\n{}skip:\n{OUT}",
        lookup(0, 6),
        lock(6, 0),
        unlock(6, 0)
    );
    let e = rejects(
        &src,
        &lock_maps(),
        &[
            "program exits while holding the lock at offset 0 of map #0's value",
            "every lock must be released on every path",
        ],
    );
    assert_eq!(e.disasm.as_deref(), Some("exit"), "{e}");
    // Unlocking what is not held is refused too.
    let src = format!("{}{}{OUT}", lookup(0, 6), unlock(6, 0));
    rejects(&src, &lock_maps(), &["bpf_spin_unlock", "no lock is held"]);
}

#[test]
fn helpers_not_allowed_under_a_lock_are_rejected() {
    let src = format!(
        "{}{}call 5\n{}{OUT}",
        lookup(0, 6),
        lock(6, 0),
        unlock(6, 0)
    );
    let e = rejects(
        &src,
        &lock_maps(),
        &["bpf_ktime_get_ns may not be called while holding a lock"],
    );
    assert_eq!(e.disasm.as_deref(), Some("call 0x5"), "{e}");
    // After the unlock the same call is fine.
    let after = format!(
        "{}{}{}call 5\n{OUT}",
        lookup(0, 6),
        lock(6, 0),
        unlock(6, 0)
    );
    accepts(&after, &lock_maps());
}

#[test]
fn lock_word_must_be_an_aligned_word_in_the_value() {
    let src = format!("{}{}{}{OUT}", lookup(0, 6), lock(6, 14), unlock(6, 14));
    rejects(
        &src,
        &lock_maps(),
        &["offset 14 is not an aligned 4-byte word inside the 16-byte value"],
    );
}

// --- Host resources -----------------------------------------------------------------------------

const HOST_OPEN: u32 = 0x3000;
const HOST_CLOSE: u32 = 0x3001;

/// A host pair: `host_open(flags) -> socket or 0` and `host_close(socket)`.
fn host_pair() -> [HelperDef; 2] {
    let socket = ResourceKind::Host("socket");
    [
        HelperDef {
            id: HOST_OPEN,
            name: "host_open".into(),
            sig: Signature::new(&[ArgKind::Scalar], RetKind::Scalar).acquires(socket),
            func: Arc::new(|_| Ok(1)),
        },
        HelperDef {
            id: HOST_CLOSE,
            name: "host_close".into(),
            sig: Signature::new(&[ArgKind::Ref(socket)], RetKind::Void).releases(0),
            func: Arc::new(|_| Ok(0)),
        },
    ]
}

/// Opens a socket into r6 at instruction 1; 0 goes to `out`.
const OPEN: &str = "mov %r1, 0\ncall 0x3000\nmov %r6, %r0\njeq %r6, 0, out\n";

#[test]
fn host_acquire_release_pair_is_tracked() {
    let pair = host_pair();
    let closed = format!("{OPEN}mov %r1, %r6\ncall 0x3001\n{OUT}");
    check_with_helpers(&closed, Syscall, &[], &pair).unwrap_or_else(|e| panic!("{e}"));

    let leaked = format!("{OPEN}{OUT}");
    let e = check_with_helpers(&leaked, Syscall, &[], &pair).unwrap_err();
    assert!(
        e.rule.contains("unreleased reference at exit")
            && e.rule.contains("host socket")
            && e.rule.contains("acquired at instruction 1"),
        "{e}"
    );

    let twice = format!("{OPEN}mov %r1, %r6\ncall 0x3001\nmov %r1, %r6\ncall 0x3001\n{OUT}");
    let e = check_with_helpers(&twice, Syscall, &[], &pair).unwrap_err();
    // The handle died with the first close: the copy for the second one is refused.
    assert!(e.rule.contains("R6 !read_ok"), "{e}");
    assert_eq!(e.pc, Some(6), "{e}");

    // A ringbuf sample is not a socket.
    let wrong =
        format!("{RESERVE}mov %r1, %r6\ncall 0x3001\nmov %r1, %r6\nmov %r2, 0\ncall 133\n{OUT}");
    let e = check_with_helpers(&wrong, Syscall, &[ringbuf()], &pair).unwrap_err();
    assert!(
        e.rule
            .contains("R1 holds a ringbuf sample but host_close takes a host socket"),
        "{e}"
    );

    // Unchecked against NULL, the handle may not be released.
    let unchecked = "mov %r1, 0\ncall 0x3000\nmov %r1, %r0\ncall 0x3001\nmov %r0, 0\nexit";
    let e = check_with_helpers(unchecked, Syscall, &[], &pair).unwrap_err();
    assert!(e.rule.contains("R1 may be NULL"), "{e}");
}

#[test]
fn host_resource_held_across_a_loop_is_in_the_cancellation_table() {
    let src = format!(
        "{OPEN}mov %r7, 0\nloop:\nadd %r7, 1\njlt %r7, 10, loop\n\
         mov %r1, %r6\ncall 0x3001\n{OUT}"
    );
    let p = check_with_helpers(&src, Syscall, &[], &host_pair()).unwrap_or_else(|e| panic!("{e}"));
    let back_edge = back_edge_pc(&p);
    let live = &p.cancellation.entries[&back_edge];
    assert!(
        live.iter().any(|l| l.kind == ResourceKind::Host("socket")
            && l.location == Location::Reg(6)
            && l.release_helper == HOST_CLOSE
            && l.acquired_at == 1),
        "{live:?}"
    );
}

// --- Cancellation table -------------------------------------------------------------------------

/// The single loop back-edge of `p`.
fn back_edge_pc(p: &VerifiedProgram) -> usize {
    let edges: Vec<usize> = p
        .termination_points
        .iter()
        .filter(|t| matches!(t.kind, TerminationKind::BackEdge { .. }))
        .map(|t| t.pc)
        .collect();
    assert_eq!(edges.len(), 1, "{:?}", p.termination_points);
    edges[0]
}

#[test]
fn back_edge_holding_a_reservation_lists_it_for_cancellation() {
    // The sample is in r6 and spilled at fp-8 across an unbounded loop, then submitted.
    let src = format!(
        "{RESERVE}stxdw [%r10-8], %r6\ncall 7\nmov %r7, %r0\nloop:\nstdw [%r6+0], 1\n\
         add %r7, -1\njne %r7, 0, loop\nldxdw %r1, [%r10-8]\nmov %r2, 0\ncall 132\n{OUT}"
    );
    let p = accepts(&src, &[ringbuf()]);
    let back_edge = back_edge_pc(&p);
    assert_eq!(back_edge, RESERVE_PC + 8, "the jne");
    let live = &p.cancellation.entries[&back_edge];
    let sample = |loc: Location| {
        live.iter().any(|l| {
            l.kind == ResourceKind::RingbufSample
                && l.location == loc
                && l.release_helper == ids::RINGBUF_DISCARD
                && l.acquired_at == RESERVE_PC
        })
    };
    assert!(sample(Location::Reg(6)), "{live:?}");
    assert!(
        sample(Location::Stack {
            frame: 0,
            offset: -8
        }),
        "{live:?}"
    );
    assert_eq!(ids::RINGBUF_DISCARD, 133);
    // The same reference in both places.
    let ids: Vec<u32> = live.iter().map(|l| l.ref_id).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{live:?}");
}

#[test]
fn back_edge_after_the_release_holds_nothing() {
    let src = format!(
        "{RESERVE}mov %r1, %r6\nmov %r2, 0\ncall 133\ncall 7\nmov %r7, %r0\nloop:\n\
         add %r7, -1\njne %r7, 0, loop\n{OUT}"
    );
    let p = accepts(&src, &[ringbuf()]);
    let back_edge = back_edge_pc(&p);
    assert!(p.cancellation.entries[&back_edge].is_empty(), "{p:?}");
}

#[test]
fn lock_held_across_a_loop_is_listed_with_the_unlock_helper() {
    let src = format!(
        "{}{}mov %r7, 0\nloop:\nadd %r7, 1\njlt %r7, 4, loop\n{}{OUT}",
        lookup(0, 6),
        lock(6, 0),
        unlock(6, 0)
    );
    let p = check_with_helpers(&src, Xdp, &lock_maps(), &[]).unwrap_or_else(|e| panic!("{e}"));
    let back_edge = back_edge_pc(&p);
    let live = &p.cancellation.entries[&back_edge];
    assert!(
        live.iter()
            .any(|l| l.kind == ResourceKind::Lock && l.release_helper == ids::SPIN_UNLOCK),
        "{live:?}"
    );
}
