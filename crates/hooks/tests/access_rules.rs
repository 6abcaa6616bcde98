//! Per-type context access rules, checked against Linux's `*_is_valid_access` behaviour.

use kflex_hooks::{PointerKind, check_ctx_access, context_layout};
use kflex_object::ProgType;
use kflex_runtime::Access::{self, Read, Write};

fn ok(t: ProgType, off: u64, size: u8, a: Access) -> bool {
    check_ctx_access(t, off, size, a).is_ok()
}

fn field(t: ProgType, off: u64, size: u8, a: Access) -> &'static str {
    check_ctx_access(t, off, size, a)
        .expect("access should be allowed")
        .expect("typed context")
        .name
}

fn err(t: ProgType, off: u64, size: u8, a: Access) -> String {
    check_ctx_access(t, off, size, a)
        .expect_err("access should be refused")
        .to_string()
}

#[test]
fn xdp_md_only_four_byte_reads() {
    use ProgType::Xdp;
    for (off, name) in [
        (0, "data"),
        (4, "data_end"),
        (8, "data_meta"),
        (12, "ingress_ifindex"),
        (16, "rx_queue_index"),
    ] {
        assert_eq!(field(Xdp, off, 4, Read), name);
        assert!(!ok(Xdp, off, 4, Write), "{name} must be read-only");
        assert!(!ok(Xdp, off, 2, Read), "{name} narrow read must be refused");
        assert!(!ok(Xdp, off, 1, Read));
    }
    assert!(!ok(Xdp, 0, 8, Read));
    assert!(!ok(Xdp, 2, 4, Read));
    assert!(!ok(Xdp, 24, 4, Read));
    assert!(err(Xdp, 12, 4, Write).contains("ingress_ifindex"));
    // egress_ifindex is only for devmap programs in Linux: no access at all in plain XDP.
    for (size, access) in [(4, Read), (2, Read), (1, Read), (4, Write)] {
        let e = err(Xdp, 20, size, access);
        assert!(e.contains("egress_ifindex"), "{e}");
    }
    assert!(err(Xdp, 20, 4, Read).contains("devmap"));
    let layout = context_layout(Xdp);
    assert_eq!(layout[0].pointer, Some(PointerKind::Packet));
    assert_eq!(layout[1].pointer, Some(PointerKind::PacketEnd));
    assert_eq!(layout[2].pointer, Some(PointerKind::PacketMeta));
    assert_eq!(layout[3].pointer, None);
}

#[test]
fn socket_filter_reads_scalars_and_writes_only_cb() {
    use ProgType::SocketFilter as T;
    // Narrow reads of scalar fields, naturally aligned.
    assert_eq!(field(T, 0, 4, Read), "len");
    assert_eq!(field(T, 0, 1, Read), "len");
    assert_eq!(field(T, 2, 2, Read), "len");
    assert_eq!(field(T, 3, 1, Read), "len");
    assert!(!ok(T, 1, 2, Read), "misaligned narrow read");
    assert!(!ok(T, 0, 8, Read), "wider than the field");
    for off in [4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 68, 84, 164, 176] {
        assert!(ok(T, off, 4, Read), "offset {off} should be readable");
    }
    assert_eq!(field(T, 168, 8, Read), "sk");
    // Not readable by socket filters.
    for (off, size, name) in [
        (72, 4, "tc_classid"),
        (76, 4, "data"),
        (80, 4, "data_end"),
        (140, 4, "data_meta"),
        (88, 4, "family"),
        (92, 4, "remote_ip4"),
        (100, 4, "remote_ip6"),
        (136, 4, "local_port"),
        (152, 8, "tstamp"),
        (160, 4, "wire_len"),
        (184, 8, "hwtstamp"),
        (144, 8, "flow_keys"),
        (180, 1, "tstamp_type"),
    ] {
        let e = err(T, off, size, Read);
        assert!(e.contains(name), "{e}");
    }
    // Writes: only cb[], of any aligned size inside cb.
    assert_eq!(field(T, 48, 4, Write), "cb");
    assert_eq!(field(T, 64, 4, Write), "cb");
    assert_eq!(field(T, 48, 8, Write), "cb");
    assert_eq!(field(T, 51, 1, Write), "cb");
    assert!(!ok(T, 64, 8, Write), "8-byte write past cb[4]");
    assert!(!ok(T, 52, 8, Write), "misaligned 8-byte write");
    for off in [0, 8, 32, 44, 72] {
        assert!(!ok(T, off, 4, Write), "offset {off} must not be writable");
    }
    assert!(err(T, 8, 4, Write).contains("mark"));
    // Padding and the outside.
    assert!(err(T, 181, 1, Read).contains("outside every field"));
    assert!(!ok(T, 192, 4, Read));
    assert!(!ok(T, 3, 3, Read), "odd sizes are never valid");
}

#[test]
fn sched_cls_packet_pointers_and_writable_fields() {
    use ProgType::SchedCls as T;
    for (off, kind) in [
        (76, PointerKind::Packet),
        (80, PointerKind::PacketEnd),
        (140, PointerKind::PacketMeta),
    ] {
        let fi = check_ctx_access(T, off, 4, Read).unwrap().unwrap();
        assert_eq!(fi.pointer, Some(kind));
        assert!(
            !ok(T, off, 8, Read),
            "pointer fields are read with 4-byte loads"
        );
        assert!(!ok(T, off, 2, Read));
        assert!(!ok(T, off, 4, Write));
    }
    for (off, name) in [
        (8, "mark"),
        (32, "priority"),
        (44, "tc_index"),
        (72, "tc_classid"),
        (12, "queue_mapping"),
        (48, "cb"),
    ] {
        assert_eq!(field(T, off, 4, Write), name);
    }
    assert!(!ok(T, 8, 2, Write), "scalar writes must be 4 bytes");
    assert!(!ok(T, 8, 1, Write));
    assert_eq!(field(T, 152, 8, Write), "tstamp");
    assert!(!ok(T, 152, 4, Write), "tstamp is written with 8 bytes");
    assert!(!ok(T, 152, 4, Read), "tstamp is read with 8 bytes");
    for off in [0, 4, 16, 36, 40, 68, 160, 164] {
        assert!(!ok(T, off, 4, Write), "offset {off} must not be writable");
    }
    assert!(!ok(T, 184, 8, Write), "hwtstamp is read-only");
    assert!(ok(T, 184, 8, Read));
    assert_eq!(field(T, 180, 1, Read), "tstamp_type");
    assert!(!ok(T, 180, 4, Read));
    assert!(ok(T, 160, 4, Read), "wire_len is readable");
    assert!(ok(T, 72, 2, Read), "tc_classid narrow read");
    for off in [88, 92, 96, 100, 116, 132, 136] {
        assert!(!ok(T, off, 4, Read), "socket field at {off} is not for tc");
    }
    assert!(!ok(T, 144, 8, Read), "flow_keys");
}

#[test]
fn sk_skb_rules() {
    use ProgType::SkSkb as T;
    assert_eq!(field(T, 88, 4, Read), "family");
    assert_eq!(field(T, 92, 4, Read), "remote_ip4");
    assert!(!ok(T, 92, 2, Read), "IPv4 addresses are read whole");
    assert_eq!(field(T, 104, 4, Read), "remote_ip6");
    assert!(!ok(T, 104, 8, Read));
    assert_eq!(field(T, 132, 2, Read), "remote_port");
    assert!(
        check_ctx_access(T, 76, 4, Read).unwrap().unwrap().pointer == Some(PointerKind::Packet)
    );
    assert!(!ok(T, 140, 4, Read), "no data_meta for sk_skb");
    assert!(!ok(T, 8, 4, Read), "mark is not visible to sk_skb");
    assert!(!ok(T, 152, 8, Read));
    assert!(!ok(T, 72, 4, Read));
    assert_eq!(field(T, 32, 4, Write), "priority");
    assert_eq!(field(T, 44, 4, Write), "tc_index");
    assert!(!ok(T, 8, 4, Write));
    assert!(!ok(T, 48, 4, Write), "cb is not writable by sk_skb");
    assert!(ok(T, 48, 4, Read));
}

#[test]
fn syscall_allows_any_aligned_access() {
    use ProgType::Syscall as T;
    assert_eq!(check_ctx_access(T, 0, 8, Read), Ok(None));
    assert_eq!(check_ctx_access(T, 4096, 1, Write), Ok(None));
    assert!(!ok(T, 4, 8, Read), "misaligned");
    assert!(context_layout(T).is_empty());
}

#[test]
fn layouts_describe_every_readable_field_of_the_uapi_struct() {
    // Offsets of struct __sk_buff as compiled by clang from linux/bpf.h.
    let expected = [
        ("len", 0),
        ("mark", 8),
        ("protocol", 16),
        ("cb", 48),
        ("hash", 68),
        ("data", 76),
        ("napi_id", 84),
        ("remote_ip6", 100),
        ("local_ip6", 116),
        ("data_meta", 140),
        ("tstamp", 152),
        ("sk", 168),
        ("gso_size", 176),
        ("hwtstamp", 184),
    ];
    for t in [ProgType::SocketFilter, ProgType::SchedCls, ProgType::SkSkb] {
        let layout = context_layout(t);
        for (name, off) in expected {
            let fi = layout.iter().find(|f| f.name == name).unwrap();
            assert_eq!(fi.offset, off, "{name}");
        }
    }
}
