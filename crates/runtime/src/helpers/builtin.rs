//! The Linux helpers every kflex runtime offers, with Linux numbers, names and typed signatures.

use std::sync::Arc;

use super::map_helpers::{map_delete_elem, map_lookup_elem, map_update_elem};
use super::printk::{self, MAX_ARGS, MAX_OUTPUT};
use super::ringbuf_helpers::{
    ringbuf_discard, ringbuf_output, ringbuf_query, ringbuf_reserve, ringbuf_submit,
};
use super::spin_lock::{spin_lock, spin_unlock};
use super::{
    ArgKind, HelperCall, HelperDef, HelperError, HelperRegistry, ResourceKind, RetKind, Signature,
};
use crate::env::{ktime_get_boot_ns, ktime_get_ns};

/// Linux helper numbers (`enum bpf_func_id`) of the built-in helpers.
pub mod ids {
    /// `bpf_map_lookup_elem`.
    pub const MAP_LOOKUP_ELEM: u32 = 1;
    /// `bpf_map_update_elem`.
    pub const MAP_UPDATE_ELEM: u32 = 2;
    /// `bpf_map_delete_elem`.
    pub const MAP_DELETE_ELEM: u32 = 3;
    /// `bpf_ktime_get_ns`.
    pub const KTIME_GET_NS: u32 = 5;
    /// `bpf_trace_printk`.
    pub const TRACE_PRINTK: u32 = 6;
    /// `bpf_get_prandom_u32`.
    pub const GET_PRANDOM_U32: u32 = 7;
    /// `bpf_get_smp_processor_id`.
    pub const GET_SMP_PROCESSOR_ID: u32 = 8;
    /// `bpf_spin_lock`.
    pub const SPIN_LOCK: u32 = 93;
    /// `bpf_spin_unlock`.
    pub const SPIN_UNLOCK: u32 = 94;
    /// `bpf_ktime_get_boot_ns`.
    pub const KTIME_GET_BOOT_NS: u32 = 125;
    /// `bpf_ringbuf_output`.
    pub const RINGBUF_OUTPUT: u32 = 130;
    /// `bpf_ringbuf_reserve`.
    pub const RINGBUF_RESERVE: u32 = 131;
    /// `bpf_ringbuf_submit`.
    pub const RINGBUF_SUBMIT: u32 = 132;
    /// `bpf_ringbuf_discard`.
    pub const RINGBUF_DISCARD: u32 = 133;
    /// `bpf_ringbuf_query`.
    pub const RINGBUF_QUERY: u32 = 134;
}

type Impl = fn(&mut HelperCall<'_>) -> Result<u64, HelperError>;

fn def(id: u32, name: &str, sig: Signature, f: Impl) -> HelperDef {
    HelperDef {
        id,
        name: name.to_string(),
        sig,
        func: Arc::new(f),
    }
}

/// The built-in helper definitions.
pub fn linux_helpers() -> Vec<HelperDef> {
    use ArgKind::*;
    let scalar = |args: &[ArgKind]| Signature::new(args, RetKind::Scalar);
    let sample = Ref(ResourceKind::RingbufSample);
    vec![
        def(
            ids::MAP_LOOKUP_ELEM,
            "bpf_map_lookup_elem",
            Signature::new(&[MapPtr, MapKey], RetKind::MapValueOrNull),
            map_lookup_elem,
        ),
        def(
            ids::MAP_UPDATE_ELEM,
            "bpf_map_update_elem",
            scalar(&[MapPtr, MapKey, MapValue, Scalar]),
            map_update_elem,
        ),
        def(
            ids::MAP_DELETE_ELEM,
            "bpf_map_delete_elem",
            scalar(&[MapPtr, MapKey]),
            map_delete_elem,
        ),
        def(ids::KTIME_GET_NS, "bpf_ktime_get_ns", scalar(&[]), |_| {
            Ok(ktime_get_ns())
        }),
        def(
            ids::TRACE_PRINTK,
            "bpf_trace_printk",
            scalar(&[
                MemRead { size_arg: 1 },
                MemSize { zero_ok: false },
                Any,
                Any,
                Any,
            ]),
            trace_printk,
        ),
        def(
            ids::GET_PRANDOM_U32,
            "bpf_get_prandom_u32",
            scalar(&[]),
            |c| Ok(c.env.prng.next_u32() as u64),
        ),
        def(
            ids::GET_SMP_PROCESSOR_ID,
            "bpf_get_smp_processor_id",
            scalar(&[]),
            |c| Ok(c.env.cpu as u64),
        ),
        def(
            ids::SPIN_LOCK,
            "bpf_spin_lock",
            Signature::new(&[SpinLock], RetKind::Void).under_lock(),
            spin_lock,
        ),
        def(
            ids::SPIN_UNLOCK,
            "bpf_spin_unlock",
            Signature::new(&[SpinLock], RetKind::Void).under_lock(),
            spin_unlock,
        ),
        def(
            ids::KTIME_GET_BOOT_NS,
            "bpf_ktime_get_boot_ns",
            scalar(&[]),
            |_| Ok(ktime_get_boot_ns()),
        ),
        def(
            ids::RINGBUF_OUTPUT,
            "bpf_ringbuf_output",
            scalar(&[
                MapPtr,
                MemRead { size_arg: 2 },
                MemSize { zero_ok: true },
                Scalar,
            ]),
            ringbuf_output,
        ),
        def(
            ids::RINGBUF_RESERVE,
            "bpf_ringbuf_reserve",
            Signature::new(
                &[MapPtr, ConstScalar, Scalar],
                RetKind::MemOrNull { size_arg: 1 },
            )
            .acquires(ResourceKind::RingbufSample),
            ringbuf_reserve,
        ),
        def(
            ids::RINGBUF_SUBMIT,
            "bpf_ringbuf_submit",
            Signature::new(&[sample, Scalar], RetKind::Void).releases(0),
            ringbuf_submit,
        ),
        def(
            ids::RINGBUF_DISCARD,
            "bpf_ringbuf_discard",
            Signature::new(&[sample, Scalar], RetKind::Void).releases(0),
            ringbuf_discard,
        ),
        def(
            ids::RINGBUF_QUERY,
            "bpf_ringbuf_query",
            scalar(&[MapPtr, Scalar]),
            ringbuf_query,
        ),
    ]
}

impl HelperRegistry {
    /// A registry holding the built-in Linux helpers (see [`linux_helpers`]).
    pub fn linux_default() -> Self {
        let mut r = HelperRegistry::empty();
        for d in linux_helpers() {
            // The built-in signatures are well formed and their numbers distinct (tested).
            let _ = r.register(d);
        }
        r
    }
}

/// Helper 6: formats r1 (r2 bytes, NUL-terminated) with r3..r5 and appends a trace line.
fn trace_printk(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let einval = (-(libc::EINVAL as i64)) as u64;
    let size = call.args[1];
    if size == 0 {
        return Ok(einval);
    }
    let fmt = call.mem.read_bytes(call.args[0], size)?;
    let Some(nul) = fmt.iter().position(|&b| b == 0) else {
        return Ok(einval);
    };
    let args: [u64; MAX_ARGS] = [call.args[2], call.args[3], call.args[4]];
    let Ok(mut out) = printk::format(&fmt[..nul], &args, call.mem) else {
        return Ok(einval);
    };
    let written = out.len() as u64;
    out.truncate(MAX_OUTPUT - 1);
    if out.last() == Some(&b'\n') {
        out.pop();
    }
    call.env
        .emit_trace(String::from_utf8_lossy(&out).into_owned());
    Ok(written)
}
