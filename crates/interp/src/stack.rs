//! Stack frames of one run: one zeroed buffer holding every frame, each frame registered in the
//! memory map only while it is live.
//!
//! Layout (addresses grow to the right): `[gap][frame n-1][gap] ... [frame 1][gap][frame 0][gap]`.
//! Every frame is flanked by unregistered gaps of [`STACK_SIZE`] bytes and deeper frames lie at
//! lower addresses, so an access that runs off the running frame (below `r10 - 512` or at or above
//! `r10`) never lands in another registered frame: it faults like any other out-of-region access.

use kflex_runtime::{MemoryMap, Region, RegionKind};

use crate::fault::FaultKind;

/// Bytes of stack per frame (Linux `MAX_BPF_STACK`).
pub const STACK_SIZE: usize = 512;

/// Distance between the starts of two consecutive frames (frame plus guard gap).
const STRIDE: usize = 2 * STACK_SIZE;

/// The stack buffer of one run.
///
/// Frames are pushed and popped strictly in order; `live` counts the frames currently
/// registered in the memory map. If the buffer is dropped while frames are still registered (a
/// helper panicked and the run unwound), the allocation is leaked instead of freed so the memory
/// map never refers to freed memory.
pub(crate) struct StackBuffer {
    base: *mut u8,
    total: usize,
    frames: usize,
    live: usize,
}

impl StackBuffer {
    /// Allocates room for `frames` frames (at least one).
    pub(crate) fn new(frames: usize) -> Self {
        let frames = frames.max(1);
        let total = frames * STRIDE + STACK_SIZE;
        let buf: Box<[u8]> = vec![0u8; total].into_boxed_slice();
        StackBuffer {
            base: Box::into_raw(buf).cast::<u8>(),
            total,
            frames,
            live: 0,
        }
    }

    fn frame_start(&self, frame: usize) -> u64 {
        let slot = self.frames - 1 - frame;
        self.base as u64 + (STACK_SIZE + slot * STRIDE) as u64
    }

    /// Registers the next frame and returns its top address (the frame's `r10`).
    pub(crate) fn push(&mut self, mem: &mut MemoryMap) -> Result<u64, FaultKind> {
        let frame = self.live;
        let limit = self.frames;
        let kind = u8::try_from(frame)
            .ok()
            .filter(|_| frame < limit)
            .map(RegionKind::Stack)
            .ok_or(FaultKind::CallDepth { limit })?;
        let start = self.frame_start(frame);
        let region = Region {
            start,
            len: STACK_SIZE as u64,
            kind,
            writable: true,
            elements: None,
        };
        // SAFETY: `[start, start + STACK_SIZE)` lies inside the buffer this value owns (frame <
        // self.frames), which stays allocated until every frame is unregistered (see `Drop`), and
        // the buffer is only ever accessed through raw pointers, never through Rust references.
        unsafe { mem.insert(region) }.map_err(|error| FaultKind::StackSetup { frame, error })?;
        self.live += 1;
        Ok(start + STACK_SIZE as u64)
    }

    /// Unregisters the most recently pushed frame.
    pub(crate) fn pop(&mut self, mem: &mut MemoryMap) {
        if let Some(frame) = self.live.checked_sub(1) {
            mem.remove(self.frame_start(frame));
            self.live = frame;
        }
    }

    /// Unregisters every live frame.
    pub(crate) fn pop_all(&mut self, mem: &mut MemoryMap) {
        while self.live > 0 {
            self.pop(mem);
        }
    }
}

impl Drop for StackBuffer {
    fn drop(&mut self) {
        if self.live != 0 {
            // Regions still point into the buffer: leak it rather than leave them dangling.
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(self.base, self.total);
        // SAFETY: `base`/`total` came from `Box::into_raw` of a `Box<[u8]>` of exactly `total`
        // bytes in `new`, it is freed only here, and no region refers to it any more.
        drop(unsafe { Box::from_raw(slice) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_runtime::Access;

    #[test]
    fn frames_are_registered_and_removed_in_order() {
        let mut mem = MemoryMap::new();
        let mut stack = StackBuffer::new(3);
        let top0 = stack.push(&mut mem).unwrap();
        let top1 = stack.push(&mut mem).unwrap();
        assert_eq!(mem.regions().len(), 2);
        assert!(top1 < top0, "deeper frames lie at lower addresses");
        assert_eq!(mem.region_at(top0 - 1).unwrap().kind, RegionKind::Stack(0));
        assert_eq!(mem.region_at(top1 - 1).unwrap().kind, RegionKind::Stack(1));
        // Just past either frame is a gap.
        assert!(mem.check(top1, 1, Access::Read).is_err());
        assert!(mem.check(top1 - 513, 1, Access::Read).is_err());
        assert!(mem.check(top0, 1, Access::Read).is_err());
        mem.store(top1 - 8, 8, 0x1122).unwrap();
        assert_eq!(mem.load(top1 - 8, 8).unwrap(), 0x1122);
        stack.pop(&mut mem);
        assert_eq!(mem.regions().len(), 1);
        assert!(mem.check(top1 - 8, 8, Access::Read).is_err());
        stack.pop_all(&mut mem);
        assert!(mem.regions().is_empty());
    }

    #[test]
    fn pushing_past_capacity_is_a_depth_fault() {
        let mut mem = MemoryMap::new();
        let mut stack = StackBuffer::new(2);
        stack.push(&mut mem).unwrap();
        stack.push(&mut mem).unwrap();
        assert_eq!(stack.push(&mut mem), Err(FaultKind::CallDepth { limit: 2 }));
        stack.pop_all(&mut mem);
    }

    #[test]
    fn frames_start_zeroed() {
        let mut mem = MemoryMap::new();
        let mut stack = StackBuffer::new(1);
        let top = stack.push(&mut mem).unwrap();
        let bytes = mem
            .read_bytes(top - STACK_SIZE as u64, STACK_SIZE as u64)
            .unwrap();
        assert!(bytes.iter().all(|&b| b == 0));
        stack.pop_all(&mut mem);
    }
}
