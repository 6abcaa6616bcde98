//! `BPF_PROG_TYPE_XDP`: `struct xdp_md` and test-run preparation like `bpf_prog_test_run_xdp`.

use kflex_object::ProgType;
use kflex_runtime::Access;

use crate::buf::RawBuf;
use crate::layout::{PointerKind, XDP_MD_SIZE, check_ctx_access};
use crate::state::{Direct, Packet, RunState};
use crate::{HookError, Spare, check_ctx_len, ctx_field, ctx_image_reusing};

/// Headroom in front of the packet (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: usize = 256;
/// Room kept after the packet (Linux reserves `struct skb_shared_info` there).
pub const XDP_TAILROOM: usize = 320;
/// Bytes at the start of the headroom `data`/`data_meta` may never reach (`struct xdp_frame`).
pub const XDP_FRAME_SIZE: usize = 40;
/// Largest metadata area (`xdp_metalen_invalid`): at most 32 bytes, a multiple of 4.
pub const XDP_MAX_METALEN: usize = 32;
/// Smallest packet accepted by a test run (an Ethernet header).
pub const ETH_HLEN: usize = 14;
/// Largest packet accepted by a test run.
pub const MAX_PACKET: usize = 65535;

const OFF_DATA: usize = 0;
const OFF_DATA_END: usize = 4;
const OFF_DATA_META: usize = 8;
const OFF_INGRESS_IFINDEX: usize = 12;
const OFF_RX_QUEUE_INDEX: usize = 16;
const OFF_EGRESS_IFINDEX: usize = 20;

/// True if a metadata length is acceptable to Linux (`!xdp_metalen_invalid`).
pub(crate) fn metalen_ok(len: usize) -> bool {
    len.is_multiple_of(4) && len <= XDP_MAX_METALEN
}

/// A checked XDP test-run input: the packet size and the metadata length `ctx_in` asks for.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    size: usize,
    metalen: usize,
}

impl Layout {
    /// Bytes of the packet buffer: `[headroom | metadata | packet | tailroom]`, the metadata
    /// carved out of the headroom.
    pub(crate) fn buffer_len(&self) -> usize {
        XDP_PACKET_HEADROOM + (self.size - self.metalen) + XDP_TAILROOM
    }
}

/// Checks `data_in` and `ctx_in` like Linux (`bpf_prog_test_run_xdp`, `xdp_convert_md_to_buff`).
pub(crate) fn validate(data_in: &[u8], ctx_in: Option<&[u8]>) -> Result<Layout, HookError> {
    let size = data_in.len();
    if size < ETH_HLEN {
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
    check_ctx_len(ctx_in, XDP_MD_SIZE)?;
    let mut metalen = 0;
    if let Some(ctx) = ctx_in {
        let field = |off| ctx_field(ctx, off, 4) as usize;
        let bad = |field: &'static str, reason: String| HookError::CtxField { field, reason };
        if field(OFF_DATA_META) != 0 {
            return Err(bad(
                "data_meta",
                "must be 0 (metadata starts the data)".into(),
            ));
        }
        if field(OFF_DATA_END) != size {
            return Err(bad(
                "data_end",
                format!(
                    "is {}, must equal the data size {size}",
                    field(OFF_DATA_END)
                ),
            ));
        }
        metalen = field(OFF_DATA);
        if metalen > size || !metalen_ok(metalen) {
            return Err(bad(
                "data",
                format!(
                    "metadata length {metalen} must be a multiple of 4, at most {XDP_MAX_METALEN} and at most the data size"
                ),
            ));
        }
        if field(OFF_EGRESS_IFINDEX) != 0 {
            return Err(bad("egress_ifindex", "must be 0".into()));
        }
        if field(OFF_INGRESS_IFINDEX) == 0 && field(OFF_RX_QUEUE_INDEX) != 0 {
            return Err(bad("rx_queue_index", "needs an ingress_ifindex".into()));
        }
    }
    Ok(Layout { size, metalen })
}

/// Builds the run state of a validated input: `data_in` copied after the headroom (metadata
/// first), the context image from `ctx_in`. Buffers of `spare` are reused where they fit (the
/// context image always; the packet buffer if it is at least as long as the layout needs), and
/// every byte of them is then as a fresh buffer would have it.
pub(crate) fn fill(
    layout: Layout,
    data_in: &[u8],
    ctx_in: Option<&[u8]>,
    spare: Spare,
) -> RunState {
    let metalen = layout.metalen;
    let ctx = ctx_image_reusing(spare.ctx, ctx_in, XDP_MD_SIZE);
    // Metadata first, then the packet at the end of the headroom.
    let start = XDP_PACKET_HEADROOM - metalen;
    let packet = Packet::place(
        spare.packet,
        data_in,
        layout.buffer_len(),
        start,
        XDP_PACKET_HEADROOM,
        start,
        Direct::ReadWrite,
    );
    RunState {
        prog_type: ProgType::Xdp,
        ctx,
        packet: Some(packet),
    }
}

/// A context load (only 4-byte reads; pointer fields yield full packet addresses).
pub(crate) fn load(state: &RunState, offset: u64, size: u8) -> Result<u64, String> {
    let fi = check_ctx_access(ProgType::Xdp, offset, size, Access::Read)
        .map_err(|e| e.to_string())?
        .ok_or("xdp context has no such field")?;
    if let (Some(kind), Some(p)) = (fi.pointer, state.packet.as_ref()) {
        return Ok(match kind {
            PointerKind::Packet => p.addr(p.data),
            PointerKind::PacketEnd => p.addr(p.data_end),
            PointerKind::PacketMeta => p.addr(p.data_meta),
            PointerKind::SockCommonOrNull => 0,
        });
    }
    state
        .ctx
        .load_le(fi.offset as usize, 4)
        .ok_or_else(|| format!("xdp_md.{} is outside the context image", fi.name))
}

/// A context store: `struct xdp_md` is read-only.
pub(crate) fn store(offset: u64, size: u8) -> Result<(), String> {
    match check_ctx_access(ProgType::Xdp, offset, size, Access::Write) {
        Err(e) => Err(e.to_string()),
        Ok(_) => Err(format!(
            "xdp: struct xdp_md is read-only (store at offset {offset})"
        )),
    }
}

/// `data_out` is `[data_meta, data_end)` (Linux copies the metadata out too); `ctx_out` has
/// `data`/`data_end` as offsets from `data_meta`, as `xdp_convert_buff_to_md` writes them.
pub(crate) fn finish(state: &RunState, want_ctx: bool) -> (Vec<u8>, Option<Vec<u8>>) {
    let Some(p) = state.packet.as_ref() else {
        return (Vec::new(), None);
    };
    let data_out = p
        .buf
        .read(p.data_meta, p.data_end - p.data_meta)
        .unwrap_or_default();
    let ctx_out = want_ctx.then(|| {
        let out = RawBuf::from_vec(state.ctx.to_vec());
        out.store_le(OFF_DATA, 4, (p.data - p.data_meta) as u64);
        out.store_le(OFF_DATA_END, 4, (p.data_end - p.data_meta) as u64);
        out.store_le(OFF_DATA_META, 4, 0);
        out.to_vec()
    });
    (data_out, ctx_out)
}
