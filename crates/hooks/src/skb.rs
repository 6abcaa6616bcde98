//! `struct __sk_buff` program types (`socket_filter`, `sched_cls`, `sk_skb`) and test-run
//! preparation like `bpf_prog_test_run_skb`.

use kflex_object::ProgType;
use kflex_runtime::Access;

use crate::buf::RawBuf;
use crate::layout::{PointerKind, SK_BUFF_SIZE, check_ctx_access};
use crate::state::{Direct, Packet, RunState};
use crate::xdp::{ETH_HLEN, MAX_PACKET};
use crate::{HookError, Spare, check_ctx_len, ctx_field, ctx_image_reusing};

/// Byte offsets of the `struct __sk_buff` fields the hooks read or write themselves.
pub(crate) mod off {
    pub const LEN: usize = 0;
    pub const PKT_TYPE: usize = 4;
    pub const MARK: usize = 8;
    pub const PROTOCOL: usize = 16;
    pub const PRIORITY: usize = 32;
    pub const INGRESS_IFINDEX: usize = 36;
    pub const IFINDEX: usize = 40;
    pub const CB: usize = 48;
    pub const CB_LEN: usize = 20;
    pub const HASH: usize = 68;
    pub const FAMILY: usize = 88;
    pub const REMOTE_IP4: usize = 92;
    pub const LOCAL_IP4: usize = 96;
    pub const REMOTE_IP6: usize = 100;
    pub const LOCAL_IP6: usize = 116;
    pub const TSTAMP: usize = 152;
    pub const WIRE_LEN: usize = 160;
    pub const GSO_SEGS: usize = 164;
    pub const GSO_SIZE: usize = 176;
    pub const HWTSTAMP: usize = 184;
}

/// `GSO_LEGACY_MAX_SIZE`: largest `wire_len` a test run accepts.
const GSO_LEGACY_MAX_SIZE: u64 = 65536;
/// `GSO_MAX_SEGS`.
const GSO_MAX_SEGS: u64 = 65535;
/// Index of the loopback device, the test run's default device.
const LOOPBACK_IFINDEX: u64 = 1;
const AF_INET: u64 = 2;
const AF_INET6: u64 = 10;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// `(offset, size, name)` of the `ctx_in` fields a test run accepts (`convert___skb_to_skb`).
const CTX_IN_FIELDS: [(usize, usize, &str); 10] = [
    (off::MARK, 4, "mark"),
    (off::PRIORITY, 4, "priority"),
    (off::INGRESS_IFINDEX, 4, "ingress_ifindex"),
    (off::IFINDEX, 4, "ifindex"),
    (off::CB, off::CB_LEN, "cb"),
    (off::TSTAMP, 8, "tstamp"),
    (off::WIRE_LEN, 4, "wire_len"),
    (off::GSO_SEGS, 4, "gso_segs"),
    (off::GSO_SIZE, 4, "gso_size"),
    (off::HWTSTAMP, 8, "hwtstamp"),
];

/// `(offset, size)` of the fields written back to `ctx_out` (`convert_skb_to___skb`).
const CTX_OUT_FIELDS: [(usize, usize); 9] = [
    (off::MARK, 4),
    (off::PRIORITY, 4),
    (off::INGRESS_IFINDEX, 4),
    (off::IFINDEX, 4),
    (off::TSTAMP, 8),
    (off::CB, off::CB_LEN),
    (off::WIRE_LEN, 4),
    (off::GSO_SEGS, 4),
    (off::HWTSTAMP, 8),
];

/// Name of the `__sk_buff` field covering `offset`, for error messages.
fn field_name(offset: usize) -> &'static str {
    crate::layout::context_layout(ProgType::SchedCls)
        .iter()
        .find(|f| offset >= f.offset as usize && offset < f.end() as usize)
        .map_or("padding", |f| f.name)
}

/// Checks that `ctx_in` sets only fields a test run accepts (others must be zero, like Linux).
fn check_ctx_in(bytes: &[u8]) -> Result<(), HookError> {
    // The common case (no ctx_in, or only zeros) in one vectorised pass.
    if bytes.iter().all(|&b| b == 0) {
        return Ok(());
    }
    for (i, b) in bytes.iter().enumerate() {
        // Zero bytes (almost all of them) need no field lookup.
        if *b == 0 {
            continue;
        }
        let allowed = CTX_IN_FIELDS.iter().any(|&(o, n, _)| i >= o && i < o + n);
        if !allowed {
            return Err(HookError::CtxField {
                field: field_name(i),
                reason: format!("byte {i} is non-zero; a test run cannot set this field"),
            });
        }
    }
    Ok(())
}

/// What `eth_type_trans` derives from the Ethernet header: `(pkt_type, protocol)`.
/// The test device is loopback, whose address is all zeros.
fn eth_type_trans(frame: &[u8]) -> (u64, u16) {
    let dest = frame.get(..6).unwrap_or(&[0; 6]);
    let pkt_type = if dest.first().is_some_and(|b| b & 1 == 1) {
        if dest.iter().all(|&b| b == 0xff) {
            1
        } else {
            2
        } // BROADCAST / MULTICAST
    } else if dest.iter().any(|&b| b != 0) {
        3 // OTHERHOST
    } else {
        0 // HOST
    };
    let proto = match frame.get(12..14) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    };
    let protocol = if proto >= 0x0600 {
        proto
    } else if frame.get(14..16) == Some(&[0xff, 0xff]) {
        0x0001 // ETH_P_802_3
    } else {
        0x0004 // ETH_P_802_2
    };
    (pkt_type, protocol)
}

/// A checked `__sk_buff` test-run input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    prog_type: ProgType,
}

/// Checks `data_in` and `ctx_in` like Linux (`bpf_prog_test_run_skb`, `convert___skb_to_skb`).
///
/// `socket_filter` and `sched_cls` take an Ethernet frame (like Linux); `sk_skb`, which Linux
/// cannot test-run, takes the stream payload as is.
pub(crate) fn validate(
    prog_type: ProgType,
    data_in: &[u8],
    ctx_in: Option<&[u8]>,
) -> Result<Layout, HookError> {
    let size = data_in.len();
    let ethernet = prog_type != ProgType::SkSkb;
    if ethernet && size < ETH_HLEN {
        return Err(HookError::PacketTooShort {
            len: size,
            min: ETH_HLEN,
        });
    }
    if size > MAX_PACKET {
        return Err(HookError::PacketTooLong {
            len: size,
            max: MAX_PACKET,
        });
    }
    check_ctx_len(ctx_in, SK_BUFF_SIZE)?;
    let ctx = ctx_in.unwrap_or(&[]);
    check_ctx_in(ctx.get(..ctx.len().min(SK_BUFF_SIZE)).unwrap_or(&[]))?;
    let len = (size - data_offset(prog_type)) as u64;
    let wire_len = ctx_field(ctx, off::WIRE_LEN, 4);
    if wire_len != 0 && (wire_len < len || wire_len > GSO_LEGACY_MAX_SIZE) {
        return Err(HookError::CtxField {
            field: "wire_len",
            reason: format!(
                "{wire_len} must be between the packet length {len} and {GSO_LEGACY_MAX_SIZE}"
            ),
        });
    }
    let gso_segs = ctx_field(ctx, off::GSO_SEGS, 4);
    if gso_segs > GSO_MAX_SEGS {
        return Err(HookError::CtxField {
            field: "gso_segs",
            reason: format!("{gso_segs} exceeds {GSO_MAX_SEGS}"),
        });
    }
    Ok(Layout { prog_type })
}

/// Offset of `data` in the frame: `sched_cls` and `sk_skb` see it from its first byte (L2),
/// `socket_filter` from the network header.
fn data_offset(prog_type: ProgType) -> usize {
    match prog_type {
        ProgType::SchedCls | ProgType::SkSkb => 0,
        _ => ETH_HLEN,
    }
}

/// Builds the run state of a validated input. Buffers of `spare` are reused where they fit
/// (the context image always; the packet buffer if it holds at least `data_in`), and every
/// byte of them is then as a fresh buffer would have it.
pub(crate) fn fill(
    layout: Layout,
    data_in: &[u8],
    ctx_in: Option<&[u8]>,
    spare: Spare,
) -> RunState {
    let prog_type = layout.prog_type;
    let size = data_in.len();
    let ethernet = prog_type != ProgType::SkSkb;
    let ctx = ctx_image_reusing(spare.ctx, ctx_in, SK_BUFF_SIZE);
    let get = |o: usize, n: usize| ctx.load_le(o, n).unwrap_or(0);
    let data = data_offset(prog_type);
    let direct = if prog_type == ProgType::SocketFilter {
        Direct::No
    } else {
        Direct::ReadWrite
    };
    let len = (size - data) as u64;
    let put = |o: usize, n: usize, v: u64| ctx.store_le(o, n, v);
    put(off::LEN, 4, len);
    if ethernet {
        let (pkt_type, protocol) = eth_type_trans(data_in);
        put(off::PKT_TYPE, 4, pkt_type);
        // skb->protocol is big-endian; the field reads its two bytes in memory order.
        ctx.write(off::PROTOCOL, &protocol.to_be_bytes());
        fill_sock_fields(&ctx, protocol, data_in.get(ETH_HLEN..).unwrap_or(&[]));
    }
    if get(off::IFINDEX, 4) <= LOOPBACK_IFINDEX {
        put(off::IFINDEX, 4, LOOPBACK_IFINDEX);
    }
    if get(off::WIRE_LEN, 4) == 0 {
        put(off::WIRE_LEN, 4, len);
    }
    let packet = Packet::place(spare.packet, data_in, size, 0, data, data, direct);
    RunState {
        prog_type,
        ctx,
        packet: Some(packet),
    }
}

/// The test run's socket: family and addresses taken from the IP header, as Linux does.
fn fill_sock_fields(ctx: &RawBuf, protocol: u16, l3: &[u8]) {
    match protocol {
        ETH_P_IP => {
            ctx.store_le(off::FAMILY, 4, AF_INET);
            if let (Some(saddr), Some(daddr)) = (l3.get(12..16), l3.get(16..20)) {
                ctx.write(off::LOCAL_IP4, saddr);
                ctx.write(off::REMOTE_IP4, daddr);
            }
        }
        ETH_P_IPV6 => {
            ctx.store_le(off::FAMILY, 4, AF_INET6);
            if let (Some(saddr), Some(daddr)) = (l3.get(8..24), l3.get(24..40)) {
                ctx.write(off::LOCAL_IP6, saddr);
                ctx.write(off::REMOTE_IP6, daddr);
            }
        }
        _ => {}
    }
}

/// A context load, checked against the type's rules.
pub(crate) fn load(state: &RunState, offset: u64, size: u8) -> Result<u64, String> {
    let fi = check_ctx_access(state.prog_type, offset, size, Access::Read)
        .map_err(|e| e.to_string())?
        .ok_or("__sk_buff has no such field")?;
    if let Some(kind) = fi.pointer {
        let p = state.packet.as_ref();
        return Ok(match (kind, p) {
            (PointerKind::Packet, Some(p)) => p.addr(p.data),
            (PointerKind::PacketEnd, Some(p)) => p.addr(p.data_end),
            (PointerKind::PacketMeta, Some(p)) => p.addr(p.data_meta),
            _ => 0,
        });
    }
    // Narrow reads take the addressed bytes of the (little-endian) field, as Linux does.
    state
        .ctx
        .load_le(offset as usize, size as usize)
        .ok_or_else(|| format!("__sk_buff.{} is outside the context image", fi.name))
}

/// A context store, checked against the type's rules; values are truncated like the kernel fields.
pub(crate) fn store(state: &RunState, offset: u64, size: u8, value: u64) -> Result<(), String> {
    let fi = check_ctx_access(state.prog_type, offset, size, Access::Write)
        .map_err(|e| e.to_string())?
        .ok_or("__sk_buff has no such field")?;
    let o = offset as usize;
    let ok = match fi.name {
        // skb->tc_index and qdisc_skb_cb->tc_classid are 16-bit.
        "tc_index" | "tc_classid" => state.ctx.store_le(o, 4, value & 0xffff),
        // Linux ignores NO_QUEUE_MAPPING (0xffff) and above.
        "queue_mapping" if value & 0xffff_ffff >= 0xffff => true,
        "queue_mapping" => state.ctx.store_le(o, 4, value & 0xffff),
        _ => state.ctx.store_le(o, size as usize, value),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "__sk_buff.{} is outside the context image",
            fi.name
        ))
    }
}

/// `data_out` is the whole frame (for `socket_filter` with its Ethernet header zeroed, as Linux's
/// `memset(__skb_push(skb, hh_len), 0, hh_len)` does); `ctx_out` is `ctx_in` with the fields of
/// `convert_skb_to___skb` updated.
pub(crate) fn finish(state: &RunState, ctx_in: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    // The frame is `[0, data_end)` of the buffer (a reused buffer may be longer).
    let mut data_out = state
        .packet
        .as_ref()
        .and_then(|p| p.buf.read(0, p.data_end))
        .unwrap_or_default();
    if state.prog_type == ProgType::SocketFilter
        && let Some(eth) = data_out.get_mut(..ETH_HLEN)
    {
        eth.fill(0);
    }
    let mut out = vec![0u8; SK_BUFF_SIZE];
    if let Some(ctx_in) = ctx_in {
        let n = ctx_in.len().min(SK_BUFF_SIZE);
        if let (Some(d), Some(s)) = (out.get_mut(..n), ctx_in.get(..n)) {
            d.copy_from_slice(s);
        }
    }
    for (o, n) in CTX_OUT_FIELDS {
        if let (Some(d), Some(s)) = (out.get_mut(o..o + n), state.ctx.read(o, n)) {
            d.copy_from_slice(&s);
        }
    }
    (data_out, out)
}

/// Clears `skb->hash` (`BPF_F_INVALIDATE_HASH`).
pub(crate) fn clear_hash(state: &RunState) {
    state.ctx.store_le(off::HASH, 4, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_name_the_right_fields() {
        let expected = [
            (off::PKT_TYPE, "pkt_type"),
            (off::HASH, "hash"),
            (off::FAMILY, "family"),
            (off::GSO_SIZE, "gso_size"),
            (off::HWTSTAMP, "hwtstamp"),
        ];
        for (o, name) in expected {
            assert_eq!(field_name(o), name);
        }
        assert_eq!(field_name(181), "padding");
    }

    #[test]
    fn eth_type_trans_classifies() {
        let mut f = [0u8; 16];
        f[12] = 0x08;
        assert_eq!(eth_type_trans(&f), (0, 0x0800));
        f[0] = 0x02;
        assert_eq!(eth_type_trans(&f).0, 3);
        f[..6].fill(0xff);
        assert_eq!(eth_type_trans(&f).0, 1);
        f[0] = 0x01;
        assert_eq!(eth_type_trans(&f).0, 2);
        f[12] = 0x00;
        f[13] = 0x40;
        assert_eq!(eth_type_trans(&f).1, 0x0004);
        f[14] = 0xff;
        f[15] = 0xff;
        assert_eq!(eth_type_trans(&f).1, 0x0001);
    }
}
