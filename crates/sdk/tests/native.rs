//! The host side against the program side built natively (tests/c/sdk_native.c, gcc -O2): the
//! same C allocator and lock code as in extensions, racing with the refill thread.

mod support;

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use kflex_sdk::{AllocConfig, Error, HeapAllocator};
use support::{Buffer, Lib};

/// The program-side entry points of one loaded copy of sdk_native.c.
struct Prog {
    _lib: Lib,
    set_cpu: extern "C" fn(u32),
    state: extern "C" fn() -> u64,
    lock_addr: extern "C" fn() -> u64,
    churn: extern "C" fn(u64, u64, *mut u64, *mut u64) -> u64,
    abandon: extern "C" fn(u64, u64, u64) -> u64,
    lock_cycle: extern "C" fn() -> i32,
    malloc: extern "C" fn(u64) -> *mut c_void,
    free: extern "C" fn(*mut c_void),
    alloc_many: extern "C" fn(u64, u64, *mut *mut c_void) -> u64,
    free_many: extern "C" fn(u64, *const *mut c_void),
    uncommitted_after_fill: UncommittedAfterFill,
}

type UncommittedAfterFill =
    extern "C" fn(u64, u64, *mut *mut c_void, u64, *const *mut c_void) -> u64;

impl Prog {
    fn load() -> Option<Prog> {
        if !support::have_gcc() {
            return None;
        }
        let lib = Lib::build(&support::c_file("sdk_native.c"));
        // SAFETY: each symbol is a function of sdk_native.c with exactly this signature.
        unsafe {
            Some(Prog {
                set_cpu: std::mem::transmute::<*mut c_void, extern "C" fn(u32)>(
                    lib.sym("sdk_set_cpu"),
                ),
                state: std::mem::transmute::<*mut c_void, extern "C" fn() -> u64>(
                    lib.sym("sdk_state"),
                ),
                lock_addr: std::mem::transmute::<*mut c_void, extern "C" fn() -> u64>(
                    lib.sym("sdk_lock_addr"),
                ),
                churn: std::mem::transmute::<
                    *mut c_void,
                    extern "C" fn(u64, u64, *mut u64, *mut u64) -> u64,
                >(lib.sym("sdk_churn")),
                abandon: std::mem::transmute::<*mut c_void, extern "C" fn(u64, u64, u64) -> u64>(
                    lib.sym("sdk_abandon"),
                ),
                lock_cycle: std::mem::transmute::<*mut c_void, extern "C" fn() -> i32>(
                    lib.sym("sdk_lock_cycle"),
                ),
                malloc: std::mem::transmute::<*mut c_void, extern "C" fn(u64) -> *mut c_void>(
                    lib.sym("sdk_malloc"),
                ),
                free: std::mem::transmute::<*mut c_void, extern "C" fn(*mut c_void)>(
                    lib.sym("sdk_free"),
                ),
                alloc_many: std::mem::transmute::<
                    *mut c_void,
                    extern "C" fn(u64, u64, *mut *mut c_void) -> u64,
                >(lib.sym("sdk_alloc_many")),
                free_many: std::mem::transmute::<*mut c_void, extern "C" fn(u64, *const *mut c_void)>(
                    lib.sym("sdk_free_many"),
                ),
                uncommitted_after_fill: std::mem::transmute::<*mut c_void, UncommittedAfterFill>(
                    lib.sym("sdk_uncommitted_after_fill"),
                ),
                _lib: lib,
            })
        }
    }

    fn attach(&self, heap: &Buffer, cfg: AllocConfig) -> HeapAllocator {
        // SAFETY: the state is the library's global and the carve range is the mmap buffer,
        // both live for the test; native heap addresses are host addresses.
        unsafe { HeapAllocator::attach_with((self.state)() as *mut u8, heap.range(), cfg) }
            .expect("attach")
    }

    fn churn(&self, iters: u64, seed: u64) -> (u64, u64, u64) {
        let (mut failed, mut corrupt) = (0, 0);
        let ok = (self.churn)(iters, seed, &mut failed, &mut corrupt);
        (ok, failed, corrupt)
    }

    fn lock_word(&self) -> u64 {
        // SAFETY: the lock is an 8-byte global of the loaded library.
        unsafe { std::ptr::read_volatile((self.lock_addr)() as *const u64) }
    }
}

fn cfg(cpus: u32, chain_bytes: u64) -> AllocConfig {
    AllocConfig {
        cpus,
        chain_bytes,
        ..AllocConfig::default()
    }
}

#[test]
fn churn_with_refills_between_batches_balances() {
    let Some(p) = Prog::load() else { return };
    let heap = Buffer::new(64 << 20);
    let a = p.attach(&heap, cfg(1, 64 * 1024));
    (p.set_cpu)(0);
    let mut total_ok = 0;
    for batch in 0..20 {
        assert!(
            a.refill() > 0 || batch > 0,
            "the first refill pushes blocks"
        );
        let (ok, _failed, corrupt) = p.churn(5_000, batch + 1);
        assert_eq!(
            corrupt, 0,
            "a live block was handed out twice or overlapped"
        );
        total_ok += ok;
    }
    assert!(
        total_ok > 40_000,
        "mallocs succeed once refilled: {total_ok}"
    );
    let st = a.stats();
    assert!(st.carved_total() > 0);
    assert_eq!(st.in_flight, 0);
    assert_eq!(
        st.carved_total(),
        st.free_total(),
        "everything freed is free again: {st:?}"
    );
    assert_eq!(st.live(), 0);
}

#[test]
fn refill_thread_races_two_cpus_without_losing_or_sharing_blocks() {
    let Some(p) = Prog::load() else { return };
    let p = Arc::new(p);
    let heap = Buffer::new(256 << 20);
    // Small chains so that the programs drain the stacks often while the thread refills them.
    let a = Arc::new(p.attach(&heap, cfg(2, 4 * 1024)));
    let refiller = a.clone().spawn_refill_thread(Duration::from_micros(50));
    let workers: Vec<_> = (0..2u32)
        .map(|cpu| {
            let p = p.clone();
            std::thread::spawn(move || {
                (p.set_cpu)(cpu);
                // Churn until 40,000 mallocs succeeded: progress depends on the refill thread
                // being scheduled, so rounds that starve yield to it (a liveness bound of a
                // minute keeps a broken refill from hanging the test).
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                let (mut sum, mut round) = ((0, 0, 0), 0);
                while sum.0 < 40_000 && std::time::Instant::now() < deadline {
                    let (ok, failed, corrupt) = p.churn(10_000, u64::from(cpu) * 1000 + round + 7);
                    sum = (sum.0 + ok, sum.1 + failed, sum.2 + corrupt);
                    round += 1;
                    if failed > 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
                sum
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let pushed = refiller.stop();
    assert!(pushed > 0);
    for (cpu, (ok, _failed, corrupt)) in results.iter().enumerate() {
        assert_eq!(*corrupt, 0, "cpu {cpu}: blocks overlapped or were shared");
        assert!(
            *ok >= 40_000,
            "cpu {cpu}: the refill thread kept it going ({ok} mallocs)"
        );
    }
    let st = a.stats();
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.carved_total(), st.free_total(), "no block lost: {st:?}");
}

#[test]
fn release_after_cancel_unlocks_and_reclaims_the_journal() {
    let Some(p) = Prog::load() else { return };
    let heap = Buffer::new(16 << 20);
    let a = p.attach(&heap, cfg(1, 16 * 1024));
    (p.set_cpu)(0);
    a.refill();
    // A "cancelled" invocation: lock held, 10 blocks allocated, 3 of them freed, no commit.
    assert_eq!((p.abandon)(10, 100, 3), 10);
    assert_eq!(p.lock_word(), 1, "cpu 0 holds the lock");
    let before = a.stats();
    assert_eq!(before.in_flight, 7);
    assert_eq!(
        before.live(),
        0,
        "the 7 in flight are not live in any structure"
    );
    let r = a.release_after_cancel(0);
    assert_eq!(r.locks_released, 1);
    assert_eq!(
        r.blocks_reclaimed, 7,
        "the freed three are not returned twice"
    );
    assert_eq!(r.unjournaled, 0);
    assert_eq!(p.lock_word(), 0);
    assert_eq!((p.lock_cycle)(), 0, "the lock can be taken again");
    let st = a.stats();
    assert_eq!((st.in_flight, st.reclaimed, st.locks_released), (0, 7, 1));
    assert_eq!(st.carved_total(), st.free_total());
    // Nothing is released twice.
    assert_eq!(a.release_after_cancel(0), Default::default());
    // Reclaimed blocks are handed out again after a refill, and malloc/free still work.
    let (ok, _, corrupt) = p.churn(2_000, 3);
    assert!(ok > 0);
    assert_eq!(corrupt, 0);
}

#[test]
fn journal_overflow_is_reported_and_bounded() {
    let Some(p) = Prog::load() else { return };
    let heap = Buffer::new(16 << 20);
    let a = p.attach(&heap, cfg(1, 16 * 1024));
    (p.set_cpu)(0);
    a.refill();
    assert_eq!((p.abandon)(20, 40, 0), 20);
    let r = a.release_after_cancel(0);
    assert_eq!(r.blocks_reclaimed, kflex_sdk::layout::JOURNAL_LEN as u64);
    assert_eq!(r.unjournaled, 20 - kflex_sdk::layout::JOURNAL_LEN as u64);
    let st = a.stats();
    assert_eq!(
        st.live(),
        r.unjournaled,
        "only the unjournaled blocks stay allocated"
    );
}

#[test]
fn double_free_and_foreign_pointers_are_ignored() {
    let Some(p) = Prog::load() else { return };
    let heap = Buffer::new(8 << 20);
    let a = p.attach(&heap, cfg(1, 8 * 1024));
    (p.set_cpu)(0);
    a.refill();
    let x = (p.malloc)(24);
    assert!(!x.is_null());
    (p.free)(x);
    (p.free)(x);
    (p.free)(std::ptr::null_mut());
    let mut local = [0u64; 4];
    (p.free)(local.as_mut_ptr().wrapping_add(1).cast());
    let st = a.stats();
    assert_eq!(st.carved_total(), st.free_total(), "counted once: {st:?}");
    let y = (p.malloc)(24);
    let z = (p.malloc)(24);
    assert!(!y.is_null() && !z.is_null());
    assert_ne!(y, z, "the double-freed block is not handed out twice");
    assert!((p.malloc)(4097).is_null(), "larger than 4 KiB");
}

#[test]
fn starved_classes_get_longer_chains() {
    let Some(p) = Prog::load() else { return };
    let heap = Buffer::new(8 << 20);
    let cfg = AllocConfig {
        cpus: 1,
        chain_bytes: 0,
        min_chain: 4,
        max_chain: 64,
        ..AllocConfig::default()
    };
    let a = p.attach(&heap, cfg);
    (p.set_cpu)(0);
    a.refill();
    let got: Vec<_> = (0..5).map(|_| (p.malloc)(4000)).collect();
    assert!(got[..4].iter().all(|b| !b.is_null()));
    assert!(got[4].is_null(), "a chain of min_chain blocks, then NULL");
    assert_eq!(a.stats().starved, 1);
    let before = a.stats().carved[8];
    a.refill();
    assert_eq!(
        a.stats().carved[8] - before,
        8,
        "the starved class's chain doubled"
    );
}

#[test]
fn a_cpu_freeing_what_another_allocates_gives_the_surplus_back() {
    let Some(p) = Prog::load() else { return };
    let heap = Buffer::new(64 << 20);
    let cfg = AllocConfig {
        cpus: 2,
        chain_bytes: 64 * 136, // 64 blocks of the 128-byte class per chain
        keep_chains: 2,
        ..AllocConfig::default()
    };
    let a = p.attach(&heap, cfg);
    let mut blocks = vec![std::ptr::null_mut(); 1000];
    for round in 0..20 {
        a.refill();
        // CPU 0 allocates, CPU 1 frees: without give-back CPU 1 would hoard every block.
        (p.set_cpu)(0);
        let n = (p.alloc_many)(100, 100, blocks.as_mut_ptr());
        assert!(n >= 64, "round {round}: a refill's worth at least ({n})");
        (p.set_cpu)(1);
        (p.free_many)(n, blocks.as_ptr());
        let st = a.stats();
        assert_eq!(st.carved_total(), st.free_total(), "round {round}: {st:?}");
    }
    // SAFETY: reading CPU 1's private-list length of class 3 in the library's live state.
    let kept = unsafe {
        let cpu1 = (p.state)() as *const kflex_sdk::layout::AllocState;
        (*cpu1).cpu[1].free_count[3]
    };
    assert!(kept <= 128, "CPU 1 keeps at most two chains ({kept})");
    let carved = a.stats().carved[3];
    assert!(
        carved < 20 * 100,
        "given-back blocks are reused instead of carving anew ({carved} carved)"
    );
}

#[test]
fn given_back_blocks_still_journaled_are_not_handed_out_before_a_commit() {
    let Some(p) = Prog::load() else { return };
    let heap = Buffer::new(16 << 20);
    let cfg = AllocConfig {
        cpu_mask: Some(0b01), // only CPU 0 is stocked; CPU 1 lives on what it frees
        chain_bytes: 0,       // chains of min_chain = 4 blocks
        keep_chains: 1,       // keep = 4 blocks per class
        ..AllocConfig::default()
    };
    let a = p.attach(&heap, cfg);
    // CPU 0 allocates 8 blocks (committed); CPU 1 will free them.
    (p.set_cpu)(0);
    let (mut first, mut second) = (vec![std::ptr::null_mut(); 4], vec![std::ptr::null_mut(); 4]);
    a.refill();
    assert_eq!((p.alloc_many)(4, 100, first.as_mut_ptr()), 4);
    a.refill();
    assert_eq!((p.alloc_many)(4, 100, second.as_mut_ptr()), 4);
    // CPU 1's private list of the 128-byte class fills up to its keep (4).
    (p.set_cpu)(1);
    (p.free_many)(4, first.as_ptr());
    // One uncommitted invocation on CPU 1 allocates 2 (from its list), frees CPU 0's other 4
    // (refilling its list to keep) and then its own 2: those 2 are given back while CPU 1's
    // journal still names them.
    let mut two = vec![std::ptr::null_mut(); 2];
    let got = (p.uncommitted_after_fill)(2, 100, two.as_mut_ptr(), 4, second.as_ptr());
    assert_eq!(got, 2);
    a.refill();
    let st = a.stats();
    assert_eq!(st.carved_total(), st.free_total(), "{st:?}");
    // CPU 0 allocates all it can get: never a block CPU 1's journal still names.
    (p.set_cpu)(0);
    let mut got = vec![std::ptr::null_mut(); 64];
    for _ in 0..4 {
        let n = (p.alloc_many)(64, 100, got.as_mut_ptr()) as usize;
        assert!(n > 0);
        for b in &got[..n] {
            assert!(
                !two.contains(b),
                "a journaled block was handed to another CPU"
            );
        }
        a.refill();
    }
    // CPU 1's invocation is cancelled: nothing in its journal is allocated any more, and the
    // blocks it gave back become reusable.
    let r = a.release_after_cancel(1);
    assert_eq!(r.blocks_reclaimed, 0);
    assert_eq!(a.stats().in_flight, 0);
    a.refill();
    let mut reused = false;
    for _ in 0..8 {
        let n = (p.alloc_many)(64, 100, got.as_mut_ptr()) as usize;
        reused |= got[..n].iter().any(|b| two.contains(b));
        a.refill();
    }
    assert!(
        reused,
        "after the cleanup the given-back blocks are handed out again"
    );
}

#[test]
fn a_cpu_mask_stocks_exactly_those_cpus() {
    let Some(p) = Prog::load() else { return };
    let heap = Buffer::new(16 << 20);
    let cfg = AllocConfig {
        cpu_mask: Some(0b100),
        chain_bytes: 4096,
        ..AllocConfig::default()
    };
    let a = p.attach(&heap, cfg);
    assert!(a.refill() > 0);
    (p.set_cpu)(0);
    assert!((p.malloc)(64).is_null(), "CPU 0 is not stocked");
    (p.set_cpu)(2);
    assert!(!(p.malloc)(64).is_null(), "CPU 2 is");
    let none = AllocConfig {
        cpu_mask: Some(0),
        ..AllocConfig::default()
    };
    // SAFETY: refused before any memory is touched.
    let refused = unsafe { HeapAllocator::attach_with((p.state)() as *mut u8, heap.range(), none) };
    assert!(matches!(refused, Err(Error::Config(_))));
}

#[test]
fn attach_rejects_bad_memory() {
    let heap = Buffer::new(1 << 20);
    let state = heap.base as *mut u8;
    // SAFETY: every call fails before touching memory, or attaches inside the live buffer.
    unsafe {
        assert!(matches!(
            HeapAllocator::attach(state.wrapping_add(4), heap.base + 65536..heap.base + 131072),
            Err(Error::MisalignedState(_))
        ));
        assert!(matches!(
            HeapAllocator::attach(state, heap.base..heap.base + 131072),
            Err(Error::CarveOverlapsState { .. })
        ));
        assert!(matches!(
            HeapAllocator::attach(state, heap.base + 65536..heap.base + 65540),
            Err(Error::EmptyCarve(_))
        ));
        assert!(matches!(
            HeapAllocator::attach((u64::MAX - 7) as *mut u8, 0..1 << 20),
            Err(Error::MisalignedState(_))
        ));
        assert!(matches!(
            HeapAllocator::attach(state, u64::MAX - 4..u64::MAX),
            Err(Error::EmptyCarve(_))
        ));
        let outside = AllocConfig {
            heap: Some(heap.range()),
            ..AllocConfig::default()
        };
        assert!(matches!(
            HeapAllocator::attach_with(state, heap.base + 65536..heap.base + (2 << 20), outside),
            Err(Error::OutsideHeap { .. })
        ));
        let a = HeapAllocator::attach(state, heap.base + 65536..heap.base + (1 << 20))
            .expect("a valid attachment");
        assert_eq!(
            std::ptr::read(state.cast::<u64>()),
            kflex_sdk::layout::ALLOC_MAGIC
        );
        assert!(a.refill() > 0);
    }
}
