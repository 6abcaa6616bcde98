//! Cost of getting a guarded stack: a cache hit (the common case, no system call), a cache miss
//! (mmap + mprotect + munmap), and a whole `with_guarded_stack` round trip (switch and back).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kflex_runtime::exec::stack::{self, GuardedStack};
use kflex_runtime::exec::{DEFAULT_STACK_SIZE, with_guarded_stack};

fn stacks(c: &mut Criterion) {
    let mut g = c.benchmark_group("guarded_stack");
    stack::give_back(stack::take(DEFAULT_STACK_SIZE).expect("stack"));
    g.bench_function("take_give_back_cache_hit", |b| {
        b.iter(|| {
            let s = stack::take(black_box(DEFAULT_STACK_SIZE)).expect("stack");
            stack::give_back(black_box(s));
        })
    });
    g.bench_function("map_unmap_cache_miss", |b| {
        b.iter(|| black_box(GuardedStack::new(black_box(DEFAULT_STACK_SIZE)).expect("stack")))
    });
    g.bench_function("with_guarded_stack_round_trip", |b| {
        b.iter(|| with_guarded_stack(DEFAULT_STACK_SIZE, || black_box(1u64) + 1).expect("stack"))
    });
    g.finish();
}

criterion_group!(benches, stacks);
criterion_main!(benches);
