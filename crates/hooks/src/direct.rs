//! Context accesses an engine may serve without the context hook, like Linux's
//! `convert_ctx_access` rewrites: for each byte offset of a program type's context, whether a
//! load (or store) there is a plain access of the context image, yields one of the packet
//! pointers, yields NULL, or needs the hook's computation.
//!
//! The tables describe *verified* accesses only (inside one field, with a size the field's rule
//! allows): an engine consults them for the accesses the verifier recorded, and still checks that
//! the access lies inside the image. Everything not listed as direct goes to the hook, which
//! applies the full rules.

use std::sync::LazyLock;

use kflex_object::ProgType;

use crate::layout::{FieldInfo, PointerKind, context_layout, context_size};

/// How an access at one byte offset can be served (`#[repr(u8)]`: the tables hold these values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DirectKind {
    /// Only through the context hook.
    Hook = 0,
    /// A plain little-endian access of the access's size at the same offset of the image.
    Plain = 1,
    /// A load yields the packet's `data` address.
    Data = 2,
    /// A load yields the packet's `data_end` address.
    DataEnd = 3,
    /// A load yields the packet's `data_meta` address.
    DataMeta = 4,
    /// A load yields 0 (`__sk_buff.sk`: kflex runs have no socket).
    Null = 5,
}

/// What an engine needs to serve a prepared run's context accesses directly
/// ([`crate::PreparedRun::direct_context`]). Addresses stay valid while the run is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirectContext {
    /// Address of the context image.
    pub image: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Address of three `u64` cells holding the current `data`, `data_end` and `data_meta`
    /// addresses (0 when the run has no packet).
    pub pointers: u64,
    /// [`DirectKind`] values by byte offset for loads (offsets past the table: hook), or empty
    /// with `uniform` set.
    pub loads: &'static [u8],
    /// The same for stores.
    pub stores: &'static [u8],
    /// Every access inside the image is [`DirectKind::Plain`] (`syscall` contexts).
    pub uniform: bool,
}

/// Load and store tables of `prog_type` (empty for `syscall`, which is uniform).
pub(crate) fn tables(prog_type: ProgType) -> (&'static [u8], &'static [u8]) {
    static XDP: LazyLock<[Vec<u8>; 2]> = LazyLock::new(|| build(ProgType::Xdp));
    static SOCKET_FILTER: LazyLock<[Vec<u8>; 2]> = LazyLock::new(|| build(ProgType::SocketFilter));
    static SCHED_CLS: LazyLock<[Vec<u8>; 2]> = LazyLock::new(|| build(ProgType::SchedCls));
    static SK_SKB: LazyLock<[Vec<u8>; 2]> = LazyLock::new(|| build(ProgType::SkSkb));
    let t: &'static [Vec<u8>; 2] = match prog_type {
        ProgType::Xdp => &XDP,
        ProgType::SocketFilter => &SOCKET_FILTER,
        ProgType::SchedCls => &SCHED_CLS,
        ProgType::SkSkb => &SK_SKB,
        ProgType::Syscall => return (&[], &[]),
    };
    (&t[0], &t[1])
}

fn build(prog_type: ProgType) -> [Vec<u8>; 2] {
    let size = context_size(prog_type).unwrap_or(0);
    let mut loads = vec![DirectKind::Hook as u8; size];
    let mut stores = vec![DirectKind::Hook as u8; size];
    // Later fields never override earlier ones (the hooks use the first field covering an offset).
    let mut seen = vec![false; size];
    for fi in context_layout(prog_type) {
        let load = load_kind(prog_type, fi) as u8;
        let store = store_kind(prog_type, fi) as u8;
        let range = (fi.offset as usize).min(size)..(fi.end() as usize).min(size);
        for o in range {
            if !seen[o] {
                seen[o] = true;
                loads[o] = load;
                stores[o] = store;
            }
        }
    }
    [loads, stores]
}

/// How the hook serves a load of `fi` (see `xdp::load` and `skb::load`).
fn load_kind(prog_type: ProgType, fi: &FieldInfo) -> DirectKind {
    if fi.read.is_none() {
        return DirectKind::Hook;
    }
    match fi.pointer {
        Some(PointerKind::Packet) => DirectKind::Data,
        Some(PointerKind::PacketEnd) => DirectKind::DataEnd,
        Some(PointerKind::PacketMeta) => DirectKind::DataMeta,
        Some(PointerKind::SockCommonOrNull) => DirectKind::Null,
        // XDP fields are read whole (4 bytes at the field's offset), which verified loads are.
        None if prog_type == ProgType::Xdp && fi.size != 4 => DirectKind::Hook,
        None => DirectKind::Plain,
    }
}

/// How the hook serves a store to `fi` (see `skb::store`; `struct xdp_md` is read-only).
fn store_kind(prog_type: ProgType, fi: &FieldInfo) -> DirectKind {
    match (prog_type, fi.write, fi.name) {
        (ProgType::Xdp | ProgType::Syscall, _, _) | (_, None, _) => DirectKind::Hook,
        // Truncated or filtered by the hook.
        (_, _, "tc_index" | "tc_classid" | "queue_mapping") => DirectKind::Hook,
        _ => DirectKind::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_at(table: &[u8], offset: usize) -> u8 {
        table[offset]
    }

    #[test]
    fn pointer_fields_and_plain_fields_are_classified() {
        let (loads, stores) = tables(ProgType::Xdp);
        assert_eq!(kind_at(loads, 0), DirectKind::Data as u8);
        assert_eq!(kind_at(loads, 4), DirectKind::DataEnd as u8);
        assert_eq!(kind_at(loads, 8), DirectKind::DataMeta as u8);
        assert_eq!(
            kind_at(loads, 12),
            DirectKind::Plain as u8,
            "ingress_ifindex"
        );
        assert!(stores.iter().all(|&k| k == DirectKind::Hook as u8));
        let (loads, stores) = tables(ProgType::SchedCls);
        assert_eq!(kind_at(loads, 0), DirectKind::Plain as u8, "len");
        assert_eq!(kind_at(loads, 76), DirectKind::Data as u8);
        assert_eq!(kind_at(loads, 80), DirectKind::DataEnd as u8);
        assert_eq!(kind_at(loads, 168), DirectKind::Null as u8, "sk");
        assert_eq!(kind_at(stores, 8), DirectKind::Plain as u8, "mark");
        assert_eq!(kind_at(stores, 48), DirectKind::Plain as u8, "cb[0]");
        assert_eq!(kind_at(stores, 44), DirectKind::Hook as u8, "tc_index");
        assert_eq!(kind_at(stores, 32), DirectKind::Plain as u8, "priority");
        assert_eq!(
            kind_at(stores, 0),
            DirectKind::Hook as u8,
            "len is read-only"
        );
        let (loads, _) = tables(ProgType::SocketFilter);
        assert_eq!(
            kind_at(loads, 76),
            DirectKind::Hook as u8,
            "no direct packet access"
        );
        assert_eq!(tables(ProgType::Syscall), (&[][..], &[][..]));
    }
}
