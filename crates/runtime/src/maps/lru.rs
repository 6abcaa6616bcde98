//! Recency order for `BPF_MAP_TYPE_LRU_HASH`: which element was used least recently.
//!
//! Linux approximates LRU with per-CPU lists and reference bits; kflex keeps an exact order, which
//! is a valid refinement (the element evicted is always one Linux could have evicted).

use std::collections::BTreeMap;

/// Exact least-recently-used order over element slots.
#[derive(Debug, Default)]
pub(crate) struct LruOrder {
    clock: u64,
    /// Last-use time of each slot (0: not in the order).
    stamp: Vec<u64>,
    /// Slots by last-use time, oldest first.
    by_time: BTreeMap<u64, u32>,
}

impl LruOrder {
    /// An empty order over `slots` slots.
    pub(crate) fn new(slots: u32) -> Self {
        LruOrder {
            clock: 0,
            stamp: vec![0; slots as usize],
            by_time: BTreeMap::new(),
        }
    }

    /// Marks `slot` as used now.
    pub(crate) fn touch(&mut self, slot: u32) {
        self.remove(slot);
        self.clock += 1;
        if let Some(s) = self.stamp.get_mut(slot as usize) {
            *s = self.clock;
            self.by_time.insert(self.clock, slot);
        }
    }

    /// Removes `slot` from the order.
    pub(crate) fn remove(&mut self, slot: u32) {
        if let Some(s) = self.stamp.get_mut(slot as usize)
            && *s != 0
        {
            self.by_time.remove(s);
            *s = 0;
        }
    }

    /// The least recently used slot.
    pub(crate) fn oldest(&self) -> Option<u32> {
        self.by_time.values().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_follows_use() {
        let mut o = LruOrder::new(3);
        o.touch(0);
        o.touch(1);
        o.touch(2);
        assert_eq!(o.oldest(), Some(0));
        o.touch(0);
        assert_eq!(o.oldest(), Some(1));
        o.remove(1);
        assert_eq!(o.oldest(), Some(2));
        o.remove(2);
        o.remove(0);
        assert_eq!(o.oldest(), None);
        o.touch(7); // out of range: ignored
        assert_eq!(o.oldest(), None);
    }
}
