//! Consistent renaming of pointer ids between an old and a current state (Linux `check_ids`).

/// A partial bijection between the ids of an old state and those of a current state.
///
/// Two states are compared register by register; each pair of ids met must map the same way
/// every time (two registers sharing an id in the current state must share one in the old state,
/// and the other way round), or the old state's NULL checks and ranges would not apply.
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    pairs: Vec<(u32, u32)>,
}

impl IdMap {
    /// An empty mapping.
    pub fn new() -> Self {
        IdMap::default()
    }

    /// Records that `old` corresponds to `cur`; false if either is already mapped elsewhere.
    /// Id 0 (no identity) only matches 0.
    pub fn check(&mut self, old: u32, cur: u32) -> bool {
        if old == 0 || cur == 0 {
            return old == cur;
        }
        for &(o, c) in &self.pairs {
            if o == old || c == cur {
                return o == old && c == cur;
            }
        }
        self.pairs.push((old, cur));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_must_be_consistent_both_ways() {
        let mut m = IdMap::new();
        assert!(m.check(1, 5));
        assert!(m.check(1, 5));
        assert!(!m.check(1, 6), "old id 1 already maps to 5");
        assert!(!m.check(2, 5), "cur id 5 already maps from 1");
        assert!(m.check(2, 6));
        assert!(m.check(0, 0));
        assert!(!m.check(0, 3));
        assert!(!m.check(3, 0));
    }
}
