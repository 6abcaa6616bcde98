//! `bpf_map_lookup_elem`, `bpf_map_update_elem`, `bpf_map_delete_elem`.

use std::sync::Arc;

use super::{HelperCall, HelperError};
use crate::maps::{MapError, MapTable};
use crate::memory::Access;

/// Resolves argument `arg` (0-based) as a map handle: the table and the map's index.
pub(crate) fn map_arg(
    call: &HelperCall<'_>,
    arg: usize,
) -> Result<(Arc<MapTable>, usize), HelperError> {
    let (_, index) = map_ref(call, arg)?;
    let table = call
        .env
        .maps
        .clone()
        .ok_or_else(|| HelperError::BadArgument {
            arg: arg as u8 + 1,
            reason: "this invocation has no maps".into(),
        })?;
    Ok((table, index))
}

/// [`map_arg`] with the table borrowed (no reference-count traffic on the per-call path).
pub(crate) fn map_ref<'c>(
    call: &'c HelperCall<'_>,
    arg: usize,
) -> Result<(&'c MapTable, usize), HelperError> {
    let reg = arg as u8 + 1;
    let value = call.args.get(arg).copied().unwrap_or(0);
    let table = call
        .env
        .maps
        .as_deref()
        .ok_or_else(|| HelperError::BadArgument {
            arg: reg,
            reason: format!("{value:#x} is not a map (this invocation has no maps)"),
        })?;
    let index = table
        .index_of_handle(value)
        .ok_or_else(|| HelperError::BadArgument {
            arg: reg,
            reason: format!("{value:#x} is not a map"),
        })?;
    Ok((table, index))
}

/// Turns a map operation's outcome into r0: 0, `-errno`, or a contract violation for operations the
/// map type does not have.
pub(crate) fn errno_result(r: Result<(), MapError>, arg: u8) -> Result<u64, HelperError> {
    match r {
        Ok(()) => Ok(0),
        Err(e @ MapError::NotSupported { .. }) => Err(HelperError::BadArgument {
            arg,
            reason: e.to_string(),
        }),
        Err(e) => Ok(e.to_r0()),
    }
}

fn sizes(table: &MapTable, index: usize) -> (u64, u64) {
    table
        .spec(index)
        .map(|s| (s.key_size as u64, s.value_size as u64))
        .unwrap_or((0, 0))
}

/// Keys up to this size are copied to the stack, larger ones to the heap.
const INLINE_KEY: usize = 64;

/// Calls `f` with a copy of the `len` bytes at `addr` of extension memory (checked readable),
/// without allocating for keys up to [`INLINE_KEY`] bytes.
fn with_bytes<R>(
    call: &HelperCall<'_>,
    addr: u64,
    len: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<R, HelperError> {
    if len as usize > INLINE_KEY {
        let bytes = call.mem.read_bytes(addr, len)?;
        return Ok(f(&bytes));
    }
    let mut buf = [0u8; INLINE_KEY];
    let dst = &mut buf[..len as usize];
    if len > 0 {
        call.mem.check(addr, len, Access::Read)?;
        // SAFETY: `check` proved `[addr, addr + len)` lies inside a registered region, which
        // `MemoryMap::insert`'s contract guarantees is valid memory; `dst` is a local buffer of
        // exactly `len` bytes that cannot overlap it.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, dst.as_mut_ptr(), dst.len()) };
    }
    Ok(f(dst))
}

/// Helper 1: the address of the value under the key at r2, or NULL.
pub(crate) fn map_lookup_elem(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let (table, index) = map_ref(call, 0)?;
    let (key_size, _) = sizes(table, index);
    let cpu = call.env.cpu;
    match with_bytes(call, call.args[1], key_size, |key| {
        table.prog_lookup(index, key, cpu)
    })? {
        Ok(addr) => Ok(addr.unwrap_or(0)),
        Err(e @ MapError::NotSupported { .. }) => Err(HelperError::BadArgument {
            arg: 1,
            reason: e.to_string(),
        }),
        Err(_) => Ok(0),
    }
}

/// Helper 2: stores the value at r3 under the key at r2 with flags r4.
pub(crate) fn map_update_elem(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let (table, index) = map_ref(call, 0)?;
    let (key_size, value_size) = sizes(table, index);
    let value = call.mem.read_bytes(call.args[2], value_size)?;
    let (flags, cpu) = (call.args[3], call.env.cpu);
    let r = with_bytes(call, call.args[1], key_size, |key| {
        table.prog_update(index, key, &value, flags, cpu)
    })?;
    errno_result(r, 1)
}

/// Helper 3: deletes the element under the key at r2.
pub(crate) fn map_delete_elem(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let (table, index) = map_ref(call, 0)?;
    let (key_size, _) = sizes(table, index);
    let r = with_bytes(call, call.args[1], key_size, |key| {
        table.prog_delete(index, key)
    })?;
    errno_result(r, 1)
}
