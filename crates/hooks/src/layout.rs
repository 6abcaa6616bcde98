//! Context layouts of the Linux program types and the rules for accessing each field.
//!
//! The tables mirror the UAPI structs (`struct xdp_md`, `struct __sk_buff`) and the per-type
//! `is_valid_access` rules of Linux (`xdp_is_valid_access`, `sk_filter_is_valid_access`,
//! `tc_cls_act_is_valid_access`, `sk_skb_is_valid_access`, `bpf_skb_is_valid_access`). The same rules
//! are used by the context hooks at run time and are exported for the verifier.

use std::sync::LazyLock;

use kflex_object::ProgType;
use kflex_runtime::Access;

/// Size of `struct xdp_md`.
pub const XDP_MD_SIZE: usize = 24;
/// Size of `struct __sk_buff`.
pub const SK_BUFF_SIZE: usize = 192;

/// Which access sizes a field accepts (always naturally aligned and inside the field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeRule {
    /// Only accesses of exactly this many bytes (e.g. 4 for `data`, 8 for `tstamp`).
    Exact(u8),
    /// Any power-of-two size up to the field's size (capped at 8): Linux's "narrow" access.
    Narrow,
}

/// What a pointer-valued context field points to when loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointerKind {
    /// Start of packet data (`PTR_TO_PACKET`).
    Packet,
    /// One past the end of the packet data (`PTR_TO_PACKET_END`).
    PacketEnd,
    /// Start of packet metadata (`PTR_TO_PACKET_META`).
    PacketMeta,
    /// A socket, or NULL (`PTR_TO_SOCK_COMMON_OR_NULL`); kflex's test run always loads NULL.
    SockCommonOrNull,
}

/// One field of a context struct and how a program type may access it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// Field name as in the UAPI header (`cb` covers `cb[0]..cb[4]`).
    pub name: &'static str,
    /// Byte offset in the struct.
    pub offset: u32,
    /// Size in bytes in the struct.
    pub size: u32,
    /// Allowed loads, or `None` if the field cannot be read.
    pub read: Option<SizeRule>,
    /// Allowed stores, or `None` if the field cannot be written.
    pub write: Option<SizeRule>,
    /// For pointer fields: what a load yields (a full 64-bit pointer).
    pub pointer: Option<PointerKind>,
}

impl FieldInfo {
    /// One past the field's last byte.
    pub fn end(&self) -> u32 {
        self.offset + self.size
    }

    /// The rule for this kind of access.
    pub fn rule(&self, access: Access) -> Option<SizeRule> {
        match access {
            Access::Read => self.read,
            Access::Write => self.write,
        }
    }
}

/// Why a context access is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{prog_type}: {what}")]
pub struct CtxAccessError {
    /// Name of the program type.
    pub prog_type: &'static str,
    /// What is wrong, naming the field and offset.
    pub what: String,
}

const fn f(name: &'static str, offset: u32, size: u32) -> FieldInfo {
    FieldInfo {
        name,
        offset,
        size,
        read: None,
        write: None,
        pointer: None,
    }
}

/// `struct __sk_buff` fields (no rules yet); padding is left out.
const SK_BUFF_FIELDS: [FieldInfo; 34] = [
    f("len", 0, 4),
    f("pkt_type", 4, 4),
    f("mark", 8, 4),
    f("queue_mapping", 12, 4),
    f("protocol", 16, 4),
    f("vlan_present", 20, 4),
    f("vlan_tci", 24, 4),
    f("vlan_proto", 28, 4),
    f("priority", 32, 4),
    f("ingress_ifindex", 36, 4),
    f("ifindex", 40, 4),
    f("tc_index", 44, 4),
    f("cb", 48, 20),
    f("hash", 68, 4),
    f("tc_classid", 72, 4),
    f("data", 76, 4),
    f("data_end", 80, 4),
    f("napi_id", 84, 4),
    f("family", 88, 4),
    f("remote_ip4", 92, 4),
    f("local_ip4", 96, 4),
    f("remote_ip6", 100, 16),
    f("local_ip6", 116, 16),
    f("remote_port", 132, 4),
    f("local_port", 136, 4),
    f("data_meta", 140, 4),
    f("flow_keys", 144, 8),
    f("tstamp", 152, 8),
    f("wire_len", 160, 4),
    f("gso_segs", 164, 4),
    f("sk", 168, 8),
    f("gso_size", 176, 4),
    f("tstamp_type", 180, 1),
    f("hwtstamp", 184, 8),
];

/// Rules shared by every `__sk_buff` type (`bpf_skb_is_valid_access`), before the per-type rules.
fn skb_common(mut fi: FieldInfo) -> FieldInfo {
    let (read, pointer) = match fi.name {
        "cb" => (Some(SizeRule::Narrow), None),
        "data" => (Some(SizeRule::Exact(4)), Some(PointerKind::Packet)),
        "data_end" => (Some(SizeRule::Exact(4)), Some(PointerKind::PacketEnd)),
        "data_meta" => (Some(SizeRule::Exact(4)), Some(PointerKind::PacketMeta)),
        "remote_ip6" | "local_ip6" | "remote_ip4" | "local_ip4" => (Some(SizeRule::Exact(4)), None),
        "flow_keys" | "tstamp_type" => (None, None),
        "hwtstamp" | "tstamp" => (Some(SizeRule::Exact(8)), None),
        "sk" => (
            Some(SizeRule::Exact(8)),
            Some(PointerKind::SockCommonOrNull),
        ),
        _ => (Some(SizeRule::Narrow), None),
    };
    fi.read = read;
    fi.pointer = pointer;
    fi
}

/// The write rule of a field the type allows writing (`tstamp` is 8 bytes, `cb` any size).
fn skb_write_rule(name: &str) -> SizeRule {
    match name {
        "cb" => SizeRule::Narrow,
        "tstamp" => SizeRule::Exact(8),
        _ => SizeRule::Exact(4),
    }
}

/// The socket fields (`family` .. `local_port`), readable only by `sk_skb` among our types.
const SOCK_FIELDS: [&str; 7] = [
    "family",
    "remote_ip4",
    "local_ip4",
    "remote_ip6",
    "local_ip6",
    "remote_port",
    "local_port",
];

fn is_sock_field(name: &str) -> bool {
    SOCK_FIELDS.contains(&name)
}

fn socket_filter_field(fi: FieldInfo) -> FieldInfo {
    let mut fi = skb_common(fi);
    let denied = [
        "tc_classid",
        "data",
        "data_meta",
        "data_end",
        "tstamp",
        "wire_len",
        "hwtstamp",
    ];
    if denied.contains(&fi.name) || is_sock_field(fi.name) {
        fi.read = None;
        fi.pointer = None;
    }
    fi.write = (fi.name == "cb").then_some(SizeRule::Narrow);
    fi
}

fn sched_cls_field(fi: FieldInfo) -> FieldInfo {
    let mut fi = skb_common(fi);
    if is_sock_field(fi.name) {
        fi.read = None;
    }
    if fi.name == "tstamp_type" {
        fi.read = Some(SizeRule::Exact(1));
    }
    let writable = [
        "mark",
        "tc_index",
        "priority",
        "tc_classid",
        "cb",
        "tstamp",
        "queue_mapping",
    ];
    fi.write = writable.contains(&fi.name).then(|| skb_write_rule(fi.name));
    fi
}

fn sk_skb_field(fi: FieldInfo) -> FieldInfo {
    let mut fi = skb_common(fi);
    let denied = [
        "tc_classid",
        "data_meta",
        "tstamp",
        "wire_len",
        "hwtstamp",
        "mark",
    ];
    if denied.contains(&fi.name) {
        fi.read = None;
        fi.pointer = None;
    }
    fi.write = ["tc_index", "priority"]
        .contains(&fi.name)
        .then(|| skb_write_rule(fi.name));
    fi
}

fn xdp_md() -> Vec<FieldInfo> {
    let exact = |name, offset, pointer| FieldInfo {
        read: Some(SizeRule::Exact(4)),
        pointer,
        ..f(name, offset, 4)
    };
    vec![
        exact("data", 0, Some(PointerKind::Packet)),
        exact("data_end", 4, Some(PointerKind::PacketEnd)),
        exact("data_meta", 8, Some(PointerKind::PacketMeta)),
        exact("ingress_ifindex", 12, None),
        exact("rx_queue_index", 16, None),
        // Part of the struct (a test run's ctx_in must leave it 0) but unreadable: Linux's
        // `xdp_is_valid_access` allows it only for devmap programs (`BPF_XDP_DEVMAP`), which
        // kflex does not run.
        FieldInfo {
            read: None,
            ..f("egress_ifindex", 20, 4)
        },
    ]
}

/// Why a field a program type's layout has cannot be accessed, when there is more to say than
/// "not by this program type".
fn denied_because(prog_type: ProgType, field: &str) -> Option<&'static str> {
    match (prog_type, field) {
        (ProgType::Xdp, "egress_ifindex") => {
            Some("only devmap XDP programs (BPF_XDP_DEVMAP) may read it, as in Linux")
        }
        _ => None,
    }
}

static XDP: LazyLock<Vec<FieldInfo>> = LazyLock::new(xdp_md);
static SOCKET_FILTER: LazyLock<Vec<FieldInfo>> =
    LazyLock::new(|| SK_BUFF_FIELDS.map(socket_filter_field).to_vec());
static SCHED_CLS: LazyLock<Vec<FieldInfo>> =
    LazyLock::new(|| SK_BUFF_FIELDS.map(sched_cls_field).to_vec());
static SK_SKB: LazyLock<Vec<FieldInfo>> =
    LazyLock::new(|| SK_BUFF_FIELDS.map(sk_skb_field).to_vec());

/// The context fields of a program type with their access rules.
///
/// `syscall` has no fixed layout (its context is the caller's bytes, any aligned access inside them
/// is allowed), so its table is empty.
pub fn context_layout(prog_type: ProgType) -> &'static [FieldInfo] {
    match prog_type {
        ProgType::Xdp => &XDP,
        ProgType::SocketFilter => &SOCKET_FILTER,
        ProgType::SchedCls => &SCHED_CLS,
        ProgType::SkSkb => &SK_SKB,
        ProgType::Syscall => &[],
    }
}

/// The field of `prog_type`'s context containing byte `offset` (the first one in layout order),
/// found through a per-type table of field indices by byte offset instead of a scan.
fn field_at(prog_type: ProgType, offset: u64) -> Option<&'static FieldInfo> {
    static XDP_IX: LazyLock<Vec<u8>> = LazyLock::new(|| field_index(&XDP));
    static SOCKET_FILTER_IX: LazyLock<Vec<u8>> = LazyLock::new(|| field_index(&SOCKET_FILTER));
    static SCHED_CLS_IX: LazyLock<Vec<u8>> = LazyLock::new(|| field_index(&SCHED_CLS));
    static SK_SKB_IX: LazyLock<Vec<u8>> = LazyLock::new(|| field_index(&SK_SKB));
    let index: &[u8] = match prog_type {
        ProgType::Xdp => &XDP_IX,
        ProgType::SocketFilter => &SOCKET_FILTER_IX,
        ProgType::SchedCls => &SCHED_CLS_IX,
        ProgType::SkSkb => &SK_SKB_IX,
        ProgType::Syscall => return None,
    };
    let layout = context_layout(prog_type);
    let i = *index.get(usize::try_from(offset).ok()?)?;
    layout.get(usize::from(i))
}

/// Index into `layout` of the first field covering each byte offset (`u8::MAX` where none does),
/// up to the end of the last field.
fn field_index(layout: &[FieldInfo]) -> Vec<u8> {
    let len = layout.iter().map(FieldInfo::end).max().unwrap_or(0) as usize;
    let mut index = vec![u8::MAX; len];
    for (i, fi) in layout.iter().enumerate() {
        let Ok(i) = u8::try_from(i) else {
            break;
        };
        for slot in index
            .iter_mut()
            .take(fi.end() as usize)
            .skip(fi.offset as usize)
        {
            if *slot == u8::MAX {
                *slot = i;
            }
        }
    }
    index
}

/// Size of the context struct, or `None` for `syscall` (whose size is the caller's `ctx_in`).
pub fn context_size(prog_type: ProgType) -> Option<usize> {
    match prog_type {
        ProgType::Xdp => Some(XDP_MD_SIZE),
        ProgType::SocketFilter | ProgType::SchedCls | ProgType::SkSkb => Some(SK_BUFF_SIZE),
        ProgType::Syscall => None,
    }
}

fn struct_name(prog_type: ProgType) -> &'static str {
    match prog_type {
        ProgType::Xdp => "struct xdp_md",
        ProgType::Syscall => "syscall context",
        _ => "struct __sk_buff",
    }
}

/// Checks a `size`-byte access at `offset` into the context of `prog_type`.
///
/// Returns the field accessed (`None` for `syscall`, whose context has no fields; its bounds are
/// checked against the actual context size at run time) or why the access is not allowed.
pub fn check_ctx_access(
    prog_type: ProgType,
    offset: u64,
    size: u8,
    access: Access,
) -> Result<Option<&'static FieldInfo>, CtxAccessError> {
    let err = |what: String| CtxAccessError {
        prog_type: prog_type.name(),
        what,
    };
    let verb = match access {
        Access::Read => "read",
        Access::Write => "write",
    };
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(err(format!(
            "{size}-byte {verb} at offset {offset} is not a valid access size"
        )));
    }
    if !offset.is_multiple_of(u64::from(size)) {
        return Err(err(format!(
            "misaligned {size}-byte {verb} at offset {offset} of the {}",
            struct_name(prog_type)
        )));
    }
    if prog_type == ProgType::Syscall {
        return Ok(None);
    }
    let Some(fi) = field_at(prog_type, offset) else {
        return Err(err(format!(
            "{size}-byte {verb} at offset {offset} is outside every field of {}",
            struct_name(prog_type)
        )));
    };
    // Formatted only on the error paths: a permitted access allocates nothing.
    let field = || format!("{}.{} (offset {offset})", struct_name(prog_type), fi.name);
    let Some(rule) = fi.rule(access) else {
        let because = denied_because(prog_type, fi.name)
            .map(|why| format!(": {why}"))
            .unwrap_or_default();
        return Err(err(format!(
            "{field} cannot be {verb} by this program type{because}",
            field = field(),
            verb = match access {
                Access::Read => "read",
                Access::Write => "written",
            }
        )));
    };
    let rel = offset - u64::from(fi.offset);
    if rel + u64::from(size) > u64::from(fi.size) {
        return Err(err(format!(
            "{size}-byte {verb} of {field} runs past the field's {} bytes",
            fi.size,
            field = field(),
        )));
    }
    match rule {
        SizeRule::Exact(n) if n != size => Err(err(format!(
            "{size}-byte {verb} of {field}: only {n}-byte {verb}s are allowed",
            field = field(),
        ))),
        _ => Ok(Some(fi)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_table_agrees_with_a_scan_of_the_layout() {
        for ty in ProgType::ALL {
            let layout = context_layout(ty);
            assert!(layout.len() < usize::from(u8::MAX));
            for offset in 0..300u64 {
                let scanned = layout
                    .iter()
                    .find(|fi| offset >= u64::from(fi.offset) && offset < u64::from(fi.end()));
                assert_eq!(
                    field_at(ty, offset).map(|f| f.name),
                    scanned.map(|f| f.name),
                    "{ty:?} offset {offset}"
                );
            }
        }
    }

    #[test]
    fn sk_buff_table_is_sorted_and_inside_the_struct() {
        let mut prev_end = 0;
        for fi in SK_BUFF_FIELDS {
            assert!(
                fi.offset >= prev_end,
                "{} overlaps its predecessor",
                fi.name
            );
            prev_end = fi.end();
        }
        assert_eq!(prev_end as usize, SK_BUFF_SIZE);
    }

    #[test]
    fn xdp_egress_ifindex_is_in_the_layout_but_unreadable() {
        let fi = context_layout(ProgType::Xdp)
            .iter()
            .find(|fi| fi.name == "egress_ifindex")
            .unwrap();
        assert_eq!((fi.offset, fi.size), (20, 4));
        assert_eq!((fi.read, fi.write), (None, None));
        let e = check_ctx_access(ProgType::Xdp, 20, 4, Access::Read).unwrap_err();
        assert!(e.what.contains("xdp_md.egress_ifindex (offset 20)"), "{e}");
        assert!(e.what.contains("devmap"), "{e}");
        // The other fields keep their rules.
        for off in [0, 4, 8, 12, 16] {
            assert!(check_ctx_access(ProgType::Xdp, off, 4, Access::Read).is_ok());
        }
    }

    #[test]
    fn every_type_has_a_layout_of_the_right_size() {
        for t in ProgType::ALL {
            let layout = context_layout(t);
            match context_size(t) {
                Some(size) => assert_eq!(layout.last().map(|f| f.end() as usize), Some(size)),
                None => assert!(layout.is_empty()),
            }
        }
    }
}
