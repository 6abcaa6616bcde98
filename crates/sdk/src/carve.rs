//! The host's record of the blocks it carved: a bump pointer through the carve range, the
//! segments carved so far (to recognise a block address exactly, whatever a program wrote into
//! the heap), and the pool of blocks the host holds (carved or reclaimed, not yet pushed).

use std::ops::Range;

use crate::layout::{NR_CLASSES, class_stride};

/// A run of `count` blocks of one class starting at `start`.
#[derive(Clone, Copy, Debug)]
struct Segment {
    start: u64,
    count: u64,
    class: usize,
}

/// Every segment carved, in address order (the bump pointer only moves up).
#[derive(Debug, Default)]
pub(crate) struct Segments {
    list: Vec<Segment>,
}

impl Segments {
    /// The class of the block that starts exactly at `addr`, if the host carved one there.
    pub fn class_of(&self, addr: u64) -> Option<usize> {
        let i = self
            .list
            .partition_point(|s| s.start <= addr)
            .checked_sub(1)?;
        let s = self.list[i];
        let stride = class_stride(s.class);
        let off = addr - s.start;
        (off.is_multiple_of(stride) && off / stride < s.count).then_some(s.class)
    }

    fn push(&mut self, seg: Segment) {
        if let Some(last) = self.list.last_mut()
            && last.class == seg.class
            && last.start + last.count * class_stride(last.class) == seg.start
        {
            last.count += seg.count;
            return;
        }
        self.list.push(seg);
    }
}

/// Carving state and the host-held pool.
#[derive(Debug)]
pub(crate) struct Carver {
    carve: Range<u64>,
    next: u64,
    /// Blocks carved per class.
    pub carved: [u64; NR_CLASSES],
    /// Free blocks held by the host, per class.
    pub pool: [Vec<u64>; NR_CLASSES],
    /// Segments carved.
    pub segments: Segments,
}

impl Carver {
    /// A carver over `carve` (8-byte aligned start).
    pub fn new(carve: Range<u64>) -> Self {
        let start = carve.start.next_multiple_of(8);
        Carver {
            next: start.min(carve.end),
            carve,
            carved: [0; NR_CLASSES],
            pool: Default::default(),
            segments: Segments::default(),
        }
    }

    /// Bytes of the carve range still uncarved.
    pub fn remaining(&self) -> u64 {
        self.carve.end - self.next
    }

    /// Bytes of the carve range.
    pub fn capacity(&self) -> u64 {
        self.carve.end - self.carve.start
    }

    /// Carves up to `want` new blocks of class `cls`; returns the address range they occupy
    /// (empty when the carve range is exhausted) and their count.
    pub fn carve(&mut self, cls: usize, want: u64) -> (Range<u64>, u64) {
        let stride = class_stride(cls);
        let n = want.min(self.remaining() / stride);
        let start = self.next;
        if n > 0 {
            self.next += n * stride;
            self.carved[cls] += n;
            self.segments.push(Segment {
                start,
                count: n,
                class: cls,
            });
        }
        (start..start + n * stride, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carved_blocks_are_recognised_exactly() {
        let mut c = Carver::new(0x1000..0x1000 + 1000);
        let (r, n) = c.carve(0, 10);
        assert_eq!((r.start, n), (0x1000, 10));
        let (r2, n2) = c.carve(3, 100);
        assert_eq!(r2.start, 0x1000 + 240);
        assert_eq!(n2, (1000 - 240) / 136);
        assert_eq!(c.segments.class_of(0x1000), Some(0));
        assert_eq!(c.segments.class_of(0x1000 + 24 * 9), Some(0));
        assert_eq!(c.segments.class_of(0x1000 + 8), None);
        assert_eq!(c.segments.class_of(r2.start + 136), Some(3));
        assert_eq!(c.segments.class_of(r2.start + 136 * n2), None);
        assert_eq!(c.segments.class_of(0xfff), None);
        let (_, none) = c.carve(8, 1);
        assert_eq!(none, 0, "no room for a 4 KiB block");
    }

    #[test]
    fn adjacent_carves_of_one_class_merge() {
        let mut c = Carver::new(0..10_000);
        c.carve(1, 4);
        c.carve(1, 4);
        assert_eq!(c.segments.list.len(), 1);
        assert_eq!(c.segments.class_of(40 * 7), Some(1));
    }
}
