//! `bpf_spin_lock` (93) and `bpf_spin_unlock` (94): a 4-byte lock word (`struct bpf_spin_lock`) in
//! a map value or in the heap, taken with an atomic compare-and-swap loop.
//!
//! Every lock taken is recorded in the invocation's [`ResourceTracker`](crate::ResourceTracker), so
//! that a lock still held when the extension ends or is cancelled is unlocked by
//! [`ExecEnv::release_all`](crate::ExecEnv::release_all). Unlike Linux (which only allows one lock at
//! a time), an extension may hold several locks at once, as in KFlex; taking a lock the same
//! invocation already holds is reported as an error instead of spinning forever.

use std::sync::atomic::{AtomicU32, Ordering};

use super::{HelperCall, HelperError, ResourceKind};
use crate::memory::{Access, RegionKind};

/// Size of `struct bpf_spin_lock` in bytes.
pub const SPIN_LOCK_SIZE: u64 = 4;

/// Value of a free lock word.
const UNLOCKED: u32 = 0;
/// Value of a held lock word.
const LOCKED: u32 = 1;

/// Busy-wait iterations before yielding the CPU to the lock holder.
const SPINS_BEFORE_YIELD: u32 = 128;

fn bad(reason: String) -> HelperError {
    HelperError::BadArgument { arg: 1, reason }
}

/// Checks that `addr` is a 4-byte aligned, writable lock word inside a map value or the heap, and
/// returns the index of the map whose memory holds it (if it is a map value).
fn check_lock_word(call: &HelperCall<'_>, addr: u64) -> Result<Option<usize>, HelperError> {
    let region = call.mem.check(addr, SPIN_LOCK_SIZE, Access::Write)?;
    let map = match region.kind {
        RegionKind::MapValue(m) => Some(m as usize),
        RegionKind::Heap => None,
        other => {
            return Err(bad(format!(
                "{addr:#x} is in the {other}; a spin lock must be inside a map value or the heap"
            )));
        }
    };
    if !addr.is_multiple_of(SPIN_LOCK_SIZE) {
        return Err(bad(format!(
            "spin lock at {addr:#x} is not {SPIN_LOCK_SIZE}-byte aligned"
        )));
    }
    Ok(map)
}

/// The lock word at `addr` as an atomic.
///
/// # Safety
/// `addr` must have been checked by [`check_lock_word`]: 4-byte aligned, inside a writable region
/// of map or heap memory owned by the invocation's map table, which stays allocated while `'a` lasts.
unsafe fn lock_word<'a>(addr: u64) -> &'a AtomicU32 {
    // SAFETY: the caller guarantees alignment, validity and lifetime (see above); the word is only
    // ever accessed atomically by the lock helpers, and extension loads of it are plain reads of
    // the same memory, as in Linux.
    unsafe { AtomicU32::from_ptr(addr as *mut u32) }
}

/// Helper 93: takes the lock at r1, spinning until it is free.
pub(crate) fn spin_lock(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let addr = call.args[0];
    let map = check_lock_word(call, addr)?;
    if call.env.resources.find(ResourceKind::Lock, addr).is_some() {
        return Err(bad(format!(
            "spin lock at {addr:#x} is already held by this invocation (taking it again would deadlock)"
        )));
    }
    // SAFETY: `check_lock_word` accepted `addr`; the memory belongs to the map table the
    // environment holds for the whole invocation.
    let word = unsafe { lock_word(addr) };
    let mut spins = 0u32;
    while word
        .compare_exchange_weak(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(SPINS_BEFORE_YIELD) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    // The release action keeps the map table (and so the lock word's memory) alive.
    let keep_alive = call.env.maps.clone();
    call.env.resources.acquire(
        ResourceKind::Lock,
        addr,
        map,
        Box::new(move || {
            let _owner = &keep_alive;
            // SAFETY: the word was checked when the lock was taken and its memory is owned by the
            // map table kept alive by `keep_alive` (the heap and map values live as long as it).
            unsafe { lock_word(addr) }.store(UNLOCKED, Ordering::Release);
        }),
    );
    Ok(0)
}

/// Helper 94: releases the lock at r1, which this invocation must hold.
pub(crate) fn spin_unlock(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let addr = call.args[0];
    check_lock_word(call, addr)?;
    if call.env.resources.take(ResourceKind::Lock, addr).is_none() {
        return Err(bad(format!(
            "spin lock at {addr:#x} is not held by this invocation"
        )));
    }
    // SAFETY: `check_lock_word` accepted `addr` and the memory is owned by the environment's maps.
    unsafe { lock_word(addr) }.store(UNLOCKED, Ordering::Release);
    Ok(0)
}
