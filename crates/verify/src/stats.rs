//! Exploration statistics.

use std::time::Duration;

/// What one verification run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Instructions processed over all explored paths (the complexity measure).
    pub insns_processed: u64,
    /// States stored for pruning (one per prune point and distinct state).
    pub states_explored: u64,
    /// Paths cut because a stored state subsumed them.
    pub states_pruned: u64,
    /// Largest number of states held at once (stored plus pending branches).
    pub peak_states: u64,
    /// Heap accesses that need a guard.
    pub guards_emitted: u64,
    /// Heap accesses proved inside the heap plus guard zone.
    pub guards_elided: u64,
    /// Loop back-edges (termination points that are jumps).
    pub back_edges: u64,
    /// Wall-clock time of the verification.
    pub time: Duration,
}

impl Stats {
    /// The kernel-style summary line:
    /// `processed N insns (limit L) max_states_per_insn M total_states T peak_states P`.
    pub fn summary(&self, limit: u64, max_states_per_insn: usize) -> String {
        format!(
            "processed {} insns (limit {limit}) max_states_per_insn {max_states_per_insn} \
             total_states {} peak_states {}",
            self.insns_processed, self.states_explored, self.peak_states
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_kernel_shape() {
        let s = Stats {
            insns_processed: 42,
            states_explored: 7,
            peak_states: 5,
            ..Stats::default()
        };
        assert_eq!(
            s.summary(1_000_000, 3),
            "processed 42 insns (limit 1000000) max_states_per_insn 3 total_states 7 peak_states 5"
        );
    }
}
