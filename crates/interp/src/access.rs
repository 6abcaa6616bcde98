//! Checked memory accesses of the running program, with context routing and real atomics.
//!
//! Every access is first checked against the [`MemoryMap`]. An access that falls in a
//! [`RegionKind::Context`] region is handed to the program type's [`ContextAccess`] hook (with the
//! offset from the region start) when one is installed: the hook owns the context layout, so for
//! context stores the region only bounds the access and the hook decides which fields are
//! writable. Without a hook the context is plain memory with the region's own permissions.
//!
//! Atomic operations use the host's atomic instructions, so extension memory shared with other
//! threads (the heap, map values) behaves as it does in the kernel. They must be aligned to their
//! size and are never allowed on the context.

use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};

use kflex_isa::decode::AtomicOp;
use kflex_runtime::memory::{raw_load, raw_store};
use kflex_runtime::{Access, AccessError, ContextAccess, MemoryMap, RegionKind};

use crate::fault::FaultKind;

/// The context hook of a run, if any.
pub(crate) type Ctx<'c> = Option<&'c mut dyn ContextAccess>;

/// Loads `size` (1, 2, 4, 8) bytes at `addr`, zero-extended.
#[inline]
pub(crate) fn load(mem: &MemoryMap, ctx: Ctx<'_>, addr: u64, size: u8) -> Result<u64, FaultKind> {
    let region = mem.check(addr, u64::from(size), Access::Read)?;
    if region.kind == RegionKind::Context
        && let Some(ctx) = ctx
    {
        let offset = addr - region.start;
        return ctx.load(offset, size).map_err(|reason| FaultKind::Context {
            offset,
            size,
            reason,
        });
    }
    // SAFETY: `check` proved `[addr, addr + size)` lies inside a registered region, which the
    // memory map's insertion contract guarantees is valid, allocated memory.
    Ok(unsafe { raw_load(addr, size) })
}

/// Stores the low `size` (1, 2, 4, 8) bytes of `value` at `addr`.
#[inline]
pub(crate) fn store(
    mem: &MemoryMap,
    ctx: Ctx<'_>,
    addr: u64,
    size: u8,
    value: u64,
) -> Result<(), FaultKind> {
    if let Some(ctx) = ctx
        && let Some(offset) = context_offset(mem, addr, size, Access::Write)?
    {
        return ctx
            .store(offset, size, value)
            .map_err(|reason| FaultKind::Context {
                offset,
                size,
                reason,
            });
    }
    mem.check(addr, u64::from(size), Access::Write)?;
    // SAFETY: `check` proved `[addr, addr + size)` lies inside a registered writable region
    // (valid memory by the memory map's insertion contract).
    unsafe { raw_store(addr, size, value) };
    Ok(())
}

/// If `[addr, addr + size)` starts in a context region, checks that it stays inside it and
/// returns its offset; `None` if the address is not in a context region.
fn context_offset(
    mem: &MemoryMap,
    addr: u64,
    size: u8,
    access: Access,
) -> Result<Option<u64>, FaultKind> {
    let Some(region) = mem.region_at(addr) else {
        return Ok(None);
    };
    if region.kind != RegionKind::Context {
        return Ok(None);
    }
    let len = u64::from(size);
    if !region.contains(addr, len) {
        return Err(FaultKind::Memory(AccessError::PastEnd {
            addr,
            len,
            access,
            kind: region.kind,
            start: region.start,
            region_len: region.len,
        }));
    }
    Ok(Some(addr - region.start))
}

/// Checks an atomic access: inside a writable, non-context region and aligned to its size.
fn check_atomic(mem: &MemoryMap, addr: u64, size: u8) -> Result<(), FaultKind> {
    let len = u64::from(size);
    let region = mem.check(addr, len, Access::Read)?;
    if region.kind == RegionKind::Context {
        return Err(FaultKind::AtomicOnContext {
            offset: addr - region.start,
        });
    }
    if !region.writable {
        return Err(FaultKind::Memory(AccessError::ReadOnly {
            addr,
            len,
            kind: region.kind,
        }));
    }
    if !addr.is_multiple_of(u64::from(size)) {
        return Err(FaultKind::MisalignedAtomic { addr, size });
    }
    Ok(())
}

/// Performs an atomic read-modify-write of 4 or 8 bytes at `addr` and returns the old value
/// (zero-extended). `src` is the operand, `expected` the comparand of `Cmpxchg` (r0); 32-bit
/// operations use the low halves.
pub(crate) fn atomic_rmw(
    mem: &MemoryMap,
    addr: u64,
    size: u8,
    op: AtomicOp,
    src: u64,
    expected: u64,
) -> Result<u64, FaultKind> {
    check_atomic(mem, addr, size)?;
    let order = Ordering::SeqCst;
    if size == 8 {
        // SAFETY: `check_atomic` proved 8 bytes at `addr` lie in a registered writable region
        // (valid memory) and that `addr` is 8-aligned; extension memory is only ever accessed
        // through raw pointers, so no Rust reference aliases it.
        let a = unsafe { AtomicU64::from_ptr(addr as *mut u64) };
        Ok(match op {
            AtomicOp::Add => a.fetch_add(src, order),
            AtomicOp::Or => a.fetch_or(src, order),
            AtomicOp::And => a.fetch_and(src, order),
            AtomicOp::Xor => a.fetch_xor(src, order),
            AtomicOp::Xchg => a.swap(src, order),
            AtomicOp::Cmpxchg => a
                .compare_exchange(expected, src, order, order)
                .unwrap_or_else(|old| old),
        })
    } else {
        let (src, expected) = (src as u32, expected as u32);
        // SAFETY: as above, for 4 bytes at a 4-aligned address.
        let a = unsafe { AtomicU32::from_ptr(addr as *mut u32) };
        let old = match op {
            AtomicOp::Add => a.fetch_add(src, order),
            AtomicOp::Or => a.fetch_or(src, order),
            AtomicOp::And => a.fetch_and(src, order),
            AtomicOp::Xor => a.fetch_xor(src, order),
            AtomicOp::Xchg => a.swap(src, order),
            AtomicOp::Cmpxchg => a
                .compare_exchange(expected, src, order, order)
                .unwrap_or_else(|old| old),
        };
        Ok(u64::from(old))
    }
}

/// Load-acquire of `size` bytes at `addr` (zero-extended). On the context it is an ordinary
/// context load.
pub(crate) fn load_acquire(
    mem: &MemoryMap,
    ctx: Ctx<'_>,
    addr: u64,
    size: u8,
) -> Result<u64, FaultKind> {
    let region = mem.check(addr, u64::from(size), Access::Read)?;
    if region.kind == RegionKind::Context {
        return load(mem, ctx, addr, size);
    }
    if !addr.is_multiple_of(u64::from(size)) {
        return Err(FaultKind::MisalignedAtomic { addr, size });
    }
    let order = Ordering::Acquire;
    // SAFETY (all arms): `check` proved `size` bytes at `addr` lie in a registered region (valid
    // memory), the address is aligned to `size`, and extension memory is only accessed through
    // raw pointers.
    Ok(unsafe {
        match size {
            1 => u64::from(AtomicU8::from_ptr(addr as *mut u8).load(order)),
            2 => u64::from(AtomicU16::from_ptr(addr as *mut u16).load(order)),
            4 => u64::from(AtomicU32::from_ptr(addr as *mut u32).load(order)),
            _ => AtomicU64::from_ptr(addr as *mut u64).load(order),
        }
    })
}

/// Store-release of the low `size` bytes of `value` at `addr`. On the context it is an ordinary
/// context store.
pub(crate) fn store_release(
    mem: &MemoryMap,
    ctx: Ctx<'_>,
    addr: u64,
    size: u8,
    value: u64,
) -> Result<(), FaultKind> {
    if context_offset(mem, addr, size, Access::Write)?.is_some() {
        return store(mem, ctx, addr, size, value);
    }
    mem.check(addr, u64::from(size), Access::Write)?;
    if !addr.is_multiple_of(u64::from(size)) {
        return Err(FaultKind::MisalignedAtomic { addr, size });
    }
    let order = Ordering::Release;
    // SAFETY (all arms): `check` proved `size` bytes at `addr` lie in a registered writable
    // region (valid memory), the address is aligned to `size`, and extension memory is only
    // accessed through raw pointers.
    unsafe {
        match size {
            1 => AtomicU8::from_ptr(addr as *mut u8).store(value as u8, order),
            2 => AtomicU16::from_ptr(addr as *mut u16).store(value as u16, order),
            4 => AtomicU32::from_ptr(addr as *mut u32).store(value as u32, order),
            _ => AtomicU64::from_ptr(addr as *mut u64).store(value, order),
        }
    }
    Ok(())
}
