//! [`HeapAllocator`]: the host side of `alloc.h` and `lock.h`, working on raw heap memory.
//!
//! # Protocol and memory orderings
//!
//! * **Refill (host → program).** For an empty refill stack the host builds a chain of free
//!   blocks (headers and `next` links written with relaxed atomic stores, the chain length in
//!   the head's header) and publishes it with a *release* compare-and-swap of the stack head
//!   from 0. The program takes the whole stack with `kflex_xchg` (a full barrier on BPF and
//!   `SEQ_CST` natively), so it observes every link written before the publication. The host
//!   only ever pushes onto an *empty* stack and the program only ever swaps in 0, so there is no
//!   ABA problem; refills are serialised by the allocator's mutex.
//! * **Give-back (program → host).** Once a CPU's private list of a class holds
//!   [`AllocConfig::keep_chains`] chains, `kflex_free` pushes the block onto that CPU's
//!   give-back stack with one compare-and-swap (after writing the block's link; a full barrier);
//!   [`HeapAllocator::refill`] takes each non-empty stack whole with an *acquire* swap to 0 and
//!   moves its (validated) blocks into the host's pool. The program never pops from it, so a
//!   failed push (the host took the stack meanwhile) just keeps the block locally.
//! * **Starvation (program → host).** `starved[cls]` counters are hints read relaxed: a counter
//!   that moved since the last refill doubles that CPU/class's chain length (up to
//!   [`AllocConfig::max_chain`]).
//! * **Cancellation cleanup.** [`HeapAllocator::release_after_cancel`] runs after the cancelled
//!   invocation has returned to the host and before the next invocation on that CPU id, so the
//!   CPU's record is quiescent (the return happens-after the program's writes). Locks are
//!   released with a *release* compare-and-swap from `cpu + 1` to 0, so the next taker (whose
//!   cmpxchg is a full barrier) sees what was written under the lock.
//! * **Statistics** read live words relaxed; they are exact only while no program runs.
//!
//! Every address read from the heap (journal entries, lock records, refill heads) is validated
//! before the host follows it: blocks must start exactly where the host carved one, locks must be
//! 8-byte aligned words inside the heap range. A corrupted heap can lose the program its own
//! memory but never makes the host touch memory outside the heap.

use std::ops::Range;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::block;
use crate::carve::Carver;
use crate::error::{Error, Result};
use crate::layout::{
    ALLOC_MAGIC, ALLOC_VERSION, HELD_LOCKS, JOURNAL_LEN, MAX_CPUS, NR_CLASSES, STATE_SIZE,
    class_stride, cpu_field, field,
};
use crate::mem::HeapView;
use crate::refill_thread::RefillThread;

/// Tuning of a [`HeapAllocator`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllocConfig {
    /// CPU ids (0..cpus, at most [`MAX_CPUS`]) whose refill stacks [`HeapAllocator::refill`]
    /// keeps stocked. Default: the CPUs the system has configured (not only those this process
    /// may run on: a Linux program runs as whatever CPU the caller is on), at most 64. Each
    /// stocked CPU costs about 9 × `chain_bytes` of heap (2.3 MiB with the defaults).
    pub cpus: u32,
    /// Stock exactly the CPU ids whose bits are set (bit i = CPU id i) instead of `0..cpus`,
    /// e.g. the one CPU a pinned host thread runs programs on. Default `None`.
    pub cpu_mask: Option<u64>,
    /// Bytes of blocks in the first chain pushed per CPU and class (default 256 KiB). The first
    /// refill carves CPU by CPU, every class, so a carve range smaller than about
    /// stocked CPUs × 9 × `chain_bytes` leaves the last CPUs unstocked: size the heap for it, or
    /// lower `chain_bytes`, or stock only the CPUs that run programs (`cpu_mask`).
    pub chain_bytes: u64,
    /// Fewest blocks in a chain (default 4).
    pub min_chain: u64,
    /// Most blocks in a chain, after doubling on starvation (default 16384).
    pub max_chain: u64,
    /// Addresses the host may access (the state, the carve range and whatever heap memory a
    /// lock may live in). Default: the smallest range covering the state and the carve range.
    pub heap: Option<Range<u64>>,
    /// Page size used to touch newly carved pages (default 4096).
    pub page_size: u64,
    /// A CPU's private free list of a class may hold this many of its chains; beyond that
    /// `kflex_free` gives blocks back to the host (default 2; 0 = never give back).
    pub keep_chains: u64,
}

impl Default for AllocConfig {
    fn default() -> Self {
        // SAFETY: sysconf has no preconditions; it returns -1 when the value is unknown.
        let configured = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        let cpus = usize::try_from(configured)
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        AllocConfig {
            cpus: cpus.clamp(1, MAX_CPUS) as u32,
            cpu_mask: None,
            chain_bytes: 256 * 1024,
            min_chain: 4,
            max_chain: 16384,
            heap: None,
            page_size: 4096,
            keep_chains: 2,
        }
    }
}

/// What [`HeapAllocator::release_after_cancel`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReleaseReport {
    /// Heap locks that were held by the CPU and are now free.
    pub locks_released: u32,
    /// Journaled blocks that were still allocated and are back in the host's pool.
    pub blocks_reclaimed: u64,
    /// Blocks allocated since the last commit that did not fit in the journal (they stay
    /// allocated: the host cannot tell whether the structure links them).
    pub unjournaled: u64,
    /// Journal or lock entries that named no carved block / no heap word (ignored).
    pub ignored: u64,
}

/// A snapshot of the allocator's accounting (exact while no program runs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Blocks carved per class.
    pub carved: [u64; NR_CLASSES],
    /// Free blocks per class: the host's pool, the refill stacks and the CPUs' free lists.
    pub free: [u64; NR_CLASSES],
    /// Blocks in the CPUs' in-flight journals that are still allocated.
    pub in_flight: u64,
    /// Bytes of the carve range used so far.
    pub carve_used: u64,
    /// Bytes of the carve range.
    pub carve_capacity: u64,
    /// Mallocs that returned NULL because both the free list and the refill stack were empty.
    pub starved: u64,
    /// Blocks reclaimed from journals after cancellations, in total.
    pub reclaimed: u64,
    /// Locks released after cancellations, in total.
    pub locks_released: u64,
}

impl AllocStats {
    /// Blocks carved, all classes.
    pub fn carved_total(&self) -> u64 {
        self.carved.iter().sum()
    }

    /// Free blocks, all classes.
    pub fn free_total(&self) -> u64 {
        self.free.iter().fold(0, |a, &b| a.saturating_add(b))
    }

    /// Blocks neither free nor in flight: what the programs' structures hold.
    pub fn live(&self) -> u64 {
        self.carved_total()
            .saturating_sub(self.free_total())
            .saturating_sub(self.in_flight)
    }
}

/// Host-side mutable state, behind the allocator's mutex.
#[derive(Debug)]
struct Inner {
    carver: Carver,
    /// Blocks given back by each CPU that may still be in that CPU's in-flight journal (see
    /// [`HeapAllocator::drain_givebacks`]); they join the pool once its journal is seen empty.
    quarantine: Vec<[Vec<u64>; NR_CLASSES]>,
    chain: [[u64; NR_CLASSES]; MAX_CPUS],
    seen_starved: [[u64; NR_CLASSES]; MAX_CPUS],
    reclaimed: u64,
    locks_released: u64,
}

/// The host side of one object's allocator: carves blocks from heap memory, keeps the refill
/// stacks stocked and cleans up after cancelled invocations. Backend-neutral: it works on any
/// host-writable mapping in which heap addresses are host addresses (kflex's heap, a Linux
/// arena's user mapping, a native buffer).
#[derive(Debug)]
pub struct HeapAllocator {
    state: u64,
    view: HeapView,
    cfg: AllocConfig,
    inner: Mutex<Inner>,
}

impl HeapAllocator {
    /// Attaches to the allocator state `kflex_alloc_state` at `state` with the default
    /// [`AllocConfig`]; the host cuts blocks only from the heap addresses in `carve`.
    ///
    /// # Safety
    ///
    /// `state` must point to the object's `struct kflex_alloc`, and the state and `carve` (and
    /// the configured heap range) must be mapped readable and writable at these addresses for
    /// the allocator's whole lifetime, with heap addresses equal to host addresses. Nothing else
    /// may carve from `carve`.
    pub unsafe fn attach(state: *mut u8, carve: Range<u64>) -> Result<HeapAllocator> {
        // SAFETY: the caller's guarantees are forwarded unchanged.
        unsafe { Self::attach_with(state, carve, AllocConfig::default()) }
    }

    /// [`HeapAllocator::attach`] with an explicit configuration. Attaching resets every CPU's
    /// lists, refill stacks, journal and lock record (blocks of an earlier attachment are
    /// forgotten) and writes the state's magic and version.
    ///
    /// # Safety
    ///
    /// As for [`HeapAllocator::attach`].
    pub unsafe fn attach_with(
        state: *mut u8,
        carve: Range<u64>,
        cfg: AllocConfig,
    ) -> Result<HeapAllocator> {
        let s = state as u64;
        if s == 0 || !s.is_multiple_of(8) {
            return Err(Error::MisalignedState(s));
        }
        if cfg.cpu_mask == Some(0) {
            return Err(Error::Config("cpu_mask selects no CPU".into()));
        }
        if cfg.cpus == 0 || cfg.cpus as usize > MAX_CPUS {
            return Err(Error::Config(format!(
                "cpus {} not in 1..={MAX_CPUS}",
                cfg.cpus
            )));
        }
        if cfg.min_chain == 0 || cfg.min_chain > cfg.max_chain || cfg.max_chain > 0xffff_ffff {
            return Err(Error::Config(format!(
                "chain bounds {}..={} invalid",
                cfg.min_chain, cfg.max_chain
            )));
        }
        if !cfg.page_size.is_power_of_two() {
            return Err(Error::Config(format!(
                "page size {} not a power of two",
                cfg.page_size
            )));
        }
        let state_end = s
            .checked_add(STATE_SIZE as u64)
            .ok_or(Error::MisalignedState(s))?;
        let state_range = s..state_end;
        if carve.end <= carve.start
            || carve.end - carve.start < class_stride(0)
            || carve.start > u64::MAX - 8
        {
            return Err(Error::EmptyCarve(carve));
        }
        if carve.start < state_range.end && state_range.start < carve.end {
            return Err(Error::CarveOverlapsState {
                carve,
                state: state_range,
            });
        }
        let heap = cfg
            .heap
            .clone()
            .unwrap_or_else(|| state_range.start.min(carve.start)..state_range.end.max(carve.end));
        for (what, r) in [("state", &state_range), ("carve range", &carve)] {
            if r.start < heap.start || r.end > heap.end {
                return Err(Error::OutsideHeap {
                    what,
                    range: r.clone(),
                    heap,
                });
            }
        }
        let view = HeapView::new(heap);
        let mut chain = [[0; NR_CLASSES]; MAX_CPUS];
        for row in &mut chain {
            for (cls, c) in row.iter_mut().enumerate() {
                *c = (cfg.chain_bytes / class_stride(cls)).clamp(cfg.min_chain, cfg.max_chain);
            }
        }
        let a = HeapAllocator {
            state: s,
            view,
            cfg,
            inner: Mutex::new(Inner {
                carver: Carver::new(carve),
                quarantine: (0..MAX_CPUS).map(|_| Default::default()).collect(),
                chain,
                seen_starved: [[0; NR_CLASSES]; MAX_CPUS],
                reclaimed: 0,
                locks_released: 0,
            }),
        };
        for off in (16..STATE_SIZE as u64).step_by(8) {
            a.view.store(s + off, 0, Relaxed);
        }
        for cpu in 0..MAX_CPUS {
            a.view
                .store(a.cpu_word(cpu, field::SELF_ID, 0), cpu as u64 + 1, Relaxed);
            for (cls, &chain) in chain[cpu].iter().enumerate() {
                a.set_keep(cpu, cls, chain);
            }
        }
        a.view.store(s + 8, ALLOC_VERSION, Relaxed);
        a.view.store(s, ALLOC_MAGIC, Release);
        Ok(a)
    }

    /// The configuration in use.
    pub fn config(&self) -> &AllocConfig {
        &self.cfg
    }

    /// Heap address of the allocator state.
    pub fn state_addr(&self) -> u64 {
        self.state
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves counters at worst stale, never unsafe.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cpu_word(&self, cpu: usize, field: usize, index: usize) -> u64 {
        self.state + (cpu_field(cpu, field) + index * 8) as u64
    }

    /// True if [`HeapAllocator::refill`] stocks CPU id `cpu`.
    fn stocks(&self, cpu: usize) -> bool {
        match self.cfg.cpu_mask {
            Some(mask) => mask >> cpu & 1 == 1,
            None => cpu < self.cfg.cpus as usize,
        }
    }

    /// Moves every CPU's given-back blocks into the host's pool, then tops up every empty
    /// refill stack of the stocked CPU ids (`0..cpus` or `cpu_mask`) with a chain of free blocks (from
    /// the host's pool first, then newly carved, with their pages touched first). Returns the
    /// number of blocks pushed. A stack that is not empty is left alone.
    pub fn refill(&self) -> usize {
        let mut inner = self.inner();
        self.drain_givebacks(&mut inner);
        let mut pushed = 0;
        for cpu in (0..MAX_CPUS).filter(|&c| self.stocks(c)) {
            for cls in 0..NR_CLASSES {
                pushed += self.refill_one(&mut inner, cpu, cls);
            }
        }
        pushed
    }

    /// Writes CPU `cpu`'s give-back limit of class `cls` for chains of `chain` blocks.
    fn set_keep(&self, cpu: usize, cls: usize, chain: u64) {
        let keep = chain.saturating_mul(self.cfg.keep_chains);
        self.view
            .store(self.cpu_word(cpu, field::KEEP, cls), keep, Relaxed);
    }

    /// Takes every CPU's give-back stacks (one exchange each; the program only pushes) into
    /// that CPU's quarantine, and moves a CPU's quarantine into the pool once its in-flight
    /// journal is empty.
    ///
    /// A block given back may have been allocated in the same, uncommitted invocation, so it may
    /// still sit in that CPU's journal; were it handed to another CPU right away, a cancellation
    /// of the first invocation would reclaim it from under its new owner. The journal position
    /// is read after the exchanges (which synchronise with the program's pushes), so reading 0
    /// means a commit (or a cleanup) came after every push taken: none of those blocks is
    /// journaled any more.
    fn drain_givebacks(&self, inner: &mut Inner) {
        for cpu in 0..MAX_CPUS {
            for cls in 0..NR_CLASSES {
                let at = self.cpu_word(cpu, field::GIVEBACK, cls);
                if self.view.load(at, Relaxed) == 0 {
                    continue;
                }
                let head = self.view.swap(at, 0, Acquire);
                let blocks = self.chain_blocks(inner, head, cls, true);
                inner.quarantine[cpu][cls].extend(blocks);
            }
            let pos = self
                .view
                .load(self.cpu_word(cpu, field::JOURNAL_POS, 0), Acquire);
            if pos == 0 {
                Self::release_quarantine(inner, cpu);
            }
        }
    }

    /// Moves CPU `cpu`'s quarantined blocks into the pool.
    fn release_quarantine(inner: &mut Inner, cpu: usize) {
        for cls in 0..NR_CLASSES {
            let q = std::mem::take(&mut inner.quarantine[cpu][cls]);
            inner.carver.pool[cls].extend(q);
        }
    }

    /// The blocks of the class-`cls` chain starting at `head`, as far as it is valid: each must
    /// be a free block of that class the host carved (a corrupted chain is cut where it goes
    /// wrong; the rest is lost to the program, never misused by the host). With `claim` the
    /// blocks are marked held by the host as they are taken, which also stops the walk at a
    /// cycle; without it (statistics) the walk is bounded by the blocks carved.
    fn chain_blocks(&self, inner: &Inner, head: u64, cls: usize, claim: bool) -> Vec<u64> {
        let limit = inner.carver.carved[cls] as usize;
        let mut out = Vec::new();
        let mut b = head;
        while b != 0 && out.len() < limit {
            if inner.carver.segments.class_of(b) != Some(cls) {
                break;
            }
            let hdr = self.view.load(b, Relaxed);
            if !block::is_block(hdr) || block::is_allocated(hdr) || hdr & block::HOST != 0 {
                break;
            }
            let next = self.view.load(b + 8, Relaxed);
            if claim {
                self.view
                    .store(b, block::free_header(cls, 0) | block::HOST, Relaxed);
            }
            out.push(b);
            b = next;
        }
        out
    }

    fn refill_one(&self, inner: &mut Inner, cpu: usize, cls: usize) -> usize {
        let head = self.cpu_word(cpu, field::REFILL, cls);
        if self.view.load(head, Acquire) != 0 {
            return 0;
        }
        let starved = self
            .view
            .load(self.cpu_word(cpu, field::STARVED, cls), Relaxed);
        if starved != inner.seen_starved[cpu][cls] {
            inner.seen_starved[cpu][cls] = starved;
            inner.chain[cpu][cls] = (inner.chain[cpu][cls] * 2).min(self.cfg.max_chain);
            self.set_keep(cpu, cls, inner.chain[cpu][cls]);
        }
        let want = inner.chain[cpu][cls] as usize;
        let pool = &mut inner.carver.pool[cls];
        let mut blocks: Vec<u64> = pool.split_off(pool.len().saturating_sub(want));
        if blocks.len() < want {
            let (range, n) = inner.carver.carve(cls, (want - blocks.len()) as u64);
            if n > 0 {
                self.view.touch_pages(range.clone(), self.cfg.page_size);
                blocks.extend((0..n).map(|i| range.start + i * class_stride(cls)));
            }
        }
        if blocks.is_empty() {
            return 0;
        }
        let n = blocks.len() as u64;
        for (i, &b) in blocks.iter().enumerate() {
            let next = blocks.get(i + 1).copied().unwrap_or(0);
            let chain = if i == 0 { n } else { 0 };
            self.view.store(b, block::free_header(cls, chain), Relaxed);
            self.view.store(b + 8, next, Relaxed);
        }
        match self.view.cas(head, 0, blocks[0], Release) {
            Ok(_) => blocks.len(),
            Err(_) => {
                // Unreachable while refills are serialised (only the host pushes); keep the
                // blocks rather than lose them.
                inner.carver.pool[cls].extend(blocks);
                0
            }
        }
    }

    /// Starts a thread calling [`HeapAllocator::refill`] every `period`; it stops when the
    /// returned handle is dropped.
    pub fn spawn_refill_thread(self: Arc<Self>, period: Duration) -> RefillThread {
        RefillThread::spawn(self, period)
    }

    /// Cleans up after an invocation on CPU id `cpu` (modulo [`MAX_CPUS`]) was cancelled:
    /// releases every heap lock in the CPU's held-lock record that this CPU still holds and
    /// returns every journaled block that is still allocated to the host's pool, then clears the
    /// record and the journal. Call it after the cancelled invocation returned and before the
    /// next invocation on that CPU id.
    pub fn release_after_cancel(&self, cpu: u32) -> ReleaseReport {
        let cpu = cpu as usize % MAX_CPUS;
        let mut inner = self.inner();
        let mut report = ReleaseReport::default();
        let owner = cpu as u64 + 1;
        for slot in 0..HELD_LOCKS {
            let rec = self.cpu_word(cpu, field::HELD_LOCKS, slot);
            let lock = self.view.load(rec, Acquire);
            if lock == 0 {
                continue;
            }
            if lock.is_multiple_of(8) && self.view.contains(lock, 8) {
                if self.view.cas(lock, owner, 0, Release).is_ok() {
                    report.locks_released += 1;
                }
            } else {
                report.ignored += 1;
            }
            self.view.store(rec, 0, Relaxed);
        }
        let pos = self
            .view
            .load(self.cpu_word(cpu, field::JOURNAL_POS, 0), Acquire);
        let journaled = pos.min(JOURNAL_LEN as u64);
        report.unjournaled = pos - journaled;
        let mut seen = Vec::with_capacity(journaled as usize);
        for k in 1..=journaled {
            let idx = ((pos - k) % JOURNAL_LEN as u64) as usize;
            let b = self
                .view
                .load(self.cpu_word(cpu, field::JOURNAL, idx), Relaxed);
            if seen.contains(&b) {
                continue;
            }
            seen.push(b);
            let Some(cls) = inner.carver.segments.class_of(b) else {
                report.ignored += 1;
                continue;
            };
            let hdr = self.view.load(b, Relaxed);
            if block::is_block(hdr) && block::is_allocated(hdr) {
                self.view
                    .store(b, block::free_header(cls, 0) | block::HOST, Relaxed);
                inner.carver.pool[cls].push(b);
                report.blocks_reclaimed += 1;
            }
        }
        self.view
            .store(self.cpu_word(cpu, field::JOURNAL_POS, 0), 0, Release);
        // The journal is empty and the CPU quiescent: its given-back blocks are safe to reuse.
        Self::release_quarantine(&mut inner, cpu);
        inner.reclaimed += report.blocks_reclaimed;
        inner.locks_released += u64::from(report.locks_released);
        report
    }

    /// The allocator's accounting now (exact while no program runs).
    pub fn stats(&self) -> AllocStats {
        let inner = self.inner();
        let mut st = AllocStats {
            carved: inner.carver.carved,
            carve_capacity: inner.carver.capacity(),
            carve_used: inner.carver.capacity() - inner.carver.remaining(),
            reclaimed: inner.reclaimed,
            locks_released: inner.locks_released,
            ..AllocStats::default()
        };
        for cls in 0..NR_CLASSES {
            st.free[cls] = inner.carver.pool[cls].len() as u64
                + inner
                    .quarantine
                    .iter()
                    .map(|q| q[cls].len() as u64)
                    .sum::<u64>();
        }
        for cpu in 0..MAX_CPUS {
            for cls in 0..NR_CLASSES {
                // Counters live in the heap: a buggy program can make them anything, so sums
                // saturate instead of overflowing.
                let count = self
                    .view
                    .load(self.cpu_word(cpu, field::FREE_COUNT, cls), Relaxed);
                st.free[cls] = st.free[cls].saturating_add(count);
                let starved = self
                    .view
                    .load(self.cpu_word(cpu, field::STARVED, cls), Relaxed);
                st.starved = st.starved.saturating_add(starved);
                let head = self
                    .view
                    .load(self.cpu_word(cpu, field::REFILL, cls), Acquire);
                if head != 0 && inner.carver.segments.class_of(head) == Some(cls) {
                    let chain = block::chain_len(self.view.load(head, Relaxed));
                    st.free[cls] = st.free[cls].saturating_add(chain);
                }
                let given = self
                    .view
                    .load(self.cpu_word(cpu, field::GIVEBACK, cls), Acquire);
                if given != 0 {
                    let n = self.chain_blocks(&inner, given, cls, false).len() as u64;
                    st.free[cls] = st.free[cls].saturating_add(n);
                }
            }
            let pos = self
                .view
                .load(self.cpu_word(cpu, field::JOURNAL_POS, 0), Relaxed);
            let mut seen = Vec::new();
            for k in 1..=pos.min(JOURNAL_LEN as u64) {
                let idx = ((pos - k) % JOURNAL_LEN as u64) as usize;
                let b = self
                    .view
                    .load(self.cpu_word(cpu, field::JOURNAL, idx), Relaxed);
                if seen.contains(&b) || inner.carver.segments.class_of(b).is_none() {
                    continue;
                }
                seen.push(b);
                if block::is_allocated(self.view.load(b, Relaxed)) {
                    st.in_flight += 1;
                }
            }
        }
        st
    }
}
