//! The resource tracker: every reference an invocation acquires (a ringbuf reservation; later locks
//! and host objects) gets an id and a release action, so that everything still held when an
//! extension ends or is cancelled can be released.

use std::collections::BTreeMap;

use crate::helpers::ResourceKind;

/// What releasing a resource does when the extension did not release it itself.
pub type ReleaseFn = Box<dyn FnOnce() + Send>;

/// One held resource.
pub struct Held {
    /// Tracker-assigned id (unique within the tracker, increasing).
    pub id: u64,
    /// What the resource is.
    pub kind: ResourceKind,
    /// The value the extension holds for it (e.g. the sample address).
    pub key: u64,
    /// The map it belongs to, if any.
    pub map: Option<usize>,
    release: Option<ReleaseFn>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("key", &format_args!("{:#x}", self.key))
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

/// References held by one invocation.
#[derive(Default, Debug)]
pub struct ResourceTracker {
    next_id: u64,
    held: BTreeMap<u64, Held>,
    acquired: u64,
    released: u64,
}

impl ResourceTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an acquired resource with the action that releases it; returns its id.
    pub fn acquire(
        &mut self,
        kind: ResourceKind,
        key: u64,
        map: Option<usize>,
        release: ReleaseFn,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.held.insert(
            id,
            Held {
                id,
                kind,
                key,
                map,
                release: Some(release),
            },
        );
        self.acquired += 1;
        id
    }

    /// The held resource of `kind` whose key is `key`.
    pub fn find(&self, kind: ResourceKind, key: u64) -> Option<&Held> {
        self.held.values().find(|h| h.kind == kind && h.key == key)
    }

    /// Removes the resource of `kind` with `key` *without* running its release action, because the
    /// extension released it itself (e.g. submitted the sample). Counts as released.
    pub fn take(&mut self, kind: ResourceKind, key: u64) -> Option<Held> {
        let id = self.find(kind, key)?.id;
        let mut h = self.held.remove(&id)?;
        h.release = None;
        self.released += 1;
        Some(h)
    }

    /// Runs the release action of resource `id`; false if it is not held.
    pub fn release(&mut self, id: u64) -> bool {
        let Some(mut h) = self.held.remove(&id) else {
            return false;
        };
        if let Some(f) = h.release.take() {
            f();
        }
        self.released += 1;
        true
    }

    /// Releases everything still held, most recently acquired first; returns how many.
    pub fn release_all(&mut self) -> usize {
        let mut n = 0;
        while let Some((&id, _)) = self.held.last_key_value() {
            self.release(id);
            n += 1;
        }
        n
    }

    /// Number of resources currently held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Held resources, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Held> {
        self.held.values()
    }

    /// Total acquired since creation.
    pub fn acquired(&self) -> u64 {
        self.acquired
    }

    /// Total released since creation (by the extension or by the tracker).
    pub fn released(&self) -> u64 {
        self.released
    }
}

impl Drop for ResourceTracker {
    /// Nothing may leak: whatever is still held when the tracker goes away is released.
    fn drop(&mut self) {
        self.release_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn release_all_runs_actions_in_reverse_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut t = ResourceTracker::new();
        for i in 0..3u64 {
            let log = log.clone();
            t.acquire(
                ResourceKind::RingbufSample,
                100 + i,
                Some(0),
                Box::new(move || log.lock().unwrap().push(i)),
            );
        }
        let taken = t.take(ResourceKind::RingbufSample, 101).unwrap();
        assert_eq!(taken.map, Some(0));
        assert!(t.take(ResourceKind::RingbufSample, 101).is_none());
        assert!(t.find(ResourceKind::Lock, 100).is_none());
        assert_eq!(t.held(), 2);
        assert_eq!(t.release_all(), 2);
        assert_eq!(
            *log.lock().unwrap(),
            vec![2, 0],
            "taken resource's action not run"
        );
        assert_eq!((t.acquired(), t.released(), t.held()), (3, 3, 0));
        assert!(!t.release(1));
    }

    #[test]
    fn drop_releases() {
        let hit = Arc::new(Mutex::new(false));
        {
            let mut t = ResourceTracker::new();
            let h = hit.clone();
            t.acquire(
                ResourceKind::Lock,
                1,
                None,
                Box::new(move || *h.lock().unwrap() = true),
            );
        }
        assert!(*hit.lock().unwrap());
    }
}
