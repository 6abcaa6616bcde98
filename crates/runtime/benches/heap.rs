//! Heap costs: creating (and dropping) a heap of several sizes, and touching a page for the first
//! time (memfd page fault and zeroing) against touching an already populated page.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kflex_runtime::heap::{Heap, HeapConfig};
use kflex_runtime::maps::page_size;

fn creation(c: &mut Criterion) {
    let mut g = c.benchmark_group("heap_create_drop");
    for (label, size) in [
        ("64KiB", 1u64 << 16),
        ("1MiB", 1 << 20),
        ("1GiB", 1 << 30),
        ("64GiB", 1 << 36),
    ] {
        g.bench_with_input(BenchmarkId::from_parameter(label), &size, |b, &size| {
            b.iter(|| black_box(Heap::create(HeapConfig::new(size)).unwrap()))
        });
    }
    g.finish();
}

/// Times `iters` one-byte writes, one per page, in heaps of `PAGES` pages each; `warm` touches
/// every page once before timing.
fn touch_pages(iters: u64, warm: bool) -> Duration {
    const PAGES: u64 = 1 << 14;
    let page = page_size();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(PAGES);
        let heap = Heap::create(HeapConfig::new(PAGES * page)).unwrap();
        if warm {
            for i in 0..n {
                heap.write(i * page, &[0]).unwrap();
            }
        }
        let start = Instant::now();
        for i in 0..n {
            heap.write(black_box(i * page), &[1]).unwrap();
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

fn touch(c: &mut Criterion) {
    let mut g = c.benchmark_group("heap_page_touch");
    g.bench_function("first_touch", |b| b.iter_custom(|n| touch_pages(n, false)));
    g.bench_function("populated", |b| b.iter_custom(|n| touch_pages(n, true)));
    g.finish();
}

criterion_group!(benches, creation, touch);
criterion_main!(benches);
