//! The memory an extension may touch, as a table of regions.
//!
//! Pointers inside extensions are real host addresses. Every region (a stack frame, the context, the
//! packet, a map's values, a ringbuf sample, the heap, test input memory) is registered here with its
//! bounds and permissions; the interpreter and helpers access memory only through [`MemoryMap`], which
//! checks every access against the table first.

use thiserror::Error;

/// What a region is (used in error messages and to route context accesses to the program type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// A stack frame of the running program (frame number).
    Stack(u8),
    /// The program context; loads and stores are routed through a [`ContextAccess`] hook.
    Context,
    /// Packet data (`data` .. `data_end`).
    Packet,
    /// Packet metadata (`data_meta` .. `data`).
    PacketMeta,
    /// Values of a map (index of the map in the runtime instance).
    MapValue(u32),
    /// A reserved, not yet submitted ringbuf sample.
    RingbufSample,
    /// The extension heap (arena).
    Heap,
    /// Plain input memory (test-run or conformance `-- mem`).
    Input,
}

impl RegionKind {
    /// A bit per variant (payloads ignored), for [`MemoryMap`]'s record of kinds present.
    fn bit(self) -> u8 {
        1 << match self {
            RegionKind::Stack(_) => 0,
            RegionKind::Context => 1,
            RegionKind::Packet => 2,
            RegionKind::PacketMeta => 3,
            RegionKind::MapValue(_) => 4,
            RegionKind::RingbufSample => 5,
            RegionKind::Heap => 6,
            RegionKind::Input => 7,
        }
    }
}

impl std::fmt::Display for RegionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegionKind::Stack(n) => write!(f, "stack frame {n}"),
            RegionKind::Context => write!(f, "context"),
            RegionKind::Packet => write!(f, "packet"),
            RegionKind::PacketMeta => write!(f, "packet metadata"),
            RegionKind::MapValue(m) => write!(f, "value of map #{m}"),
            RegionKind::RingbufSample => write!(f, "ringbuf sample"),
            RegionKind::Heap => write!(f, "heap"),
            RegionKind::Input => write!(f, "input memory"),
        }
    }
}

/// Kind of access being checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A load.
    Read,
    /// A store (or the write half of an atomic).
    Write,
}

/// For regions made of equal elements (map values): accesses must stay inside one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elements {
    /// Distance between the starts of two elements.
    pub stride: u64,
    /// Bytes of each element that may be accessed (from its start).
    pub size: u64,
}

/// One accessible range of host memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What the region is.
    pub kind: RegionKind,
    /// Whether stores are allowed.
    pub writable: bool,
    /// Element structure, if accesses must not cross element boundaries.
    pub elements: Option<Elements>,
}

impl Region {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// True if `[addr, addr+len)` lies inside this region (and inside one element, if any).
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        if addr < self.start || end > self.end() {
            return false;
        }
        match self.elements {
            Some(e) if e.stride > 0 => {
                let within = (addr - self.start) % e.stride;
                within + len <= e.size
            }
            _ => true,
        }
    }
}

/// Why an access was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccessError {
    /// No region contains the address.
    #[error("{access:?} of {len} bytes at {addr:#x} is outside every region the program may touch")]
    OutOfBounds {
        /// Address accessed.
        addr: u64,
        /// Size of the access.
        len: u64,
        /// Read or write.
        access: Access,
    },
    /// The address is in a region but the access runs past its end or crosses an element.
    #[error(
        "{access:?} of {len} bytes at {addr:#x} runs past the end of the {kind} at {start:#x} ({region_len} bytes)"
    )]
    PastEnd {
        /// Address accessed.
        addr: u64,
        /// Size of the access.
        len: u64,
        /// Read or write.
        access: Access,
        /// The region hit.
        kind: RegionKind,
        /// Its start.
        start: u64,
        /// Its length.
        region_len: u64,
    },
    /// A store into a read-only region.
    #[error("write of {len} bytes at {addr:#x} into read-only {kind}")]
    ReadOnly {
        /// Address accessed.
        addr: u64,
        /// Size of the access.
        len: u64,
        /// The region hit.
        kind: RegionKind,
    },
    /// Two regions would overlap.
    #[error("region {start:#x}+{len} overlaps an existing region")]
    Overlap {
        /// Start of the new region.
        start: u64,
        /// Its length.
        len: u64,
    },
}

/// Routes context loads and stores through the program type's layout rules.
///
/// The context handed to a program is a UAPI struct (`struct xdp_md`, `struct __sk_buff`, raw bytes for
/// `syscall`); some of its fields are pointers the kernel materialises on load (`data`, `data_end`).
pub trait ContextAccess {
    /// Loads `size` bytes at `offset` into the context, or explains why that access is not allowed.
    fn load(&mut self, offset: u64, size: u8) -> Result<u64, String>;
    /// Stores `size` bytes of `value` at `offset` into the context, or explains why not.
    fn store(&mut self, offset: u64, size: u8, value: u64) -> Result<(), String>;
}

/// Regions room is made for when the first region is inserted.
const INITIAL_REGIONS: usize = 16;

/// The table of regions an invocation may touch.
#[derive(Default, Debug)]
pub struct MemoryMap {
    /// Sorted by start; never overlapping.
    regions: Vec<Region>,
    /// A [`RegionKind::bit`] per variant that may have regions: a clear bit means none (a set
    /// bit may be stale after [`MemoryMap::remove`]).
    kinds: u8,
}

impl MemoryMap {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a region.
    ///
    /// # Safety
    /// `[start, start+len)` must be valid host memory (writable if `writable`) that stays allocated
    /// and is not accessed through Rust references while the region is in the table.
    pub unsafe fn insert(&mut self, region: Region) -> Result<(), AccessError> {
        if self.regions.capacity() == 0 {
            // An invocation typically holds a handful of regions (maps, context, packet, stack
            // frames): allocate once for them instead of growing one region at a time.
            self.regions.reserve(INITIAL_REGIONS);
        }
        let pos = self.regions.partition_point(|r| r.start < region.start);
        let overlaps_prev = pos > 0 && self.regions[pos - 1].end() > region.start;
        let overlaps_next = pos < self.regions.len() && region.end() > self.regions[pos].start;
        if overlaps_prev || overlaps_next || region.start.checked_add(region.len).is_none() {
            return Err(AccessError::Overlap {
                start: region.start,
                len: region.len,
            });
        }
        self.kinds |= region.kind.bit();
        self.regions.insert(pos, region);
        Ok(())
    }

    /// A copy of this table with room for a few more regions (crate-internal: the copy describes
    /// the same memory, so it is valid exactly as long as the original is).
    pub(crate) fn duplicate(&self) -> MemoryMap {
        let mut regions = Vec::with_capacity(self.regions.len() + INITIAL_REGIONS);
        regions.extend_from_slice(&self.regions);
        MemoryMap {
            regions,
            kinds: self.kinds,
        }
    }

    /// Removes the region starting at `start`, returning it.
    pub fn remove(&mut self, start: u64) -> Option<Region> {
        let pos = self
            .regions
            .binary_search_by_key(&start, |r| r.start)
            .ok()?;
        Some(self.regions.remove(pos))
    }

    /// Removes every region of the given kind.
    pub fn remove_kind(&mut self, kind: RegionKind) {
        // Runs after every run of an extension: skip the scan when no such region was added.
        if self.kinds & kind.bit() != 0 {
            self.regions.retain(|r| r.kind != kind);
            // Other regions of the variant (another frame number or map) may remain.
            if !self.regions.iter().any(|r| r.kind.bit() == kind.bit()) {
                self.kinds &= !kind.bit();
            }
        }
    }

    /// All regions, sorted by start.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The region containing `addr`, if any (the access size is not checked).
    pub fn region_at(&self, addr: u64) -> Option<&Region> {
        let pos = self.regions.partition_point(|r| r.start <= addr);
        let r = self.regions.get(pos.checked_sub(1)?)?;
        (addr < r.end()).then_some(r)
    }

    /// Checks an access of `len` bytes at `addr` and returns the region it falls in.
    pub fn check(&self, addr: u64, len: u64, access: Access) -> Result<&Region, AccessError> {
        let Some(r) = self.region_at(addr) else {
            return Err(AccessError::OutOfBounds { addr, len, access });
        };
        if !r.contains(addr, len) {
            return Err(AccessError::PastEnd {
                addr,
                len,
                access,
                kind: r.kind,
                start: r.start,
                region_len: r.len,
            });
        }
        if access == Access::Write && !r.writable {
            return Err(AccessError::ReadOnly {
                addr,
                len,
                kind: r.kind,
            });
        }
        Ok(r)
    }

    /// Loads a little-endian value of 1, 2, 4 or 8 bytes after checking the access.
    /// Context regions are not special-cased here; callers route them to [`ContextAccess`].
    pub fn load(&self, addr: u64, size: u8) -> Result<u64, AccessError> {
        self.check(addr, size as u64, Access::Read)?;
        // SAFETY: `check` proved [addr, addr+size) lies inside a registered region, which `insert`'s
        // contract guarantees is valid, allocated memory; unaligned reads are used.
        unsafe { Ok(raw_load(addr, size)) }
    }

    /// Stores the low `size` bytes of `value` after checking the access.
    pub fn store(&self, addr: u64, size: u8, value: u64) -> Result<(), AccessError> {
        self.check(addr, size as u64, Access::Write)?;
        // SAFETY: `check` proved the range is inside a registered writable region (see `insert`).
        unsafe { raw_store(addr, size, value) };
        Ok(())
    }

    /// Copies `len` bytes out of extension memory after checking the access.
    pub fn read_bytes(&self, addr: u64, len: u64) -> Result<Vec<u8>, AccessError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.check(addr, len, Access::Read)?;
        // SAFETY: the range is inside a registered region (see `insert`); we copy it out.
        let s = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
        Ok(s.to_vec())
    }

    /// Copies `data` into extension memory after checking the access.
    pub fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        if data.is_empty() {
            return Ok(());
        }
        self.check(addr, data.len() as u64, Access::Write)?;
        // SAFETY: the range is inside a registered writable region (see `insert`), and `data` is a
        // Rust slice that cannot overlap extension memory mutably borrowed elsewhere.
        unsafe { std::ptr::copy(data.as_ptr(), addr as *mut u8, data.len()) };
        Ok(())
    }
}

/// Loads `size` (1, 2, 4, 8) bytes at `addr`, zero-extended.
///
/// # Safety
/// `[addr, addr+size)` must be valid readable memory.
pub unsafe fn raw_load(addr: u64, size: u8) -> u64 {
    let p = addr as *const u8;
    // SAFETY: the caller guarantees the range is readable; unaligned reads are explicit.
    unsafe {
        match size {
            1 => p.read() as u64,
            2 => (p as *const u16).read_unaligned() as u64,
            4 => (p as *const u32).read_unaligned() as u64,
            _ => (p as *const u64).read_unaligned(),
        }
    }
}

/// Stores the low `size` (1, 2, 4, 8) bytes of `value` at `addr`.
///
/// # Safety
/// `[addr, addr+size)` must be valid writable memory.
pub unsafe fn raw_store(addr: u64, size: u8, value: u64) {
    let p = addr as *mut u8;
    // SAFETY: the caller guarantees the range is writable; unaligned writes are explicit.
    unsafe {
        match size {
            1 => p.write(value as u8),
            2 => (p as *mut u16).write_unaligned(value as u16),
            4 => (p as *mut u32).write_unaligned(value as u32),
            _ => (p as *mut u64).write_unaligned(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(buf: &[u64], kind: RegionKind) -> Region {
        Region {
            start: buf.as_ptr() as u64,
            len: 8,
            kind,
            writable: false,
            elements: None,
        }
    }

    #[test]
    fn remove_kind_removes_exactly_that_kind_however_often_it_is_called() {
        let bufs = [[0u64; 1]; 4];
        let mut mem = MemoryMap::new();
        let kinds = [
            RegionKind::Stack(0),
            RegionKind::Stack(1),
            RegionKind::RingbufSample,
            RegionKind::Packet,
        ];
        for (b, k) in bufs.iter().zip(kinds) {
            // SAFETY: each region is a live local array, never accessed through the map.
            unsafe { mem.insert(region(b, k)) }.unwrap();
        }
        mem.remove_kind(RegionKind::Stack(0));
        let left: Vec<_> = mem.regions().iter().map(|r| r.kind).collect();
        assert_eq!(left.len(), 3);
        assert!(!left.contains(&RegionKind::Stack(0)));
        // The other frame is still found although a Stack kind was removed before.
        mem.remove_kind(RegionKind::Stack(1));
        mem.remove_kind(RegionKind::RingbufSample);
        mem.remove_kind(RegionKind::RingbufSample);
        let left: Vec<_> = mem.regions().iter().map(|r| r.kind).collect();
        assert_eq!(left, [RegionKind::Packet]);
        // A kind removed once and inserted again is removed again.
        // SAFETY: as above.
        unsafe { mem.insert(region(&bufs[2], RegionKind::RingbufSample)) }.unwrap();
        mem.remove_kind(RegionKind::RingbufSample);
        assert_eq!(mem.regions().len(), 1);
    }
}
