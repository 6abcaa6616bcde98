//! Reference and lock tracking: what a program has acquired and not yet released.
//!
//! Every acquired reference (a ringbuf sample, a host object) gets a fresh id with its kind and the
//! instruction that acquired it; releasing checks the id is live and of the right kind; locks are
//! tracked separately by identity (which map value or heap word) so that several can be held at
//! once (KFlex's flexibility) while each must be released on every path. At exit nothing may be
//! held ([`check_exit_resources`]); at every cancellation point [`live_resources`] lists what is
//! held and where a handle to it lives.
//!
//! The register/stack state is reached through the small [`ResourceView`] trait, which the
//! verifier state implements.

use kflex_runtime::HelperRegistry;
use kflex_runtime::helpers::{ResourceKind, ids};

use crate::{LiveResource, Location};

/// One live reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ref {
    /// Reference id (unique within one exploration path).
    pub id: u32,
    /// What it stands for.
    pub kind: ResourceKind,
    /// Instruction that acquired it.
    pub acquired_at: usize,
}

/// Which lock word a lock is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockTarget {
    /// In the value of map `map` at byte `off`. `value` is the id of the map value pointer
    /// (from the lookup that produced it), so locks in two elements of one map are two locks;
    /// 0 for a value without an id (global data, a single element).
    MapValue {
        /// Map index.
        map: u32,
        /// Id of the map value pointer the lock word was reached through (0 when none).
        value: u32,
        /// Offset in the value.
        off: i64,
    },
    /// In the heap, at a known offset from the heap start if known.
    Heap {
        /// Offset from the heap start.
        off: Option<i64>,
    },
}

impl std::fmt::Display for LockTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockTarget::MapValue { map, value: 0, off } => {
                write!(f, "the lock at offset {off} of map #{map}'s value")
            }
            LockTarget::MapValue { map, value, off } => write!(
                f,
                "the lock at offset {off} of map #{map}'s value id={value}"
            ),
            LockTarget::Heap { off: Some(o) } => write!(f, "the heap lock at heap offset {o}"),
            LockTarget::Heap { off: None } => write!(f, "a heap lock"),
        }
    }
}

/// One held lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLock {
    /// Id (shared with references, so cancellation tables can name it).
    pub id: u32,
    /// Which lock word.
    pub target: LockTarget,
    /// Instruction that took it.
    pub acquired_at: usize,
}

/// The references and locks held on one path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Live references, oldest first.
    pub refs: Vec<Ref>,
    /// Held locks, oldest first.
    pub locks: Vec<HeldLock>,
}

impl Resources {
    /// Records a reference acquired at `pc` with the given fresh id.
    pub fn acquire(&mut self, id: u32, kind: ResourceKind, pc: usize) {
        self.refs.push(Ref {
            id,
            kind,
            acquired_at: pc,
        });
    }

    /// The live reference `id`, if any.
    pub fn get(&self, id: u32) -> Option<&Ref> {
        self.refs.iter().find(|r| r.id == id)
    }

    /// Releases reference `id`, which must be live and of `kind`. The error is the rule broken.
    pub fn release(&mut self, id: u32, kind: ResourceKind) -> Result<Ref, String> {
        let Some(pos) = self.refs.iter().position(|r| r.id == id) else {
            return Err(format!(
                "reference id={id} is not held: it was already released, or never acquired on this path"
            ));
        };
        if self.refs[pos].kind != kind {
            return Err(format!(
                "reference id={id} is a {}, but the helper releases a {}",
                kind_name(self.refs[pos].kind),
                kind_name(kind)
            ));
        }
        Ok(self.refs.remove(pos))
    }

    /// Forgets reference `id` without a release: the acquiring helper returned NULL, so on this
    /// path nothing was acquired (Linux drops the reference state on the NULL branch).
    pub fn forget(&mut self, id: u32) {
        self.refs.retain(|r| r.id != id);
    }

    /// Takes lock `target` at `pc`. Taking a lock this path already holds is rejected: it would
    /// deadlock.
    pub fn lock(&mut self, id: u32, target: LockTarget, pc: usize) -> Result<(), String> {
        if let Some(held) = self.locks.iter().find(|l| l.target == target) {
            return Err(format!(
                "bpf_spin_lock of {target}, which is already held (taken at instruction {}): this would deadlock",
                held.acquired_at
            ));
        }
        self.locks.push(HeldLock {
            id,
            target,
            acquired_at: pc,
        });
        Ok(())
    }

    /// Releases lock `target`, which must be held. A heap lock at an unknown offset matches the
    /// only held heap lock.
    pub fn unlock(&mut self, target: LockTarget) -> Result<HeldLock, String> {
        let pos = match target {
            LockTarget::Heap { off: None } => {
                let heap: Vec<usize> = (0..self.locks.len())
                    .filter(|&i| matches!(self.locks[i].target, LockTarget::Heap { .. }))
                    .collect();
                match heap.as_slice() {
                    [one] => Some(*one),
                    [] => None,
                    _ => {
                        return Err(
                            "bpf_spin_unlock of a heap lock at an unknown offset while several heap locks are held"
                                .to_string(),
                        );
                    }
                }
            }
            _ => self.locks.iter().position(|l| l.target == target),
        };
        match pos {
            Some(p) => Ok(self.locks.remove(p)),
            None if self.locks.is_empty() => Err(format!(
                "bpf_spin_unlock of {target}, but no lock is held on this path"
            )),
            None => Err(format!(
                "bpf_spin_unlock of {target}, which is not held (held: {})",
                self.locks
                    .iter()
                    .map(|l| l.target.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty() && self.locks.is_empty()
    }

    /// Whether `self` and `other` hold the same resources (for state pruning).
    pub fn same_as(&self, other: &Resources) -> bool {
        self == other
    }
}

/// What the resource checks need from the verifier state.
pub trait ResourceView {
    /// The resources held on this path.
    fn resources(&self) -> &Resources;
    /// Every register and spilled stack slot holding a handle to a reference: its location and
    /// the reference id (innermost frame last).
    fn ref_holders(&self) -> Vec<(Location, u32)>;
    /// Every register and spilled stack slot holding a pointer to a lock word (a map value at a
    /// constant offset, or a heap pointer).
    fn lock_holders(&self) -> Vec<(Location, LockTarget)>;
}

/// A readable name for a resource kind.
pub fn kind_name(kind: ResourceKind) -> String {
    match kind {
        ResourceKind::RingbufSample => "ringbuf sample".to_string(),
        ResourceKind::Lock => "spin lock".to_string(),
        ResourceKind::Host(k) => format!("host {k}"),
    }
}

/// The rule broken by exiting while holding resources, or `Ok` when nothing is held. Names
/// where each leaked reference was acquired.
pub fn check_exit_resources(res: &Resources) -> Result<(), String> {
    if let Some(l) = res.locks.first() {
        let more = res.locks.len() - 1;
        return Err(format!(
            "program exits while holding {} taken at instruction {}{}: every lock must be released on every path",
            l.target,
            l.acquired_at,
            if more > 0 {
                format!(" (and {more} more lock(s))")
            } else {
                String::new()
            }
        ));
    }
    if !res.refs.is_empty() {
        let list: Vec<String> = res
            .refs
            .iter()
            .map(|r| {
                format!(
                    "{} id={} acquired at instruction {}",
                    kind_name(r.kind),
                    r.id,
                    r.acquired_at
                )
            })
            .collect();
        return Err(format!(
            "unreleased reference at exit: {} (leaked)",
            list.join("; ")
        ));
    }
    Ok(())
}

/// The helper that releases `kind` on cancellation (0 when the registry has none).
fn release_helper(helpers: &HelperRegistry, kind: ResourceKind) -> u32 {
    helpers.release_helper(kind).unwrap_or(0)
}

/// Everything held at this point, with where a handle to each lives and how to release it.
///
/// A reference held in several places is listed once per place (any of them can be used to
/// release it). A lock is listed with a location holding a pointer to its word; a lock whose
/// pointer no register or slot holds any more is still listed, located at the place it was
/// last seen if known, else omitted (the runtime's resource tracker records every taken lock
/// and unlocks it on cancellation regardless).
pub fn live_resources<S: ResourceView + ?Sized>(
    state: &S,
    helpers: &HelperRegistry,
) -> Vec<LiveResource> {
    let res = state.resources();
    let mut out = Vec::new();
    let holders = state.ref_holders();
    for r in &res.refs {
        for (loc, _) in holders.iter().filter(|(_, id)| *id == r.id) {
            out.push(LiveResource {
                ref_id: r.id,
                kind: r.kind,
                location: *loc,
                release_helper: release_helper(helpers, r.kind),
                acquired_at: r.acquired_at,
            });
        }
    }
    if !res.locks.is_empty() {
        let lock_holders = state.lock_holders();
        for l in &res.locks {
            let found = lock_holders.iter().find(|(_, t)| match (t, l.target) {
                (LockTarget::Heap { off: None }, LockTarget::Heap { .. }) => true,
                (t, target) => *t == target,
            });
            if let Some((loc, _)) = found {
                out.push(LiveResource {
                    ref_id: l.id,
                    kind: ResourceKind::Lock,
                    location: *loc,
                    release_helper: helpers
                        .release_helper(ResourceKind::Lock)
                        .unwrap_or(ids::SPIN_UNLOCK),
                    acquired_at: l.acquired_at,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_twice_and_never_acquired_are_errors() {
        let mut r = Resources::default();
        r.acquire(1, ResourceKind::RingbufSample, 4);
        assert!(r.release(1, ResourceKind::RingbufSample).is_ok());
        let e = r.release(1, ResourceKind::RingbufSample).unwrap_err();
        assert!(e.contains("already released"), "{e}");
        let e = r.release(9, ResourceKind::RingbufSample).unwrap_err();
        assert!(e.contains("never acquired"), "{e}");
        r.acquire(2, ResourceKind::Host("socket"), 5);
        let e = r.release(2, ResourceKind::RingbufSample).unwrap_err();
        assert!(e.contains("host socket"), "{e}");
        assert!(r.get(2).is_some());
    }

    #[test]
    fn locks_nest_and_release_in_any_order() {
        let mut r = Resources::default();
        let a = LockTarget::MapValue {
            map: 0,
            value: 1,
            off: 0,
        };
        let b = LockTarget::MapValue {
            map: 1,
            value: 2,
            off: 8,
        };
        r.lock(1, a, 3).unwrap();
        r.lock(2, b, 6).unwrap();
        assert!(r.lock(3, a, 7).unwrap_err().contains("deadlock"));
        assert_eq!(r.unlock(b).unwrap().id, 2);
        assert!(r.unlock(b).unwrap_err().contains("not held"));
        assert_eq!(r.unlock(a).unwrap().acquired_at, 3);
        assert!(r.unlock(a).unwrap_err().contains("no lock is held"));
        assert!(r.is_empty());
    }

    #[test]
    fn exit_reports_where_leaks_were_acquired() {
        let mut r = Resources::default();
        assert!(check_exit_resources(&r).is_ok());
        r.acquire(7, ResourceKind::RingbufSample, 12);
        let e = check_exit_resources(&r).unwrap_err();
        assert!(e.contains("acquired at instruction 12"), "{e}");
        r.forget(7);
        r.lock(8, LockTarget::Heap { off: Some(64) }, 20).unwrap();
        let e = check_exit_resources(&r).unwrap_err();
        assert!(
            e.contains("taken at instruction 20") && e.contains("lock"),
            "{e}"
        );
    }

    struct View(Resources, Vec<(Location, u32)>, Vec<(Location, LockTarget)>);
    impl ResourceView for View {
        fn resources(&self) -> &Resources {
            &self.0
        }
        fn ref_holders(&self) -> Vec<(Location, u32)> {
            self.1.clone()
        }
        fn lock_holders(&self) -> Vec<(Location, LockTarget)> {
            self.2.clone()
        }
    }

    #[test]
    fn live_resources_name_locations_and_release_helpers() {
        let mut res = Resources::default();
        res.acquire(1, ResourceKind::RingbufSample, 2);
        let lock = LockTarget::MapValue {
            map: 0,
            value: 0,
            off: 0,
        };
        res.lock(2, lock, 5).unwrap();
        let view = View(
            res,
            vec![
                (Location::Reg(6), 1),
                (
                    Location::Stack {
                        frame: 0,
                        offset: -8,
                    },
                    1,
                ),
                (Location::Reg(7), 99),
            ],
            vec![(Location::Reg(8), lock)],
        );
        let live = live_resources(&view, &HelperRegistry::linux_default());
        assert_eq!(live.len(), 3, "{live:?}");
        assert!(live.iter().any(|l| l.location == Location::Reg(6)
            && l.release_helper == ids::RINGBUF_DISCARD
            && l.acquired_at == 2));
        assert!(live.iter().any(|l| l.location
            == Location::Stack {
                frame: 0,
                offset: -8
            }));
        assert!(live.iter().any(|l| l.kind == ResourceKind::Lock
            && l.location == Location::Reg(8)
            && l.release_helper == ids::SPIN_UNLOCK));
    }
}
