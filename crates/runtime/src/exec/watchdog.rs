//! The watchdog: stops invocations that outlive their time budget, and the process-wide
//! cancellation counters.
//!
//! One thread per process, started lazily by the first [`Watchdog::arm`], keeps a deadline per
//! armed invocation. When a deadline passes it calls [`Invocation::request_termination`] on that
//! invocation only (the next termination check of that run faults or branches and the run is
//! cancelled with `Terminated`); runs on other threads, and other runs of the same program, are
//! unaffected. Dropping the [`WatchGuard`] disarms the deadline.
//!
//! Cost per run: arming takes a mutex and inserts into an ordered map; the thread is woken only
//! when the new deadline is earlier than the one it already sleeps until, so back-to-back short
//! runs wake it at most about once per budget.
//!
//! Soundness: the deadline table keeps a raw pointer to the invocation. The guard borrows the
//! invocation, so it cannot move or be dropped while the guard lives, and the guard's drop
//! removes the entry under the same mutex the thread holds while calling `request_termination`:
//! the thread never touches an invocation after its guard was dropped. Leaking the guard would
//! break this, so [`Watchdog::arm`] is `unsafe`; [`Watchdog::watch`] is the safe scoped form.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::Invocation;

/// Budget of a run when the engine is not told otherwise.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(10);

/// A pointer to an armed invocation (only dereferenced under the table's mutex, while armed).
struct Armed(*const Invocation);

// SAFETY: the pointer is only dereferenced by the watchdog thread while the entry is in the
// table, i.e. until the `WatchGuard` is dropped, which `arm`'s contract requires to happen
// before the invocation moves or is dropped (see the module docs);
// `Invocation::request_termination` is an atomic store, safe from any thread.
unsafe impl Send for Armed {}

/// The deadline table.
#[derive(Default)]
struct Table {
    /// (deadline, arm sequence number) -> invocation.
    deadlines: BTreeMap<(Instant, u64), Armed>,
    /// The deadline the thread sleeps until (`None`: until notified).
    sleeping_until: Option<Instant>,
    next_id: u64,
    started: bool,
}

/// The process-wide watchdog (see the module docs).
pub struct Watchdog {
    table: Mutex<Table>,
    wake: Condvar,
    fired: AtomicU64,
}

static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();

impl Watchdog {
    /// The process's watchdog (its thread starts on the first [`Watchdog::arm`]).
    pub fn global() -> &'static Watchdog {
        WATCHDOG.get_or_init(|| Watchdog {
            table: Mutex::new(Table::default()),
            wake: Condvar::new(),
            fired: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` with a deadline `budget` from now armed for `invocation` (the safe form of
    /// [`Watchdog::arm`]: the deadline is disarmed when `f` returns or unwinds).
    pub fn watch<R>(invocation: &Invocation, budget: Duration, f: impl FnOnce() -> R) -> R {
        // SAFETY: the guard is a local dropped before this function returns (also on unwinding),
        // while `invocation` is still borrowed.
        let _guard = unsafe { Watchdog::arm(invocation, budget) };
        f()
    }

    /// Arms a deadline `budget` from now for `invocation`; when it passes before the guard is
    /// dropped, the invocation's termination is requested.
    ///
    /// # Safety
    /// The guard must be dropped, not leaked (`mem::forget`), before `invocation` is moved or
    /// dropped: the watchdog keeps a raw pointer to it until the guard's drop disarms it.
    pub unsafe fn arm<'a>(invocation: &'a Invocation, budget: Duration) -> WatchGuard<'a> {
        let dog = Watchdog::global();
        // A budget too large to represent never expires.
        let Some(deadline) = Instant::now().checked_add(budget) else {
            return WatchGuard {
                key: None,
                _invocation: PhantomData,
            };
        };
        let mut table = dog.lock();
        if !table.started {
            let spawned = std::thread::Builder::new()
                .name("kflex-watchdog".into())
                .spawn(move || dog.run_thread());
            table.started = spawned.is_ok();
        }
        let id = table.next_id;
        table.next_id = id.wrapping_add(1);
        table
            .deadlines
            .insert((deadline, id), Armed(invocation as *const Invocation));
        if table.sleeping_until.is_none_or(|t| deadline < t) {
            dog.wake.notify_one();
        }
        WatchGuard {
            key: Some((deadline, id)),
            _invocation: PhantomData,
        }
    }

    /// How many terminations the watchdog has requested since the process started.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }

    /// Deadlines currently armed.
    pub fn armed(&self) -> usize {
        self.lock().deadlines.len()
    }

    /// The watchdog thread's loop.
    fn run_thread(&self) {
        let mut table = self.lock();
        loop {
            let now = Instant::now();
            while let Some(entry) = table.deadlines.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let Armed(inv) = entry.remove();
                // SAFETY: the entry was still armed, so its guard (which borrows the invocation)
                // is alive and cannot be dropped while we hold the table's mutex.
                unsafe { (*inv).request_termination() };
                self.fired.fetch_add(1, Ordering::Relaxed);
            }
            let next = table.deadlines.first_key_value().map(|(k, _)| k.0);
            table.sleeping_until = next;
            table = match next {
                None => self.wake.wait(table).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let wait = t.saturating_duration_since(Instant::now());
                    self.wake
                        .wait_timeout(table, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

/// An armed deadline; dropping it disarms.
#[derive(Debug)]
pub struct WatchGuard<'a> {
    key: Option<(Instant, u64)>,
    _invocation: PhantomData<&'a Invocation>,
}

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            Watchdog::global().lock().deadlines.remove(&key);
        }
    }
}

/// Process-wide cancellation counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CancellationStats {
    /// Runs that ended cancelled (terminated, memory fault, stack overflow).
    pub cancellations: u64,
    /// Resources (ringbuf reservations, spin locks) released on those runs' behalf.
    pub resources_released: u64,
}

static CANCELLATIONS: AtomicU64 = AtomicU64::new(0);
static RESOURCES_RELEASED: AtomicU64 = AtomicU64::new(0);

/// Counts one cancelled run that released `resources` resources (engines call this).
pub fn record_cancellation(resources: usize) {
    CANCELLATIONS.fetch_add(1, Ordering::Relaxed);
    RESOURCES_RELEASED.fetch_add(resources as u64, Ordering::Relaxed);
}

/// The counters so far.
pub fn cancellation_stats() -> CancellationStats {
    CancellationStats {
        cancellations: CANCELLATIONS.load(Ordering::Relaxed),
        resources_released: RESOURCES_RELEASED.load(Ordering::Relaxed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::trap_page;

    fn poisoned(inv: &Invocation) -> bool {
        inv.terminate_word().load(Ordering::Acquire) == trap_page() as u64
    }

    #[test]
    fn expired_deadline_poisons_only_its_invocation() {
        let (a, b) = (Invocation::new(1, 0), Invocation::new(1, 0));
        // SAFETY: both guards are dropped at the end of the test, before the invocations.
        let _ga = unsafe { Watchdog::arm(&a, Duration::from_millis(5)) };
        // SAFETY: as above.
        let _gb = unsafe { Watchdog::arm(&b, Duration::from_secs(60)) };
        let start = Instant::now();
        while !poisoned(&a) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "deadline never fired"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!poisoned(&b));
    }

    #[test]
    fn dropped_guard_disarms() {
        let a = Invocation::new(1, 0);
        Watchdog::watch(&a, Duration::from_millis(20), || ());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!poisoned(&a));
        // Within `watch` the deadline fires.
        let b = Invocation::new(1, 0);
        let fired = Watchdog::watch(&b, Duration::from_millis(1), || {
            let start = Instant::now();
            while !poisoned(&b) && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            poisoned(&b)
        });
        assert!(fired);
    }

    #[test]
    fn earlier_deadline_wakes_a_sleeping_watchdog() {
        let (long, short) = (Invocation::new(1, 0), Invocation::new(1, 0));
        // SAFETY: both guards are dropped at the end of the test, before the invocations.
        let _gl = unsafe { Watchdog::arm(&long, Duration::from_secs(60)) };
        std::thread::sleep(Duration::from_millis(10));
        // SAFETY: as above.
        let _gs = unsafe { Watchdog::arm(&short, Duration::from_millis(1)) };
        let start = Instant::now();
        while !poisoned(&short) {
            assert!(start.elapsed() < Duration::from_secs(10), "not woken");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn stats_accumulate() {
        let before = cancellation_stats();
        record_cancellation(2);
        let after = cancellation_stats();
        assert!(after.cancellations > before.cancellations);
        assert!(after.resources_released >= before.resources_released + 2);
    }
}
