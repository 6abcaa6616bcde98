//! Test-run preparation: buffers, regions, context values and outputs, without an engine.

use kflex_hooks::{HookError, TestRunInput, prepare};
use kflex_object::ProgType;
use kflex_runtime::{MemoryMap, RegionKind};

/// An Ethernet + IPv4 frame: dst MAC 02:.., src MAC, EtherType 0x0800, IPv4 header with
/// saddr 10.0.0.1 and daddr 10.0.0.2, then `payload` bytes of 0x5a.
fn ipv4_frame(payload: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    let mut ip = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend([10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend(ip);
    f.extend(std::iter::repeat_n(0x5a, payload));
    f
}

fn input(data: Vec<u8>, ctx: Option<Vec<u8>>) -> TestRunInput {
    TestRunInput {
        data_in: data,
        ctx_in: ctx,
    }
}

fn put32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn region(mem: &MemoryMap, kind: RegionKind) -> Option<(u64, u64, bool)> {
    mem.regions()
        .iter()
        .find(|r| r.kind == kind)
        .map(|r| (r.start, r.len, r.writable))
}

#[test]
fn xdp_packet_after_headroom_with_pointer_fields() {
    let frame = ipv4_frame(26);
    let mut run = prepare(ProgType::Xdp, &input(frame.clone(), None)).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled below before `run` is finished.
    unsafe { run.install(&mut mem).unwrap() };
    let (ctx_start, ctx_len, ctx_w) = region(&mem, RegionKind::Context).unwrap();
    assert_eq!((ctx_start, ctx_len, ctx_w), (run.ctx_address(), 24, false));
    let (pkt, pkt_len, pkt_w) = region(&mem, RegionKind::Packet).unwrap();
    assert_eq!((pkt_len, pkt_w), (frame.len() as u64, true));
    assert_eq!(
        region(&mem, RegionKind::PacketMeta),
        None,
        "no metadata yet"
    );
    let ctx = run.context_access();
    assert_eq!(ctx.load(0, 4).unwrap(), pkt);
    assert_eq!(ctx.load(4, 4).unwrap(), pkt + frame.len() as u64);
    assert_eq!(ctx.load(8, 4).unwrap(), pkt, "data_meta == data");
    assert_eq!(ctx.load(12, 4).unwrap(), 0);
    assert!(ctx.load(0, 8).is_err());
    assert!(ctx.store(12, 4, 1).unwrap_err().contains("ingress_ifindex"));
    assert_eq!(mem.read_bytes(pkt, frame.len() as u64).unwrap(), frame);
    // The headroom is not accessible.
    assert!(mem.load(pkt - 1, 1).is_err());
    mem.store(pkt, 1, 0xee).unwrap();
    run.uninstall(&mut mem);
    assert!(mem.regions().is_empty());
    let out = run.finish();
    let mut expected = frame;
    expected[0] = 0xee;
    assert_eq!(out.data_out, expected);
    assert_eq!(out.ctx_out, None);
}

#[test]
fn xdp_ctx_in_sets_metadata_and_queue() {
    let frame = ipv4_frame(10);
    let mut data = vec![1, 2, 3, 4, 5, 6, 7, 8];
    data.extend(&frame);
    let mut ctx = vec![0u8; 24];
    put32(&mut ctx, 0, 8); // data: metadata length
    put32(&mut ctx, 4, data.len() as u32); // data_end
    put32(&mut ctx, 12, 7); // ingress_ifindex
    put32(&mut ctx, 16, 3); // rx_queue_index
    let mut run = prepare(ProgType::Xdp, &input(data.clone(), Some(ctx))).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled below.
    unsafe { run.install(&mut mem).unwrap() };
    let (meta, meta_len, _) = region(&mem, RegionKind::PacketMeta).unwrap();
    let (pkt, pkt_len, _) = region(&mem, RegionKind::Packet).unwrap();
    assert_eq!((meta_len, pkt_len), (8, frame.len() as u64));
    assert_eq!(meta + 8, pkt);
    assert_eq!(mem.read_bytes(meta, 8).unwrap(), &data[..8]);
    let c = run.context_access();
    assert_eq!(c.load(8, 4).unwrap(), meta);
    assert_eq!(c.load(0, 4).unwrap(), pkt);
    assert_eq!(c.load(12, 4).unwrap(), 7);
    assert_eq!(c.load(16, 4).unwrap(), 3);
    run.uninstall(&mut mem);
    let out = run.finish();
    assert_eq!(out.data_out, data, "Linux copies data_out from data_meta");
    let ctx_out = out.ctx_out.unwrap();
    assert_eq!(&ctx_out[0..4], &8u32.to_le_bytes());
    assert_eq!(&ctx_out[4..8], &(data.len() as u32).to_le_bytes());
    assert_eq!(&ctx_out[12..16], &7u32.to_le_bytes());
}

#[test]
fn xdp_rejects_bad_input_like_linux() {
    let short = prepare(ProgType::Xdp, &input(vec![0; 13], None)).unwrap_err();
    assert_eq!(short, HookError::PacketTooShort { len: 13, min: 14 });
    let frame = ipv4_frame(0);
    let n = frame.len() as u32;
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut c = vec![0u8; 24];
        put32(&mut c, 4, n);
        f(&mut c);
        prepare(ProgType::Xdp, &input(frame.clone(), Some(c)))
    };
    assert!(with(&|_| {}).is_ok());
    let field_of = |r: Result<_, HookError>| match r {
        Err(HookError::CtxField { field, .. }) => field,
        other => panic!("expected a ctx field error, got {other:?}"),
    };
    assert_eq!(field_of(with(&|c| put32(c, 4, n - 1))), "data_end");
    assert_eq!(field_of(with(&|c| put32(c, 0, 3))), "data");
    assert_eq!(field_of(with(&|c| put32(c, 0, 36))), "data");
    assert_eq!(field_of(with(&|c| put32(c, 8, 4))), "data_meta");
    assert_eq!(field_of(with(&|c| put32(c, 20, 1))), "egress_ifindex");
    assert_eq!(field_of(with(&|c| put32(c, 16, 1))), "rx_queue_index");
    // Longer ctx_in is fine when the excess is zero, an error otherwise.
    let mut long = vec![0u8; 32];
    put32(&mut long, 4, n);
    assert!(prepare(ProgType::Xdp, &input(frame.clone(), Some(long.clone()))).is_ok());
    long[30] = 1;
    assert!(matches!(
        prepare(ProgType::Xdp, &input(frame, Some(long))),
        Err(HookError::CtxTooLong { len: 32, max: 24 })
    ));
}

#[test]
fn sched_cls_sees_the_ethernet_header() {
    let frame = ipv4_frame(30);
    let len = frame.len() as u64;
    let mut run = prepare(ProgType::SchedCls, &input(frame.clone(), None)).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled below.
    unsafe { run.install(&mut mem).unwrap() };
    let (ctx_start, ctx_len, ctx_w) = region(&mem, RegionKind::Context).unwrap();
    assert_eq!((ctx_start, ctx_len, ctx_w), (run.ctx_address(), 192, true));
    let (pkt, pkt_len, _) = region(&mem, RegionKind::Packet).unwrap();
    assert_eq!(pkt_len, len);
    assert_eq!(mem.read_bytes(pkt, 14).unwrap(), &frame[..14]);
    let c = run.context_access();
    assert_eq!(c.load(0, 4).unwrap(), len, "len");
    assert_eq!(
        c.load(4, 4).unwrap(),
        3,
        "dst MAC is not the loopback's: PACKET_OTHERHOST"
    );
    assert_eq!(
        c.load(16, 4).unwrap(),
        0x0008,
        "protocol in network byte order"
    );
    assert_eq!(c.load(40, 4).unwrap(), 1, "ifindex of loopback");
    assert_eq!(c.load(160, 4).unwrap(), len, "wire_len defaults to len");
    assert_eq!(c.load(76, 4).unwrap(), pkt);
    assert_eq!(c.load(80, 4).unwrap(), pkt + len);
    assert_eq!(c.load(140, 4).unwrap(), pkt, "data_meta == data");
    assert_eq!(c.load(168, 8).unwrap(), 0, "no socket");
    // Narrow read of len's low byte and high half.
    assert_eq!(c.load(0, 1).unwrap(), len & 0xff);
    assert_eq!(c.load(2, 2).unwrap(), len >> 16);
    // Writes.
    c.store(8, 4, 0xdead_beef).unwrap();
    assert_eq!(c.load(8, 4).unwrap(), 0xdead_beef);
    assert_eq!(c.load(9, 1).unwrap(), 0xbe);
    c.store(44, 4, 0x12_3456).unwrap();
    assert_eq!(c.load(44, 4).unwrap(), 0x3456, "tc_index is 16 bits");
    c.store(12, 4, 5).unwrap();
    c.store(12, 4, 0xffff).unwrap();
    assert_eq!(c.load(12, 4).unwrap(), 5, "NO_QUEUE_MAPPING is ignored");
    c.store(152, 8, 0x1_0000_0002).unwrap();
    c.store(56, 8, u64::MAX).unwrap();
    assert!(c.store(0, 4, 1).unwrap_err().contains("len"));
    mem.store(pkt + 14, 1, 0x46).unwrap();
    run.uninstall(&mut mem);
    assert!(mem.regions().is_empty());
    let out = run.finish();
    let mut expected = frame;
    expected[14] = 0x46;
    assert_eq!(out.data_out, expected);
    let ctx = out.ctx_out.unwrap();
    assert_eq!(ctx.len(), 192);
    assert_eq!(&ctx[8..12], &0xdead_beefu32.to_le_bytes(), "mark");
    assert_eq!(&ctx[152..160], &0x1_0000_0002u64.to_le_bytes(), "tstamp");
    assert_eq!(&ctx[56..64], &[0xff; 8], "cb[2..4]");
    assert_eq!(&ctx[40..44], &1u32.to_le_bytes(), "ifindex");
    assert_eq!(&ctx[160..164], &(len as u32).to_le_bytes(), "wire_len");
    assert_eq!(&ctx[0..4], &[0; 4], "len is not copied out");
    assert_eq!(&ctx[44..48], &[0; 4], "tc_index is not copied out");
}

#[test]
fn socket_filter_starts_at_the_network_header() {
    let frame = ipv4_frame(6);
    let mut run = prepare(ProgType::SocketFilter, &input(frame.clone(), None)).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled below.
    unsafe { run.install(&mut mem).unwrap() };
    assert_eq!(
        region(&mem, RegionKind::Packet),
        None,
        "no direct packet access"
    );
    let c = run.context_access();
    assert_eq!(c.load(0, 4).unwrap(), frame.len() as u64 - 14);
    assert_eq!(c.load(16, 4).unwrap(), 0x0008);
    assert!(c.load(76, 4).unwrap_err().contains("data"));
    assert!(c.store(8, 4, 1).unwrap_err().contains("mark"));
    c.store(48, 4, 9).unwrap();
    run.uninstall(&mut mem);
    let out = run.finish();
    assert_eq!(
        &out.data_out[..14],
        &[0; 14],
        "Linux zeroes the pushed L2 header"
    );
    assert_eq!(&out.data_out[14..], &frame[14..]);
    assert_eq!(&out.ctx_out.unwrap()[48..52], &9u32.to_le_bytes());
}

#[test]
fn skb_ctx_in_fields_and_their_checks() {
    let frame = ipv4_frame(0);
    let mut ctx = vec![0u8; 192];
    put32(&mut ctx, 8, 77); // mark
    put32(&mut ctx, 32, 6); // priority
    put32(&mut ctx, 36, 4); // ingress_ifindex
    put32(&mut ctx, 40, 9); // ifindex
    put32(&mut ctx, 48, 0x1111); // cb[0]
    put32(&mut ctx, 164, 2); // gso_segs
    put32(&mut ctx, 176, 1400); // gso_size
    put32(&mut ctx, 160, 1000); // wire_len
    let mut run = prepare(ProgType::SchedCls, &input(frame.clone(), Some(ctx.clone()))).unwrap();
    let c = run.context_access();
    for (off, v) in [
        (8, 77),
        (32, 6),
        (36, 4),
        (40, 9),
        (48, 0x1111),
        (164, 2),
        (176, 1400),
        (160, 1000),
    ] {
        assert_eq!(c.load(off, 4).unwrap(), v, "offset {off}");
    }
    let out = run.finish();
    assert_eq!(out.ctx_out.unwrap(), ctx, "unchanged fields round trip");

    let with = |off: usize, v: u32| {
        let mut c = vec![0u8; 192];
        put32(&mut c, off, v);
        prepare(ProgType::SchedCls, &input(frame.clone(), Some(c)))
    };
    let field_of = |r: Result<_, HookError>| match r {
        Err(HookError::CtxField { field, .. }) => field,
        other => panic!("expected a ctx field error, got {other:?}"),
    };
    assert_eq!(field_of(with(0, 1)), "len");
    assert_eq!(field_of(with(16, 8)), "protocol");
    assert_eq!(field_of(with(44, 1)), "tc_index");
    assert_eq!(field_of(with(68, 1)), "hash");
    assert_eq!(
        field_of(with(160, 10)),
        "wire_len",
        "below the packet length"
    );
    assert_eq!(field_of(with(160, 70000)), "wire_len");
    assert_eq!(field_of(with(164, 70000)), "gso_segs");
    assert!(with(184, 5).is_ok(), "hwtstamp may be set");
    let short = prepare(ProgType::SchedCls, &input(vec![0; 10], None)).unwrap_err();
    assert_eq!(short, HookError::PacketTooShort { len: 10, min: 14 });
}

#[test]
fn skb_protocols_and_socket_fields() {
    // IPv6 frame seen by sk_skb... sk_skb takes a stream payload instead; check via sched_cls
    // that the IPv6 EtherType is stored in network order, and via sk_skb that payload is raw.
    let mut v6 = vec![0u8; 14 + 40];
    v6[12] = 0x86;
    v6[13] = 0xdd;
    let mut run = prepare(ProgType::SchedCls, &input(v6, None)).unwrap();
    assert_eq!(run.context_access().load(16, 4).unwrap(), 0xdd86);
    assert_eq!(run.context_access().load(4, 4).unwrap(), 0, "PACKET_HOST");

    let payload = b"GET key\r\n".to_vec();
    let mut run = prepare(ProgType::SkSkb, &input(payload.clone(), None)).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled below.
    unsafe { run.install(&mut mem).unwrap() };
    let (pkt, len, _) = region(&mem, RegionKind::Packet).unwrap();
    assert_eq!(len, payload.len() as u64);
    let c = run.context_access();
    assert_eq!(c.load(0, 4).unwrap(), payload.len() as u64);
    assert_eq!(c.load(76, 4).unwrap(), pkt);
    assert_eq!(
        c.load(88, 4).unwrap(),
        0,
        "family of the unbound test socket"
    );
    assert!(c.load(8, 4).is_err(), "sk_skb cannot read mark");
    run.uninstall(&mut mem);
    assert_eq!(run.finish().data_out, payload);
}

#[test]
fn syscall_context_is_raw_bytes() {
    let ctx: Vec<u8> = (1..=16).collect();
    let mut run = prepare(ProgType::Syscall, &input(Vec::new(), Some(ctx.clone()))).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled below.
    unsafe { run.install(&mut mem).unwrap() };
    assert_eq!(
        region(&mem, RegionKind::Context),
        Some((run.ctx_address(), 16, true))
    );
    let c = run.context_access();
    assert_eq!(
        c.load(0, 8).unwrap(),
        u64::from_le_bytes(ctx[..8].try_into().unwrap())
    );
    assert_eq!(c.load(15, 1).unwrap(), 16);
    c.store(8, 4, 0xabcd).unwrap();
    assert!(c.load(12, 8).is_err(), "past the end");
    assert!(c.load(16, 1).is_err());
    assert!(c.load(2, 4).is_err(), "misaligned");
    run.uninstall(&mut mem);
    let out = run.finish();
    let mut expected = ctx;
    expected[8..12].copy_from_slice(&0xabcdu32.to_le_bytes());
    assert_eq!(out.ctx_out, Some(expected));
    assert!(out.data_out.is_empty());

    let empty = prepare(ProgType::Syscall, &TestRunInput::default()).unwrap();
    assert_eq!(empty.ctx_address(), 0);
    assert_eq!(empty.finish().ctx_out, None);
    assert!(matches!(
        prepare(ProgType::Syscall, &input(vec![1], None)),
        Err(HookError::UnexpectedData { .. })
    ));
}

#[test]
fn install_twice_is_refused_and_overlaps_roll_back() {
    let mut run = prepare(ProgType::Xdp, &input(ipv4_frame(0), None)).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled below.
    unsafe { run.install(&mut mem).unwrap() };
    // SAFETY: refused before touching the map.
    assert_eq!(
        unsafe { run.install(&mut mem) },
        Err(HookError::AlreadyInstalled)
    );
    let n = mem.regions().len();
    // A second run installed into a map that already holds the first one's regions is fine.
    let mut other = prepare(ProgType::Xdp, &input(ipv4_frame(0), None)).unwrap();
    // SAFETY: uninstalled below.
    unsafe { other.install(&mut mem).unwrap() };
    assert_eq!(mem.regions().len(), 2 * n);
    other.uninstall(&mut mem);
    run.uninstall(&mut mem);
    assert!(mem.regions().is_empty());
    run.uninstall(&mut mem); // no-op
}
