//! Direct map helpers: `bpf_map_lookup_elem`, `bpf_map_update_elem` and `bpf_map_delete_elem`
//! served without the helper registry.
//!
//! For a verified program the verifier has already proved that the key (and value) pointers of
//! these calls address `key_size` (and `value_size`) readable bytes of the named map, so the
//! run's environment may let the helper trampoline call the map table directly: no registry
//! look-up, no `HelperCall`, no memory-map check of the arguments, no copy of the key
//! ([`crate::JitEnv::trust_map_helper_pointers`]). Results are those of the registry's helpers
//! (`kflex_runtime::helpers`); anything unusual (no maps, a value that is not a map handle, an
//! operation the map type does not have) is left to the registry path, which reports it.

use kflex_runtime::ExecEnv;
use kflex_runtime::maps::MapError;

/// Linux helper numbers served here.
const MAP_LOOKUP_ELEM: u64 = 1;
const MAP_UPDATE_ELEM: u64 = 2;
const MAP_DELETE_ELEM: u64 = 3;

/// r0 of map helper `id` with arguments `args` (r1..r5), or `None` when the registry path must
/// serve the call.
///
/// # Safety
/// `args[1]` (and for updates `args[2]`) must address the map's key (value) size in readable
/// bytes whenever `args[0]` is a handle of `env`'s map table, as the verifier proves for
/// verified programs.
pub(crate) unsafe fn call(id: u64, args: &[u64; 5], env: &ExecEnv) -> Option<u64> {
    if !matches!(id, MAP_LOOKUP_ELEM..=MAP_DELETE_ELEM) {
        return None;
    }
    let table = env.maps.as_deref()?;
    let index = table.index_of_handle(args[0])?;
    let spec = table.spec(index)?;
    // SAFETY: the caller guarantees the key pointer addresses `key_size` readable bytes.
    let key = unsafe { std::slice::from_raw_parts(args[1] as *const u8, spec.key_size as usize) };
    let errno = |r: Result<(), MapError>| match r {
        Ok(()) => Some(0),
        Err(MapError::NotSupported { .. }) => None,
        Err(e) => Some(e.to_r0()),
    };
    match id {
        MAP_LOOKUP_ELEM => match table.prog_lookup(index, key, env.cpu) {
            Ok(addr) => Some(addr.unwrap_or(0)),
            Err(MapError::NotSupported { .. }) => None,
            Err(_) => Some(0),
        },
        MAP_UPDATE_ELEM => {
            // SAFETY: the caller guarantees the value pointer addresses `value_size` bytes.
            let value = unsafe {
                std::slice::from_raw_parts(args[2] as *const u8, spec.value_size as usize)
            };
            errno(table.prog_update(index, key, value, args[3], env.cpu))
        }
        _ => errno(table.prog_delete(index, key)),
    }
}
