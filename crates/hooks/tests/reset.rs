//! `PreparedRun::reset`: a reset run is indistinguishable from a freshly prepared one — same
//! outputs, context values, packet bytes, headroom and regions — whatever the previous run did
//! to its packet and context, over streams of inputs that grow and shrink.

use kflex_hooks::{
    BPF_FUNC_XDP_ADJUST_HEAD, BPF_FUNC_XDP_ADJUST_META, HookError, PreparedRun, SK_BUFF_SIZE,
    XDP_MD_SIZE, extra_helpers, prepare_from,
};
use kflex_object::ProgType;
use kflex_runtime::{ExecEnv, HelperCall, MemoryMap, RegionKind};
use proptest::prelude::*;

const PACKET_TYPES: [ProgType; 4] = [
    ProgType::Xdp,
    ProgType::SocketFilter,
    ProgType::SchedCls,
    ProgType::SkSkb,
];

/// A frame of `len` bytes: an IPv4 Ethernet header, then bytes derived from `seed`.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend((0..len.saturating_sub(14)).map(|i| seed.wrapping_mul(31).wrapping_add(i as u8)));
    f.truncate(len);
    f
}

/// A valid `ctx_in` for `prog_type` and a packet of `len` bytes, varied by `seed` (`None` for
/// seeds divisible by 3).
fn ctx_in(prog_type: ProgType, len: usize, seed: u8) -> Option<Vec<u8>> {
    if seed.is_multiple_of(3) {
        return None;
    }
    let mut c;
    match prog_type {
        ProgType::Xdp => {
            c = vec![0u8; XDP_MD_SIZE];
            // Metadata of 0, 4 or 8 bytes; ingress_ifindex and rx_queue_index.
            let meta = (usize::from(seed) % 3 * 4).min(len) as u32;
            c[0..4].copy_from_slice(&meta.to_le_bytes());
            c[4..8].copy_from_slice(&(len as u32).to_le_bytes());
            c[12..16].copy_from_slice(&2u32.to_le_bytes());
            c[16..20].copy_from_slice(&u32::from(seed % 4).to_le_bytes());
        }
        _ => {
            c = vec![0u8; SK_BUFF_SIZE];
            c[8..12].copy_from_slice(&u32::from(seed).to_le_bytes()); // mark
            c[32..36].copy_from_slice(&7u32.to_le_bytes()); // priority
            c[48] = seed; // cb[0]
        }
    }
    Some(c)
}

/// Everything observable of an installed run: outputs, every 4-byte context field (pointer
/// fields as offsets from `data`), packet and metadata bytes through the memory map, and the
/// regions' kinds and lengths.
fn observe(run: &mut PreparedRun, mem: &MemoryMap, ctx_size: usize) -> String {
    let out = run.output();
    let ptr_fields: &[u64] = match run.prog_type() {
        ProgType::Xdp => &[0, 4, 8],
        _ => &[76, 80, 140],
    };
    let ctx = run.context_access();
    let data = ctx.load(ptr_fields[0], 4).unwrap_or(0);
    let fields: Vec<String> = (0..ctx_size as u64)
        .step_by(4)
        .map(|off| match ctx.load(off, 4) {
            Ok(v) if ptr_fields.contains(&off) && v != 0 => {
                format!("{off}:data{:+}", v as i64 - data as i64)
            }
            Ok(v) => format!("{off}:{v}"),
            Err(_) => format!("{off}:-"),
        })
        .collect();
    let mut regions: Vec<String> = mem
        .regions()
        .iter()
        .map(|r| {
            let bytes = mem.read_bytes(r.start, r.len).unwrap();
            format!("{:?} {} {} {bytes:?}", r.kind, r.len, r.writable)
        })
        .collect();
    regions.sort();
    format!("{out:?}\n{fields:?}\n{regions:?}")
}

/// Dirties an installed run the way a program could: packet and metadata bytes, writable
/// context fields, and (XDP) moved packet bounds.
fn scribble(run: &mut PreparedRun, mem: &mut MemoryMap, seed: u8) {
    let env = &mut ExecEnv::default();
    if run.prog_type() == ProgType::Xdp {
        for (id, delta) in [
            (BPF_FUNC_XDP_ADJUST_HEAD, -40i64),
            (BPF_FUNC_XDP_ADJUST_META, -8),
        ] {
            let helper = extra_helpers(ProgType::Xdp)
                .into_iter()
                .find(|h| h.id == id)
                .unwrap();
            let mut call = HelperCall {
                args: [run.ctx_address(), delta as u64, 0, 0, 0],
                mem,
                env,
            };
            // May fail (-EINVAL) when the headroom is already exposed: the bytes get dirtied
            // below either way.
            (helper.func)(&mut call).unwrap();
        }
    } else {
        let ctx = run.context_access();
        let _ = ctx.store(8, 4, 0xdead); // mark (not writable by socket_filter: ignored)
        let _ = ctx.store(48, 4, 0xbeef); // cb[0]
        let _ = ctx.store(52, 4, u64::from(seed));
    }
    let writable: Vec<(u64, u64)> = mem
        .regions()
        .iter()
        .filter(|r| matches!(r.kind, RegionKind::Packet | RegionKind::PacketMeta))
        .map(|r| (r.start, r.len))
        .collect();
    for (start, len) in writable {
        mem.write_bytes(start, &vec![seed ^ 0xa5; len as usize])
            .unwrap();
    }
}

/// Moves an XDP run's `data` down as far as `bpf_xdp_adjust_head` allows and returns the
/// packet's bytes then (headroom included).
fn expose_headroom(run: &mut PreparedRun, mem: &mut MemoryMap) -> Vec<u8> {
    let ctx = run.context_access();
    let metalen = ctx.load(0, 4).unwrap() - ctx.load(8, 4).unwrap();
    let helper = extra_helpers(ProgType::Xdp)
        .into_iter()
        .find(|h| h.id == BPF_FUNC_XDP_ADJUST_HEAD)
        .unwrap();
    // `data` starts XDP_PACKET_HEADROOM (256) bytes in; it may go down to 40 + metalen.
    let delta = metalen as i64 - 216;
    let mut call = HelperCall {
        args: [run.ctx_address(), delta as u64, 0, 0, 0],
        mem,
        env: &mut ExecEnv::default(),
    };
    assert_eq!((helper.func)(&mut call).unwrap(), 0);
    run.output().data_out
}

/// Resets one run through `inputs` (dirtying it after every reset) and checks each state
/// against a fresh run of the same input.
fn check_stream(prog_type: ProgType, inputs: &[(usize, u8)]) {
    let ctx_size = if prog_type == ProgType::Xdp {
        XDP_MD_SIZE
    } else {
        SK_BUFF_SIZE
    };
    let (len0, seed0) = inputs[0];
    let ctx0 = ctx_in(prog_type, len0, seed0);
    let mut run = prepare_from(prog_type, &frame(len0, seed0), ctx0.as_deref()).unwrap();
    let mut mem = MemoryMap::new();
    // SAFETY: uninstalled before `run` is dropped, below.
    unsafe { run.install(&mut mem).unwrap() };
    for &(len, seed) in inputs {
        scribble(&mut run, &mut mem, seed);
        let (data, ctx) = (frame(len, seed), ctx_in(prog_type, len, seed));
        run.reset(&mut mem, &data, ctx.as_deref()).unwrap();
        let mut fresh = prepare_from(prog_type, &data, ctx.as_deref()).unwrap();
        let mut fresh_mem = MemoryMap::new();
        // SAFETY: uninstalled before `fresh` is dropped.
        unsafe { fresh.install(&mut fresh_mem).unwrap() };
        assert_eq!(
            observe(&mut run, &mem, ctx_size),
            observe(&mut fresh, &fresh_mem, ctx_size),
            "{prog_type:?} after reset to {len} bytes (seed {seed})"
        );
        // The non-allocating readers agree with the output.
        let data_out = run.output().data_out;
        assert_eq!(run.data_out_len(), Some(data_out.len()));
        let mut short = vec![0xee; data_out.len() / 2];
        assert_eq!(run.copy_data_out(&mut short), Some(data_out.len()));
        assert_eq!(short[..], data_out[..short.len()]);
        let mut long = vec![0xee; data_out.len() + 3];
        assert_eq!(run.copy_data_out(&mut long), Some(data_out.len()));
        assert_eq!(
            (&long[..data_out.len()], &long[data_out.len()..]),
            (&data_out[..], &[0xee; 3][..])
        );
        if prog_type == ProgType::Xdp {
            // The whole headroom the program could reach with bpf_xdp_adjust_head is zero, as
            // in a fresh run.
            assert_eq!(
                expose_headroom(&mut run, &mut mem),
                expose_headroom(&mut fresh, &mut fresh_mem)
            );
        }
        fresh.uninstall(&mut fresh_mem);
    }
    run.uninstall(&mut mem);
    assert!(mem.regions().is_empty());
}

#[test]
fn growing_and_shrinking_packets_look_fresh() {
    let stream = [
        (60, 1),
        (60, 2),
        (14, 3),
        (200, 4),
        (61, 5),
        (1500, 6),
        (64, 7),
        (64, 9),
        (9000, 10),
        (20, 11),
    ];
    for prog_type in PACKET_TYPES {
        check_stream(prog_type, &stream);
    }
}

#[test]
fn buffers_keep_their_addresses_when_the_packet_fits() {
    let mut mem = MemoryMap::new();
    let mut run = prepare_from(ProgType::Xdp, &frame(100, 1), None).unwrap();
    // SAFETY: uninstalled before `run` is dropped.
    unsafe { run.install(&mut mem).unwrap() };
    let ctx = run.ctx_address();
    let data = run.direct_context();
    run.reset(&mut mem, &frame(60, 2), None).unwrap();
    assert_eq!(run.ctx_address(), ctx);
    assert_eq!(run.direct_context(), data, "same image and pointer cells");
    let packet = |mem: &MemoryMap| {
        mem.regions()
            .iter()
            .find(|r| r.kind == RegionKind::Packet)
            .map(|r| (r.start, r.len))
    };
    let (start, len) = packet(&mem).unwrap();
    assert_eq!(len, 60);
    // Longer than the buffer: a new buffer and a new region, still installed.
    run.reset(&mut mem, &frame(4000, 3), None).unwrap();
    let (start2, len2) = packet(&mem).unwrap();
    assert_eq!(len2, 4000);
    assert_ne!(start2, start);
    assert_eq!(mem.regions().len(), 2, "context and packet only");
    run.uninstall(&mut mem);
    assert!(mem.regions().is_empty());
}

#[test]
fn syscall_contexts_reset_in_place_or_reallocate_by_length() {
    let mut mem = MemoryMap::new();
    let mut run = prepare_from(ProgType::Syscall, &[], Some(&[1, 2, 3, 4])).unwrap();
    // SAFETY: uninstalled before `run` is dropped.
    unsafe { run.install(&mut mem).unwrap() };
    let addr = run.ctx_address();
    run.context_access().store(0, 4, 0xffff_ffff).unwrap();
    run.reset(&mut mem, &[], Some(&[5, 6, 7, 8])).unwrap();
    assert_eq!(run.ctx_address(), addr);
    assert_eq!(run.output().ctx_out, Some(vec![5, 6, 7, 8]));
    run.reset(&mut mem, &[], Some(&[9; 16])).unwrap();
    assert_eq!(mem.regions().len(), 1);
    assert_eq!(mem.regions()[0].start, run.ctx_address());
    assert_eq!(mem.regions()[0].len, 16);
    run.reset(&mut mem, &[], None).unwrap();
    assert_eq!((run.ctx_address(), run.output().ctx_out), (0, None));
    assert!(mem.regions().is_empty(), "an empty context has no region");
    run.reset(&mut mem, &[], Some(&[1; 8])).unwrap();
    assert_eq!(mem.regions().len(), 1);
    run.uninstall(&mut mem);
    assert!(mem.regions().is_empty());
}

#[test]
fn rejected_input_leaves_the_run_as_it_was() {
    let mut mem = MemoryMap::new();
    let data = frame(60, 1);
    let mut run = prepare_from(ProgType::SchedCls, &data, None).unwrap();
    // SAFETY: uninstalled before `run` is dropped.
    unsafe { run.install(&mut mem).unwrap() };
    let before = observe(&mut run, &mem, SK_BUFF_SIZE);
    let err = run.reset(&mut mem, &frame(10, 2), None).unwrap_err();
    assert!(matches!(err, HookError::PacketTooShort { len: 10, .. }));
    let mut bad_ctx = vec![0u8; SK_BUFF_SIZE];
    bad_ctx[0] = 1; // `len` cannot be set
    assert!(matches!(
        run.reset(&mut mem, &data, Some(&bad_ctx)),
        Err(HookError::CtxField { field: "len", .. })
    ));
    assert_eq!(observe(&mut run, &mem, SK_BUFF_SIZE), before);
    run.uninstall(&mut mem);
}

#[test]
fn a_run_that_is_not_installed_resets_without_touching_the_map() {
    let mut mem = MemoryMap::new();
    let mut run = prepare_from(ProgType::Xdp, &frame(60, 1), None).unwrap();
    run.reset(&mut mem, &frame(3000, 2), None).unwrap();
    assert!(mem.regions().is_empty());
    assert_eq!(run.output().data_out, frame(3000, 2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_stream_of_inputs_looks_fresh(
        type_index in 0usize..4,
        inputs in prop::collection::vec((14usize..2000, any::<u8>()), 1..12),
    ) {
        check_stream(PACKET_TYPES[type_index], &inputs);
    }
}
