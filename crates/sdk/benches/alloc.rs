//! Cost of the SDK's fast paths, built natively with gcc -O2 from the same header extensions
//! use (tests/c/sdk_native.c): a malloc+free pair, a burst of 1000 mallocs then frees, a
//! lock+unlock pair, and the host's first refill of a fresh allocator per block pushed.
//!
//! `cargo bench -p kflex-sdk --bench alloc -- --warm-up-time 1 --measurement-time 2`

#[path = "../tests/support/mod.rs"]
mod support;

use std::ffi::c_void;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kflex_sdk::{AllocConfig, HeapAllocator};

type Pairs = extern "C" fn(u64, u64) -> u64;
type LockPairs = extern "C" fn(u64) -> u64;

fn bench(c: &mut Criterion) {
    if !support::have_gcc() {
        return;
    }
    let lib = support::Lib::build(&support::c_file("sdk_native.c"));
    // SAFETY: symbols of sdk_native.c with exactly these signatures.
    let (state, pairs, bulk, lock_pairs) = unsafe {
        (
            std::mem::transmute::<*mut c_void, extern "C" fn() -> u64>(lib.sym("sdk_state")),
            std::mem::transmute::<*mut c_void, Pairs>(lib.sym("sdk_pairs")),
            std::mem::transmute::<*mut c_void, Pairs>(lib.sym("sdk_bulk")),
            std::mem::transmute::<*mut c_void, LockPairs>(lib.sym("sdk_lock_pairs")),
        )
    };
    let heap = support::Buffer::new(1 << 30);
    let cfg = AllocConfig {
        cpus: 1,
        ..AllocConfig::default()
    };
    // SAFETY: the library's state global and the buffer outlive the allocator.
    let alloc =
        unsafe { HeapAllocator::attach_with(state() as *mut u8, heap.range(), cfg.clone()) }
            .expect("attach");
    alloc.refill();
    const N: u64 = 1000;
    let mut g = c.benchmark_group("sdk_native");
    g.throughput(Throughput::Elements(N));
    g.bench_function("malloc_free_pair_128B", |b| {
        b.iter(|| assert_eq!(pairs(black_box(N), 104), N))
    });
    g.bench_function("burst_1000_then_free_128B", |b| {
        b.iter(|| assert_eq!(bulk(black_box(N), 104), N))
    });
    g.bench_function("lock_unlock_pair", |b| {
        b.iter(|| assert_eq!(lock_pairs(black_box(N)), N))
    });
    g.finish();
    let mut g = c.benchmark_group("sdk_host");
    let attach = || {
        // SAFETY: as above; each attachment takes over the same state and buffer afresh.
        unsafe { HeapAllocator::attach_with(state() as *mut u8, heap.range(), cfg.clone()) }
            .expect("attach")
    };
    let blocks = attach().refill() as u64;
    g.throughput(Throughput::Elements(blocks));
    g.bench_function("attach_and_first_refill_per_block", |b| {
        b.iter(|| black_box(attach().refill()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
