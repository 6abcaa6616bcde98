//! The watchdog: stops invocations that outlive their time budget, and the process-wide
//! cancellation counters.
//!
//! One thread per process, started lazily by the first [`Watchdog::arm`], keeps a deadline per
//! armed invocation. When a deadline passes it calls [`Invocation::request_termination`] on that
//! invocation only (the next termination check of that run faults or branches and the run is
//! cancelled with `Terminated`); runs on other threads, and other runs of the same program, are
//! unaffected. Dropping the [`WatchGuard`] disarms the deadline.
//!
//! Cost per run: every thread has a *slot* (deadline, invocation, state) the watchdog thread
//! scans. Arming the outermost invocation of a thread writes its slot with three atomic stores
//! and disarming is one compare-and-swap: no lock, no allocation, no system call; the deadline
//! comes from the precise clock at most once per [`BRIDGE_SLACK_NS`] of back-to-back arms and is
//! bridged with the time-stamp counter in between (never early, at most that much late). The thread is
//! woken (a mutex and a condition-variable notification) only when the new deadline is earlier
//! than the time the watchdog will look again, so back-to-back short runs wake it at most about
//! once per budget. Nested invocations (an extension run from inside a helper of another one on
//! the same thread) find the slot taken and use a mutex-protected ordered table instead.
//!
//! Wake-up protocol: the watchdog thread scans with the table's mutex held, publishing
//! `SCANNING` in `next_look` before the scan and the earliest deadline it saw afterwards. An
//! arm stores its slot *then* reads `next_look` (both sequentially consistent): if it reads a
//! value from before the scan, the scan sees the slot; if it reads `SCANNING`, it takes the
//! mutex, which it gets only once the watchdog waits, and notifies; if it reads the scan's result,
//! it notifies unless the watchdog already looks again before the new deadline.
//!
//! Soundness: slots and the table keep a raw pointer to the invocation. The guard borrows the
//! invocation, so it cannot move or be dropped while the guard lives. A table entry is removed
//! under the mutex the thread holds while calling `request_termination`; a slot is disarmed by a
//! compare-and-swap that fails while the watchdog is firing it (`FIRING`), in which case the drop
//! waits for the watchdog to finish: the watchdog never touches an invocation after its guard was
//! dropped. Leaking the guard would break this, so [`Watchdog::arm`] is `unsafe`;
//! [`Watchdog::watch`] is the safe scoped form.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::Invocation;

/// Budget of a run when the engine is not told otherwise.
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(10);

/// `next_look` while the watchdog thread scans (arms must notify).
const SCANNING: u64 = 0;
/// `next_look` when the watchdog waits without a deadline.
const IDLE_WAIT: u64 = u64::MAX;

/// How long the thread keeps waking up at this interval after the last deadline it saw, before
/// it waits without a deadline: during that time arms with a budget at least this long find it
/// looking again before their deadline and need not wake it.
const LINGER: Duration = DEFAULT_BUDGET;

/// Slot states.
const SLOT_IDLE: u8 = 0;
const SLOT_ARMED: u8 = 1;
/// The watchdog is requesting termination of the slot's invocation.
const SLOT_FIRING: u8 = 2;
/// The watchdog fired the slot; its guard still has to drop it.
const SLOT_FIRED: u8 = 3;

/// One thread's deadline (see the module docs).
#[derive(Debug, Default)]
struct Slot {
    state: AtomicU8,
    /// Deadline in ticks ([`now_ticks`]).
    deadline: AtomicU64,
    invocation: AtomicPtr<Invocation>,
}

/// A pointer to an armed invocation (only dereferenced under the table's mutex, while armed).
struct Armed(*const Invocation);

// SAFETY: the pointer is only dereferenced by the watchdog thread while the entry is in the
// table, i.e. until the `WatchGuard` is dropped, which `arm`'s contract requires to happen
// before the invocation moves or is dropped (see the module docs);
// `Invocation::request_termination` is an atomic store, safe from any thread.
unsafe impl Send for Armed {}

/// The deadline table of nested invocations and the registered slots.
#[derive(Default)]
struct Table {
    /// (deadline in ticks, arm sequence number) -> invocation.
    deadlines: BTreeMap<(u64, u64), Armed>,
    /// Every thread's slot (a slot whose thread exited is dropped at the next scan).
    slots: Vec<Arc<Slot>>,
    next_id: u64,
    started: bool,
}

/// The process-wide watchdog (see the module docs).
pub struct Watchdog {
    table: Mutex<Table>,
    wake: Condvar,
    fired: AtomicU64,
    /// When the thread looks at the deadlines next, in ticks ([`SCANNING`], [`IDLE_WAIT`]).
    next_look: AtomicU64,
}

static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();

/// Nanoseconds of `clock` (a monotonic clock; 0 if it cannot be read).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer; the call has no other preconditions.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return 0;
    }
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Now, in deadline ticks: `CLOCK_MONOTONIC` nanoseconds (the clock of `std::time::Instant`) plus one,
/// so no time equals [`SCANNING`].
fn now_ticks() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC).saturating_add(1)
}

/// The deadline `budget_ns` from now, in ticks: never early, at most [`BRIDGE_SLACK_NS`] late.
///
/// This starts from the precise clock: `CLOCK_MONOTONIC_COARSE` would be several times cheaper,
/// but on a tickless kernel it can lag by more than its resolution, which would make deadlines
/// early. The precise clock costs a `clock_gettime` per run, though, so back-to-back arms bridge
/// from the thread's last reading with the time-stamp counter (see [`now_upper_bound`]).
fn deadline_ticks(budget_ns: u64) -> u64 {
    now_upper_bound().saturating_add(budget_ns)
}

/// Largest time-stamp-counter distance bridged from the last clock reading.
const TSC_BRIDGE: u64 = 1 << 16;

/// Upper bound of nanoseconds per time-stamp-counter tick: an invariant TSC runs at the CPU's
/// nominal frequency, well above 0.5 GHz on every x86-64 part.
const NS_PER_TICK_MAX: u64 = 2;

/// How much later than with the precise clock a bridged deadline can be (about 131 µs).
pub const BRIDGE_SLACK_NS: u64 = TSC_BRIDGE * NS_PER_TICK_MAX;

thread_local! {
    /// The thread's last precise clock reading and the time-stamp counter read just before it.
    static LAST_READING: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// An upper bound of [`now_ticks`]: the precise clock, or, within [`TSC_BRIDGE`] counter ticks of
/// the thread's last reading, that reading plus the most time the elapsed ticks can represent.
/// Falls back to the precise clock without an invariant time-stamp counter, and whenever the
/// counter went backwards (a migration to a CPU whose counter is behind).
fn now_upper_bound() -> u64 {
    let Some(tsc) = tsc() else {
        return now_ticks();
    };
    let (t0, ns0) = LAST_READING.with(std::cell::Cell::get);
    let delta = tsc.wrapping_sub(t0);
    if ns0 != 0 && delta <= TSC_BRIDGE {
        // The reading was taken after `t0`, so the time at `t0` is at most `ns0`, and at most
        // `delta * NS_PER_TICK_MAX` nanoseconds passed since.
        return ns0.saturating_add(delta * NS_PER_TICK_MAX);
    }
    let ns = now_ticks();
    LAST_READING.with(|c| c.set((tsc, ns)));
    ns
}

/// The time-stamp counter, if it is invariant (constant rate, runs in every power state).
#[cfg(target_arch = "x86_64")]
fn tsc() -> Option<u64> {
    use std::sync::atomic::AtomicU8;
    static INVARIANT: AtomicU8 = AtomicU8::new(0);
    let known = INVARIANT.load(Ordering::Relaxed);
    let invariant = if known == 0 {
        // CPUID leaf 0x8000_0007, EDX bit 8: invariant TSC (when the extended leaf exists).
        let max_ext = std::arch::x86_64::__cpuid(0x8000_0000).eax;
        let yes =
            max_ext >= 0x8000_0007 && std::arch::x86_64::__cpuid(0x8000_0007).edx & (1 << 8) != 0;
        INVARIANT.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
        yes
    } else {
        known == 1
    };
    // SAFETY: `rdtsc` is available on every x86-64 CPU and only reads the counter.
    invariant.then(|| unsafe { std::arch::x86_64::_rdtsc() })
}

/// No time-stamp counter elsewhere: always the precise clock.
#[cfg(not(target_arch = "x86_64"))]
fn tsc() -> Option<u64> {
    None
}

thread_local! {
    /// This thread's slot, registered with the watchdog on first use.
    static SLOT: OnceLock<Arc<Slot>> = const { OnceLock::new() };
}

/// What a guard disarms.
#[derive(Debug)]
enum Key {
    /// Nothing (the budget never expires).
    None,
    /// The slot of the thread that armed the guard, borrowed from that thread's `SLOT` (no
    /// reference-count traffic per run). Valid while the guard lives: the guard is not `Send`,
    /// so it is dropped on the arming thread, before that thread's `SLOT` (and its `Arc`) is
    /// destroyed — a guard made inside a thread-local destructor that runs after `SLOT`'s finds
    /// `SLOT` gone and uses the table instead.
    Slot(*const Slot),
    /// A table entry.
    Table((u64, u64)),
}

impl Watchdog {
    /// The process's watchdog (its thread starts on the first [`Watchdog::arm`]).
    pub fn global() -> &'static Watchdog {
        WATCHDOG.get_or_init(|| Watchdog {
            table: Mutex::new(Table::default()),
            wake: Condvar::new(),
            fired: AtomicU64::new(0),
            next_look: AtomicU64::new(IDLE_WAIT),
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
        let guard = |key| WatchGuard {
            key,
            _invocation: PhantomData,
        };
        // A budget too large to represent never expires.
        let Some(deadline) = u64::try_from(budget.as_nanos())
            .ok()
            .map(deadline_ticks)
            .filter(|&d| d != u64::MAX)
        else {
            return guard(Key::None);
        };
        let slot = SLOT.try_with(|s| Arc::as_ptr(s.get_or_init(|| dog.register_slot())));
        // SAFETY: the pointer comes from this thread's live `SLOT`, which keeps the slot alive
        // until the thread's thread-locals are destroyed (see `Key::Slot`).
        if let Ok(slot) = slot.map(|p| unsafe { &*p })
            && slot.state.load(Ordering::Relaxed) == SLOT_IDLE
        {
            let ptr = (invocation as *const Invocation).cast_mut();
            slot.invocation.store(ptr, Ordering::Relaxed);
            slot.deadline.store(deadline, Ordering::Relaxed);
            slot.state.store(SLOT_ARMED, Ordering::SeqCst);
            let next = dog.next_look.load(Ordering::SeqCst);
            if next == SCANNING || deadline < next {
                let table = dog.lock();
                dog.start_and_wake(table);
            }
            return guard(Key::Slot(slot as *const Slot));
        }
        let mut table = dog.lock();
        let id = table.next_id;
        table.next_id = id.wrapping_add(1);
        table
            .deadlines
            .insert((deadline, id), Armed(invocation as *const Invocation));
        if deadline < dog.next_look.load(Ordering::SeqCst) {
            dog.start_and_wake(table);
        }
        guard(Key::Table((deadline, id)))
    }

    /// A new slot for the calling thread, registered for scanning.
    fn register_slot(&'static self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        self.lock().slots.push(Arc::clone(&slot));
        slot
    }

    /// Starts the thread if it is not running yet, and wakes it.
    fn start_and_wake(&'static self, mut table: MutexGuard<'_, Table>) {
        if !table.started {
            let spawned = std::thread::Builder::new()
                .name("kflex-watchdog".into())
                .spawn(move || self.run_thread());
            table.started = spawned.is_ok();
        }
        self.wake.notify_one();
    }

    /// How many terminations the watchdog has requested since the process started.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }

    /// Deadlines currently armed.
    pub fn armed(&self) -> usize {
        let table = self.lock();
        let slots = table
            .slots
            .iter()
            .filter(|s| s.state.load(Ordering::Acquire) == SLOT_ARMED)
            .count();
        table.deadlines.len() + slots
    }

    /// Fires every expired deadline; returns the earliest one still pending and the latest
    /// deadline any slot was armed with (pending or not).
    fn scan(&self, table: &mut Table, now: u64) -> (Option<u64>, u64) {
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
        let mut next = table.deadlines.first_key_value().map(|(k, _)| k.0);
        let mut latest = 0;
        for slot in &table.slots {
            latest = latest.max(slot.deadline.load(Ordering::Relaxed));
            if slot.state.load(Ordering::SeqCst) != SLOT_ARMED {
                continue;
            }
            let deadline = slot.deadline.load(Ordering::Relaxed);
            if deadline > now {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                continue;
            }
            if slot
                .state
                .compare_exchange(SLOT_ARMED, SLOT_FIRING, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            // While the slot is `FIRING` its thread can neither disarm nor re-arm it, so the
            // deadline and invocation now are those of the arm the exchange caught, which may be
            // a newer arm than the deadline read above belonged to: check again.
            let deadline = slot.deadline.load(Ordering::Relaxed);
            if deadline > now {
                slot.state.store(SLOT_ARMED, Ordering::SeqCst);
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                continue;
            }
            let inv = slot.invocation.load(Ordering::Relaxed);
            // SAFETY: the slot was armed and is now `FIRING`: its guard (which borrows the
            // invocation) cannot finish dropping until we store `FIRED` below.
            unsafe { (*inv).request_termination() };
            slot.state.store(SLOT_FIRED, Ordering::Release);
            self.fired.fetch_add(1, Ordering::Relaxed);
        }
        // Slots of exited threads (only the table holds them) are idle: drop them.
        table.slots.retain(|s| Arc::strong_count(s) > 1);
        (next, latest)
    }

    /// The watchdog thread's loop.
    fn run_thread(&self) {
        let mut table = self.lock();
        loop {
            self.next_look.store(SCANNING, Ordering::SeqCst);
            let now = now_ticks();
            let (next, latest) = self.scan(&mut table, now);
            let linger = u64::try_from(LINGER.as_nanos()).unwrap_or(u64::MAX);
            // Runs armed recently: look again in a while rather than wait to be woken.
            let next = next.or_else(|| {
                (latest.saturating_add(linger) > now).then(|| now.saturating_add(linger))
            });
            self.next_look
                .store(next.unwrap_or(IDLE_WAIT), Ordering::SeqCst);
            table = match next {
                None => self.wake.wait(table).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let now = now_ticks();
                    let wait = Duration::from_nanos(t.saturating_sub(now));
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
    key: Key,
    _invocation: PhantomData<&'a Invocation>,
}

// A `WatchGuard` is neither `Send` nor `Sync` (its `Key::Slot` raw pointer makes it so): it must
// be dropped on the thread that armed it.

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        match &self.key {
            Key::None => {}
            Key::Table(key) => {
                Watchdog::global().lock().deadlines.remove(key);
            }
            // SAFETY: see `Key::Slot`: the arming thread's `SLOT` is still alive.
            Key::Slot(slot) => disarm(unsafe { &**slot }),
        }
    }
}

/// Disarms `slot`, waiting for the watchdog if it is firing it right now.
fn disarm(slot: &Slot) {
    loop {
        match slot.state.compare_exchange(
            SLOT_ARMED,
            SLOT_IDLE,
            Ordering::SeqCst,
            Ordering::Acquire,
        ) {
            Ok(_) | Err(SLOT_IDLE) => return,
            Err(SLOT_FIRED) => {
                slot.state.store(SLOT_IDLE, Ordering::Release);
                return;
            }
            Err(_) => std::hint::spin_loop(),
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
    use std::time::Instant;

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

    /// Waits (up to 10 s) until `inv` is poisoned; false if it never was.
    fn wait_poisoned(inv: &Invocation) -> bool {
        let start = Instant::now();
        while !poisoned(inv) {
            if start.elapsed() > Duration::from_secs(10) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    #[test]
    fn nested_arms_fire_independently() {
        let (outer, inner) = (Invocation::new(1, 0), Invocation::new(1, 0));
        // SAFETY: both guards are dropped at the end of the test, before the invocations.
        let _go = unsafe { Watchdog::arm(&outer, Duration::from_secs(60)) };
        // SAFETY: as above.
        let gi = unsafe { Watchdog::arm(&inner, Duration::from_millis(2)) };
        assert!(matches!(gi.key, Key::Table(_)), "the slot is taken");
        assert!(wait_poisoned(&inner));
        assert!(!poisoned(&outer));
    }

    #[test]
    fn a_fired_slot_can_be_armed_again() {
        for _ in 0..3 {
            let inv = Invocation::new(1, 0);
            let fired = Watchdog::watch(&inv, Duration::from_millis(1), || wait_poisoned(&inv));
            assert!(fired);
        }
        let inv = Invocation::new(1, 0);
        // SAFETY: dropped at the end of the test, before the invocation.
        let g = unsafe { Watchdog::arm(&inv, Duration::from_secs(60)) };
        assert!(
            matches!(g.key, Key::Slot(_)),
            "the slot was released after firing"
        );
    }

    #[test]
    fn earlier_deadline_on_another_thread_wakes_the_watchdog() {
        let long = Invocation::new(1, 0);
        // SAFETY: dropped at the end of the test, before the invocation.
        let _gl = unsafe { Watchdog::arm(&long, Duration::from_secs(60)) };
        std::thread::sleep(Duration::from_millis(10));
        let fired = std::thread::spawn(|| {
            let short = Invocation::new(1, 0);
            Watchdog::watch(&short, Duration::from_millis(1), || wait_poisoned(&short))
        })
        .join()
        .unwrap();
        assert!(fired);
        assert!(!poisoned(&long));
    }

    #[test]
    fn deadlines_are_never_early() {
        for budget in [100_000u64, 10_000_000, 1_000_000_000] {
            for _ in 0..1000 {
                let before = now_ticks();
                let deadline = deadline_ticks(budget);
                assert!(deadline >= before + budget, "budget {budget} ns");
                assert!(
                    deadline <= now_ticks() + budget + BRIDGE_SLACK_NS,
                    "budget {budget} ns"
                );
            }
        }
    }

    #[test]
    fn back_to_back_deadlines_bridge_from_one_clock_reading() {
        if tsc().is_none() {
            return;
        }
        deadline_ticks(0);
        let first = LAST_READING.with(std::cell::Cell::get);
        deadline_ticks(0);
        // Two arms a few hundred counter ticks apart share the reading (a preemption in
        // between may legitimately refresh it, so allow one retry).
        let second = LAST_READING.with(std::cell::Cell::get);
        if second != first {
            deadline_ticks(0);
            assert_eq!(LAST_READING.with(std::cell::Cell::get), second);
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
