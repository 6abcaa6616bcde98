//! `bpf_map_lookup_elem`, `bpf_map_update_elem`, `bpf_map_delete_elem`.

use std::sync::Arc;

use super::{HelperCall, HelperError};
use crate::maps::{MapError, MapTable};

/// Resolves argument `arg` (0-based) as a map handle: the table and the map's index.
pub(crate) fn map_arg(
    call: &HelperCall<'_>,
    arg: usize,
) -> Result<(Arc<MapTable>, usize), HelperError> {
    let reg = arg as u8 + 1;
    let value = call.args.get(arg).copied().unwrap_or(0);
    let table = call
        .env
        .maps
        .clone()
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

/// Helper 1: the address of the value under the key at r2, or NULL.
pub(crate) fn map_lookup_elem(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let (table, index) = map_arg(call, 0)?;
    let (key_size, _) = sizes(&table, index);
    let key = call.mem.read_bytes(call.args[1], key_size)?;
    match table.prog_lookup(index, &key, call.env.cpu) {
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
    let (table, index) = map_arg(call, 0)?;
    let (key_size, value_size) = sizes(&table, index);
    let key = call.mem.read_bytes(call.args[1], key_size)?;
    let value = call.mem.read_bytes(call.args[2], value_size)?;
    let r = table.prog_update(index, &key, &value, call.args[3], call.env.cpu);
    errno_result(r, 1)
}

/// Helper 3: deletes the element under the key at r2.
pub(crate) fn map_delete_elem(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let (table, index) = map_arg(call, 0)?;
    let (key_size, _) = sizes(&table, index);
    let key = call.mem.read_bytes(call.args[1], key_size)?;
    errno_result(table.prog_delete(index, &key), 1)
}
