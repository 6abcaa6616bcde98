//! Program types, and how libbpf section names select them.

/// Linux program types kflex can run or load, with their `enum bpf_prog_type` numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgType {
    /// `BPF_PROG_TYPE_SOCKET_FILTER` (1): `struct __sk_buff` context, returns bytes to keep.
    SocketFilter,
    /// `BPF_PROG_TYPE_SCHED_CLS` (3): tc classifier, `struct __sk_buff` context, returns `TC_ACT_*`.
    SchedCls,
    /// `BPF_PROG_TYPE_XDP` (6): `struct xdp_md` context, returns `XDP_*`.
    Xdp,
    /// `BPF_PROG_TYPE_SK_SKB` (14): stream parser or verdict, `struct __sk_buff` context.
    SkSkb,
    /// `BPF_PROG_TYPE_SYSCALL` (31): raw context bytes, always sleepable.
    Syscall,
}

impl ProgType {
    /// The Linux `enum bpf_prog_type` value.
    pub const fn linux_id(self) -> u32 {
        match self {
            ProgType::SocketFilter => 1,
            ProgType::SchedCls => 3,
            ProgType::Xdp => 6,
            ProgType::SkSkb => 14,
            ProgType::Syscall => 31,
        }
    }

    /// The name used on the command line (`xdp`, `socket_filter`, `sched_cls`, `sk_skb`, `syscall`).
    pub const fn name(self) -> &'static str {
        match self {
            ProgType::SocketFilter => "socket_filter",
            ProgType::SchedCls => "sched_cls",
            ProgType::Xdp => "xdp",
            ProgType::SkSkb => "sk_skb",
            ProgType::Syscall => "syscall",
        }
    }

    /// Parses a command-line name (the inverse of [`ProgType::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Every program type.
    pub const ALL: [ProgType; 5] = [
        ProgType::SocketFilter,
        ProgType::SchedCls,
        ProgType::Xdp,
        ProgType::SkSkb,
        ProgType::Syscall,
    ];

    /// The program type a libbpf section name selects (`xdp`, `xdp/foo`, `tc`, `classifier`,
    /// `tc/ingress`, `socket`, `sk_skb/stream_verdict`, `syscall`, ...), if kflex supports it.
    pub fn from_section(section: &str) -> Option<Self> {
        let base = section.split('/').next().unwrap_or(section);
        Some(match base {
            "xdp" | "xdp.frags" => ProgType::Xdp,
            "socket" => ProgType::SocketFilter,
            "tc" | "classifier" | "tcx" => ProgType::SchedCls,
            "sk_skb" => ProgType::SkSkb,
            "syscall" => ProgType::Syscall,
            _ => return None,
        })
    }
}

/// The attach point an `sk_skb` section names, when it names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkSkbAttach {
    /// `sk_skb/stream_parser`.
    StreamParser,
    /// `sk_skb/stream_verdict`.
    StreamVerdict,
}

impl SkSkbAttach {
    /// The attach point of an `sk_skb/...` section name.
    pub fn from_section(section: &str) -> Option<Self> {
        match section {
            "sk_skb/stream_parser" => Some(SkSkbAttach::StreamParser),
            "sk_skb/stream_verdict" => Some(SkSkbAttach::StreamVerdict),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_names_select_types() {
        assert_eq!(ProgType::from_section("xdp"), Some(ProgType::Xdp));
        assert_eq!(ProgType::from_section("xdp/pass"), Some(ProgType::Xdp));
        assert_eq!(ProgType::from_section("tc"), Some(ProgType::SchedCls));
        assert_eq!(
            ProgType::from_section("classifier"),
            Some(ProgType::SchedCls)
        );
        assert_eq!(
            ProgType::from_section("socket"),
            Some(ProgType::SocketFilter)
        );
        assert_eq!(
            ProgType::from_section("sk_skb/stream_verdict"),
            Some(ProgType::SkSkb)
        );
        assert_eq!(ProgType::from_section("syscall"), Some(ProgType::Syscall));
        assert_eq!(ProgType::from_section("kprobe/foo"), None);
        assert_eq!(ProgType::from_section(".text"), None);
    }

    #[test]
    fn names_round_trip() {
        for t in ProgType::ALL {
            assert_eq!(ProgType::from_name(t.name()), Some(t));
        }
    }
}
