//! `bpf_ringbuf_output`, `_reserve`, `_submit`, `_discard`, `_query`.

use std::sync::Arc;

use super::map_helpers::{map_arg, map_ref};
use super::{HelperCall, HelperError, ResourceKind};
use crate::maps::{MapTable, RingBuf};
use crate::memory::{Access, AccessError, Region, RegionKind};

fn ringbuf_arg(call: &HelperCall<'_>) -> Result<(Arc<MapTable>, usize, Arc<RingBuf>), HelperError> {
    let (table, index) = map_arg(call, 0)?;
    let rb = table
        .ringbuf(index)
        .cloned()
        .ok_or_else(|| not_a_ringbuf(index))?;
    Ok((table, index, rb))
}

fn not_a_ringbuf(index: usize) -> HelperError {
    HelperError::BadArgument {
        arg: 1,
        reason: format!("map #{index} is not a ring buffer"),
    }
}

/// Helper 130: copies `size` bytes at r2 into a new record (straight from the program's
/// memory, after checking it is readable; the map table is borrowed, not cloned).
pub(crate) fn ringbuf_output(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let (addr, len, flags) = (call.args[1], call.args[2], call.args[3]);
    let (table, index) = map_ref(call, 0)?;
    let rb = table.ringbuf(index).ok_or_else(|| not_a_ringbuf(index))?;
    if len > 0 {
        call.mem.check(addr, len, Access::Read)?;
    }
    // SAFETY: a zero length reads nothing; otherwise the range was just checked to lie inside a
    // registered region, which is readable memory for the whole call (`MemoryMap::insert`).
    Ok(
        match unsafe { rb.output_raw(addr as *const u8, len, flags) } {
            Ok(()) => 0,
            Err(errno) => (-(errno as i64)) as u64,
        },
    )
}

/// Helper 131: reserves r2 bytes; the sample becomes a writable region and an acquired reference.
pub(crate) fn ringbuf_reserve(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let (_, index, rb) = ringbuf_arg(call)?;
    let size = call.args[1];
    let Some(addr) = rb.reserve(size, call.args[2]) else {
        return Ok(0);
    };
    if size > 0 {
        let region = Region {
            start: addr,
            len: size,
            kind: RegionKind::RingbufSample,
            writable: true,
            elements: None,
        };
        if let Err(e) = insert_sample(call, region) {
            rb.commit(addr, true);
            return Err(HelperError::Memory(e));
        }
    }
    let ring = rb.clone();
    call.env.resources.acquire(
        ResourceKind::RingbufSample,
        addr,
        Some(index),
        Box::new(move || {
            ring.commit(addr, true);
        }),
    );
    Ok(addr)
}

/// Registers a sample region, first dropping stale sample regions it overlaps (left over from an
/// earlier invocation whose samples were released without cleaning the memory map: their space has
/// been consumed and reused since).
fn insert_sample(call: &mut HelperCall<'_>, region: Region) -> Result<(), AccessError> {
    let stale: Vec<u64> = call
        .mem
        .regions()
        .iter()
        .filter(|r| {
            r.kind == RegionKind::RingbufSample && r.start < region.end() && region.start < r.end()
        })
        .map(|r| r.start)
        .collect();
    for s in stale {
        call.mem.remove(s);
    }
    // SAFETY: the sample lies inside the ring's data mapping, which is owned by the ring (kept
    // alive by the `MapTable` the environment holds for the invocation), is never referenced by
    // Rust references, and no other producer is handed this range until the consumer passes it.
    unsafe { call.mem.insert(region) }
}

fn commit(call: &mut HelperCall<'_>, discard: bool) -> Result<u64, HelperError> {
    let addr = call.args[0];
    let not_sample = || HelperError::BadArgument {
        arg: 1,
        reason: format!("{addr:#x} is not a reserved ring buffer sample"),
    };
    let held = call
        .env
        .resources
        .take(ResourceKind::RingbufSample, addr)
        .ok_or_else(not_sample)?;
    let rb = held
        .map
        .and_then(|i| call.env.maps.as_ref()?.ringbuf(i).cloned())
        .ok_or_else(not_sample)?;
    call.mem.remove(addr);
    if !rb.commit(addr, discard) {
        return Err(not_sample());
    }
    Ok(0)
}

/// Helper 132: submits the sample at r1.
pub(crate) fn ringbuf_submit(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    commit(call, false)
}

/// Helper 133: discards the sample at r1.
pub(crate) fn ringbuf_discard(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    commit(call, true)
}

/// Helper 134: ring positions and sizes.
pub(crate) fn ringbuf_query(call: &mut HelperCall<'_>) -> Result<u64, HelperError> {
    let (_, _, rb) = ringbuf_arg(call)?;
    Ok(rb.query(call.args[1]))
}
