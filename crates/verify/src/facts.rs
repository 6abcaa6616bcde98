//! Per-instruction facts merged over every state that reaches an instruction, and the
//! construction of the [`VerifiedProgram`].

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    CancellationTable, CtxAccess, HeapAccess, InsnFacts, LiveResource, Stats, TerminationKind,
    TerminationPoint, VerifiedProgram,
};

/// What kind of memory a load/store instruction was seen accessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseKind {
    /// The program context (rewritten by the JIT).
    Ctx,
    /// The heap (guarded or elided).
    Heap,
    /// Any other memory (stack, map values, packet, helper memory).
    Other,
}

impl BaseKind {
    /// A word for messages.
    pub fn name(self) -> &'static str {
        match self {
            BaseKind::Ctx => "context",
            BaseKind::Heap => "heap",
            BaseKind::Other => "non-heap, non-context",
        }
    }
}

/// What the paths seen so far agree on about the map of one map-helper call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum MapCall {
    /// No path has reached the call yet.
    #[default]
    Unseen,
    /// Every path so far called it with this map.
    Map(u32),
    /// Two paths disagreed (or one passed no constant map pointer): unknown for good.
    Poisoned,
}

impl MapCall {
    /// The state after one more path calls with `map` (`None`: not a constant map pointer).
    fn merge(self, map: Option<u32>) -> MapCall {
        match (self, map) {
            (MapCall::Unseen, Some(m)) => MapCall::Map(m),
            (MapCall::Map(a), Some(b)) if a == b => MapCall::Map(a),
            _ => MapCall::Poisoned,
        }
    }
}

/// Facts collected during exploration.
#[derive(Clone, Debug, Default)]
pub struct FactsBuilder {
    insns: Vec<InsnFacts>,
    bases: Vec<Option<BaseKind>>,
    map_calls: Vec<MapCall>,
    terminations: BTreeSet<TerminationPoint>,
    cancellation: BTreeMap<usize, Vec<LiveResource>>,
    /// The most bytes below r10 any frame touches.
    stack_depth: u64,
}

impl FactsBuilder {
    /// Facts for a program of `len` slots, nothing known yet.
    pub fn new(len: usize) -> Self {
        FactsBuilder {
            insns: vec![InsnFacts::default(); len],
            bases: vec![None; len],
            map_calls: vec![MapCall::Unseen; len],
            ..FactsBuilder::default()
        }
    }

    /// Marks `pc` reachable.
    pub fn reached(&mut self, pc: usize) {
        if let Some(f) = self.insns.get_mut(pc) {
            f.reachable = true;
        }
    }

    /// Records the kind of memory the access at `pc` goes to; returns the kind seen before when
    /// it differs (the same instruction may not access context, heap and other memory on
    /// different paths: each needs different code).
    pub fn base_kind(&mut self, pc: usize, kind: BaseKind) -> Result<(), BaseKind> {
        match self.bases.get_mut(pc) {
            Some(slot @ None) => {
                *slot = Some(kind);
                Ok(())
            }
            Some(Some(prev)) if *prev != kind => Err(*prev),
            _ => Ok(()),
        }
    }

    /// Records the map one path passes in r1 to the map-helper call at `pc` (`None` when r1 is
    /// not a constant map pointer). Paths that disagree poison the fact for good.
    pub fn map_call(&mut self, pc: usize, map: Option<u32>) {
        if let Some(seen) = self.map_calls.get_mut(pc) {
            *seen = seen.merge(map);
        }
    }

    /// Records that some path touches the stack from the byte at `off` from a frame's r10
    /// upwards (negative inside the stack; offsets at or above r10 touch nothing below it, and
    /// offsets below the stack count as the whole stack).
    pub fn stack_touched(&mut self, off: i64) {
        let below = u64::try_from(off.saturating_neg()).unwrap_or(0);
        self.stack_depth = self.stack_depth.max(below);
    }

    /// Records a context access at `pc`.
    pub fn ctx_access(&mut self, pc: usize, access: CtxAccess) {
        if let Some(f) = self.insns.get_mut(pc) {
            f.ctx = Some(access);
        }
    }

    /// Records a heap access at `pc` in one state, merging with the others: elided only if
    /// elided in every state, with the largest offset.
    pub fn heap_access(&mut self, pc: usize, access: HeapAccess, live: Vec<LiveResource>) {
        if let Some(f) = self.insns.get_mut(pc) {
            f.heap = Some(match (f.heap, access) {
                (None, a) => a,
                (Some(HeapAccess::Guard { reg }), _) | (_, HeapAccess::Guard { reg }) => {
                    HeapAccess::Guard { reg }
                }
                (
                    Some(HeapAccess::Elided { reg, max_offset: a }),
                    HeapAccess::Elided { max_offset: b, .. },
                ) => HeapAccess::Elided {
                    reg,
                    max_offset: a.max(b),
                },
            });
        }
        self.add_live(pc, live);
    }

    /// Records a termination point and what is live there in one state.
    pub fn termination(&mut self, pc: usize, kind: TerminationKind, live: Vec<LiveResource>) {
        self.terminations.insert(TerminationPoint { pc, kind });
        self.add_live(pc, live);
    }

    fn add_live(&mut self, pc: usize, live: Vec<LiveResource>) {
        let entry = self.cancellation.entry(pc).or_default();
        for l in live {
            if !entry.contains(&l) {
                entry.push(l);
            }
        }
    }

    /// The number of termination points that are back-edges so far.
    pub fn back_edges(&self) -> u64 {
        self.terminations
            .iter()
            .filter(|t| matches!(t.kind, TerminationKind::BackEdge { .. }))
            .count() as u64
    }

    /// The verified program, with guard counts filled into `stats`.
    pub fn finish(self, mut stats: Stats, log: String) -> VerifiedProgram {
        stats.guards_emitted = 0;
        stats.guards_elided = 0;
        for f in &self.insns {
            match f.heap {
                Some(HeapAccess::Guard { .. }) => stats.guards_emitted += 1,
                Some(HeapAccess::Elided { .. }) => stats.guards_elided += 1,
                None => {}
            }
        }
        stats.back_edges = self.back_edges();
        let mut insns = self.insns;
        for (f, seen) in insns.iter_mut().zip(&self.map_calls) {
            if let MapCall::Map(m) = *seen {
                f.map_call = usize::try_from(m).ok();
            }
        }
        let max = crate::state::STACK_SIZE as u64;
        let stack_depth = self.stack_depth.min(max).next_multiple_of(8);
        let mut cancellation = self.cancellation;
        for entry in cancellation.values_mut() {
            entry.sort_by_key(|l| (l.ref_id, l.location));
        }
        VerifiedProgram {
            insns,
            stack_depth: u32::try_from(stack_depth).unwrap_or(u32::MAX),
            termination_points: self.terminations.into_iter().collect(),
            cancellation: CancellationTable {
                entries: cancellation,
            },
            stats,
            log,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_access_is_elided_only_if_elided_everywhere() {
        let mut f = FactsBuilder::new(4);
        f.heap_access(
            1,
            HeapAccess::Elided {
                reg: 1,
                max_offset: 8,
            },
            vec![],
        );
        f.heap_access(
            1,
            HeapAccess::Elided {
                reg: 1,
                max_offset: 16,
            },
            vec![],
        );
        f.heap_access(
            2,
            HeapAccess::Elided {
                reg: 2,
                max_offset: 0,
            },
            vec![],
        );
        f.heap_access(2, HeapAccess::Guard { reg: 2 }, vec![]);
        let p = f.finish(Stats::default(), String::new());
        assert_eq!(
            p.insns[1].heap,
            Some(HeapAccess::Elided {
                reg: 1,
                max_offset: 16
            })
        );
        assert_eq!(p.insns[2].heap, Some(HeapAccess::Guard { reg: 2 }));
        assert_eq!((p.stats.guards_emitted, p.stats.guards_elided), (1, 1));
        assert!(p.cancellation.entries.contains_key(&1));
        assert!(p.cancellation.entries[&2].is_empty());
    }

    #[test]
    fn a_map_call_fact_once_poisoned_stays_unknown() {
        let mut f = FactsBuilder::new(4);
        f.map_call(1, Some(2));
        f.map_call(1, Some(2));
        f.map_call(2, Some(0));
        f.map_call(2, Some(1));
        f.map_call(2, Some(0));
        f.map_call(3, Some(0));
        f.map_call(3, None);
        f.map_call(3, Some(0));
        let p = f.finish(Stats::default(), String::new());
        let calls: Vec<Option<usize>> = p.insns.iter().map(|i| i.map_call).collect();
        assert_eq!(calls, vec![None, Some(2), None, None]);
    }

    #[test]
    fn a_map_pointer_covers_only_a_pointer_to_the_same_map() {
        use crate::state::{IdMap, RegState};
        let (a, b) = (RegState::MapPtr { map: 0 }, RegState::MapPtr { map: 1 });
        assert!(a.covers(&a.clone(), &mut IdMap::new()));
        assert!(!a.covers(&b, &mut IdMap::new()));
        assert!(!b.covers(&a, &mut IdMap::new()));
        assert!(!a.covers(&RegState::unknown(), &mut IdMap::new()));
    }

    #[test]
    fn base_kinds_must_agree() {
        let mut f = FactsBuilder::new(2);
        assert_eq!(f.base_kind(0, BaseKind::Ctx), Ok(()));
        assert_eq!(f.base_kind(0, BaseKind::Ctx), Ok(()));
        assert_eq!(f.base_kind(0, BaseKind::Heap), Err(BaseKind::Ctx));
    }

    #[test]
    fn terminations_are_sorted_and_counted() {
        let mut f = FactsBuilder::new(10);
        f.termination(7, TerminationKind::BackEdge { target: 2 }, vec![]);
        f.termination(3, TerminationKind::MayGoto, vec![]);
        f.termination(7, TerminationKind::BackEdge { target: 2 }, vec![]);
        let p = f.finish(Stats::default(), String::new());
        assert_eq!(p.termination_points.len(), 2);
        assert_eq!(p.termination_points[0].pc, 3);
        assert_eq!(p.stats.back_edges, 1);
    }
}
