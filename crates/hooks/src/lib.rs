//! kflex-hooks: the Linux program types kflex runs — their context layouts, the rules for accessing
//! each context field, test-run preparation modelled on `BPF_PROG_TEST_RUN`, and the helpers that
//! exist only for some types.
//!
//! * [`context_layout`] / [`check_ctx_access`]: `struct xdp_md` and `struct __sk_buff` per type,
//!   for the verifier and the context hooks.
//! * [`prepare`]: builds a [`PreparedRun`] (packet and context buffers, their memory regions, the
//!   [`ContextAccess`](kflex_runtime::ContextAccess) hook) from a [`TestRunInput`];
//!   [`PreparedRun::finish`] yields the [`TestRunOutput`]. [`prepare_from`] does the same on
//!   borrowed input, and [`PreparedRun::reset`] turns a run into the one another input would
//!   prepare, in the same buffers where they fit (their regions stay installed), for hosts that
//!   run a program on one input after another.
//! * [`direct`]: which context accesses an engine may serve without the hook (plain image
//!   fields, packet pointers, NULL), as tables per type, and [`PreparedRun::direct_context`].
//! * [`extra_helpers`]: `bpf_skb_load_bytes`, `bpf_skb_store_bytes`, `bpf_xdp_adjust_head`,
//!   `bpf_xdp_adjust_meta`.
//!
//! Test-run semantics follow `net/bpf/test_run.c`; where kflex differs it is because it has no
//! kernel objects behind the context:
//! * no network devices: any `ingress_ifindex`/`ifindex` is accepted (Linux looks the device up),
//!   and `ifindex` 0 or 1 reads as the loopback's 1;
//! * `__sk_buff.sk` always reads as NULL;
//! * as in Linux, `xdp_md.egress_ifindex` cannot be read (only devmap programs, which kflex does
//!   not run, may read it), and a test run's `ctx_in` must leave it 0;
//! * `sk_skb`, which Linux cannot test-run, takes the stream payload as `data_in`;
//! * as in Linux, XDP `data_out` starts at `data_meta` (it includes metadata), `socket_filter`
//!   `data_out` has its Ethernet header zeroed, and `ctx_out` carries only the fields Linux copies
//!   back. `ctx_out` is `Some` for `__sk_buff` types always, for XDP and syscall when `ctx_in` was.
//! * Prog-type helpers find their run through a per-thread table keyed by the context address, so
//!   a run must execute on the thread that installed it.
//!
//! Typical use by an engine (here without one: the context hook is called directly):
//! ```
//! use kflex_hooks::{TestRunInput, prepare};
//! use kflex_object::ProgType;
//! use kflex_runtime::MemoryMap;
//!
//! let frame = vec![0u8; 64];
//! let input = TestRunInput { data_in: frame.clone(), ctx_in: None };
//! let mut run = prepare(ProgType::Xdp, &input).unwrap();
//! let mut mem = MemoryMap::new();
//! // SAFETY: the regions are removed by `uninstall` before `run` is finished.
//! unsafe { run.install(&mut mem).unwrap() };
//! let r1 = run.ctx_address();
//! // An engine runs the program here with r1 = ctx_address(), the hook from
//! // `run.context_access()` and a registry extended with `extra_helpers(ProgType::Xdp)`.
//! let data = run.context_access().load(0, 4).unwrap();
//! let data_end = run.context_access().load(4, 4).unwrap();
//! assert_eq!(data_end - data, 64);
//! mem.store(data, 1, 0xff).unwrap();
//! run.uninstall(&mut mem);
//! let out = run.finish();
//! assert_eq!(out.data_out[0], 0xff);
//! # let _ = r1;
//! ```

#![warn(missing_docs)]

mod buf;
pub mod direct;
mod helpers;
mod layout;
mod run;
mod skb;
mod state;
mod syscall;
mod xdp;

use kflex_object::ProgType;
use kflex_runtime::AccessError;

pub use direct::{DirectContext, DirectKind};
pub use helpers::{
    BPF_FUNC_SKB_LOAD_BYTES, BPF_FUNC_SKB_STORE_BYTES, BPF_FUNC_XDP_ADJUST_HEAD,
    BPF_FUNC_XDP_ADJUST_META, extra_helpers, register_extra_helpers,
};
pub use layout::{
    CtxAccessError, FieldInfo, PointerKind, SK_BUFF_SIZE, SizeRule, XDP_MD_SIZE, check_ctx_access,
    context_layout, context_size,
};
pub use run::PreparedRun;
pub use syscall::MAX_SYSCALL_CTX;
pub use xdp::{
    ETH_HLEN, MAX_PACKET, XDP_FRAME_SIZE, XDP_MAX_METALEN, XDP_PACKET_HEADROOM, XDP_TAILROOM,
};

/// What a test run is given (`data_in` and `ctx_in` of `BPF_PROG_TEST_RUN`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestRunInput {
    /// Packet bytes (an Ethernet frame for `xdp`, `socket_filter`, `sched_cls`; the stream
    /// payload for `sk_skb`; empty for `syscall`).
    pub data_in: Vec<u8>,
    /// Context bytes in the type's UAPI layout (shorter input is zero-extended), if any.
    pub ctx_in: Option<Vec<u8>>,
}

/// What a test run hands back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestRunOutput {
    /// Packet bytes after the run.
    pub data_out: Vec<u8>,
    /// Context after the run, in the type's UAPI layout.
    pub ctx_out: Option<Vec<u8>>,
}

/// Why a run could not be prepared or installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// `data_in` is shorter than the type requires.
    #[error("data_in has {len} bytes, at least {min} are required (an Ethernet header)")]
    PacketTooShort {
        /// Bytes given.
        len: usize,
        /// Bytes required.
        min: usize,
    },
    /// `data_in` is longer than a test run accepts.
    #[error("data_in has {len} bytes, at most {max} are accepted")]
    PacketTooLong {
        /// Bytes given.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// `ctx_in` is longer than the context struct and the excess is not zero.
    #[error(
        "ctx_in has {len} bytes, more than the {max} bytes of the context, and the excess is not zero"
    )]
    CtxTooLong {
        /// Bytes given.
        len: usize,
        /// Size of the context.
        max: usize,
    },
    /// A `ctx_in` field has a value a test run does not accept (Linux: `-EINVAL`).
    #[error("ctx_in field {field}: {reason}")]
    CtxField {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The type takes no packet data but `data_in` is not empty.
    #[error("{prog_type} programs take no data_in")]
    UnexpectedData {
        /// Program type name.
        prog_type: &'static str,
    },
    /// A region could not be inserted into the memory map.
    #[error("cannot install the run's memory: {0}")]
    Region(#[from] AccessError),
    /// [`PreparedRun::install`] was called twice without [`PreparedRun::uninstall`].
    #[error("the run is already installed")]
    AlreadyInstalled,
    /// The calling thread is exiting (its table of installed runs is gone): a run cannot be
    /// installed from a thread-local destructor that runs after it.
    #[error("the thread is exiting: no run can be installed on it any more")]
    ThreadExiting,
    /// An internal invariant failed (a bug in kflex-hooks).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Prepares one invocation of a `prog_type` program on `input`, like `BPF_PROG_TEST_RUN`.
pub fn prepare(prog_type: ProgType, input: &TestRunInput) -> Result<PreparedRun, HookError> {
    prepare_from(prog_type, &input.data_in, input.ctx_in.as_deref())
}

/// [`prepare`] on borrowed input: `data_in` and `ctx_in` as in [`TestRunInput`].
pub fn prepare_from(
    prog_type: ProgType,
    data_in: &[u8],
    ctx_in: Option<&[u8]>,
) -> Result<PreparedRun, HookError> {
    let layout = validate(prog_type, data_in, ctx_in)?;
    let state = fill(layout, data_in, ctx_in, Spare::default());
    Ok(PreparedRun::new(state, ctx_in))
}

/// A checked test-run input of some program type.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Layout {
    Xdp(xdp::Layout),
    Skb(skb::Layout),
    Syscall,
}

impl Layout {
    /// Whether a run state built for this input can keep `packet`'s buffer (at its address).
    /// This is exactly the condition under which the type's `fill` reuses a spare packet:
    /// [`PreparedRun::reset`] uninstalls the packets it will not reuse before they are dropped.
    pub(crate) fn fits_packet(&self, packet: &state::Packet, data_in: &[u8]) -> bool {
        match self {
            Layout::Xdp(l) => packet.buf.len() >= l.buffer_len(),
            Layout::Skb(_) => packet.buf.len() >= data_in.len(),
            Layout::Syscall => false,
        }
    }

    /// Length of the context image a run state built for this input has.
    pub(crate) fn ctx_len(&self, ctx_in: Option<&[u8]>) -> usize {
        match self {
            Layout::Xdp(_) => XDP_MD_SIZE,
            Layout::Skb(_) => SK_BUFF_SIZE,
            Layout::Syscall => ctx_in.map_or(0, <[u8]>::len),
        }
    }
}

/// Checks `data_in` and `ctx_in` for a `prog_type` run, like Linux, without building anything.
pub(crate) fn validate(
    prog_type: ProgType,
    data_in: &[u8],
    ctx_in: Option<&[u8]>,
) -> Result<Layout, HookError> {
    Ok(match prog_type {
        ProgType::Xdp => Layout::Xdp(xdp::validate(data_in, ctx_in)?),
        ProgType::SocketFilter | ProgType::SchedCls | ProgType::SkSkb => {
            Layout::Skb(skb::validate(prog_type, data_in, ctx_in)?)
        }
        ProgType::Syscall => {
            syscall::validate(data_in, ctx_in)?;
            Layout::Syscall
        }
    })
}

/// Builds the run state of a validated input (see [`validate`]), reusing `spare`'s buffers
/// where they fit.
pub(crate) fn fill(
    layout: Layout,
    data_in: &[u8],
    ctx_in: Option<&[u8]>,
    spare: Spare,
) -> state::RunState {
    match layout {
        Layout::Xdp(l) => xdp::fill(l, data_in, ctx_in, spare),
        Layout::Skb(l) => skb::fill(l, data_in, ctx_in, spare),
        Layout::Syscall => syscall::fill(ctx_in, spare),
    }
}

/// Buffers of an earlier run state that building a new one may reuse.
#[derive(Debug, Default)]
pub(crate) struct Spare {
    /// The context image.
    pub ctx: Option<buf::RawBuf>,
    /// The packet (its buffer, pointer cells and installed regions).
    pub packet: Option<state::Packet>,
}

/// Checks `ctx_in` fits a context of `size` bytes like Linux's `bpf_ctx_init`: longer input
/// must be zero past `size`.
pub(crate) fn check_ctx_len(ctx_in: Option<&[u8]>, size: usize) -> Result<(), HookError> {
    if let Some(bytes) = ctx_in
        && bytes
            .get(size..)
            .is_some_and(|tail| tail.iter().any(|&b| b != 0))
    {
        return Err(HookError::CtxTooLong {
            len: bytes.len(),
            max: size,
        });
    }
    Ok(())
}

/// The little-endian `n`-byte field at `off` of a context given as `ctx_in` (zero-extended).
pub(crate) fn ctx_field(ctx_in: &[u8], off: usize, n: usize) -> u64 {
    let mut word = [0u8; 8];
    for (i, w) in word.iter_mut().enumerate().take(n.min(8)) {
        *w = ctx_in.get(off + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(word)
}

/// A context image of `size` bytes initialised from `ctx_in` like Linux's `bpf_ctx_init`
/// (shorter input is zero-extended; the caller checked longer input with [`check_ctx_len`]),
/// in `spare` if it has that length.
pub(crate) fn ctx_image_reusing(
    spare: Option<buf::RawBuf>,
    ctx_in: Option<&[u8]>,
    size: usize,
) -> buf::RawBuf {
    let image = buf::RawBuf::zeroed_reusing(spare, size);
    if let Some(bytes) = ctx_in {
        image.write(0, bytes.get(..bytes.len().min(size)).unwrap_or(&[]));
    }
    image
}
