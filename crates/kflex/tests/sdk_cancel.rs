//! Cancelling an extension in the middle of an update (budget exhausted, or injected at each of
//! its termination points in turn) leaves the SDK allocator and the heap lock usable, releases
//! what was held, loses no memory the host cannot reclaim, and keeps the structure built by
//! committed runs intact. The extension is tests/c/sdk_list.c; the host side is
//! `kflex_sdk::HeapAllocator`, wired to [`Extension::on_cancel`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kflex::engine::JitConfig;
use kflex::extension::CancelInfo;
use kflex::{Engine, Extension, ExtensionOptions, TestRunOptions, TestRunResult};
use kflex_sdk::layout::STATE_SIZE;
use kflex_sdk::{AllocConfig, HeapAllocator, ReleaseReport};

/// `struct sdk_args` of sdk_list.c.
#[derive(Clone, Copy, Debug, Default)]
struct Args {
    n: u64,
    first_key: u64,
    hold: u64,
    state: u64,
    globals: u64,
    globals_size: u64,
}

impl Args {
    fn bytes(&self) -> Vec<u8> {
        [
            self.n,
            self.first_key,
            self.hold,
            self.state,
            self.globals,
            self.globals_size,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }

    fn from_bytes(b: &[u8]) -> Args {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
        Args {
            n: w(0),
            first_key: w(1),
            hold: w(2),
            state: w(3),
            globals: w(4),
            globals_size: w(5),
        }
    }
}

/// Offsets in `struct list_globals`.
const LOCK: u64 = 0;
const HEAD: u64 = 8;
const LEN: u64 = 16;
const KEY_SUM: u64 = 24;
const SPIN: u64 = 32;
const SPUN: u64 = 40;
/// Offsets in `struct item` (56 bytes).
const ITEM_KEY: u64 = 0;
const ITEM_PAYLOAD: u64 = 8;
const ITEM_NEXT: u64 = 48;
const PAYLOAD_WORDS: u64 = 5;

/// The CPU id the runs use (not 0, so the per-CPU indexing is exercised).
const CPU: u32 = 3;

type Log = Arc<Mutex<Vec<(CancelInfo, ReleaseReport)>>>;

struct Fixture {
    ext: Extension,
    alloc: Arc<HeapAllocator>,
    globals: u64,
    heap: std::ops::Range<u64>,
    log: Log,
    next_key: u64,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        if !Engine::JIT_SUPPORTED {
            kflex_testutil::skip("the JIT (and its cancellation) needs x86-64 Linux");
            return None;
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/sdk_list.c");
        let bytes = kflex_testutil::compile_c_with(&src, &["-Werror"])?;
        let mut ext = Extension::load("sdk_list", &bytes, ExtensionOptions::default())
            .expect("sdk_list loads");
        let init = run(&ext, "sdk_init", Args::default(), None);
        let out = Args::from_bytes(init.ctx_out.as_deref().expect("syscall ctx out"));
        let layout = ext.heap_layout().expect("sdk_list has a heap");
        let heap = layout.base..layout.base + layout.size;
        assert!(heap.contains(&out.state) && heap.contains(&out.globals));
        let used_end = (out.state + STATE_SIZE as u64).max(out.globals + out.globals_size);
        let carve = used_end.next_multiple_of(4096)..heap.end;
        let cfg = AllocConfig {
            cpus: CPU + 1,
            chain_bytes: 4096,
            heap: Some(heap.clone()),
            ..AllocConfig::default()
        };
        // SAFETY: the state and the carve range lie in the extension's heap, which is mapped
        // read-write at its heap addresses for as long as `ext` lives (the fixture drops the
        // allocator's users first); only this allocator carves from it.
        let alloc = Arc::new(
            unsafe { HeapAllocator::attach_with(out.state as *mut u8, carve, cfg) }
                .expect("attach"),
        );
        alloc.refill();
        let log: Log = Arc::default();
        let (a, l) = (alloc.clone(), log.clone());
        ext.on_cancel(move |info| {
            let report = a.release_after_cancel(info.cpu);
            l.lock().unwrap().push((info.clone(), report));
        });
        Some(Fixture {
            ext,
            alloc,
            globals: out.globals,
            heap,
            log,
            next_key: 1,
        })
    }

    fn word(&self, addr: u64) -> u64 {
        assert!(addr.is_multiple_of(8) && addr >= self.heap.start && addr + 8 <= self.heap.end);
        // SAFETY: an aligned word inside the live heap mapping; no program runs concurrently.
        unsafe { std::ptr::read_volatile(addr as *const u64) }
    }

    fn set_word(&self, addr: u64, v: u64) {
        assert!(addr.is_multiple_of(8) && addr >= self.heap.start && addr + 8 <= self.heap.end);
        // SAFETY: as in `word`.
        unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
    }

    /// Adds `n` items (keys continue from the last add); returns the run's result.
    fn add(&mut self, n: u64, hold: u64, budget: Option<Duration>) -> TestRunResult {
        let args = Args {
            n,
            first_key: self.next_key,
            hold,
            ..Args::default()
        };
        self.next_key += n;
        run(&self.ext, "sdk_add", args, budget)
    }

    fn pop(&self, n: u64) -> TestRunResult {
        run(
            &self.ext,
            "sdk_pop",
            Args {
                n,
                ..Args::default()
            },
            None,
        )
    }

    /// Walks the list from the host and checks every invariant the tests rely on: the lock is
    /// free, the list matches the counters kept beside it, payloads are intact, keys are
    /// distinct, nothing is in flight, and every carved block is free or linked. Returns the
    /// list's length.
    fn check(&self) -> u64 {
        let g = self.globals;
        assert_eq!(self.word(g + LOCK), 0, "the heap lock is free");
        let (mut len, mut sum, mut keys) = (0u64, 0u64, HashSet::new());
        let mut at = self.word(g + HEAD);
        while at != 0 {
            assert!(len < 1_000_000, "the list is a list, not a cycle");
            let key = self.word(at + ITEM_KEY);
            assert!(keys.insert(key), "key {key} linked twice");
            for j in 0..(key % 3 + 2).min(PAYLOAD_WORDS) {
                let want = key.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(j);
                assert_eq!(
                    self.word(at + ITEM_PAYLOAD + 8 * j),
                    want,
                    "payload of key {key}"
                );
            }
            len += 1;
            sum = sum.wrapping_add(key);
            at = self.word(at + ITEM_NEXT);
        }
        assert_eq!(
            len,
            self.word(g + LEN),
            "linked items == the length counter"
        );
        assert_eq!(sum, self.word(g + KEY_SUM), "linked keys == the key sum");
        let st = self.alloc.stats();
        assert_eq!(st.in_flight, 0, "nothing left in flight: {st:?}");
        assert_eq!(
            st.carved_total(),
            st.free_total() + len,
            "every carved block is free or linked: {st:?}"
        );
        len
    }

    /// Proves the lock, malloc and free work: adds two items, pops one.
    fn still_usable(&mut self) {
        let before = self.check();
        self.alloc.refill();
        let r = self.add(2, 0, None);
        assert!(!r.cancelled, "{:?}", r.cancel_reason);
        assert_eq!(r.retval, 2, "the lock is taken again and malloc works");
        let r = self.pop(1);
        assert_eq!(r.retval, 1, "free works");
        assert_eq!(self.check(), before + 1);
    }

    fn take_log(&self) -> Vec<(CancelInfo, ReleaseReport)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// Budget of runs that must not be cancelled by the watchdog: generous, so that a run preempted
/// on a loaded machine is not cancelled.
const NO_CANCEL: Duration = Duration::from_secs(20);

fn run(ext: &Extension, program: &str, args: Args, budget: Option<Duration>) -> TestRunResult {
    let options = TestRunOptions {
        cpu: CPU,
        engine: Some(Engine::Jit),
        budget: Some(budget.unwrap_or(NO_CANCEL)),
        ..TestRunOptions::context(args.bytes())
    };
    let r = ext.test_run(program, &options).expect("test-run");
    assert_eq!(r.engine, Engine::Jit);
    r
}

#[test]
fn cancellation_at_each_termination_point_leaves_a_usable_heap() {
    let Some(mut fx) = Fixture::new() else { return };
    let r = fx.add(5, 0, None);
    assert_eq!(r.retval, 5, "{:?}", r.cancel_reason);
    assert_eq!(fx.check(), 5);
    let points: Vec<usize> = fx
        .ext
        .program("sdk_add")
        .unwrap()
        .verified
        .as_ref()
        .expect("verified")
        .termination_points
        .iter()
        .map(|t| t.pc)
        .collect();
    assert!(points.len() >= 2, "sdk_add has loops: {points:?}");
    let (mut fired, mut reclaimed_somewhere, mut released_held_lock) = (0, false, 0);
    for &pc in &points {
        let inject = JitConfig {
            inject_cancel_at: Some(pc),
            ..JitConfig::default()
        };
        fx.ext.recompile("sdk_add", inject).unwrap();
        let linked_before = fx.check();
        let r = fx.add(4, 0, None);
        let log = fx.take_log();
        if r.cancelled {
            fired += 1;
            assert_eq!(log.len(), 1, "the hook ran once for pc {pc}");
            let (info, report) = &log[0];
            assert_eq!((info.program.as_str(), info.cpu), ("sdk_add", CPU));
            // Points after the unlock (the compiler's backward jumps to a shared exit count as
            // termination points too) find the lock already free.
            assert!(report.locks_released <= 1, "pc {pc}: {report:?}");
            released_held_lock += report.locks_released;
            assert_eq!(report.unjournaled, 0);
            reclaimed_somewhere |= report.blocks_reclaimed > 0;
            let linked = fx.check();
            assert!(
                (linked_before..=linked_before + 4).contains(&linked),
                "pc {pc}: only committed items are linked ({linked_before} -> {linked})"
            );
        } else {
            assert!(log.is_empty(), "no hook without a cancellation");
            assert_eq!(r.retval, 4, "pc {pc} is not reached: a normal run");
        }
        fx.ext.recompile("sdk_add", JitConfig::default()).unwrap();
        fx.still_usable();
    }
    assert!(fired >= 2, "injections fired at {fired} of {points:?}");
    assert!(
        reclaimed_somewhere,
        "a cancellation between malloc and commit gave its block back"
    );
    assert!(
        released_held_lock >= 2,
        "cancellations while the lock was held released it ({released_held_lock})"
    );
    assert_eq!(
        fx.alloc.stats().locks_released,
        u64::from(released_held_lock)
    );
}

#[test]
fn budget_exhaustion_while_holding_blocks_and_the_lock() {
    let Some(mut fx) = Fixture::new() else { return };
    assert_eq!(fx.add(3, 0, None).retval, 3);
    // The watchdog stops the run at whatever termination point it reaches after the budget;
    // normally that is the hold loop, but a run preempted for longer than the budget on a busy
    // machine may be stopped earlier. Every round checks the invariants; rounds that reached
    // the hold loop (`spun`) also check exactly what was reclaimed.
    let mut spun_rounds = 0;
    for round in 0..10 {
        fx.set_word(fx.globals + SPIN, 1);
        fx.set_word(fx.globals + SPUN, 0);
        let linked_before = fx.check();
        let r = fx.add(2, 4, Some(Duration::from_millis(5)));
        assert!(
            r.cancelled,
            "round {round}: the spin runs until the watchdog stops it"
        );
        let log = fx.take_log();
        assert_eq!(log.len(), 1);
        let report = log[0].1;
        assert_eq!(report.locks_released, 1);
        fx.set_word(fx.globals + SPIN, 0);
        let linked = fx.check();
        if fx.word(fx.globals + SPUN) == 1 {
            spun_rounds += 1;
            assert_eq!(
                report.blocks_reclaimed, 4,
                "the four held, unlinked blocks come back"
            );
            assert_eq!(linked, linked_before + 2, "the committed items stay linked");
        } else {
            assert!((linked_before..=linked_before + 2).contains(&linked));
        }
        fx.still_usable();
    }
    assert!(
        spun_rounds >= 5,
        "most rounds reach the hold loop ({spun_rounds})"
    );
    let st = fx.alloc.stats();
    assert!(st.reclaimed >= 4 * spun_rounds);
    // A run that holds blocks but is not cancelled frees them itself.
    assert_eq!(fx.add(1, 4, None).retval, 1);
    assert!(fx.take_log().is_empty());
    fx.check();
}

#[test]
fn a_run_without_cancellation_runs_no_hook() {
    let Some(mut fx) = Fixture::new() else { return };
    assert_eq!(fx.add(10, 0, None).retval, 10);
    assert_eq!(fx.pop(4).retval, 4);
    assert!(fx.take_log().is_empty());
    assert_eq!(fx.check(), 6);
    assert_eq!(fx.ext.cancel_hooks().len(), 1);
}

#[test]
fn freeing_past_the_keep_limit_gives_blocks_back_on_the_jit() {
    let Some(mut fx) = Fixture::new() else { return };
    // Chains of 4096 bytes: 56 blocks of the 64-byte class, so the CPU keeps 112 and gives the
    // rest of 400 freed items back.
    let mut added = 0;
    while added < 400 {
        fx.alloc.refill();
        let r = fx.add(50, 0, None);
        assert!(!r.cancelled);
        added += r.retval;
    }
    assert_eq!(fx.check(), added);
    assert_eq!(fx.pop(added).retval, added);
    assert_eq!(fx.check(), 0, "given-back blocks are counted as free");
    use kflex_sdk::layout::{AllocCpu, AllocState};
    use std::mem::{offset_of, size_of};
    let cpu = fx.alloc.state_addr()
        + (offset_of!(AllocState, cpu) + CPU as usize * size_of::<AllocCpu>()) as u64;
    let kept = fx.word(cpu + offset_of!(AllocCpu, free_count) as u64 + 8 * 2);
    assert!(kept <= 112, "the CPU keeps at most two chains ({kept})");
    let before = fx.alloc.stats().carved_total();
    let mut again = 0;
    while again < 200 {
        fx.alloc.refill();
        again += fx.add(50, 0, None).retval;
    }
    assert_eq!(
        fx.alloc.stats().carved_total(),
        before,
        "the given-back blocks are reused, nothing new is carved"
    );
    fx.check();
}

#[test]
fn interpreter_stopped_by_its_instruction_budget_runs_the_hook_too() {
    if !kflex_testutil::have_clang() {
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/sdk_list.c");
    let bytes = kflex_testutil::compile_c_with(&src, &["-Werror"]).unwrap();
    let options = ExtensionOptions {
        engine: Engine::Interp,
        limits: Some(kflex::Limits {
            max_instructions: 200_000,
            ..kflex::Limits::default()
        }),
        ..ExtensionOptions::default()
    };
    let mut ext = Extension::load("sdk_list", &bytes, options).unwrap();
    let interp = |ext: &Extension, program: &str, args: Args| {
        let options = TestRunOptions {
            cpu: CPU,
            engine: Some(Engine::Interp),
            ..TestRunOptions::context(args.bytes())
        };
        ext.test_run(program, &options)
    };
    let init = interp(&ext, "sdk_init", Args::default()).unwrap();
    let out = Args::from_bytes(init.ctx_out.as_deref().unwrap());
    let layout = ext.heap_layout().unwrap();
    let carve = (out.state + STATE_SIZE as u64)
        .max(out.globals + out.globals_size)
        .next_multiple_of(4096)..layout.base + layout.size;
    let cfg = AllocConfig {
        cpus: CPU + 1,
        chain_bytes: 4096,
        heap: Some(layout.base..layout.base + layout.size),
        ..AllocConfig::default()
    };
    // SAFETY: as in `Fixture::new`: the heap outlives every use of the allocator.
    let alloc =
        Arc::new(unsafe { HeapAllocator::attach_with(out.state as *mut u8, carve, cfg) }.unwrap());
    alloc.refill();
    let log: Log = Arc::default();
    let (a, l) = (alloc.clone(), log.clone());
    ext.on_cancel(move |info| {
        let report = a.release_after_cancel(info.cpu);
        l.lock().unwrap().push((info.clone(), report));
    });
    // SAFETY: the spin flag is an aligned word of the live heap; no program runs.
    unsafe { std::ptr::write_volatile((out.globals + SPIN) as *mut u64, 1) };
    let spin = Args {
        n: 1,
        first_key: 1,
        hold: 3,
        ..Args::default()
    };
    let err = interp(&ext, "sdk_add", spin).expect_err("the instruction budget stops the spin");
    assert!(matches!(err, kflex::Error::Fault(_)), "{err}");
    let log = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].0.cpu, CPU);
    assert_eq!(log[0].1.locks_released, 1);
    assert_eq!(log[0].1.blocks_reclaimed, 3);
    // SAFETY: as above.
    unsafe { std::ptr::write_volatile((out.globals + SPIN) as *mut u64, 0) };
    let again = Args {
        n: 2,
        first_key: 10,
        ..Args::default()
    };
    assert_eq!(interp(&ext, "sdk_add", again).unwrap().retval, 2);
    let st = alloc.stats();
    assert_eq!(st.carved_total(), st.free_total() + 3, "{st:?}");
}

#[test]
fn a_runaway_spin_on_a_contended_lock_is_cancelled_without_stealing_it() {
    let Some(mut fx) = Fixture::new() else { return };
    assert_eq!(fx.add(2, 0, None).retval, 2);
    // Another CPU id holds the lock. On kflex the spin's back-edge is a termination point, so
    // the watchdog cancels the spinning invocation; but the spin also contains a `may_goto`,
    // which takes its exit once the budget is spent (or its 8M-iteration count runs out), and
    // then kflex_lock gives up with -1 (as on Linux: tests/sdk_linux.rs). Which check the
    // watchdog's poisoning meets first depends on timing; both outcomes must leave the other
    // holder's lock alone and hold nothing.
    fx.set_word(fx.globals + LOCK, 7);
    let r = fx.add(1, 0, Some(Duration::from_millis(1)));
    let log = fx.take_log();
    if r.cancelled {
        assert_eq!(log.len(), 1);
        assert_eq!(
            log[0].1.locks_released, 0,
            "a lock it never took is not released"
        );
        assert_eq!(log[0].1.blocks_reclaimed, 0);
    } else {
        assert_eq!(r.retval as i32, -1, "kflex_lock gave up: {r:?}");
        assert!(
            log.is_empty(),
            "an invocation that returned is not cancelled"
        );
    }
    assert_eq!(
        fx.word(fx.globals + LOCK),
        7,
        "the other holder's lock is untouched"
    );
    fx.set_word(fx.globals + LOCK, 0);
    fx.still_usable();
}
