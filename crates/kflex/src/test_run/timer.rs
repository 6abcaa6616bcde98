//! Timing of a test-run's loop of runs (see [`super::TestRunResult::ns_per_run`]).
//!
//! A loop of several runs is timed by the calling thread's CPU clock (wall time where it is
//! unavailable). A single run is timed by the wall clock; reading it twice through
//! `clock_gettime` costs about as much as a short run, so once the time-stamp counter is
//! calibrated the run is timed by the counter instead. The counter is used only where it is a
//! wall clock: invariant (constant rate in every power state, CPUID) and the kernel's own clock
//! source (so the kernel found it synchronised across CPUs). Its rate is measured against
//! `CLOCK_MONOTONIC` from two tight (counter, clock) pairs at least [`CALIBRATION_SPAN_NS`]
//! apart, taken by single-run test-runs that time themselves by the clock meanwhile: the
//! error is below a few parts in 10^5, far under the variation of the runs themselves.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

/// Shortest span between the two calibration pairs.
pub(super) const CALIBRATION_SPAN_NS: u64 = 50_000_000;

/// Widest counter interval around a clock reading accepted as a calibration pair.
const PAIR_TICKS: u64 = 4096;

/// Nanoseconds per counter tick, 32.32 fixed point; 0 until calibrated.
static SCALE: AtomicU64 = AtomicU64::new(0);

/// The first calibration pair, `(ticks, ns)`.
static ANCHOR: Mutex<Option<(u64, u64)>> = Mutex::new(None);

/// Times one call's loop of runs.
pub(super) struct LoopTimer {
    start: Start,
}

enum Start {
    /// Thread CPU time (and wall time, in case the second reading fails).
    Cpu(u64, Instant),
    /// The time-stamp counter, with the scale it converts with.
    Ticks(u64, u64),
    /// Wall time by the clock.
    Wall(Instant),
}

impl LoopTimer {
    /// Starts timing a loop of several runs (`many`) or of one.
    pub(super) fn start(many: bool) -> Self {
        let start = if many {
            match thread_cpu_ns() {
                Some(cpu) => Start::Cpu(cpu, Instant::now()),
                None => Start::Wall(Instant::now()),
            }
        } else {
            match SCALE.load(Ordering::Relaxed) {
                0 => Start::Wall(Instant::now()),
                scale => Start::Ticks(ticks(), scale),
            }
        };
        LoopTimer { start }
    }

    /// Nanoseconds since `start` (see the module docs).
    pub(super) fn elapsed_ns(&self) -> u64 {
        let wall = |at: Instant| u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match self.start {
            Start::Cpu(a, at) => match thread_cpu_ns() {
                Some(b) => b.saturating_sub(a),
                None => wall(at),
            },
            Start::Ticks(t0, scale) => ticks_to_ns(ticks().saturating_sub(t0), scale),
            Start::Wall(at) => {
                let ns = wall(at);
                calibrate_step();
                ns
            }
        }
    }
}

/// `ticks` counter ticks in nanoseconds at `scale`.
fn ticks_to_ns(ticks: u64, scale: u64) -> u64 {
    u64::try_from((u128::from(ticks) * u128::from(scale)) >> 32).unwrap_or(u64::MAX)
}

/// Advances the calibration by one pair: the first pair anchors it, a pair at least
/// [`CALIBRATION_SPAN_NS`] later sets the scale. A no-op once calibrated or where the counter
/// is no wall clock.
fn calibrate_step() {
    if SCALE.load(Ordering::Relaxed) != 0 || !counter_is_wall_clock() {
        return;
    }
    let Some((t, ns)) = pair() else {
        return;
    };
    let Ok(mut anchor) = ANCHOR.lock() else {
        return;
    };
    match *anchor {
        None => *anchor = Some((t, ns)),
        Some((t0, ns0)) if ns >= ns0 + CALIBRATION_SPAN_NS && t > t0 => {
            let scale = (u128::from(ns - ns0) << 32) / u128::from(t - t0);
            // A counter between 0.2 and 10 GHz; anything else means a broken reading.
            let plausible = (1u128 << 32) / 10..=5u128 << 32;
            match u64::try_from(scale) {
                Ok(s) if plausible.contains(&scale) => SCALE.store(s, Ordering::Relaxed),
                _ => *anchor = Some((t, ns)),
            }
        }
        Some((t0, _)) if t <= t0 => *anchor = Some((t, ns)),
        Some(_) => {}
    }
}

/// A counter reading and a `CLOCK_MONOTONIC` reading taken at (almost) the same instant: the
/// clock read between two counter reads at most [`PAIR_TICKS`] apart, paired with their mean.
fn pair() -> Option<(u64, u64)> {
    for _ in 0..4 {
        let a = ticks();
        let ns = monotonic_ns()?;
        let b = ticks();
        if b >= a && b - a <= PAIR_TICKS {
            return Some((a + (b - a) / 2, ns));
        }
    }
    None
}

/// `CLOCK_MONOTONIC` in nanoseconds.
fn monotonic_ns() -> Option<u64> {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The calling thread's CPU time in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
pub(super) fn thread_cpu_ns() -> Option<u64> {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Nanoseconds of `clock`.
fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    (rc == 0).then(|| (ts.tv_sec as u64).wrapping_mul(1_000_000_000) + ts.tv_nsec as u64)
}

/// True if the time-stamp counter is a wall clock here (see the module docs); decided once.
fn counter_is_wall_clock() -> bool {
    static KNOWN: AtomicU8 = AtomicU8::new(0);
    match KNOWN.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let yes = invariant_counter() && kernel_clock_is_tsc();
            KNOWN.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
    }
}

/// The kernel keeps time with the TSC (it checked the counters are synchronised).
fn kernel_clock_is_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|s| s.trim() == "tsc")
}

/// CPUID leaf 0x8000_0007, EDX bit 8: the counter runs at a constant rate in every state.
#[cfg(target_arch = "x86_64")]
fn invariant_counter() -> bool {
    use std::arch::x86_64::__cpuid;
    __cpuid(0x8000_0000).eax >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn invariant_counter() -> bool {
    false
}

/// The time-stamp counter (0 off x86-64, where it is never calibrated and so never used).
///
/// Not serialised (`lfence`): that would wait for the work before each reading to drain, which
/// costs more than the clock call it replaces; an unordered reading can move by a few dozen
/// cycles, at both ends of the run alike.
#[cfg(target_arch = "x86_64")]
fn ticks() -> u64 {
    // SAFETY: `rdtsc` exists on every x86-64 CPU and only reads the counter.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn ticks() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_with_the_fixed_point_scale() {
        assert_eq!(ticks_to_ns(3_000, 1 << 32), 3_000, "1 ns per tick");
        assert_eq!(ticks_to_ns(3_000, 1 << 31), 1_500, "2 GHz");
        assert_eq!(ticks_to_ns(u64::MAX, 5 << 32), u64::MAX, "saturates");
    }

    #[test]
    fn the_calibrated_counter_agrees_with_the_clock() {
        if !counter_is_wall_clock() {
            eprintln!("SKIPPED: the time-stamp counter is not this machine's clock source");
            return;
        }
        calibrate_step();
        std::thread::sleep(std::time::Duration::from_nanos(
            CALIBRATION_SPAN_NS + 5_000_000,
        ));
        calibrate_step();
        let scale = SCALE.load(Ordering::Relaxed);
        assert_ne!(scale, 0, "calibrated after the span");
        // The same interval measured both ways (the bracketing clock reads cost well under
        // a microsecond, the interval is 20 ms).
        let (t0, c0) = (ticks(), Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (c1, t1) = (c0.elapsed().as_nanos() as f64, ticks());
        let by_ticks = ticks_to_ns(t1 - t0, scale) as f64;
        assert!(
            (by_ticks - c1).abs() < c1 * 0.01 + 5_000.0,
            "{by_ticks} ns by the counter vs {c1} ns by the clock"
        );
        let timer = LoopTimer::start(false);
        assert!(matches!(timer.start, Start::Ticks(..)));
        assert!(timer.elapsed_ns() < 1_000_000_000);
    }
}
