//! Helper calls through the real `verify` engine: one test per argument kind of the typed helper
//! registry, each asserting the rule text the verifier gives (and, where a rule has an accepted
//! counterpart, that the counterpart is accepted).

mod support;

use std::sync::Arc;

use kflex_object::MapSpec;
use kflex_object::ProgType::{self, SocketFilter, Syscall, Xdp};
use kflex_runtime::helpers::{ArgKind, HelperDef, RetKind, Signature};
use kflex_verify::{VerifiedProgram, VerifyError, VerifyOptions};
use support::{array, hash, helpers_for, program, ringbuf, verify_decoded};

/// Verifies `src` with the Linux helpers, the program type's helpers and `extra` host helpers.
fn check_with_helpers(
    src: &str,
    prog_type: ProgType,
    maps: &[MapSpec],
    extra: Vec<HelperDef>,
) -> Result<VerifiedProgram, Box<VerifyError>> {
    let mut helpers = helpers_for(prog_type);
    for h in extra {
        helpers.register(h).unwrap();
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

fn accepts(src: &str, prog_type: ProgType, maps: &[MapSpec]) -> VerifiedProgram {
    check_with_helpers(src, prog_type, maps, Vec::new())
        .unwrap_or_else(|e| panic!("rejected:\n{e}\n--\n{src}"))
}

/// The rejection of `src`, after asserting its rule contains every one of `needles`.
fn rejects(src: &str, prog_type: ProgType, maps: &[MapSpec], needles: &[&str]) -> VerifyError {
    match check_with_helpers(src, prog_type, maps, Vec::new()) {
        Ok(_) => panic!("accepted, expected a rejection ({needles:?}):\n{src}"),
        Err(e) => {
            for n in needles {
                assert!(e.rule.contains(n), "rule {:?} lacks {n:?}\n{e}", e.rule);
            }
            *e
        }
    }
}

/// `r2 = fp-4` holding a 4-byte key 0, ready for a map helper.
const KEY_AT_FP4: &str = "stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\n";

// --- MapPtr -------------------------------------------------------------------------------------

#[test]
fn map_pointer_argument_must_be_a_map() {
    let src = format!("mov %r1, 0\n{KEY_AT_FP4}call 1\nmov %r0, 0\nexit");
    let e = rejects(
        &src,
        Xdp,
        &[hash(8)],
        &[
            "R1 type=scalar expected=a map pointer",
            "argument 1 of bpf_map_lookup_elem",
        ],
    );
    assert_eq!(e.pc, Some(4), "the call is blamed");
    // A stack pointer is no map either.
    let src = format!("mov %r1, %r10\n{KEY_AT_FP4}call 1\nmov %r0, 0\nexit");
    rejects(
        &src,
        Xdp,
        &[hash(8)],
        &["R1 type=fp expected=a map pointer"],
    );
    // The same call with the map is fine.
    let src = format!("map_fd %r1, 0\n{KEY_AT_FP4}call 1\nmov %r0, 0\nexit");
    accepts(&src, Xdp, &[hash(8)]);
}

#[test]
fn map_pointer_of_the_wrong_map_type_is_rejected() {
    // bpf_ringbuf_reserve on a hash map.
    let src = "map_fd %r1, 0\nmov %r2, 8\nmov %r3, 0\ncall 131\nmov %r0, 0\nexit";
    rejects(
        src,
        Syscall,
        &[hash(8)],
        &["bpf_ringbuf_reserve needs a ring buffer map, but counts is a hash map"],
    );
    // bpf_map_lookup_elem on a ring buffer, which has no keys.
    let src = format!("map_fd %r1, 0\n{KEY_AT_FP4}call 1\nmov %r0, 0\nexit");
    rejects(
        &src,
        Syscall,
        &[ringbuf()],
        &["bpf_map_lookup_elem cannot be used on ringbuf map events"],
    );
}

// --- MapKey / MapValue sizes --------------------------------------------------------------------

#[test]
fn map_key_pointer_must_cover_the_whole_key() {
    // The key is 4 bytes but r2 = fp-2: the read would run past the top of the stack.
    let src =
        "sth [%r10-2], 0\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -2\ncall 1\nmov %r0, 0\nexit";
    rejects(
        src,
        Xdp,
        &[hash(8)],
        &[
            "R2 invalid stack read of 4 bytes at offset [-2, -2]",
            "by bpf_map_lookup_elem",
            "(the map key of counts)",
        ],
    );
}

#[test]
fn map_value_pointer_must_cover_the_whole_value() {
    // Update map 0 (16-byte values) with a value taken from map 1, whose values are 8 bytes.
    let lookup_small = format!(
        "map_fd %r1, 1\n{KEY_AT_FP4}call 1\njeq %r0, 0, out\nmov %r3, %r0\n\
         map_fd %r1, 0\nmov %r2, %r10\nadd %r2, -4\nmov %r4, 0\ncall 2\nout:\nmov %r0, 0\nexit"
    );
    let small = support::array(8);
    rejects(
        &lookup_small,
        Xdp,
        &[hash(16), small.clone()],
        &[
            "R3 invalid map value read of 16 bytes at offset [0, 0] (the value is 8 bytes)",
            "bpf_map_update_elem",
            "(the map value of counts)",
        ],
    );
    // With 8-byte values on both sides the same program is fine.
    accepts(&lookup_small, Xdp, &[hash(8), small]);
}

// --- MemRead / MemWrite -------------------------------------------------------------------------

/// bpf_trace_printk(fp-8, 8): reads 8 stack bytes.
const PRINTK_FP8: &str = "mov %r1, %r10\nadd %r1, -8\nmov %r2, 8\ncall 6\nmov %r0, 0\nexit";

#[test]
fn mem_read_of_uninitialised_stack_is_rejected() {
    let e = rejects(
        PRINTK_FP8,
        Xdp,
        &[],
        &[
            "invalid indirect read from stack R1 off -8+8",
            "fp-8 is not initialised",
            "(argument 1 of bpf_trace_printk)",
        ],
    );
    assert_eq!(e.pc, Some(3));
    // Half initialised: the first byte that is not is named.
    let half = format!("stw [%r10-8], 0x6925\n{PRINTK_FP8}");
    rejects(&half, Xdp, &[], &["fp-4 is not initialised"]);
    // Fully initialised (a NUL-terminated format string) it is accepted.
    let full = format!("stdw [%r10-8], 0x6925\n{PRINTK_FP8}");
    accepts(&full, Xdp, &[]);
}

/// bpf_skb_load_bytes(ctx, 0, fp-8, LEN), then a read of the 8 bytes at fp-8.
fn load_bytes_then_read(len: u32) -> String {
    format!(
        "mov %r2, 0\nmov %r3, %r10\nadd %r3, -8\nmov %r4, {len}\ncall 26\n\
         ldxdw %r0, [%r10-8]\nexit"
    )
}

#[test]
fn mem_write_marks_the_stack_initialised() {
    // Without the helper the read of fp-8 is refused...
    rejects(
        "ldxdw %r0, [%r10-8]\nexit",
        SocketFilter,
        &[],
        &["invalid read from stack"],
    );
    // ...after bpf_skb_load_bytes wrote those 8 bytes it is accepted.
    accepts(&load_bytes_then_read(8), SocketFilter, &[]);
    // Writing only 4 of them leaves fp-4..fp-1 uninitialised.
    rejects(
        &load_bytes_then_read(4),
        SocketFilter,
        &[],
        &["invalid read from stack"],
    );
}

#[test]
fn mem_write_must_fit_its_memory() {
    // 16 bytes into the 8 bytes between fp-8 and fp.
    let e = rejects(
        &load_bytes_then_read(16),
        SocketFilter,
        &[],
        &[
            "R3 invalid stack write of 16 bytes at offset [-8, -8]",
            "bpf_skb_load_bytes",
        ],
    );
    assert_eq!(e.pc, Some(4));
}

// --- MemSize ------------------------------------------------------------------------------------

#[test]
fn zero_size_is_rejected_unless_the_helper_allows_it() {
    let src = "stdw [%r10-8], 0\nmov %r1, %r10\nadd %r1, -8\nmov %r2, 0\ncall 6\nmov %r0, 0\nexit";
    rejects(
        src,
        Xdp,
        &[],
        &[
            "R2 invalid zero-sized access",
            "the size of argument 1 of bpf_trace_printk may be 0",
        ],
    );
    // A size that may be 0 (any u32 from the PRNG) is as bad as a constant 0.
    let maybe_zero = "stdw [%r10-8], 0\ncall 7\nmov %r2, %r0\nand %r2, 7\n\
                      mov %r1, %r10\nadd %r1, -8\ncall 6\nmov %r0, 0\nexit";
    rejects(maybe_zero, Xdp, &[], &["R2 invalid zero-sized access"]);
    // bpf_ringbuf_output's size is MemSize { zero_ok: true }: 0 is fine.
    let output = "stdw [%r10-8], 0\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 0\n\
                  mov %r4, 0\ncall 130\nmov %r0, 0\nexit";
    accepts(output, Syscall, &[ringbuf()]);
}

#[test]
fn unbounded_or_oversized_sizes_are_rejected() {
    let printk_with_size = |mask: &str| {
        format!(
            "stdw [%r10-8], 0\ncall 7\nmov %r2, %r0\n{mask}or %r2, 1\n\
             mov %r1, %r10\nadd %r1, -8\ncall 6\nmov %r0, 0\nexit"
        )
    };
    // No upper bound at all.
    let e = check_with_helpers(&printk_with_size(""), Xdp, &[], vec![]).unwrap_err();
    assert!(
        e.rule.contains("R2 unbounded memory access")
            && e.rule
                .contains("the size of argument 1 of bpf_trace_printk"),
        "{e}"
    );
    assert!(
        e.effective_hint().unwrap().contains("bound the size"),
        "{e}"
    );
    // Bounded to 1..=255, but the stack holds only 8 bytes above fp-8.
    let e = check_with_helpers(&printk_with_size("and %r2, 0xfe\n"), Xdp, &[], vec![]).unwrap_err();
    assert!(
        e.rule
            .contains("R1 invalid stack read of 255 bytes at offset [-8, -8]"),
        "{e}"
    );
    // Bounded to 1..=7 it fits.
    assert!(check_with_helpers(&printk_with_size("and %r2, 6\n"), Xdp, &[], vec![]).is_ok());
}

// --- Ctx ----------------------------------------------------------------------------------------

#[test]
fn ctx_argument_must_be_the_context_pointer_itself() {
    // bpf_xdp_adjust_head(ctx, 0)
    accepts("mov %r2, 0\ncall 44\nmov %r0, 2\nexit", Xdp, &[]);
    rejects(
        "mov %r1, %r10\nmov %r2, 0\ncall 44\nmov %r0, 2\nexit",
        Xdp,
        &[],
        &[
            "R1 type=fp expected=the context pointer",
            "argument 1 of bpf_xdp_adjust_head",
        ],
    );
    rejects(
        "mov %r1, 4\nmov %r2, 0\ncall 44\nmov %r0, 2\nexit",
        Xdp,
        &[],
        &["R1 type=scalar expected=the context pointer"],
    );
    // After the call r1 is scratched: a second call without reloading it is refused.
    rejects(
        "mov %r6, %r1\nmov %r2, 0\ncall 44\nmov %r2, 0\ncall 44\nmov %r0, 2\nexit",
        Xdp,
        &[],
        &["R1 !read_ok: argument 1 of bpf_xdp_adjust_head is not initialised"],
    );
}

// --- ConstScalar --------------------------------------------------------------------------------

#[test]
fn const_scalar_argument_must_be_a_known_constant() {
    let reserve = |size: &str| {
        format!(
            "{size}map_fd %r1, 0\nmov %r3, 0\ncall 131\njeq %r0, 0, out\n\
             mov %r1, %r0\nmov %r2, 0\ncall 133\nout:\nmov %r0, 0\nexit"
        )
    };
    let e = rejects(
        &reserve("call 7\nmov %r2, %r0\nand %r2, 0xff\n"),
        Syscall,
        &[ringbuf()],
        &[
            "R2 is not a known constant",
            "argument 2 of bpf_ringbuf_reserve must be a constant",
        ],
    );
    assert_eq!(e.pc, Some(6));
    accepts(&reserve("mov %r2, 64\n"), Syscall, &[ringbuf()]);
    // A pointer is no constant at all.
    rejects(
        &reserve("mov %r2, %r10\n"),
        Syscall,
        &[ringbuf()],
        &["R2 type=fp expected=a constant scalar"],
    );
}

// --- Scalar, uninitialised and unknown helpers --------------------------------------------------

#[test]
fn scalar_argument_rejects_pointers_and_uninitialised_registers() {
    let host = HelperDef {
        id: 0x4000,
        name: "host_add".into(),
        sig: Signature::new(&[ArgKind::Scalar, ArgKind::Scalar], RetKind::Scalar),
        func: Arc::new(|c| Ok(c.args[0].wrapping_add(c.args[1]))),
    };
    let run = |src: &str| check_with_helpers(src, Syscall, &[], vec![host.clone()]);
    assert!(run("mov %r1, 1\nmov %r2, 2\ncall 0x4000\nexit").is_ok());
    let e = run("mov %r1, %r10\nmov %r2, 2\ncall 0x4000\nexit").unwrap_err();
    assert!(
        e.rule
            .contains("R1 type=fp expected=a scalar: argument 1 of host_add"),
        "{e}"
    );
    let e = run("mov %r1, 1\ncall 0x4000\nexit").unwrap_err();
    assert!(
        e.rule
            .contains("R2 !read_ok: argument 2 of host_add is not initialised"),
        "{e}"
    );
    // Without the host helper the call names an unknown helper.
    let e = check_with_helpers(
        "mov %r1, 1\nmov %r2, 2\ncall 0x4000\nexit",
        Syscall,
        &[],
        vec![],
    )
    .unwrap_err();
    assert!(e.rule.contains("unknown helper #16384"), "{e}");
}

#[test]
fn lookup_result_is_a_nullable_value_of_the_right_size() {
    // The value is 8 bytes: reading 8 at offset 0 is fine once checked, offset 4 is not.
    let read = |off: i16| {
        format!(
            "map_fd %r1, 0\n{KEY_AT_FP4}call 1\njeq %r0, 0, out\nldxdw %r0, [%r0+{off}]\n\
             out:\nmov %r0, 0\nexit"
        )
    };
    accepts(&read(0), Xdp, &[array(8)]);
    rejects(&read(4), Xdp, &[array(8)], &["invalid access to map value"]);
    // Unchecked, a hash map's value may be NULL (the key may be absent).
    let unchecked = format!("map_fd %r1, 0\n{KEY_AT_FP4}call 1\nldxdw %r0, [%r0+0]\nexit");
    rejects(&unchecked, Xdp, &[hash(8)], &["map_value_or_null"]);
}
