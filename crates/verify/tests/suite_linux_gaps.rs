//! The accept/reject suite, continued: the cases that close former differences with Linux 6.18
//! (immediate stores into the context, constant-key array lookups, context pointers at a variable
//! offset, lock identity per map element). Same conventions as `suite_asm.rs`: each case states
//! kflex's verdict and what the running kernel says about the same bytes.

mod suite_support;

use kflex_object::ProgType::{SchedCls, Xdp};
use kflex_verify::CtxAccess;
use suite_support::{Linux, Want, case};

use Linux::{Same, Skip};
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

// ---- Array lookups with a constant key. ----
suite! {
    /// An array lookup with a constant in-range key cannot fail (Linux 6.13+): the key's
    /// bytes are known zero, so no NULL check is needed.
    accept_array_lookup_with_constant_in_range_key_needs_no_null_check: Xdp, Accept, Same, "
        stw [%r10-4], 0
        mov %r2, %r10
        add %r2, -4
        map_fd %r1, 0
        call 1
        ldxdw %r1, [%r0+0]
        mov %r0, 2
        exit";
    /// The key is the spilled constant 7 (< 8 entries): Linux reads the spill as the key.
    accept_array_lookup_with_spilled_constant_key_needs_no_null_check: Xdp, Accept, Same, "
        stdw [%r10-8], 7
        mov %r2, %r10
        add %r2, -4
        map_fd %r1, 0
        call 1
        ldxdw %r1, [%r0+0]
        mov %r0, 2
        exit";
    /// Key 8 is out of range for the 8-entry array: the lookup returns NULL.
    reject_array_lookup_with_out_of_range_constant_key_unchecked: Xdp, Reject("R0 invalid mem access 'map_value_or_null'"), Same, "
        stdw [%r10-8], 8
        mov %r2, %r10
        add %r2, -4
        map_fd %r1, 0
        call 1
        ldxdw %r1, [%r0+0]
        mov %r0, 2
        exit";
    /// A non-zero 4-byte store at fp-4 is not tracked as a constant (by Linux either).
    reject_array_lookup_with_untracked_key_unchecked: Xdp, Reject("map_value_or_null"), Same, "
        stw [%r10-4], 3
        mov %r2, %r10
        add %r2, -4
        map_fd %r1, 0
        call 1
        ldxdw %r1, [%r0+0]
        mov %r0, 2
        exit";
    /// Only array lookups are elided: a hash map may miss any key.
    reject_hash_lookup_with_constant_key_unchecked: Xdp, Reject("map_value_or_null"), Same, "
        stdw [%r10-8], 0
        mov %r2, %r10
        add %r2, -8
        map_fd %r1, 1
        call 1
        ldxdw %r1, [%r0+0]
        mov %r0, 2
        exit";
}

// ---- Immediate stores into the context; the context at a variable offset. ----
/// Linux 6.18 accepts `BPF_ST` (store immediate) into writable context fields (`skb->mark`);
/// the store is recorded as a context access for the JIT to rewrite.
#[test]
fn accept_immediate_store_into_writable_context_field() {
    let v = case(
        "accept_immediate_store_into_writable_context_field",
        SchedCls,
        "stw [%r1+8], 7\nmov %r0, 0\nexit",
        Accept,
        Same,
    )
    .expect("accepted");
    assert_eq!(
        v.insns[0].ctx,
        Some(CtxAccess {
            offset: 8,
            size: 4,
            write: true
        })
    );
}

suite! {
    /// `skb->len` is read-only: an immediate store is rejected like a register store.
    reject_immediate_store_into_read_only_context_field: SchedCls, Reject("invalid bpf_context access off=0 size=4"), Same, "
        stw [%r1+0], 7
        mov %r0, 0
        exit";
    /// xdp_md has no writable field.
    reject_immediate_store_into_xdp_context: Xdp, Reject("invalid bpf_context access"), Same, "
        stw [%r1+0], 0
        mov %r0, 2
        exit";

    // ---- The context at a variable offset. ----
    /// Linux keeps a context pointer moved by a bounded variable amount; only its uses fail.
    accept_variable_ctx_pointer_never_used: Xdp, Accept, Same, "
        mov %r6, %r1
        call 7
        and %r0, 15
        add %r6, %r0
        mov %r0, 2
        exit";
    reject_variable_ctx_pointer_dereference: Xdp, Reject("the context can only be accessed at a constant offset; R6 has a variable offset in 0..=15"), Same, "
        mov %r6, %r1
        call 7
        and %r0, 15
        add %r6, %r0
        ldxw %r0, [%r6+0]
        mov %r0, 2
        exit";
    reject_variable_ctx_pointer_store: SchedCls, Reject("the context can only be accessed at a constant offset"), Same, "
        mov %r6, %r1
        call 7
        and %r0, 4
        add %r6, %r0
        stw [%r6+8], 1
        mov %r0, 0
        exit";
    reject_variable_ctx_pointer_passed_as_context: Xdp, Reject("type=ctx with a variable offset"), Same, "
        mov %r6, %r1
        call 7
        and %r0, 15
        add %r6, %r0
        mov %r1, %r6
        mov %r2, 0
        call 44
        mov %r0, 2
        exit";
    reject_unbounded_variable_ctx_offset: Xdp, Reject("ctx pointer offset out of bounds"), Same, "
        mov %r6, %r1
        call 7
        lsh %r0, 32
        add %r6, %r0
        mov %r0, 2
        exit";
    /// Linux bounds only the smallest value added to a context pointer.
    accept_variable_ctx_offset_with_bounded_minimum: Xdp, Accept, Same, "
        mov %r6, %r1
        call 7
        rsh %r0, 1
        add %r6, %r0
        mov %r0, 2
        exit";
}

// ---- Lock identity per map element. ----
/// Looks up `arr[0]` into r6 and `arr[1]` into r7 (same map, same lock offset, two elements).
const TWO_ELEMENTS: &str = "
    stw [%r10-4], 0
    mov %r2, %r10
    add %r2, -4
    map_fd %r1, 0
    call 1
    jeq %r0, 0, out
    mov %r6, %r0
    stdw [%r10-16], 1
    mov %r2, %r10
    add %r2, -12
    map_fd %r1, 0
    call 1
    jeq %r0, 0, out
    mov %r7, %r0
";

suite! {
    /// A lock is identified by the element (the lookup result's id), not only by map and
    /// offset: the locks of two elements of one map are two locks.
    relaxation_locks_of_two_elements_of_one_map_held_at_once: Xdp, Accept, Skip, &format!("{TWO_ELEMENTS}
        mov %r1, %r6
        call 93
        mov %r1, %r7
        call 93
        mov %r1, %r6
        call 94
        mov %r1, %r7
        call 94
    out:
        mov %r0, 2
        exit");
    reject_unlock_of_the_other_element: Xdp, Reject("which is not held"), Skip, &format!("{TWO_ELEMENTS}
        mov %r1, %r6
        call 93
        mov %r1, %r7
        call 94
    out:
        mov %r0, 2
        exit");
    /// A copy of the element pointer names the same lock: taking it again would deadlock.
    reject_same_element_locked_twice_through_a_copy: Xdp, Reject("deadlock"), Skip, &format!("{TWO_ELEMENTS}
        mov %r8, %r6
        mov %r1, %r6
        call 93
        mov %r1, %r8
        call 93
    out:
        mov %r0, 2
        exit");
    /// One element locked twice across a spill and fill is still one lock.
    reject_same_element_locked_twice_after_spill: Xdp, Reject("deadlock"), Skip, &format!("{TWO_ELEMENTS}
        stxdw [%r10-24], %r6
        mov %r1, %r6
        call 93
        ldxdw %r1, [%r10-24]
        call 93
    out:
        mov %r0, 2
        exit");
}
