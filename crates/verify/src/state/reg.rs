//! The abstract value of one register (or spilled stack slot): its kind and what is known about it.

use std::fmt;

use kflex_runtime::helpers::ResourceKind;

use crate::domains::Scalar;

use super::ids::IdMap;

/// What a register holds.
///
/// Pointer kinds carry their offset from the object start as a [`Scalar`] (constant for most
/// pointers; bounded variable offsets where Linux allows them). Kinds that Linux gives an `id`
/// carry one: or-null pointers (all copies of one lookup result share it, so a NULL check
/// refines them all) and packet pointers (all pointers with the same variable part share a range).
#[derive(Clone, Debug, PartialEq)]
pub enum RegState {
    /// Never written, or scratched by a call. Reading it is an error.
    Uninit,
    /// A number (possibly a pointer value the program may no longer dereference).
    Scalar(Scalar),
    /// The program context (`struct xdp_md`, `struct __sk_buff`, ...) at a constant offset.
    Ctx {
        /// Offset from the context start.
        off: i32,
    },
    /// The context pointer moved by a variable amount (Linux keeps such a pointer but rejects
    /// every access through it and every helper use of it: context fields are rewritten per
    /// constant offset).
    CtxVarOff {
        /// Offset from the context start (not a constant).
        off: Scalar,
    },
    /// A pointer into the stack of frame `frame`, relative to that frame's r10.
    Stack {
        /// Call depth of the frame whose stack this points into.
        frame: u8,
        /// Offset from that frame's r10 (negative inside the stack).
        off: Scalar,
    },
    /// A map itself (`lddw` with `PSEUDO_MAP_FD`): only helpers accept it.
    MapPtr {
        /// Map index.
        map: u32,
    },
    /// A pointer into a value of map `map` (or NULL when `or_null`).
    MapValue {
        /// Map index.
        map: u32,
        /// Offset in the value.
        off: Scalar,
        /// Identity shared by every copy of one lookup result (0 when none is needed).
        id: u32,
        /// The pointer may be NULL until checked.
        or_null: bool,
    },
    /// A pointer into packet data: `data + v + fixed`, where `v` is a variable part shared by
    /// every pointer with the same `id` (no variable part when `id` is 0).
    Packet {
        /// Pointers with the same id share the variable part and the proven range.
        id: u32,
        /// Offset from the start of packet data (variable part plus `fixed`).
        off: Scalar,
        /// The constant part of the offset added after the variable part.
        fixed: i32,
        /// `data + v + range <= data_end` is proven (the kernel's `r=`).
        range: u32,
    },
    /// One past the end of packet data.
    PacketEnd,
    /// A pointer into packet metadata (which ends where packet data starts).
    PacketMeta {
        /// Offset from the start of the metadata.
        off: Scalar,
        /// Bytes from the metadata start proven accessible.
        range: u32,
    },
    /// A pointer into a memory block of known size handed out by a helper (a ringbuf sample).
    Mem {
        /// The reference the block belongs to, if acquired.
        ref_id: Option<u32>,
        /// Block size in bytes.
        size: u32,
        /// Offset in the block.
        off: Scalar,
        /// Identity shared by every copy of one helper result.
        id: u32,
        /// The pointer may be NULL until checked.
        or_null: bool,
    },
    /// A pointer into the extension heap (address space 1 / arena).
    Heap {
        /// Known to point inside the heap (at `off` from a guard or the heap start); untrusted
        /// pointers must be guarded before use.
        trusted: bool,
        /// Offset since the last guard (or since the heap start for `lddw`-derived pointers).
        off: Scalar,
        /// `off` counts from the heap start (an `lddw` of a heap global, not guarded since), so
        /// any access that stays inside the heap's known size needs no guard.
        start: bool,
    },
    /// The address of a subprogram (`lddw` with `PSEUDO_FUNC`), for callbacks.
    Code {
        /// First instruction of the subprogram.
        pc: usize,
    },
    /// A handle to a host object acquired by a host helper.
    HostRef {
        /// The reference id.
        ref_id: u32,
        /// What the object is.
        kind: ResourceKind,
        /// Identity shared by every copy of one helper result.
        id: u32,
        /// The handle may be NULL until checked.
        or_null: bool,
    },
}

impl RegState {
    /// A known constant.
    pub fn constant(v: u64) -> Self {
        RegState::Scalar(Scalar::constant(v))
    }

    /// An initialised scalar about which nothing is known.
    pub fn unknown() -> Self {
        RegState::Scalar(Scalar::unknown())
    }

    /// True for every kind except [`RegState::Uninit`] and [`RegState::Scalar`].
    pub fn is_pointer(&self) -> bool {
        !matches!(self, RegState::Uninit | RegState::Scalar(_))
    }

    /// The scalar, if this is one.
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match self {
            RegState::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The constant value, if this is a known scalar.
    pub fn const_value(&self) -> Option<u64> {
        self.as_scalar().and_then(Scalar::is_const)
    }

    /// The pointer may still be NULL.
    pub fn is_or_null(&self) -> bool {
        matches!(
            self,
            RegState::MapValue { or_null: true, .. }
                | RegState::Mem { or_null: true, .. }
                | RegState::HostRef { or_null: true, .. }
        )
    }

    /// The or-null identity of this pointer (0 when it has none).
    pub fn id(&self) -> u32 {
        match self {
            RegState::MapValue { id, .. }
            | RegState::Mem { id, .. }
            | RegState::HostRef { id, .. }
            | RegState::Packet { id, .. } => *id,
            _ => 0,
        }
    }

    /// The reference this value is a handle to, if any.
    pub fn ref_id(&self) -> Option<u32> {
        match self {
            RegState::Mem { ref_id, .. } => *ref_id,
            RegState::HostRef { ref_id, .. } => Some(*ref_id),
            _ => None,
        }
    }

    /// The variable offset of a pointer kind that has one.
    pub fn offset(&self) -> Option<&Scalar> {
        match self {
            RegState::Stack { off, .. }
            | RegState::MapValue { off, .. }
            | RegState::Packet { off, .. }
            | RegState::PacketMeta { off, .. }
            | RegState::Mem { off, .. }
            | RegState::Heap { off, .. } => Some(off),
            _ => None,
        }
    }

    /// Mutable access to the variable offset of a pointer kind that has one.
    pub fn offset_mut(&mut self) -> Option<&mut Scalar> {
        match self {
            RegState::Stack { off, .. }
            | RegState::MapValue { off, .. }
            | RegState::Packet { off, .. }
            | RegState::PacketMeta { off, .. }
            | RegState::Mem { off, .. }
            | RegState::Heap { off, .. } => Some(off),
            _ => None,
        }
    }

    /// The kernel-log name of the kind (`scalar`, `ctx`, `fp`, `map_value_or_null`, `pkt`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            RegState::Uninit => "uninit",
            RegState::Scalar(_) => "scalar",
            RegState::Ctx { .. } | RegState::CtxVarOff { .. } => "ctx",
            RegState::Stack { .. } => "fp",
            RegState::MapPtr { .. } => "map_ptr",
            RegState::MapValue { or_null: false, .. } => "map_value",
            RegState::MapValue { or_null: true, .. } => "map_value_or_null",
            RegState::Packet { .. } => "pkt",
            RegState::PacketEnd => "pkt_end",
            RegState::PacketMeta { .. } => "pkt_meta",
            RegState::Mem { or_null: false, .. } => "mem",
            RegState::Mem { or_null: true, .. } => "mem_or_null",
            RegState::Heap { trusted: true, .. } => "heap",
            RegState::Heap { trusted: false, .. } => "heap_untrusted",
            RegState::Code { .. } => "func",
            RegState::HostRef { or_null: false, .. } => "host_ref",
            RegState::HostRef { or_null: true, .. } => "host_ref_or_null",
        }
    }

    /// Whether every concrete value `cur` stands for is one `self` stands for, with pointer ids
    /// mapped consistently through `ids` (Linux `regsafe` with `check_ids`). An uninitialised
    /// old register covers anything: the old path never read it.
    pub fn covers(&self, cur: &RegState, ids: &mut IdMap) -> bool {
        use RegState as R;
        match (self, cur) {
            (R::Uninit, _) => true,
            (R::Scalar(a), R::Scalar(b)) => a.subsumes(b),
            (R::Ctx { off: a }, R::Ctx { off: b }) => a == b,
            (R::CtxVarOff { off: a }, R::CtxVarOff { off: b }) => a.subsumes(b),
            (R::Stack { frame: fa, off: a }, R::Stack { frame: fb, off: b }) => {
                fa == fb && a.subsumes(b)
            }
            (R::MapPtr { map: a }, R::MapPtr { map: b }) => a == b,
            (
                R::MapValue {
                    map: ma,
                    off: oa,
                    id: ia,
                    or_null: na,
                },
                R::MapValue {
                    map: mb,
                    off: ob,
                    id: ib,
                    or_null: nb,
                },
            ) => ma == mb && na == nb && oa.subsumes(ob) && ids.check(*ia, *ib),
            (
                R::Packet {
                    id: ia,
                    off: oa,
                    fixed: fa,
                    range: ra,
                },
                R::Packet {
                    id: ib,
                    off: ob,
                    fixed: fb,
                    range: rb,
                },
            ) => fa == fb && ra <= rb && oa.subsumes(ob) && ids.check(*ia, *ib),
            (R::PacketEnd, R::PacketEnd) => true,
            (R::PacketMeta { off: oa, range: ra }, R::PacketMeta { off: ob, range: rb }) => {
                ra <= rb && oa.subsumes(ob)
            }
            (
                R::Mem {
                    ref_id: ra,
                    size: sa,
                    off: oa,
                    id: ia,
                    or_null: na,
                },
                R::Mem {
                    ref_id: rb,
                    size: sb,
                    off: ob,
                    id: ib,
                    or_null: nb,
                },
            ) => {
                sa == sb
                    && na == nb
                    && oa.subsumes(ob)
                    && ids.check(*ia, *ib)
                    && match (ra, rb) {
                        (Some(a), Some(b)) => ids.check(*a, *b),
                        (None, None) => true,
                        _ => false,
                    }
            }
            (R::Heap { trusted: false, .. }, R::Heap { .. }) => true,
            // The heap start is an address inside the heap, so a start-relative pointer is at
            // least as good as a guarded one with the same offsets, not the other way round.
            (
                R::Heap {
                    trusted: true,
                    off: a,
                    start: sa,
                },
                R::Heap {
                    trusted: true,
                    off: b,
                    start: sb,
                },
            ) => a.subsumes(b) && (!*sa || *sb),
            (R::Code { pc: a }, R::Code { pc: b }) => a == b,
            (
                R::HostRef {
                    ref_id: ra,
                    kind: ka,
                    id: ia,
                    or_null: na,
                },
                R::HostRef {
                    ref_id: rb,
                    kind: kb,
                    id: ib,
                    or_null: nb,
                },
            ) => ka == kb && na == nb && ids.check(*ia, *ib) && ids.check(*ra, *rb),
            _ => false,
        }
    }

    /// The widening of `self` (the older value at a loop head) by `cur`: a value covering both,
    /// with scalar bounds pushed to their extremes so loops converge. `None` when the two kinds
    /// cannot be combined (different pointer kinds, maps or identities). `heap` is the heap's
    /// guaranteed size: offsets of heap pointers counted from the heap start stop there first
    /// ([`Scalar::widen_within`]), so a start pointer whose offset varies from one arrival to the
    /// next (an index into a heap array) stays inside the heap and keeps its accesses unguarded.
    pub fn widen(&self, cur: &RegState, heap: Option<u64>) -> Option<RegState> {
        use RegState as R;
        Some(match (self, cur) {
            (R::Uninit, _) | (_, R::Uninit) => R::Uninit,
            (R::Scalar(a), R::Scalar(b)) => R::Scalar(a.widen(b)),
            (R::CtxVarOff { off: a }, R::CtxVarOff { off: b }) => R::CtxVarOff { off: a.widen(b) },
            (R::Stack { frame: fa, off: a }, R::Stack { frame: fb, off: b }) if fa == fb => {
                R::Stack {
                    frame: *fa,
                    off: a.widen(b),
                }
            }
            (
                R::MapValue {
                    map: ma,
                    off: oa,
                    id: ia,
                    or_null: na,
                },
                R::MapValue {
                    map: mb,
                    off: ob,
                    id: ib,
                    or_null: nb,
                },
            ) if ma == mb && ia == ib && na == nb => R::MapValue {
                map: *ma,
                off: oa.widen(ob),
                id: *ia,
                or_null: *na,
            },
            (
                R::Packet {
                    id: ia,
                    off: oa,
                    fixed: fa,
                    range: ra,
                },
                R::Packet {
                    id: ib,
                    off: ob,
                    fixed: fb,
                    range: rb,
                },
            ) if ia == ib && fa == fb => R::Packet {
                id: *ia,
                off: oa.widen(ob),
                fixed: *fa,
                range: (*ra).min(*rb),
            },
            (R::PacketMeta { off: oa, range: ra }, R::PacketMeta { off: ob, range: rb }) => {
                R::PacketMeta {
                    off: oa.widen(ob),
                    range: (*ra).min(*rb),
                }
            }
            (
                R::Mem {
                    ref_id: ra,
                    size: sa,
                    off: oa,
                    id: ia,
                    or_null: na,
                },
                R::Mem {
                    ref_id: rb,
                    size: sb,
                    off: ob,
                    id: ib,
                    or_null: nb,
                },
            ) if ra == rb && sa == sb && ia == ib && na == nb => R::Mem {
                ref_id: *ra,
                size: *sa,
                off: oa.widen(ob),
                id: *ia,
                or_null: *na,
            },
            (
                R::Heap {
                    trusted: ta,
                    off: oa,
                    start: sa,
                },
                R::Heap {
                    trusted: tb,
                    off: ob,
                    start: sb,
                },
            ) => {
                if *ta && *tb {
                    let start = *sa && *sb;
                    let off = match heap {
                        Some(limit) if start => oa.widen_within(ob, limit),
                        _ => oa.widen(ob),
                    };
                    R::Heap {
                        trusted: true,
                        off,
                        start,
                    }
                } else {
                    R::Heap {
                        trusted: false,
                        off: Scalar::constant(0),
                        start: false,
                    }
                }
            }
            (a, b) if a == b => a.clone(),
            _ => return None,
        })
    }
}

/// Formats a scalar the way the kernel log does: a constant as its value, otherwise
/// `scalar(...)` listing the bounds that say something.
pub fn fmt_scalar(s: &Scalar, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if let Some(v) = s.is_const() {
        let signed = v as i64;
        return if signed < 0 {
            write!(f, "{signed}")
        } else {
            write!(f, "{v}")
        };
    }
    let mut parts = Vec::new();
    if s.smin != i64::MIN {
        parts.push(format!("smin={}", s.smin));
    }
    if s.smax != i64::MAX {
        parts.push(format!("smax={}", s.smax));
    }
    if s.umin != 0 {
        parts.push(format!("umin={}", s.umin));
    }
    if s.umax != u64::MAX {
        parts.push(format!("umax={}", s.umax));
    }
    if s.tnum.mask != u64::MAX {
        parts.push(format!("var_off=({:#x}; {:#x})", s.tnum.value, s.tnum.mask));
    }
    write!(f, "scalar({})", parts.join(","))
}

/// Formats an offset inside a pointer's parentheses: `off=N` for constants, bounds otherwise.
fn fmt_off(s: &Scalar) -> String {
    match s.is_const() {
        Some(v) => format!("off={}", v as i64),
        None => format!("off=({}..{})", s.smin, s.smax),
    }
}

impl fmt::Display for RegState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegState::Uninit => write!(f, "uninit"),
            RegState::Scalar(s) => fmt_scalar(s, f),
            RegState::Ctx { off: 0 } => write!(f, "ctx()"),
            RegState::Ctx { off } => write!(f, "ctx(off={off})"),
            RegState::CtxVarOff { off } => write!(f, "ctx({})", fmt_off(off)),
            RegState::Stack { frame, off } => match off.is_const() {
                Some(v) if *frame == 0 => write!(f, "fp{}", v as i64),
                Some(v) => write!(f, "fp[{frame}]{}", v as i64),
                None => write!(f, "fp[{frame}]({})", fmt_off(off)),
            },
            RegState::MapPtr { map } => write!(f, "map_ptr(map={map})"),
            RegState::MapValue { map, off, id, .. } => {
                write!(f, "{}(", self.type_name())?;
                if *id != 0 {
                    write!(f, "id={id},")?;
                }
                write!(f, "map={map},{})", fmt_off(off))
            }
            RegState::Packet { id, off, range, .. } => {
                write!(f, "pkt(")?;
                if *id != 0 {
                    write!(f, "id={id},")?;
                }
                write!(f, "{},r={range})", fmt_off(off))
            }
            RegState::PacketEnd => write!(f, "pkt_end()"),
            RegState::PacketMeta { off, range } => {
                write!(f, "pkt_meta({},r={range})", fmt_off(off))
            }
            RegState::Mem {
                ref_id,
                size,
                off,
                id,
                ..
            } => {
                write!(f, "{}(", self.type_name())?;
                if *id != 0 {
                    write!(f, "id={id},")?;
                }
                if let Some(r) = ref_id {
                    write!(f, "ref_obj_id={r},")?;
                }
                write!(f, "sz={size},{})", fmt_off(off))
            }
            RegState::Heap {
                trusted: true, off, ..
            } => write!(f, "heap({})", fmt_off(off)),
            RegState::Heap { trusted: false, .. } => write!(f, "heap_untrusted()"),
            RegState::Code { pc } => write!(f, "func(pc={pc})"),
            RegState::HostRef {
                ref_id, kind, id, ..
            } => {
                let name = match kind {
                    ResourceKind::Host(k) => k,
                    ResourceKind::RingbufSample => "ringbuf_sample",
                    ResourceKind::Lock => "lock",
                };
                write!(
                    f,
                    "{}(id={id},ref_obj_id={ref_id},kind={name})",
                    self.type_name()
                )
            }
        }
    }
}
