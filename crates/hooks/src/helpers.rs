//! Helpers that exist only for some program types: packet access for `__sk_buff` types and head /
//! metadata adjustment for XDP. They find their run's state through the context pointer in r1.

use std::sync::Arc;

use kflex_object::ProgType;
use kflex_runtime::helpers::{ArgKind, RegistryError, RetKind};
use kflex_runtime::{Access, HelperCall, HelperDef, HelperError, HelperRegistry, Signature};

use crate::skb;
use crate::state::{self, Shared};
use crate::xdp::{ETH_HLEN, XDP_FRAME_SIZE, metalen_ok};

/// `BPF_FUNC_skb_store_bytes`.
pub const BPF_FUNC_SKB_STORE_BYTES: u32 = 9;
/// `BPF_FUNC_skb_load_bytes`.
pub const BPF_FUNC_SKB_LOAD_BYTES: u32 = 26;
/// `BPF_FUNC_xdp_adjust_head`.
pub const BPF_FUNC_XDP_ADJUST_HEAD: u32 = 44;
/// `BPF_FUNC_xdp_adjust_meta`.
pub const BPF_FUNC_XDP_ADJUST_META: u32 = 54;

/// `BPF_F_RECOMPUTE_CSUM`: accepted; kflex keeps no skb checksum state to recompute.
const BPF_F_RECOMPUTE_CSUM: u64 = 1;
/// `BPF_F_INVALIDATE_HASH`: clears `skb->hash`.
const BPF_F_INVALIDATE_HASH: u64 = 2;

const EACCES: i64 = 13;
const EFAULT: i64 = 14;
const EINVAL: i64 = 22;

fn errno(e: i64) -> u64 {
    (-e) as u64
}

/// The helpers a program type adds on top of the runtime's registry.
pub fn extra_helpers(prog_type: ProgType) -> Vec<HelperDef> {
    match prog_type {
        ProgType::SocketFilter => vec![skb_load_bytes()],
        ProgType::SchedCls | ProgType::SkSkb => vec![skb_load_bytes(), skb_store_bytes()],
        ProgType::Xdp => vec![xdp_adjust_head(), xdp_adjust_meta()],
        ProgType::Syscall => Vec::new(),
    }
}

/// Registers [`extra_helpers`] of `prog_type` in `registry`.
pub fn register_extra_helpers(
    registry: &mut HelperRegistry,
    prog_type: ProgType,
) -> Result<(), RegistryError> {
    extra_helpers(prog_type)
        .into_iter()
        .try_for_each(|def| registry.register(def))
}

fn def(
    id: u32,
    name: &str,
    args: &[ArgKind],
    func: impl Fn(&mut HelperCall<'_>) -> Result<u64, HelperError> + Send + Sync + 'static,
) -> HelperDef {
    HelperDef {
        id,
        name: name.to_string(),
        sig: Signature::new(args, RetKind::Scalar),
        func: Arc::new(func),
    }
}

/// The installed run whose context r1 points to, if its type is one of `types`.
fn run_for(call: &HelperCall<'_>, helper: &str, types: &[ProgType]) -> Result<Shared, HelperError> {
    let bad = |reason: String| HelperError::BadArgument { arg: 1, reason };
    let ctx = call.args[0];
    let run = state::lookup(ctx)
        .ok_or_else(|| bad(format!("{ctx:#x} is not the context of an installed run")))?;
    let prog_type = run.borrow().prog_type;
    if !types.contains(&prog_type) {
        return Err(HelperError::Unavailable(format!(
            "{helper} is not available to {} programs",
            prog_type.name()
        )));
    }
    Ok(run)
}

fn skb_load_bytes() -> HelperDef {
    let args = [
        ArgKind::Ctx,
        ArgKind::Scalar,
        ArgKind::MemWrite { size_arg: 3 },
        ArgKind::MemSize { zero_ok: false },
    ];
    def(
        BPF_FUNC_SKB_LOAD_BYTES,
        "bpf_skb_load_bytes",
        &args,
        |call| {
            let types = [ProgType::SocketFilter, ProgType::SchedCls, ProgType::SkSkb];
            let run = run_for(call, "bpf_skb_load_bytes", &types)?;
            let [_, offset, to, len, _] = call.args;
            let (offset, len) = (offset as u32 as usize, len as u32 as usize);
            // Check the destination first: it bounds `len` by a real region's size.
            call.mem.check(to, len as u64, Access::Write)?;
            let bytes = {
                let s = run.borrow();
                s.packet.as_ref().and_then(|p| {
                    let in_range = offset <= i32::MAX as usize
                        && offset.checked_add(len).is_some_and(|end| end <= p.len());
                    if in_range {
                        p.buf.read(p.data + offset, len)
                    } else {
                        None
                    }
                })
            };
            match bytes {
                Some(b) => {
                    call.mem.write_bytes(to, &b)?;
                    Ok(0)
                }
                None => {
                    // Like Linux, the destination is cleared when the range is outside the packet.
                    call.mem.write_bytes(to, &vec![0; len])?;
                    Ok(errno(EFAULT))
                }
            }
        },
    )
}

fn skb_store_bytes() -> HelperDef {
    let args = [
        ArgKind::Ctx,
        ArgKind::Scalar,
        ArgKind::MemRead { size_arg: 3 },
        ArgKind::MemSize { zero_ok: false },
        ArgKind::Scalar,
    ];
    def(
        BPF_FUNC_SKB_STORE_BYTES,
        "bpf_skb_store_bytes",
        &args,
        |call| {
            let types = [ProgType::SchedCls, ProgType::SkSkb];
            let run = run_for(call, "bpf_skb_store_bytes", &types)?;
            let [_, offset, from, len, flags] = call.args;
            let (offset, len) = (offset as u32 as usize, len as u32 as usize);
            if flags & !(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH) != 0 {
                return Ok(errno(EINVAL));
            }
            let bytes = call.mem.read_bytes(from, len as u64)?;
            let s = run.borrow();
            let Some(p) = s.packet.as_ref() else {
                return Ok(errno(EFAULT));
            };
            let in_range =
                offset <= 0xffff && offset.checked_add(len).is_some_and(|end| end <= p.len());
            if !in_range || !p.buf.write(p.data + offset, &bytes) {
                return Ok(errno(EFAULT));
            }
            if flags & BPF_F_INVALIDATE_HASH != 0 {
                skb::clear_hash(&s);
            }
            Ok(0)
        },
    )
}

/// Checks that the run's packet regions are the ones in `call.mem` before moving them.
fn check_installed(call: &HelperCall<'_>, p: &crate::state::Packet) -> Result<(), HelperError> {
    if p.installed_in(call.mem) {
        Ok(())
    } else {
        Err(HelperError::Unavailable(
            "the packet of this context is not installed in the calling program's memory".into(),
        ))
    }
}

fn xdp_adjust_head() -> HelperDef {
    def(
        BPF_FUNC_XDP_ADJUST_HEAD,
        "bpf_xdp_adjust_head",
        &[ArgKind::Ctx, ArgKind::Scalar],
        |call| {
            let run = run_for(call, "bpf_xdp_adjust_head", &[ProgType::Xdp])?;
            let delta = call.args[1] as i32 as i64;
            let mut s = run.borrow_mut();
            let Some(p) = s.packet.as_mut() else {
                return Ok(errno(EINVAL));
            };
            check_installed(call, p)?;
            let metalen = p.data - p.data_meta;
            let new_data = p.data as i64 + delta;
            let lowest = (XDP_FRAME_SIZE + metalen) as i64;
            let highest = p.data_end as i64 - ETH_HLEN as i64;
            if new_data < lowest || new_data > highest {
                return Ok(errno(EINVAL));
            }
            let new_data = new_data as usize;
            let new_meta = new_data - metalen;
            if metalen > 0 && !p.buf.move_within(p.data_meta, new_meta, metalen) {
                return Ok(errno(EINVAL));
            }
            p.move_bounds(call.mem, new_data, new_meta)?;
            Ok(0)
        },
    )
}

fn xdp_adjust_meta() -> HelperDef {
    def(
        BPF_FUNC_XDP_ADJUST_META,
        "bpf_xdp_adjust_meta",
        &[ArgKind::Ctx, ArgKind::Scalar],
        |call| {
            let run = run_for(call, "bpf_xdp_adjust_meta", &[ProgType::Xdp])?;
            let delta = call.args[1] as i32 as i64;
            let mut s = run.borrow_mut();
            let Some(p) = s.packet.as_mut() else {
                return Ok(errno(EINVAL));
            };
            check_installed(call, p)?;
            let new_meta = p.data_meta as i64 + delta;
            if new_meta < XDP_FRAME_SIZE as i64 || new_meta > p.data as i64 {
                return Ok(errno(EINVAL));
            }
            let new_meta = new_meta as usize;
            if !metalen_ok(p.data - new_meta) {
                return Ok(errno(EACCES));
            }
            let data = p.data;
            p.move_bounds(call.mem, data, new_meta)?;
            Ok(0)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TestRunInput, prepare};
    use kflex_runtime::{ExecEnv, MemoryMap};

    fn call_helper(
        def: &HelperDef,
        args: [u64; 5],
        mem: &mut MemoryMap,
    ) -> Result<u64, HelperError> {
        let mut env = ExecEnv::default();
        let mut call = HelperCall {
            args,
            mem,
            env: &mut env,
        };
        (def.func)(&mut call)
    }

    #[test]
    fn registrations_follow_the_program_type() {
        let ids = |t| extra_helpers(t).iter().map(|d| d.id).collect::<Vec<_>>();
        assert_eq!(ids(ProgType::SocketFilter), vec![26]);
        assert_eq!(ids(ProgType::SchedCls), vec![26, 9]);
        assert_eq!(ids(ProgType::SkSkb), vec![26, 9]);
        assert_eq!(ids(ProgType::Xdp), vec![44, 54]);
        assert!(ids(ProgType::Syscall).is_empty());
        let mut reg = HelperRegistry::empty();
        register_extra_helpers(&mut reg, ProgType::SchedCls).unwrap();
        assert_eq!(reg.get(26).unwrap().name, "bpf_skb_load_bytes");
        assert!(
            register_extra_helpers(&mut reg, ProgType::SchedCls).is_err(),
            "duplicates"
        );
    }

    #[test]
    fn helpers_need_an_installed_context_of_their_type() {
        let mut mem = MemoryMap::new();
        let load = skb_load_bytes();
        let err = call_helper(&load, [0x1234, 0, 0, 4, 0], &mut mem).unwrap_err();
        assert!(
            matches!(err, HelperError::BadArgument { arg: 1, .. }),
            "{err}"
        );

        let input = TestRunInput {
            data_in: vec![0; 20],
            ctx_in: None,
        };
        let mut run = prepare(ProgType::Xdp, &input).unwrap();
        // SAFETY: uninstalled below.
        unsafe { run.install(&mut mem).unwrap() };
        let ctx = run.ctx_address();
        let err = call_helper(&load, [ctx, 0, 0, 4, 0], &mut mem).unwrap_err();
        assert!(matches!(err, HelperError::Unavailable(_)), "{err}");
        // adjust_head against a different memory map than the one the packet is installed in.
        let mut other = MemoryMap::new();
        let err = call_helper(&xdp_adjust_head(), [ctx, 4, 0, 0, 0], &mut other).unwrap_err();
        assert!(matches!(err, HelperError::Unavailable(_)), "{err}");
        run.uninstall(&mut mem);
        // After uninstalling, the context is no longer reachable.
        let err = call_helper(&xdp_adjust_head(), [ctx, 4, 0, 0, 0], &mut mem).unwrap_err();
        assert!(matches!(err, HelperError::BadArgument { .. }), "{err}");
    }

    #[test]
    fn load_bytes_checks_the_destination() {
        let input = TestRunInput {
            data_in: vec![7; 30],
            ctx_in: None,
        };
        let mut run = prepare(ProgType::SchedCls, &input).unwrap();
        let mut mem = MemoryMap::new();
        // SAFETY: uninstalled below.
        unsafe { run.install(&mut mem).unwrap() };
        let ctx = run.ctx_address();
        // Destination not in any region: the call stops the program.
        let err = call_helper(&skb_load_bytes(), [ctx, 0, 0x10, 4, 0], &mut mem).unwrap_err();
        assert!(matches!(err, HelperError::Memory(_)), "{err}");
        // Destination inside the packet itself (overlapping copy) works.
        let data = run.context_access().load(76, 4).unwrap();
        assert!(mem.store(data, 4, 0x0403_0201).is_ok());
        let r = call_helper(&skb_load_bytes(), [ctx, 0, data + 2, 4, 0], &mut mem).unwrap();
        assert_eq!(r, 0);
        assert_eq!(mem.read_bytes(data, 6).unwrap(), vec![1, 2, 1, 2, 3, 4]);
        // Unknown store flags.
        let r = call_helper(&skb_store_bytes(), [ctx, 0, data, 1, 4], &mut mem).unwrap();
        assert_eq!(r as i64, -22);
        run.uninstall(&mut mem);
    }
}
