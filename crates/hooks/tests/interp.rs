//! End-to-end: hand-written programs run through the interpreter against prepared test runs.

use kflex_hooks::{TestRunInput, TestRunOutput, prepare, register_extra_helpers};
use kflex_interp::{Fault, FaultKind, Vm, run};
use kflex_isa::asm::assemble;
use kflex_isa::decode::Program;
use kflex_object::ProgType;
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};

/// Runs `asm` as a `prog_type` program on `input`; returns r0 (or the fault) and the outputs.
fn exec(
    prog_type: ProgType,
    asm: &str,
    input: TestRunInput,
) -> (Result<u64, Fault>, TestRunOutput) {
    let slots = assemble(asm).expect("assembles");
    let program = Program::decode(&slots).expect("decodes");
    let mut helpers = HelperRegistry::empty();
    register_extra_helpers(&mut helpers, prog_type).unwrap();
    let mut env = ExecEnv::default();
    let mut mem = MemoryMap::new();
    let mut prepared = prepare(prog_type, &input).expect("prepares");
    // SAFETY: uninstalled below, before `prepared` is finished.
    unsafe { prepared.install(&mut mem).expect("installs") };
    let r1 = prepared.ctx_address();
    let result = {
        let mut vm = Vm::new(&mut mem, &helpers, &mut env);
        vm.ctx = Some(prepared.context_access());
        run(&program, [r1, 0, 0, 0, 0], &mut vm).map(|o| o.retval)
    };
    prepared.uninstall(&mut mem);
    assert!(mem.regions().is_empty(), "every region removed");
    (result, prepared.finish())
}

fn frame(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

fn data(frame: Vec<u8>) -> TestRunInput {
    TestRunInput {
        data_in: frame,
        ctx_in: None,
    }
}

/// XDP: bounds-check 14 bytes, pass IPv4, drop the rest, and mark the first byte.
const XDP_FILTER: &str = "
    ldxw %r2, [%r1+0]      # data
    ldxw %r3, [%r1+4]      # data_end
    mov %r4, %r2
    add %r4, 14
    jgt %r4, %r3, drop
    stb [%r2+0], 0xaa
    ldxh %r5, [%r2+12]     # EtherType, network order
    jne %r5, 0x0008, drop
    mov %r0, 2             # XDP_PASS
    exit
drop:
    mov %r0, 1             # XDP_DROP
    exit
";

#[test]
fn xdp_bounds_checked_filter() {
    let (r, out) = exec(ProgType::Xdp, XDP_FILTER, data(frame(0x0800, &[1, 2, 3])));
    assert_eq!(r.unwrap(), 2);
    let mut expected = frame(0x0800, &[1, 2, 3]);
    expected[0] = 0xaa;
    assert_eq!(out.data_out, expected);
    let (r, _) = exec(ProgType::Xdp, XDP_FILTER, data(frame(0x86dd, &[])));
    assert_eq!(r.unwrap(), 1);
}

#[test]
fn xdp_read_past_data_end_faults() {
    let asm = "
        ldxw %r2, [%r1+0]
        ldxb %r0, [%r2+100]
        exit
    ";
    let (r, _) = exec(ProgType::Xdp, asm, data(frame(0x0800, &[0; 20])));
    let fault = r.unwrap_err();
    assert!(matches!(fault.kind, FaultKind::Memory(_)), "{fault}");
}

#[test]
fn xdp_context_is_read_only_in_the_interpreter() {
    let asm = "
        stw [%r1+12], 5
        mov %r0, 0
        exit
    ";
    let (r, _) = exec(ProgType::Xdp, asm, data(frame(0x0800, &[])));
    let fault = r.unwrap_err();
    match fault.kind {
        FaultKind::Context { offset, reason, .. } => {
            assert_eq!(offset, 12);
            assert!(reason.contains("ingress_ifindex"), "{reason}");
        }
        other => panic!("unexpected fault {other:?}"),
    }
}

#[test]
fn xdp_egress_ifindex_read_faults_in_the_interpreter() {
    // Linux lets only devmap programs read it; plain XDP programs cannot, here either.
    let asm = "
        ldxw %r0, [%r1+20]
        exit
    ";
    let (r, _) = exec(ProgType::Xdp, asm, data(frame(0x0800, &[])));
    match r.unwrap_err().kind {
        FaultKind::Context { offset, reason, .. } => {
            assert_eq!(offset, 20);
            assert!(reason.contains("egress_ifindex"), "{reason}");
            assert!(reason.contains("devmap"), "{reason}");
        }
        other => panic!("unexpected fault {other:?}"),
    }
    // The field before it is still readable.
    let asm = "
        ldxw %r0, [%r1+16]
        exit
    ";
    let (r, _) = exec(ProgType::Xdp, asm, data(frame(0x0800, &[])));
    assert_eq!(r.unwrap(), 0);
}

/// Grows the head by 4 bytes, writes them through the new data pointer, returns the new length.
const XDP_PUSH4: &str = "
    mov %r6, %r1
    mov %r2, -4
    call 44                # bpf_xdp_adjust_head
    jne %r0, 0, fail
    ldxw %r2, [%r6+0]
    ldxw %r3, [%r6+4]
    mov %r4, %r2
    add %r4, 4
    jgt %r4, %r3, fail
    stw [%r2+0], 0x04030201
    mov %r0, %r3
    sub %r0, %r2
    exit
fail:
    mov %r0, 999
    exit
";

#[test]
fn xdp_adjust_head_grows_the_packet_and_moves_the_regions() {
    let f = frame(0x0800, &[9; 10]);
    let (r, out) = exec(ProgType::Xdp, XDP_PUSH4, data(f.clone()));
    assert_eq!(r.unwrap(), f.len() as u64 + 4);
    let mut expected = vec![1, 2, 3, 4];
    expected.extend(&f);
    assert_eq!(out.data_out, expected);
}

#[test]
fn xdp_stale_pointer_after_shrinking_faults() {
    // Keep the old data pointer, drop 14 bytes of head, then use the old pointer.
    let asm = "
        mov %r6, %r1
        ldxw %r7, [%r1+0]
        mov %r2, 14
        call 44
        jne %r0, 0, fail
        ldxb %r0, [%r7+0]      # outside the packet now
        exit
    fail:
        mov %r0, 999
        exit
    ";
    let (r, _) = exec(ProgType::Xdp, asm, data(frame(0x0800, &[0; 20])));
    assert!(matches!(r.unwrap_err().kind, FaultKind::Memory(_)));
}

#[test]
fn xdp_adjust_head_limits() {
    // Shrinking below an Ethernet header or growing into the xdp_frame area fails with -EINVAL.
    let asm = |delta: i32| {
        format!(
            "
        mov %r2, {delta}
        call 44
        exit
    "
        )
    };
    let f = frame(0x0800, &[0; 6]); // 20 bytes
    let (r, _) = exec(ProgType::Xdp, &asm(7), data(f.clone()));
    assert_eq!(r.unwrap() as i64, -22);
    let (r, out) = exec(ProgType::Xdp, &asm(6), data(f.clone()));
    assert_eq!(r.unwrap(), 0);
    assert_eq!(out.data_out, f[6..]);
    let (r, _) = exec(ProgType::Xdp, &asm(-217), data(f.clone()));
    assert_eq!(
        r.unwrap() as i64,
        -22,
        "256 - 40 = 216 bytes of usable headroom"
    );
    let (r, out) = exec(ProgType::Xdp, &asm(-216), data(f.clone()));
    assert_eq!(r.unwrap(), 0);
    assert_eq!(out.data_out.len(), f.len() + 216);
}

#[test]
fn xdp_adjust_meta_creates_metadata() {
    let asm = "
        mov %r6, %r1
        mov %r2, -8
        call 54                # bpf_xdp_adjust_meta
        jne %r0, 0, fail
        ldxw %r2, [%r6+8]      # data_meta
        ldxw %r3, [%r6+0]      # data
        mov %r4, %r2
        add %r4, 8
        jgt %r4, %r3, fail
        stdw [%r2+0], 0x11223344
        mov %r2, -6
        mov %r1, %r6
        call 54                # not a multiple of 4: -EACCES
        exit
    fail:
        mov %r0, 999
        exit
    ";
    let f = frame(0x0800, &[7; 4]);
    let mut ctx = vec![0u8; 24];
    ctx[4..8].copy_from_slice(&(f.len() as u32).to_le_bytes());
    let input = TestRunInput {
        data_in: f.clone(),
        ctx_in: Some(ctx),
    };
    let (r, out) = exec(ProgType::Xdp, asm, input);
    assert_eq!(r.unwrap() as i64, -13);
    let mut expected = 0x11223344u64.to_le_bytes().to_vec();
    expected.extend(&f);
    assert_eq!(out.data_out, expected);
    let ctx = out.ctx_out.unwrap();
    assert_eq!(&ctx[0..4], &8u32.to_le_bytes(), "data = metadata length");
    assert_eq!(&ctx[4..8], &(f.len() as u32 + 8).to_le_bytes());
}

/// sched_cls: reads len and protocol, writes mark, copies the EtherType with skb_load_bytes.
const TC_PROG: &str = "
    mov %r6, %r1
    ldxw %r7, [%r6+0]      # len
    ldxw %r8, [%r6+16]     # protocol
    stxw [%r6+8], %r7      # mark = len
    mov %r1, %r6
    mov %r2, 12
    mov %r3, %r10
    add %r3, -8
    mov %r4, 2
    call 26                # bpf_skb_load_bytes(skb, 12, fp-8, 2)
    jne %r0, 0, fail
    ldxh %r0, [%r10-8]
    lsh %r8, 16
    or %r0, %r8
    exit
fail:
    mov %r0, 999
    exit
";

#[test]
fn sched_cls_reads_writes_and_loads_bytes() {
    let f = frame(0x0800, &[0; 26]);
    let (r, out) = exec(ProgType::SchedCls, TC_PROG, data(f.clone()));
    // EtherType bytes 08 00 read little-endian = 0x0008, protocol likewise.
    assert_eq!(r.unwrap(), 0x0008_0008);
    assert_eq!(out.data_out, f);
    let ctx = out.ctx_out.unwrap();
    assert_eq!(&ctx[8..12], &(f.len() as u32).to_le_bytes(), "mark = len");
}

#[test]
fn socket_filter_load_bytes_is_relative_to_the_network_header() {
    // Load the IPv4 source address (offset 12 of the IP header) and return it.
    let asm = "
        mov %r2, 12
        mov %r3, %r10
        add %r3, -8
        mov %r4, 4
        call 26
        jne %r0, 0, fail
        ldxw %r0, [%r10-8]
        exit
    fail:
        mov %r0, 999
        exit
    ";
    let mut ip = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0];
    ip.extend([192, 168, 1, 7, 10, 0, 0, 2]);
    let (r, _) = exec(ProgType::SocketFilter, asm, data(frame(0x0800, &ip)));
    assert_eq!(r.unwrap(), u64::from(u32::from_le_bytes([192, 168, 1, 7])));
}

#[test]
fn skb_load_bytes_out_of_range_clears_the_buffer() {
    let asm = "
        stdw [%r10-8], -1
        mov %r2, 18            # 18 + 4 > 20 bytes of L3
        mov %r3, %r10
        add %r3, -8
        mov %r4, 4
        call 26
        ldxw %r1, [%r10-8]
        jne %r1, 0, fail
        exit
    fail:
        mov %r0, 999
        exit
    ";
    let (r, _) = exec(ProgType::SocketFilter, asm, data(frame(0x0800, &[0; 20])));
    assert_eq!(r.unwrap() as i64, -14, "-EFAULT and the destination zeroed");
}

#[test]
fn socket_filter_cannot_write_mark_or_store_bytes() {
    let asm = "
        stw [%r1+8], 1
        mov %r0, 0
        exit
    ";
    let (r, _) = exec(ProgType::SocketFilter, asm, data(frame(0x0800, &[])));
    match r.unwrap_err().kind {
        FaultKind::Context { reason, .. } => assert!(reason.contains("mark"), "{reason}"),
        other => panic!("unexpected fault {other:?}"),
    }
    let asm = "
        mov %r0, 0
        call 9
        exit
    ";
    let (r, _) = exec(ProgType::SocketFilter, asm, data(frame(0x0800, &[])));
    assert!(matches!(r.unwrap_err().kind, FaultKind::UnknownHelper(9)));
}

#[test]
fn sched_cls_store_bytes_rewrites_the_frame() {
    let asm = "
        mov %r6, %r1
        sth [%r10-2], 0x0608
        mov %r2, 12
        mov %r3, %r10
        add %r3, -2
        mov %r4, 2
        mov %r5, 2             # BPF_F_INVALIDATE_HASH
        call 9
        jne %r0, 0, fail
        mov %r1, %r6
        mov %r2, 60            # past the end: -EFAULT
        mov %r3, %r10
        add %r3, -2
        mov %r4, 2
        mov %r5, 0
        call 9
        exit
    fail:
        mov %r0, 999
        exit
    ";
    let f = frame(0x0800, &[0; 20]);
    let (r, out) = exec(ProgType::SchedCls, asm, data(f.clone()));
    assert_eq!(r.unwrap() as i64, -14);
    let mut expected = f;
    expected[12] = 0x08;
    expected[13] = 0x06;
    assert_eq!(out.data_out, expected);
}

#[test]
fn sched_cls_direct_packet_write() {
    let asm = "
        ldxw %r2, [%r1+76]     # data
        ldxw %r3, [%r1+80]     # data_end
        mov %r4, %r2
        add %r4, 14
        jgt %r4, %r3, out
        stb [%r2+13], 0xdd
    out:
        mov %r0, 0
        exit
    ";
    let f = frame(0x0800, &[]);
    let (r, out) = exec(ProgType::SchedCls, asm, data(f.clone()));
    assert_eq!(r.unwrap(), 0);
    assert_eq!(out.data_out[13], 0xdd);
    assert_eq!(out.data_out[..13], f[..13]);
}

#[test]
fn syscall_reads_and_writes_its_context() {
    let asm = "
        ldxdw %r2, [%r1+0]
        add %r2, 1
        stxdw [%r1+8], %r2
        mov %r0, %r2
        exit
    ";
    let mut ctx = 41u64.to_le_bytes().to_vec();
    ctx.extend([0; 8]);
    let input = TestRunInput {
        data_in: Vec::new(),
        ctx_in: Some(ctx),
    };
    let (r, out) = exec(ProgType::Syscall, asm, input);
    assert_eq!(r.unwrap(), 42);
    let ctx = out.ctx_out.unwrap();
    assert_eq!(&ctx[8..16], &42u64.to_le_bytes());
}
