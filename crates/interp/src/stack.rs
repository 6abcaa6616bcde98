//! Stack frames of one run: one buffer holding every frame, each frame registered in the memory
//! map only while it is live.
//!
//! Layout (addresses grow to the right): `[gap][frame n-1][gap] ... [frame 1][gap][frame 0][gap]`.
//! Every frame is flanked by unregistered gaps of [`STACK_SIZE`] bytes and deeper frames lie at
//! lower addresses, so an access that runs off the running frame (below `r10 - 512` or at or above
//! `r10`) never lands in another registered frame: it faults like any other out-of-region access.
//!
//! A buffer is reused by later runs (see [`crate::scratch`]), so it remembers which frames earlier
//! runs may have written: a frame is zeroed when a run pushes it for the first time, and only if an
//! earlier run used it. Within one run a frame that is popped and pushed again keeps its bytes, as
//! it did when every run had a fresh buffer. Gaps are never registered, so nobody writes them.

use kflex_runtime::{MemoryMap, Region, RegionKind};

use crate::fault::FaultKind;

/// Bytes of stack per frame (Linux `MAX_BPF_STACK`).
pub const STACK_SIZE: usize = 512;

/// Distance between the starts of two consecutive frames (frame plus guard gap).
const STRIDE: usize = 2 * STACK_SIZE;

/// The stack buffer of a run.
///
/// Frames are pushed and popped strictly in order; `live` counts the frames currently
/// registered in the memory map. If the buffer is dropped while frames are still registered (a
/// helper panicked and the run unwound), the allocation is leaked instead of freed so the memory
/// map never refers to freed memory.
pub(crate) struct StackBuffer {
    base: *mut u8,
    total: usize,
    /// Frame slots in the allocation.
    frames: usize,
    /// Frames the current run may hold at once (at most `frames`).
    limit: usize,
    /// Frames currently registered.
    live: usize,
    /// Frames the current run has pushed at least once (and zeroed if needed); frames are pushed
    /// in order, so these are frames `0..fresh`.
    fresh: usize,
    /// Frames `0..dirty` may hold bytes written by earlier runs.
    dirty: usize,
}

impl StackBuffer {
    /// Allocates room for `frames` frames (at least one), all zero.
    pub(crate) fn new(frames: usize) -> Self {
        let frames = frames.max(1);
        let total = frames * STRIDE + STACK_SIZE;
        let buf: Box<[u8]> = vec![0u8; total].into_boxed_slice();
        StackBuffer {
            base: Box::into_raw(buf).cast::<u8>(),
            total,
            frames,
            limit: frames,
            live: 0,
            fresh: 0,
            dirty: 0,
        }
    }

    /// Frame slots of the allocation.
    pub(crate) fn capacity(&self) -> usize {
        self.frames
    }

    /// Frames currently registered in a memory map.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Prepares the buffer for a new run that may hold up to `limit` frames (clamped to the
    /// capacity, at least 1): frames used by earlier runs will be zeroed when first pushed.
    /// Must only be called with no frame registered.
    pub(crate) fn begin_run(&mut self, limit: usize) {
        debug_assert_eq!(self.live, 0, "begin_run with registered frames");
        self.dirty = self.dirty.max(self.fresh);
        self.fresh = 0;
        self.limit = limit.clamp(1, self.frames);
    }

    fn frame_start(&self, frame: usize) -> u64 {
        let slot = self.frames - 1 - frame;
        self.base as u64 + (STACK_SIZE + slot * STRIDE) as u64
    }

    /// Registers the next frame and returns its top address (the frame's `r10`).
    pub(crate) fn push(&mut self, mem: &mut MemoryMap) -> Result<u64, FaultKind> {
        let frame = self.live;
        let limit = self.limit;
        let kind = u8::try_from(frame)
            .ok()
            .filter(|_| frame < limit)
            .map(RegionKind::Stack)
            .ok_or(FaultKind::CallDepth { limit })?;
        let start = self.frame_start(frame);
        if frame == self.fresh {
            if frame < self.dirty {
                // SAFETY: `[start, start + STACK_SIZE)` lies inside the allocation this value owns
                // (frame < limit <= frames); the frame is not registered in any memory map yet,
                // and the buffer is only ever accessed through raw pointers.
                unsafe { std::ptr::write_bytes(start as *mut u8, 0, STACK_SIZE) };
            }
            self.fresh += 1;
        }
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

    #[test]
    fn a_reused_buffer_hands_out_zeroed_frames() {
        let mut mem = MemoryMap::new();
        let mut stack = StackBuffer::new(3);
        stack.begin_run(3);
        let top0 = stack.push(&mut mem).unwrap();
        let top1 = stack.push(&mut mem).unwrap();
        mem.store(top0 - 8, 8, u64::MAX).unwrap();
        mem.store(top1 - 512, 8, u64::MAX).unwrap();
        stack.pop_all(&mut mem);

        stack.begin_run(3);
        assert_eq!(stack.push(&mut mem).unwrap(), top0);
        assert_eq!(stack.push(&mut mem).unwrap(), top1);
        let frame = |top: u64| mem.read_bytes(top - STACK_SIZE as u64, STACK_SIZE as u64);
        assert!(frame(top0).unwrap().iter().all(|&b| b == 0));
        assert!(frame(top1).unwrap().iter().all(|&b| b == 0));
        stack.pop_all(&mut mem);
    }

    #[test]
    fn a_frame_pushed_again_in_the_same_run_keeps_its_bytes() {
        let mut mem = MemoryMap::new();
        let mut stack = StackBuffer::new(2);
        stack.begin_run(2);
        stack.push(&mut mem).unwrap();
        let top1 = stack.push(&mut mem).unwrap();
        mem.store(top1 - 16, 8, 0xabcd).unwrap();
        stack.pop(&mut mem);
        assert_eq!(stack.push(&mut mem).unwrap(), top1);
        assert_eq!(mem.load(top1 - 16, 8).unwrap(), 0xabcd);
        stack.pop_all(&mut mem);

        // The next run sees it zeroed again.
        stack.begin_run(2);
        stack.push(&mut mem).unwrap();
        stack.push(&mut mem).unwrap();
        assert_eq!(mem.load(top1 - 16, 8).unwrap(), 0);
        stack.pop_all(&mut mem);
    }

    #[test]
    fn a_run_limit_below_the_capacity_bounds_the_depth() {
        let mut mem = MemoryMap::new();
        let mut stack = StackBuffer::new(8);
        stack.begin_run(2);
        stack.push(&mut mem).unwrap();
        stack.push(&mut mem).unwrap();
        assert_eq!(stack.push(&mut mem), Err(FaultKind::CallDepth { limit: 2 }));
        stack.pop_all(&mut mem);
        assert_eq!((stack.live(), stack.capacity()), (0, 8));
        assert!(mem.regions().is_empty());
    }
}
