//! The execution environment helpers see: maps, CPU number, trace output, random state, clocks and
//! held resources.

use std::sync::Arc;

use crate::maps::MapTable;
use crate::memory::{MemoryMap, RegionKind};
use crate::resources::ResourceTracker;

/// Callback that echoes each trace line as it is produced.
pub type TraceSink = Box<dyn FnMut(&str) + Send>;

/// Per-invocation environment passed to every helper call.
///
/// `ExecEnv::default()` has no maps (enough for conformance runs), CPU 0, and a PRNG seeded from the
/// clock; use [`ExecEnv::with_maps`] and [`ExecEnv::seed_prandom`] for real and reproducible runs.
#[derive(Default)]
pub struct ExecEnv {
    /// Number of the CPU the invocation is considered to run on (selects per-CPU map slots).
    pub cpu: u32,
    /// The maps of the runtime instance, if any.
    pub maps: Option<Arc<MapTable>>,
    /// Lines written by `bpf_trace_printk` (without trailing newline), for the host to read.
    pub trace: Vec<String>,
    /// Optional callback that sees each trace line as it is produced.
    pub trace_echo: Option<TraceSink>,
    /// State of `bpf_get_prandom_u32`.
    pub prng: Prng,
    /// References acquired and not yet released.
    pub resources: ResourceTracker,
}

impl std::fmt::Debug for ExecEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecEnv")
            .field("cpu", &self.cpu)
            .field("maps", &self.maps)
            .field("trace", &self.trace)
            .field("resources", &self.resources)
            .finish_non_exhaustive()
    }
}

impl ExecEnv {
    /// An environment with the given maps.
    pub fn with_maps(maps: Arc<MapTable>) -> Self {
        ExecEnv {
            maps: Some(maps),
            ..Self::default()
        }
    }

    /// Reseeds the PRNG so that `bpf_get_prandom_u32` returns a reproducible sequence.
    pub fn seed_prandom(&mut self, seed: u64) {
        self.prng = Prng::new(seed);
    }

    /// Records one trace line (and echoes it through [`ExecEnv::trace_echo`] if set).
    pub fn emit_trace(&mut self, line: String) {
        if let Some(echo) = &mut self.trace_echo {
            echo(&line);
        }
        self.trace.push(line);
    }

    /// Takes the collected trace lines.
    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// Releases every resource still held (discarding ringbuf samples) and returns how many.
    ///
    /// The sample regions stay in the invocation's `MemoryMap`; use
    /// [`ExecEnv::release_all_in`] to remove them too when the memory map lives on.
    pub fn release_all(&mut self) -> usize {
        self.resources.release_all()
    }

    /// Like [`ExecEnv::release_all`], and removes the ringbuf sample regions from `mem`.
    pub fn release_all_in(&mut self, mem: &mut MemoryMap) -> usize {
        let n = self.release_all();
        mem.remove_kind(RegionKind::RingbufSample);
        n
    }
}

/// Reads a clock with `clock_gettime`, in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// `CLOCK_MONOTONIC` in nanoseconds (Linux `ktime_get_ns`).
pub fn ktime_get_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_BOOTTIME` in nanoseconds (Linux `ktime_get_boot_ns`: includes time suspended).
pub fn ktime_get_boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// A small, fast, seedable pseudo-random generator (SplitMix64) for `bpf_get_prandom_u32`.
///
/// Not cryptographic, like Linux's `prandom`.
#[derive(Clone, Debug)]
pub struct Prng {
    state: u64,
}

impl Prng {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        Prng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

impl Default for Prng {
    /// Seeded from a per-thread generator, itself seeded once per thread from the monotonic
    /// clock, the boot clock and the thread's identity: environments are made for every
    /// test-run, and two clock reads each were a measurable part of a short one.
    fn default() -> Self {
        thread_local! {
            static SEEDS: std::cell::Cell<Option<Prng>> = const { std::cell::Cell::new(None) };
        }
        SEEDS.with(|cell| {
            let mut seeds = cell.take().unwrap_or_else(|| {
                let thread = cell as *const _ as u64;
                Prng::new(ktime_get_ns() ^ ktime_get_boot_ns().rotate_left(32) ^ thread)
            });
            let seed = seeds.next_u64();
            cell.set(Some(seeds));
            Prng::new(seed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_reproducible_and_varies() {
        let mut a = Prng::new(7);
        let mut b = Prng::new(7);
        let xs: Vec<u32> = (0..8).map(|_| a.next_u32()).collect();
        let ys: Vec<u32> = (0..8).map(|_| b.next_u32()).collect();
        assert_eq!(xs, ys);
        let mut sorted = xs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 8);
        assert_ne!(Prng::new(8).next_u32(), xs[0]);
    }

    #[test]
    fn default_generators_differ_between_environments_and_threads() {
        let here: Vec<u32> = (0..4).map(|_| Prng::default().next_u32()).collect();
        let there: Vec<u32> =
            std::thread::spawn(|| (0..4).map(|_| Prng::default().next_u32()).collect())
                .join()
                .unwrap();
        let mut all = [here, there].concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8, "every default generator starts elsewhere");
    }

    #[test]
    fn clocks_are_monotonic_and_boot_not_behind() {
        let a = ktime_get_ns();
        let b = ktime_get_ns();
        assert!(a > 0 && b >= a);
        assert!(ktime_get_boot_ns() >= a);
    }

    #[test]
    fn trace_echo_sees_lines() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut env = ExecEnv {
            trace_echo: Some(Box::new(move |l| s.lock().unwrap().push(l.to_string()))),
            ..ExecEnv::default()
        };
        env.emit_trace("hi".into());
        assert_eq!(env.take_trace(), vec!["hi".to_string()]);
        assert_eq!(*seen.lock().unwrap(), vec!["hi".to_string()]);
        assert!(env.trace.is_empty());
    }
}
