//! One timed phase: a key stream pushed through a driver's mailbox in batches, with each batch's
//! outcome condensed into a check value that another engine's run must reproduce.

use std::time::{Duration, Instant};

use kflex_datastructures::protocol::BATCH_MAX;
use kflex_datastructures::{Driver, OpKind};

use super::keys::mix64;
use super::{KEY_SIZE, VALUE_SIZE};

/// What one batch returned: the program's return value and a digest of every op's result and
/// the leading value bytes (a lookup's copied value or a sketch's estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchCheck {
    /// The program's return value (ops with a result > 0).
    pub ret: i64,
    /// Digest of the ops' results and values.
    pub digest: u64,
}

/// A measured phase.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseRun {
    /// Time spent inside the driver's `run` calls (mailbox filling and checking excluded).
    pub elapsed: Duration,
    /// The same, per batch, in nanoseconds.
    pub batch_ns: Vec<f64>,
    /// This thread's CPU time in each batch's `run` call, in nanoseconds (the time the thread
    /// was descheduled is not in it; a kernel test-run's system time is).
    pub batch_cpu_ns: Vec<f64>,
    /// One check per batch.
    pub checks: Vec<BatchCheck>,
    /// Ops whose result was negative (out of memory, lock not taken).
    pub negative: u64,
}

impl PhaseRun {
    /// Ops of the phase whose result was positive.
    pub fn successes(&self) -> u64 {
        self.checks.iter().map(|c| c.ret.max(0) as u64).sum()
    }

    /// Where `self` first differs from `reference`: `(batch, self's, reference's)`.
    pub fn first_difference(
        &self,
        reference: &PhaseRun,
    ) -> Option<(usize, BatchCheck, BatchCheck)> {
        if self.checks.len() != reference.checks.len() {
            let i = self.checks.len().min(reference.checks.len());
            let missing = BatchCheck { ret: -1, digest: 0 };
            return Some((
                i,
                self.checks.get(i).copied().unwrap_or(missing),
                reference.checks.get(i).copied().unwrap_or(missing),
            ));
        }
        self.checks
            .iter()
            .zip(&reference.checks)
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i, *a, *b))
    }
}

/// Keys and values of the key space, derived once per structure workload.
pub struct KeySpace {
    /// Key of each index.
    pub keys: Vec<[u8; KEY_SIZE]>,
    /// Value of each index.
    pub values: Vec<[u8; VALUE_SIZE]>,
}

impl KeySpace {
    /// The first `n` keys and values.
    pub fn new(n: usize) -> Self {
        KeySpace {
            keys: (0..n as u64).map(super::keys::key).collect(),
            values: (0..n as u64).map(super::keys::value).collect(),
        }
    }
}

/// Runs `op` over `stream` (key indices into `space`) in mailbox batches of at most
/// [`BATCH_MAX`] ops and times the driver calls.
pub fn run_phase(
    driver: &mut dyn Driver,
    op: OpKind,
    stream: &[u32],
    space: &KeySpace,
) -> Result<PhaseRun, String> {
    let mut run = PhaseRun {
        checks: Vec::with_capacity(stream.len().div_ceil(BATCH_MAX)),
        ..PhaseRun::default()
    };
    for chunk in stream.chunks(BATCH_MAX) {
        let mailbox = driver.mailbox();
        if mailbox.len() < chunk.len() {
            return Err(format!(
                "mailbox holds {} ops, batch has {}",
                mailbox.len(),
                chunk.len()
            ));
        }
        for (slot, &k) in mailbox.iter_mut().zip(chunk) {
            slot.key = space.keys[k as usize];
            slot.value = match op {
                OpKind::Update => space.values[k as usize],
                OpKind::Lookup | OpKind::Delete => [0; VALUE_SIZE],
            };
            slot.result = 0;
        }
        let cpu_start = thread_cpu_ns();
        let start = Instant::now();
        let ret = driver
            .run(op, chunk.len())
            .map_err(|e| format!("{} batch {}: {e}", op.program(), run.checks.len()))?;
        let took = start.elapsed();
        let cpu = thread_cpu_ns().saturating_sub(cpu_start);
        run.elapsed += took;
        run.batch_ns.push(took.as_nanos() as f64);
        run.batch_cpu_ns.push(cpu as f64);
        let mailbox = driver.mailbox();
        let mut digest = 0u64;
        let mut positive = 0i64;
        for (i, slot) in mailbox[..chunk.len()].iter().enumerate() {
            let mut lead = [0u8; 8];
            lead.copy_from_slice(&slot.value[..8]);
            let shown = if op == OpKind::Update {
                0
            } else {
                u64::from_le_bytes(lead)
            };
            digest = mix64(digest ^ mix64(i as u64) ^ (slot.result as u64).rotate_left(17) ^ shown);
            positive += i64::from(slot.result > 0);
            run.negative += u64::from(slot.result < 0);
        }
        if ret != positive {
            return Err(format!(
                "{} batch {}: program returned {ret} but {positive} ops have a result > 0",
                op.program(),
                run.checks.len()
            ));
        }
        run.checks.push(BatchCheck { ret, digest });
    }
    Ok(run)
}

/// The fixed cost of one invocation: the median time of `runs` lookups of an empty batch (the
/// program starts, finds no op and returns), in nanoseconds.
pub fn invocation_cost(driver: &mut dyn Driver, runs: usize) -> Result<f64, String> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let ret = driver
            .run(OpKind::Lookup, 0)
            .map_err(|e| format!("empty batch: {e}"))?;
        samples.push(start.elapsed().as_nanos() as f64);
        if ret != 0 {
            return Err(format!("empty batch: program returned {ret}"));
        }
    }
    Ok(super::stats::median(&samples).unwrap_or(0.0))
}

/// This thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds; 0 if the clock
/// cannot be read.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is a clock every Linux provides.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::thread_cpu_ns;
    use std::time::{Duration, Instant};

    #[test]
    fn thread_cpu_time_counts_work_but_not_sleep() {
        let before = thread_cpu_ns();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_ns() - before;
        assert!(slept < 10_000_000, "sleeping used {slept} ns of CPU");
        let start = Instant::now();
        let before = thread_cpu_ns();
        let mut x = 1u64;
        while start.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_mul(3));
        }
        let worked = thread_cpu_ns() - before;
        assert!(
            worked > 1_000_000,
            "20 ms of spinning used only {worked} ns of CPU"
        );
    }
}
