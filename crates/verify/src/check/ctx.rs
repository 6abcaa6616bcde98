//! Context accesses: allowed offsets, sizes and directions per program type (through
//! `kflex_hooks::check_ctx_access`), and the pointer kinds some fields produce (`data` gives a
//! packet pointer, `data_end` the packet end, `data_meta` the metadata pointer).

use kflex_hooks::PointerKind;
use kflex_runtime::memory::Access as Dir;

use super::mem::{Access, Site, loaded};
use super::{CheckResult, Cx};
use crate::domains::Scalar;
use crate::state::{RegState, State};
use crate::{CtxAccess, hints};

/// A load from or store to the context through a context pointer at offset `ctx_off`.
pub fn access(
    cx: &mut Cx<'_>,
    state: &mut State,
    site: Site,
    ctx_off: i32,
    acc: &Access,
) -> CheckResult<RegState> {
    if ctx_off != 0 {
        return Err(cx.error(
            site.pc,
            state,
            format!(
                "dereference of modified ctx ptr R{} off={ctx_off} disallowed",
                site.base
            ),
            "access context fields through the original context pointer with a constant offset \
             (`ctx->field`), not through a moved copy",
        ));
    }
    let write = match acc {
        Access::Read { .. } => false,
        Access::Write(v) => {
            // Heap addresses are shared with user space by design (Linux treats arena
            // addresses as scalars), so a `syscall` program may report one in its context.
            if v.is_pointer() && !matches!(v, RegState::Heap { .. }) {
                return Err(cx.error(
                    site.pc,
                    state,
                    format!("R{} leaks addr into ctx", site.base),
                    "store only scalars into context fields",
                ));
            }
            true
        }
        Access::Atomic(_) => {
            return Err(cx.error(
                site.pc,
                state,
                format!("BPF_ATOMIC stores into R{} ctx is not allowed", site.base),
                "load the field, update it and store it back",
            ));
        }
    };
    let offset = i64::from(site.off);
    let field = u64::try_from(offset)
        .map_err(|_| format!("{}-byte access at negative offset {offset}", site.size))
        .and_then(|off| {
            kflex_hooks::check_ctx_access(
                cx.input.prog_type,
                off,
                site.size,
                if write { Dir::Write } else { Dir::Read },
            )
            .map_err(|e| e.what)
        });
    let field = match field {
        Ok(f) => f,
        Err(what) => {
            return Err(cx.error(
                site.pc,
                state,
                format!(
                    "invalid bpf_context access off={offset} size={}: {what}",
                    site.size
                ),
                hints::invalid_ctx_field(cx.input.prog_type),
            ));
        }
    };
    cx.facts.ctx_access(
        site.pc,
        CtxAccess {
            offset: offset as u32,
            size: site.size,
            write,
        },
    );
    if write {
        return Ok(RegState::unknown());
    }
    Ok(match field.and_then(|f| f.pointer) {
        Some(PointerKind::Packet) => RegState::Packet {
            id: 0,
            off: Scalar::constant(0),
            fixed: 0,
            range: 0,
        },
        Some(PointerKind::PacketEnd) => RegState::PacketEnd,
        Some(PointerKind::PacketMeta) => RegState::PacketMeta {
            off: Scalar::constant(0),
            range: 0,
        },
        // kflex has no socket objects behind the context: the field reads as NULL.
        Some(PointerKind::SockCommonOrNull) => RegState::constant(0),
        None => loaded(site, acc),
    })
}

/// The error for an access through (or a helper use of) a context pointer `reg` whose offset
/// `off` is not a constant.
pub fn variable_offset(
    cx: &Cx<'_>,
    state: &State,
    pc: usize,
    reg: u8,
    off: &Scalar,
) -> Box<crate::VerifyError> {
    let range = match (off.smin, off.smax) {
        (lo, hi) if lo == i64::MIN && hi == i64::MAX => "of unknown value".to_string(),
        (lo, hi) => format!("in {lo}..={hi}"),
    };
    cx.error(
        pc,
        state,
        format!(
            "variable ctx access var_off=({:#x}; {:#x}) disallowed: the context can only be \
             accessed at a constant offset; R{reg} has a variable offset {range}",
            off.tnum.value, off.tnum.mask
        ),
        "context fields are translated one by one at load time, so the offset must be a \
         constant: read the field with `ctx->field` (or a switch over the fields you need), and \
         use the variable to index packet, stack or map memory instead",
    )
}
