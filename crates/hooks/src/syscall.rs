//! `BPF_PROG_TYPE_SYSCALL`: the context is the caller's raw bytes.

use kflex_object::ProgType;
use kflex_runtime::Access;

use crate::buf::RawBuf;
use crate::layout::check_ctx_access;
use crate::state::RunState;
use crate::{HookError, Spare};

/// Largest syscall context (Linux: `U16_MAX`).
pub const MAX_SYSCALL_CTX: usize = u16::MAX as usize;

/// Checks a syscall test-run input: no packet, a context of at most [`MAX_SYSCALL_CTX`] bytes.
pub(crate) fn validate(data_in: &[u8], ctx_in: Option<&[u8]>) -> Result<(), HookError> {
    if !data_in.is_empty() {
        return Err(HookError::UnexpectedData {
            prog_type: ProgType::Syscall.name(),
        });
    }
    let len = ctx_in.map_or(0, <[u8]>::len);
    if len > MAX_SYSCALL_CTX {
        return Err(HookError::CtxTooLong {
            len,
            max: MAX_SYSCALL_CTX,
        });
    }
    Ok(())
}

/// Builds the run state of a validated input: the context is a copy of `ctx_in` (possibly
/// empty), in `spare`'s context buffer if it has that length.
pub(crate) fn fill(ctx_in: Option<&[u8]>, spare: Spare) -> RunState {
    let bytes = ctx_in.unwrap_or(&[]);
    let ctx = match spare.ctx {
        Some(buf) if buf.len() == bytes.len() => {
            buf.write(0, bytes);
            buf
        }
        _ => RawBuf::from_vec(bytes.to_vec()),
    };
    RunState {
        prog_type: ProgType::Syscall,
        ctx,
        packet: None,
    }
}

fn locate(state: &RunState, offset: u64, size: u8, access: Access) -> Result<usize, String> {
    check_ctx_access(ProgType::Syscall, offset, size, access).map_err(|e| e.to_string())?;
    let len = state.ctx.len() as u64;
    if offset
        .checked_add(u64::from(size))
        .is_none_or(|end| end > len)
    {
        return Err(format!(
            "syscall: {size}-byte access at offset {offset} is outside the {len}-byte context"
        ));
    }
    Ok(offset as usize)
}

/// A load of any aligned size inside the context.
pub(crate) fn load(state: &RunState, offset: u64, size: u8) -> Result<u64, String> {
    let o = locate(state, offset, size, Access::Read)?;
    state
        .ctx
        .load_le(o, size as usize)
        .ok_or_else(|| format!("syscall: offset {offset} outside the context"))
}

/// A store of any aligned size inside the context.
pub(crate) fn store(state: &RunState, offset: u64, size: u8, value: u64) -> Result<(), String> {
    let o = locate(state, offset, size, Access::Write)?;
    if state.ctx.store_le(o, size as usize, value) {
        Ok(())
    } else {
        Err(format!("syscall: offset {offset} outside the context"))
    }
}
