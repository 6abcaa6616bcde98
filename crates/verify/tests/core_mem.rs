//! Context, packet, map value and helper memory rules.

mod support;

use kflex_object::ProgType::{SchedCls, SocketFilter, Xdp};
use kflex_verify::CtxAccess;
use support::*;

const XDP_BOUNDS: &str = "ldxw %r2, [%r1]\nldxw %r3, [%r1+4]\n";

#[test]
fn context_fields_per_program_type() {
    let p = accept("ldxw %r0, [%r1+12]\nexit", Xdp, &[]);
    assert_eq!(
        p.insns[0].ctx,
        Some(CtxAccess {
            offset: 12,
            size: 4,
            write: false
        })
    );
    let e = reject(
        "ldxw %r0, [%r1+64]\nexit",
        Xdp,
        &[],
        "invalid bpf_context access off=64",
    );
    assert!(e.hint.contains("struct xdp_md"), "{e}");
    // __sk_buff.mark (offset 8) is writable by tc but not by socket filters.
    let p = accept(
        "mov %r2, 1\nstxw [%r1+8], %r2\nmov %r0, 0\nexit",
        SchedCls,
        &[],
    );
    assert_eq!(p.insns[1].ctx.map(|c| c.write), Some(true));
    reject(
        "mov %r2, 1\nstxw [%r1+8], %r2\nmov %r0, 0\nexit",
        SocketFilter,
        &[],
        "invalid bpf_context access",
    );
    // An immediate store (BPF_ST) follows the same field rules as a register store (Linux 6.18).
    let p = accept("stw [%r1+8], 1\nmov %r0, 0\nexit", SchedCls, &[]);
    assert_eq!(p.insns[0].ctx.map(|c| (c.offset, c.write)), Some((8, true)));
    reject(
        "stw [%r1+8], 1\nmov %r0, 0\nexit",
        SocketFilter,
        &[],
        "invalid bpf_context access off=8 size=4",
    );
    reject(
        "stxw [%r1+8], %r10\nmov %r0, 0\nexit",
        SchedCls,
        &[],
        "leaks addr into ctx",
    );
    reject(
        "mov %r2, 1\nlock add [%r1+8], %r2\nmov %r0, 0\nexit",
        SchedCls,
        &[],
        "BPF_ATOMIC stores into R1 ctx",
    );
}

#[test]
fn packet_access_needs_a_range_check() {
    let e = reject(
        &format!("{XDP_BOUNDS}ldxb %r0, [%r2+12]\nexit"),
        Xdp,
        &[],
        "invalid access to packet",
    );
    assert!(e.hint.contains("data + 13"), "{e}");
    // if (data + 14 > data_end) return; then bytes 0..14 are readable, through copies too.
    accept(
        &format!(
            "{XDP_BOUNDS}mov %r4, %r2\nadd %r4, 14\nmov %r0, 1\njgt %r4, %r3, out\n\
             mov %r5, %r2\nldxh %r0, [%r5+12]\nldxb %r6, [%r4-1]\nout:\nexit"
        ),
        Xdp,
        &[],
    );
    // One byte past the checked range.
    reject(
        &format!(
            "{XDP_BOUNDS}mov %r4, %r2\nadd %r4, 14\nmov %r0, 1\njgt %r4, %r3, out\n\
             ldxw %r0, [%r2+12]\nout:\nexit"
        ),
        Xdp,
        &[],
        "invalid access to packet, off=12 size=4",
    );
    // The reversed comparison (data_end < data + N) proves the same on its fall-through.
    accept(
        &format!(
            "{XDP_BOUNDS}mov %r4, %r2\nadd %r4, 8\nmov %r0, 1\njlt %r3, %r4, out\n\
             ldxdw %r0, [%r2]\nout:\nexit"
        ),
        Xdp,
        &[],
    );
    // The taken branch of the check (packet too short) proves nothing.
    reject(
        &format!(
            "{XDP_BOUNDS}mov %r4, %r2\nadd %r4, 8\nmov %r0, 1\njgt %r4, %r3, bad\nexit\nbad:\n\
             ldxdw %r0, [%r2]\nexit"
        ),
        Xdp,
        &[],
        "invalid access to packet",
    );
}

#[test]
fn packet_variable_offsets() {
    // data + (x & 0xf) + 4 <= data_end proves a 4-byte access at data + (x & 0xf).
    accept(
        &format!(
            "{XDP_BOUNDS}mov %r6, %r2\nmov %r7, %r3\ncall 7\nand %r0, 15\nadd %r6, %r0\n\
             mov %r4, %r6\nadd %r4, 4\nmov %r0, 0\njgt %r4, %r7, out\nldxw %r0, [%r6]\nout:\nexit"
        ),
        Xdp,
        &[],
    );
    // Without the mask the offset is unbounded.
    reject(
        &format!("{XDP_BOUNDS}mov %r6, %r2\ncall 7\nlsh %r0, 40\nadd %r6, %r0\nmov %r0, 0\nexit"),
        Xdp,
        &[],
        "pointer offset out of bounds",
    );
    // Packet pointers cannot be compared with arbitrary scalars unprivileged.
    let src = format!("{XDP_BOUNDS}mov %r0, 0\njeq %r2, 5, out\nout:\nexit");
    check(&src, Xdp, &[]).expect("privileged");
    let e = check_with(&src, Xdp, &[], &unprivileged()).unwrap_err();
    assert!(e.rule.contains("pointer comparison prohibited"), "{e}");
}

#[test]
fn packet_end_is_not_dereferenceable() {
    reject(
        &format!("{XDP_BOUNDS}ldxb %r0, [%r3]\nexit"),
        Xdp,
        &[],
        "invalid mem access 'pkt_end'",
    );
}

#[test]
fn map_lookup_results_must_be_null_checked() {
    let lookup = "stw [%r10-4], 0\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\n";
    let e = reject(
        &format!("{lookup}ldxdw %r0, [%r0]\nexit"),
        Xdp,
        &[hash(16)],
        "invalid mem access 'map_value_or_null'",
    );
    assert!(e.hint.contains("NULL"), "{e}");
    // A copy made before the check is refined too (same id).
    accept(
        &format!(
            "{lookup}mov %r6, %r0\njeq %r0, 0, out\nldxdw %r0, [%r6+8]\nexit\nout:\nmov %r0, 0\nexit"
        ),
        Xdp,
        &[hash(16)],
    );
    // On the NULL branch the pointer is the constant 0.
    reject(
        &format!("{lookup}jne %r0, 0, out\nldxdw %r0, [%r0]\nout:\nmov %r0, 0\nexit"),
        Xdp,
        &[hash(16)],
        "invalid mem access 'scalar'",
    );
    // Arithmetic before the NULL check is not allowed.
    reject(
        &format!("{lookup}add %r0, 8\nmov %r0, 0\nexit"),
        Xdp,
        &[hash(16)],
        "pointer arithmetic on map_value_or_null prohibited",
    );
}

#[test]
fn map_value_accesses_stay_inside_the_value() {
    let lookup = "stw [%r10-4], 0\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -4\ncall 1\nmov %r6, %r0\nmov %r0, 0\njeq %r6, 0, out\n";
    accept(
        &format!("{lookup}ldxdw %r0, [%r6+8]\nout:\nexit"),
        Xdp,
        &[hash(16)],
    );
    reject(
        &format!("{lookup}ldxdw %r0, [%r6+12]\nout:\nexit"),
        Xdp,
        &[hash(16)],
        "invalid access to map value of counts",
    );
    // Bounded variable offsets.
    accept(
        &format!("{lookup}call 7\nand %r0, 7\nadd %r6, %r0\nldxdw %r0, [%r6]\nout:\nexit"),
        Xdp,
        &[hash(16)],
    );
    reject(
        &format!("{lookup}call 7\nand %r0, 15\nadd %r6, %r0\nldxdw %r0, [%r6]\nout:\nexit"),
        Xdp,
        &[hash(16)],
        "outside the 16-byte region",
    );
}

#[test]
fn read_only_maps_and_constant_globals() {
    let ro = rodata(&[7, 0, 0, 0, 0, 0, 0, 0]);
    reject(
        "map_value %r1, 0, 0\nstw [%r1], 1\nmov %r0, 0\nexit",
        Xdp,
        std::slice::from_ref(&ro),
        "marked BPF_F_RDONLY_PROG",
    );
    // The constant 7 read from .rodata bounds a stack offset exactly: fp-8 + 7 - 7 = fp-8.
    accept(
        "stdw [%r10-8], 0\nmap_value %r1, 0, 0\nldxw %r2, [%r1]\nmov %r3, %r10\nadd %r3, -15\n\
         add %r3, %r2\nldxdw %r0, [%r3]\nexit",
        Xdp,
        &[ro],
    );
    accept(
        "map_value %r1, 0, 8\nstw [%r1], 1\nmov %r0, 0\nexit",
        Xdp,
        &[array(16)],
    );
    reject(
        "map_value %r1, 0, 16\nmov %r0, 0\nexit",
        Xdp,
        &[array(16)],
        "past the 16-byte value",
    );
    reject(
        "map_fd %r1, 3\nmov %r0, 0\nexit",
        Xdp,
        &[],
        "refers to map #3",
    );
}

#[test]
fn unprivileged_programs_cannot_leak_pointers_into_maps() {
    let src = "map_value %r1, 0, 0\nstxdw [%r1], %r10\nmov %r0, 0\nexit";
    check(src, Xdp, &[array(16)]).expect("privileged");
    let e = check_with(src, Xdp, &[array(16)], &unprivileged()).unwrap_err();
    assert!(e.rule.contains("leaks addr"), "{e}");
}

#[test]
fn ringbuf_samples_are_memory_of_their_size() {
    let reserve =
        "map_fd %r1, 0\nmov %r2, 16\nmov %r3, 0\ncall 131\nmov %r6, %r0\njeq %r6, 0, out\n";
    accept(
        &format!(
            "{reserve}stdw [%r6+8], 1\nmov %r1, %r6\nmov %r2, 0\ncall 132\nout:\nmov %r0, 0\nexit"
        ),
        Xdp,
        &[ringbuf()],
    );
    reject(
        &format!(
            "{reserve}stdw [%r6+12], 1\nmov %r1, %r6\nmov %r2, 0\ncall 132\nout:\nmov %r0, 0\nexit"
        ),
        Xdp,
        &[ringbuf()],
        "invalid access to mem",
    );
    reject(
        &format!("{reserve}out:\nmov %r0, 0\nexit"),
        Xdp,
        &[ringbuf()],
        "unreleased reference",
    );
}
