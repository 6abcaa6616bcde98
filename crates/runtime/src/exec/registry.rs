//! The process-wide table of extension code ranges the fault handler consults.
//!
//! Entries are `(start, end, landing pad)` triples in a fixed array of slots. Writers (compiling
//! and dropping programs) are serialised by a mutex; the reader (the signal handler) takes no
//! lock and allocates nothing: every slot carries a sequence number that is odd while the slot is
//! being rewritten, and a reader that sees an odd or changed sequence number skips the slot. A
//! skipped slot can only belong to code being registered or unregistered, which cannot be the
//! code that is running.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering, fence};

use thiserror::Error;

/// Most code ranges registered at once.
pub const CAPACITY: usize = 4096;

/// Why a code range could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    /// `start..start+len` is empty, wraps around, or the landing pad lies outside it.
    #[error("invalid code range {start:#x}+{len:#x} with landing pad {landing_pad:#x}")]
    InvalidRange {
        /// First code byte.
        start: usize,
        /// Length in bytes.
        len: usize,
        /// Landing pad address.
        landing_pad: usize,
    },
    /// All [`CAPACITY`] slots are in use.
    #[error("extension code registry is full ({CAPACITY} ranges)")]
    Full,
}

struct Slot {
    seq: AtomicUsize,
    start: AtomicUsize,
    end: AtomicUsize,
    pad: AtomicUsize,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            seq: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            pad: AtomicUsize::new(0),
        }
    }

    /// Rewrites the slot under the writer lock (seqlock write side).
    fn write(&self, start: usize, end: usize, pad: usize) {
        self.seq.fetch_add(1, Ordering::AcqRel);
        fence(Ordering::Release);
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.pad.store(pad, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
    }
}

static SLOTS: [Slot; CAPACITY] = [const { Slot::new() }; CAPACITY];
/// Slots `0..USED` have been handed out at least once.
static USED: AtomicUsize = AtomicUsize::new(0);
static WRITER: Mutex<()> = Mutex::new(());

/// A registered code range; unregistered on drop.
#[derive(Debug)]
pub struct CodeRange {
    slot: usize,
    start: usize,
    end: usize,
}

impl CodeRange {
    /// The registered addresses.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// Registers `start..start+len` as extension code whose faults resume at `landing_pad`.
pub fn register(start: usize, len: usize, landing_pad: usize) -> Result<CodeRange, RegistryError> {
    let invalid = RegistryError::InvalidRange {
        start,
        len,
        landing_pad,
    };
    let end = start.checked_add(len).ok_or(invalid.clone())?;
    if start == 0 || len == 0 || !(start..end).contains(&landing_pad) {
        return Err(invalid);
    }
    let _w = WRITER.lock().unwrap_or_else(|p| p.into_inner());
    let used = USED.load(Ordering::Relaxed);
    let slot = match (0..used).find(|&i| SLOTS[i].start.load(Ordering::Relaxed) == 0) {
        Some(i) => i,
        None if used < CAPACITY => used,
        None => return Err(RegistryError::Full),
    };
    SLOTS[slot].write(start, end, landing_pad);
    if slot == used {
        USED.store(used + 1, Ordering::Release);
    }
    Ok(CodeRange { slot, start, end })
}

impl Drop for CodeRange {
    fn drop(&mut self) {
        let _w = WRITER.lock().unwrap_or_else(|p| p.into_inner());
        SLOTS[self.slot].write(0, 0, 0);
    }
}

/// The landing pad of the registered range containing `pc`, if any. Async-signal-safe: no
/// locks, no allocation, bounded time.
pub fn lookup(pc: usize) -> Option<usize> {
    if pc == 0 {
        return None;
    }
    let used = USED.load(Ordering::Acquire).min(CAPACITY);
    SLOTS.iter().take(used).find_map(|slot| {
        let seq = slot.seq.load(Ordering::Acquire);
        if seq % 2 == 1 {
            return None;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let end = slot.end.load(Ordering::Relaxed);
        let pad = slot.pad.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != seq || start == 0 {
            return None;
        }
        (start..end).contains(&pc).then_some(pad)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_ranges_are_found_until_dropped() {
        let a = register(0x10_0000, 0x100, 0x10_0080).unwrap();
        let b = register(0x20_0000, 0x10, 0x20_0000).unwrap();
        assert_eq!(lookup(0x10_0000), Some(0x10_0080));
        assert_eq!(lookup(0x10_00ff), Some(0x10_0080));
        assert_eq!(lookup(0x10_0100), None, "end is exclusive");
        assert_eq!(lookup(0x20_0008), Some(0x20_0000));
        assert_eq!(a.range(), 0x10_0000..0x10_0100);
        drop(a);
        assert_eq!(lookup(0x10_0000), None);
        assert_eq!(lookup(0x20_0008), Some(0x20_0000));
        drop(b);
        assert_eq!(lookup(0x20_0008), None);
    }

    #[test]
    fn freed_slots_are_reused() {
        for _ in 0..3 * CAPACITY {
            let r = register(0x30_0000, 8, 0x30_0000).unwrap();
            assert_eq!(lookup(0x30_0004), Some(0x30_0000));
            drop(r);
        }
        assert!(USED.load(Ordering::Relaxed) < CAPACITY);
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        assert!(register(0, 8, 0).is_err());
        assert!(register(0x1000, 0, 0x1000).is_err());
        assert!(register(usize::MAX - 2, 8, usize::MAX - 1).is_err());
        assert!(register(0x1000, 8, 0x2000).is_err(), "pad outside");
    }
}
