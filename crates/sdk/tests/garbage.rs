//! The host side never trusts the heap: whatever a (buggy or hostile) program wrote into the
//! allocator state, `release_after_cancel`, `stats` and `refill` neither panic nor touch memory
//! outside the heap, and they never return a block the host did not carve.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use kflex_sdk::layout::{MAX_CPUS, STATE_SIZE};
use kflex_sdk::{AllocConfig, HeapAllocator};
use proptest::prelude::*;

/// Heap: 64 KiB state area, then 1 MiB to carve from.
const HEAP: usize = (64 << 10) + (1 << 20);

fn words(heap: &support::Buffer) -> &[AtomicU64] {
    // SAFETY: the buffer is mapped read-write, 8-byte aligned, and outlives the slice; all
    // accesses are atomic.
    unsafe { std::slice::from_raw_parts(heap.base as *const AtomicU64, heap.len / 8) }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn garbage_in_the_state_is_survived(
        seeds in proptest::collection::vec(any::<u64>(), 64),
        cpu in 0u32..200,
    ) {
        let heap = support::Buffer::new(HEAP);
        let carve = heap.base + (64 << 10)..heap.base + HEAP as u64;
        let cfg = AllocConfig { cpus: 2, chain_bytes: 8192, ..AllocConfig::default() };
        // SAFETY: state and carve range lie in the live buffer; heap addresses are host ones.
        let a = unsafe { HeapAllocator::attach_with(heap.base as *mut u8, carve.clone(), cfg) }
            .unwrap();
        a.refill();
        let before = a.stats();
        let w = words(&heap);
        // Scribble over the state: values that are pointers into the carve range (aligned or
        // not), into the state, far outside the heap, or random.
        for (i, s) in seeds.iter().enumerate() {
            let v = match s % 5 {
                0 => carve.start + (s >> 8) % (carve.end - carve.start),
                1 => carve.start + ((s >> 8) % 4096) * 8,
                2 => heap.base + (s >> 8) % STATE_SIZE as u64,
                3 => s >> 3,
                _ => *s,
            };
            let at = (s.rotate_left(17) as usize + i * 7919) % (STATE_SIZE / 8);
            w[at].store(v, Ordering::Relaxed);
        }
        let report = a.release_after_cancel(cpu);
        prop_assert!(report.blocks_reclaimed <= kflex_sdk::layout::JOURNAL_LEN as u64);
        let after = a.stats();
        prop_assert_eq!(after.carved, before.carved);
        prop_assert!(after.in_flight <= (MAX_CPUS * kflex_sdk::layout::JOURNAL_LEN) as u64);
        // The derived figures are defined whatever the counters say.
        let _ = (after.free_total(), after.live());
        a.refill();
        let again = a.stats();
        prop_assert!(again.carve_used <= again.carve_capacity);
    }
}
