//! Per-thread cache of ready run scratch space (stack buffer and call-frame records), so that a
//! run in steady state allocates nothing.
//!
//! [`take`] hands out a [`Scratch`] from the calling thread's cache (or allocates one); dropping
//! it returns it to the cache when no stack frame is still registered in a memory map (after a
//! panic inside a helper the stack buffer is leaked instead; see [`StackBuffer`]). Runs may nest (a
//! helper may start another run): each takes its own scratch, and the cache keeps a few.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use crate::exec::Frame;
use crate::stack::StackBuffer;

/// Scratch spaces kept per thread (more than one only when runs nest or use different depths).
const CACHED: usize = 4;

thread_local! {
    #[allow(clippy::vec_box, reason = "taking and returning a boxed space moves one pointer")]
    static CACHE: RefCell<Vec<Box<ScratchSpace>>> = const { RefCell::new(Vec::new()) };
}

/// What one run needs besides its registers.
pub(crate) struct ScratchSpace {
    /// The run's stack frames.
    pub(crate) stack: StackBuffer,
    /// Return records of the BPF-to-BPF calls in progress.
    pub(crate) callers: Vec<Frame>,
}

/// Scratch space borrowed from the thread's cache for one run.
pub(crate) struct Scratch(Option<Box<ScratchSpace>>);

/// Scratch space for a run that may hold up to `frames` stack frames: the cached space with the
/// smallest sufficient capacity, or a new one. Its stack starts the run with no frame registered
/// and every frame reading as zero when pushed.
pub(crate) fn take(frames: usize) -> Scratch {
    let frames = frames.max(1);
    let cached = CACHE
        .try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let best = cache
                .iter()
                .enumerate()
                .filter(|(_, s)| s.stack.capacity() >= frames)
                .min_by_key(|(_, s)| s.stack.capacity())
                .map(|(i, _)| i)?;
            Some(cache.swap_remove(best))
        })
        .ok()
        .flatten();
    let mut space = cached.unwrap_or_else(|| {
        Box::new(ScratchSpace {
            stack: StackBuffer::new(frames),
            callers: Vec::with_capacity(frames),
        })
    });
    space.stack.begin_run(frames);
    space.callers.clear();
    Scratch(Some(space))
}

impl Deref for Scratch {
    type Target = ScratchSpace;

    fn deref(&self) -> &ScratchSpace {
        // The option is only emptied by `drop`.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut ScratchSpace {
        self.0.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(space) = self.0.take() else {
            return;
        };
        if space.stack.live() != 0 {
            // Frames are still registered (the run unwound): `StackBuffer`'s drop leaks it.
            return;
        }
        // If the thread is shutting down or the cache is busy, the space is simply freed.
        let _ = CACHE.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut()
                && cache.len() < CACHED
            {
                cache.push(space);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_runtime::MemoryMap;

    #[test]
    fn a_returned_space_is_reused_and_starts_clean() {
        let mut mem = MemoryMap::new();
        let first_top = {
            let mut s = take(8);
            let top = s.stack.push(&mut mem).unwrap();
            mem.store(top - 8, 8, 0x55).unwrap();
            s.stack.pop_all(&mut mem);
            top
        };
        let mut s = take(8);
        let top = s.stack.push(&mut mem).unwrap();
        assert_eq!(top, first_top, "the cached buffer is handed out again");
        assert_eq!(mem.load(top - 8, 8).unwrap(), 0);
        assert!(s.callers.is_empty());
        s.stack.pop_all(&mut mem);
    }

    #[test]
    fn nested_runs_get_distinct_spaces() {
        let mut mem = MemoryMap::new();
        let mut outer = take(2);
        let mut inner = take(2);
        let a = outer.stack.push(&mut mem).unwrap();
        let b = inner.stack.push(&mut mem).unwrap();
        assert_ne!(a, b);
        inner.stack.pop_all(&mut mem);
        outer.stack.pop_all(&mut mem);
    }

    #[test]
    fn a_larger_cached_space_serves_a_smaller_depth_with_its_limit() {
        let mut mem = MemoryMap::new();
        drop(take(16));
        let mut s = take(1);
        assert!(s.stack.capacity() >= 1);
        s.stack.push(&mut mem).unwrap();
        assert!(
            s.stack.push(&mut mem).is_err(),
            "the run's own limit applies"
        );
        s.stack.pop_all(&mut mem);
    }

    #[test]
    fn a_space_with_registered_frames_is_not_cached() {
        let mut mem = MemoryMap::new();
        let top = {
            let mut s = take(3);
            s.stack.push(&mut mem).unwrap()
            // dropped with a live frame: leaked, never handed out again
        };
        for _ in 0..CACHED + 1 {
            let mut s = take(3);
            let other = s.stack.push(&mut mem);
            assert!(other.is_ok_and(|t| t != top));
            s.stack.pop_all(&mut mem);
        }
        assert!(
            mem.region_at(top - 1).is_some(),
            "the leaked frame stays valid"
        );
    }
}
