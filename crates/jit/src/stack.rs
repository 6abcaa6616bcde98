//! BPF stack frames of JIT runs.
//!
//! One buffer holds every frame a run may use: `[gap][frame n-1][gap] ... [frame 1][gap][frame 0]
//! [gap]`, deeper frames at lower addresses, each flanked by a [`STACK_SIZE`]-byte gap that is
//! never registered in the memory map (so helpers can never be handed a gap address). JIT code
//! computes the frame of depth `d` (1-based) as `frame_base - d * STRIDE`.
//!
//! Buffers are cached per thread and always handed out zeroed: after a run the bytes it may have
//! written (the program's declared stack depth below each frame it reached,
//! [`crate::JitOptions::stack_depth`]) are cleared again, a run that stopped early included.

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
    /// The context plan of the runs on this buffer ([`crate::ctx_plan`]): per-run scratch that
    /// lives with the frames, so a runner neither allocates nor carries it (boxed: buffers move
    /// in and out of the cache).
    pub(crate) plan: Box<crate::ctx_plan::Plan>,
}

impl StackBuffer {
    fn new(frames: usize) -> Self {
        let frames = frames.max(1);
        StackBuffer {
            buf: vec![0u8; frames * STRIDE + STACK_SIZE].into_boxed_slice(),
            frames,
            plan: Box::new(crate::ctx_plan::NO_PLAN),
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

    /// Zeroes the top `bytes` bytes (at most a whole frame) of frames `0..frames`: the ones a
    /// finished run may have written.
    pub(crate) fn clear(&mut self, frames: usize, bytes: usize) {
        let frames = frames.min(self.frames);
        let bytes = bytes.min(STACK_SIZE);
        let top0 = self.buf.len() - STACK_SIZE;
        for k in 0..frames {
            let top = top0 - k * STRIDE;
            self.buf[top - bytes..top].fill(0);
        }
    }
}

thread_local! {
    static CACHE: RefCell<Vec<StackBuffer>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer with room for at least `frames` frames (from this thread's cache if possible).
pub(crate) fn take(frames: usize) -> StackBuffer {
    // `try_with`: during thread exit (a lease dropped by another thread-local's destructor) the
    // cache may be gone; a fresh buffer serves then.
    let cached = CACHE
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let pos = c.iter().position(|b| b.frames >= frames)?;
            Some(c.swap_remove(pos))
        })
        .ok()
        .flatten();
    cached.unwrap_or_else(|| StackBuffer::new(frames))
}

/// Returns a buffer (zeroed by the runs on it, see [`StackBuffer::clear`]) to this thread's
/// cache, or frees it when the cache is full or already destroyed (thread exit).
pub(crate) fn give_back(buf: StackBuffer) {
    let _ = CACHE.try_with(move |c| {
        let mut c = c.borrow_mut();
        if c.len() < CACHED {
            c.push(buf);
        }
    });
}

/// A stack buffer whose frames stay registered in a [`MemoryMap`] across runs
/// ([`crate::JitProgram::run_leased`]), so that repeated runs of a program skip registering
/// and removing them every time. Made by [`crate::JitProgram::frame_lease`].
///
/// Give it back with [`FrameLease::release`] and the map it was used with. A lease dropped while
/// its frames may still be registered somewhere keeps its buffer allocated for the rest of the
/// process (leaked), so that no memory map can ever hold regions of freed memory.
pub struct FrameLease {
    stack: Option<StackBuffer>,
    frames: usize,
    /// Number of times the frames were registered in a map that did not hold them.
    registrations: usize,
}

impl std::fmt::Debug for FrameLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameLease")
            .field("frames", &self.frames)
            .field("registrations", &self.registrations)
            .finish()
    }
}

impl FrameLease {
    pub(crate) fn new(frames: usize) -> Self {
        let frames = frames.max(1);
        FrameLease {
            stack: Some(take(frames)),
            frames,
            registrations: 0,
        }
    }

    /// Frames the lease holds.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The buffer, its frames `0..used` registered in `mem` (registered now if `mem` does not
    /// hold them).
    pub(crate) fn ensure(
        &mut self,
        mem: &mut MemoryMap,
        used: usize,
    ) -> Result<&mut StackBuffer, String> {
        if used > self.frames {
            return Err(format!(
                "the frame lease holds {} frames, the run needs {used}",
                self.frames
            ));
        }
        let stack = self
            .stack
            .as_mut()
            .ok_or_else(|| "the frame lease was released".to_string())?;
        let holds = |mem: &MemoryMap, k: usize, start: u64| {
            mem.region_at(start).is_some_and(|r| {
                r.start == start && r.kind == RegionKind::Stack(u8::try_from(k).unwrap_or(u8::MAX))
            })
        };
        let (first, last) = (stack.frame_start(0), stack.frame_start(self.frames - 1));
        if self.registrations == 0 {
            // Never registered anywhere: nothing to look for or remove first.
            stack.register(mem, self.frames)?;
            self.registrations = 1;
        } else if !(holds(mem, 0, first) && holds(mem, self.frames - 1, last)) {
            stack.unregister(mem, self.frames);
            stack.register(mem, self.frames)?;
            self.registrations += 1;
        }
        Ok(stack)
    }

    /// Removes the frames from `mem` and returns the buffer to the thread's cache (or keeps it
    /// allocated for good if the frames were also registered in another map).
    pub fn release(mut self, mem: &mut MemoryMap) {
        if let Some(mut stack) = self.stack.take() {
            stack.unregister(mem, self.frames);
            if self.registrations <= 1 {
                give_back(stack);
            } else {
                std::mem::forget(stack);
            }
        }
    }
}

impl Drop for FrameLease {
    fn drop(&mut self) {
        if let Some(stack) = self.stack.take() {
            if self.registrations == 0 {
                give_back(stack);
            } else {
                // Some map may still describe the frames: keep their memory valid.
                std::mem::forget(stack);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_registers_once_and_releases_its_frames() {
        let mut mem = MemoryMap::new();
        let mut lease = FrameLease::new(3);
        let top0 = lease.ensure(&mut mem, 3).unwrap().top0();
        assert_eq!(mem.regions().len(), 3);
        lease.ensure(&mut mem, 1).unwrap();
        assert_eq!((mem.regions().len(), lease.registrations), (3, 1));
        assert!(
            lease.ensure(&mut mem, 4).is_err(),
            "more frames than leased"
        );
        // A map that lost the frames gets them again.
        mem.remove(top0 - STACK_SIZE as u64);
        lease.ensure(&mut mem, 3).unwrap();
        assert_eq!((mem.regions().len(), lease.registrations), (3, 2));
        lease.release(&mut mem);
        assert!(mem.regions().is_empty());
    }

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
        s.clear(2, STACK_SIZE);
        assert!(s.buf.iter().all(|b| *b == 0));
    }

    #[test]
    fn clear_zeroes_only_the_top_bytes_of_each_reached_frame() {
        let mut s = StackBuffer::new(3);
        s.buf.fill(0xaa);
        s.clear(2, 16);
        let top0 = s.buf.len() - STACK_SIZE;
        for k in 0..3 {
            let top = top0 - k * STRIDE;
            let zeroed = s.buf[top - 16..top].iter().all(|b| *b == 0);
            assert_eq!(zeroed, k < 2, "frame {k}");
            assert_eq!(
                s.buf[top - 17],
                0xaa,
                "frame {k}: bytes below the depth stay"
            );
        }
        assert_eq!(s.buf[top0], 0xaa, "the gap above frame 0 stays");
    }
}
