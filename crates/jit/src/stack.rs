//! BPF stack frames of JIT runs.
//!
//! One buffer holds every frame a run may use: `[gap][frame n-1][gap] ... [frame 1][gap][frame 0]
//! [gap]`, deeper frames at lower addresses, each flanked by a [`STACK_SIZE`]-byte gap that is
//! never registered in the memory map (so helpers can never be handed a gap address). JIT code
//! computes the frame of depth `d` (1-based) as `frame_base - d * STRIDE`.
//!
//! Buffers are cached per thread and always handed out zeroed: after a run the frames it reached
//! are cleared again (a run that stopped early included).

use std::cell::RefCell;

use kflex_runtime::{MemoryMap, Region, RegionKind};

/// Bytes of stack per frame (Linux `MAX_BPF_STACK`).
pub const STACK_SIZE: usize = 512;

/// Distance between the tops of two consecutive frames (frame plus gap).
pub(crate) const STRIDE: usize = 2 * STACK_SIZE;

/// Buffers kept per thread for later runs.
const CACHED: usize = 4;

/// A zeroed stack buffer for `frames` frames.
pub(crate) struct StackBuffer {
    buf: Box<[u8]>,
    frames: usize,
}

impl StackBuffer {
    fn new(frames: usize) -> Self {
        let frames = frames.max(1);
        StackBuffer {
            buf: vec![0u8; frames * STRIDE + STACK_SIZE].into_boxed_slice(),
            frames,
        }
    }

    /// Address one past the top of frame 0 (r10 of the main program).
    pub(crate) fn top0(&mut self) -> u64 {
        self.buf.as_mut_ptr() as u64 + (self.buf.len() - STACK_SIZE) as u64
    }

    /// Registers frames `0..frames` in `mem` as [`RegionKind::Stack`] regions.
    ///
    /// Frames are inserted deepest (lowest address) first and removed frame 0 (highest address)
    /// first, so each insertion and removal happens at the end of the run of stack regions and
    /// moves no other entry of the sorted table.
    pub(crate) fn register(&mut self, mem: &mut MemoryMap, frames: usize) -> Result<(), String> {
        let frames = frames.min(self.frames);
        for k in (0..frames).rev() {
            let region = Region {
                start: self.frame_start(k),
                len: STACK_SIZE as u64,
                kind: RegionKind::Stack(u8::try_from(k).unwrap_or(u8::MAX)),
                writable: true,
                elements: None,
            };
            // SAFETY: the frame lies inside `self.buf`, which the caller keeps alive and does not
            // touch through references until `unregister` has removed the region again.
            if let Err(e) = unsafe { mem.insert(region) } {
                for j in (k + 1..frames).rev() {
                    mem.remove(self.frame_start(j));
                }
                return Err(e.to_string());
            }
        }
        Ok(())
    }

    /// Lowest address of frame `k`.
    fn frame_start(&mut self, k: usize) -> u64 {
        self.top0() - (k * STRIDE) as u64 - STACK_SIZE as u64
    }

    /// Removes the regions of frames `0..frames` from `mem`.
    pub(crate) fn unregister(&mut self, mem: &mut MemoryMap, frames: usize) {
        for k in 0..frames.min(self.frames) {
            mem.remove(self.frame_start(k));
        }
    }

    /// Zeroes frames `0..frames` (the ones a finished run may have written).
    pub(crate) fn clear(&mut self, frames: usize) {
        let frames = frames.min(self.frames);
        if frames == 0 {
            return;
        }
        let len = self.buf.len();
        let start = len - STACK_SIZE - frames * STRIDE;
        self.buf[start..len - STACK_SIZE].fill(0);
    }
}

thread_local! {
    static CACHE: RefCell<Vec<StackBuffer>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer with room for at least `frames` frames (from this thread's cache if possible).
pub(crate) fn take(frames: usize) -> StackBuffer {
    let cached = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let pos = c.iter().position(|b| b.frames >= frames)?;
        Some(c.swap_remove(pos))
    });
    cached.unwrap_or_else(|| StackBuffer::new(frames))
}

/// Returns a buffer (zeroed by the caller) to this thread's cache.
pub(crate) fn give_back(buf: StackBuffer) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < CACHED {
            c.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_registered_and_removed() {
        let mut mem = MemoryMap::new();
        let mut s = take(3);
        s.register(&mut mem, 3).unwrap();
        let top0 = s.top0();
        assert_eq!(mem.regions().len(), 3);
        assert!(mem.region_at(top0 - 1).is_some());
        assert!(
            mem.region_at(top0).is_none(),
            "r10 itself is past the frame"
        );
        assert!(mem.region_at(top0 - STACK_SIZE as u64 - 1).is_none(), "gap");
        assert!(mem.region_at(top0 - STRIDE as u64 - 8).is_some(), "frame 1");
        s.unregister(&mut mem, 3);
        assert!(mem.regions().is_empty());
    }

    #[test]
    fn failed_registration_removes_the_frames_it_added() {
        let mut mem = MemoryMap::new();
        let mut s = take(3);
        let foreign = Region {
            start: s.frame_start(1) + 8,
            len: 8,
            kind: RegionKind::Context,
            writable: false,
            elements: None,
        };
        // SAFETY: the region lies inside the buffer, which outlives the table entry and is not
        // accessed through references meanwhile.
        unsafe { mem.insert(foreign.clone()) }.unwrap();
        assert!(s.register(&mut mem, 3).is_err());
        assert_eq!(mem.regions(), &[foreign], "frame 2 was rolled back");
        give_back(s);
    }

    #[test]
    fn clear_zeroes_used_frames_only_range() {
        let mut s = StackBuffer::new(2);
        let len = s.buf.len();
        s.buf[len - STACK_SIZE - 1] = 7; // top byte of frame 0
        s.buf[len - STACK_SIZE - STRIDE - 1] = 9; // top byte of frame 1
        s.clear(2);
        assert!(s.buf.iter().all(|b| *b == 0));
    }
}
