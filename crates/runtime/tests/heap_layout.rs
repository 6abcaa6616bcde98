//! Heap layout: size alignment, lazy population of huge heaps, guard zones, checked host access,
//! fixed addresses, and release on drop.
//!
//! Guard-zone faults are checked in a child process (this test binary re-run with
//! `KFLEX_HEAP_FAULT` naming the access), never by crashing the test process.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use kflex_runtime::heap::{DEFAULT_GUARD, Heap, HeapConfig, HeapError, MIN_GUARD, SharedHeap};
use kflex_runtime::maps::page_size;
use kflex_runtime::{MemoryMap, RegionKind};

/// One line of `/proc/self/maps`: start, end, permissions.
struct MapLine {
    start: u64,
    end: u64,
    perms: String,
}

fn read_maps(buf: &mut String) -> Vec<MapLine> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open("/proc/self/maps")
        .unwrap()
        .read_to_string(buf)
        .unwrap();
    buf.lines()
        .map(|l| {
            let mut it = l.split_whitespace();
            let range = it.next().unwrap();
            let perms = it.next().unwrap().to_string();
            let (a, b) = range.split_once('-').unwrap();
            MapLine {
                start: u64::from_str_radix(a, 16).unwrap(),
                end: u64::from_str_radix(b, 16).unwrap(),
                perms,
            }
        })
        .collect()
}

/// The permissions of every mapping overlapping `[start, end)`, and whether they cover it fully.
fn perms_over(maps: &[MapLine], start: u64, end: u64) -> (Vec<String>, bool) {
    let mut perms = Vec::new();
    let mut covered = start;
    for m in maps.iter().filter(|m| m.end > start && m.start < end) {
        perms.push(m.perms.clone());
        if m.start <= covered {
            covered = covered.max(m.end);
        }
    }
    (perms, covered >= end)
}

fn assert_guarded_layout(h: &Heap) {
    let mut buf = String::new();
    let maps = read_maps(&mut buf);
    let (lo, lo_full) = perms_over(&maps, h.base() - h.guard(), h.base());
    let (mid, mid_full) = perms_over(&maps, h.base(), h.base() + h.size());
    let (hi, hi_full) = perms_over(&maps, h.base() + h.size(), h.base() + h.size() + h.guard());
    assert!(lo_full && mid_full && hi_full, "{lo:?} {mid:?} {hi:?}");
    assert!(lo.iter().all(|p| p == "---p"), "lower guard {lo:?}");
    assert!(hi.iter().all(|p| p == "---p"), "upper guard {hi:?}");
    assert!(mid.iter().all(|p| p == "rw-s"), "heap {mid:?}");
}

#[test]
fn base_is_aligned_to_the_size_for_several_sizes() {
    let page = page_size();
    for size in [page, 1 << 16, 1 << 20, 1 << 21, 1 << 30, 1 << 33] {
        let h = Heap::create(HeapConfig::new(size)).unwrap();
        assert_eq!(h.size(), size);
        assert_eq!(h.mask(), size - 1);
        assert_eq!(
            h.base() & h.mask(),
            0,
            "size {size:#x} base {:#x}",
            h.base()
        );
        assert_eq!(h.guard(), DEFAULT_GUARD.next_multiple_of(page));
        // Masking any address and or-ing the base lands inside the heap.
        for addr in [0u64, u64::MAX, 0xdead_beef_1234_5678, h.base() - 1] {
            assert!(h.contains(h.base() | (addr & h.mask()), 1));
        }
        assert_guarded_layout(&h);
    }
}

#[test]
fn guard_is_rounded_up_to_pages_and_never_below_the_minimum() {
    let page = page_size();
    let h = Heap::create(HeapConfig {
        guard: DEFAULT_GUARD + 1,
        ..HeapConfig::new(1 << 16)
    })
    .unwrap();
    assert_eq!(h.guard(), (DEFAULT_GUARD + 1).next_multiple_of(page));
    assert_guarded_layout(&h);
    let small = Heap::create(HeapConfig {
        guard: MIN_GUARD - 8,
        ..HeapConfig::new(1 << 16)
    });
    assert!(matches!(small, Err(HeapError::Config(_))));
}

#[test]
fn a_64_gib_heap_is_populated_lazily() {
    let size = 1u64 << 36;
    let h = Heap::create(HeapConfig::new(size)).unwrap();
    assert_eq!(h.base() % size, 0);
    let before = h.resident_bytes().unwrap();
    let offsets = [0, 1 << 32, (1 << 35) + 12_345, size - 8];
    for (i, &off) in offsets.iter().enumerate() {
        h.write(off, &(i as u64 + 1).to_le_bytes()).unwrap();
    }
    for (i, &off) in offsets.iter().enumerate() {
        let mut b = [0u8; 8];
        h.read(off, &mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i as u64 + 1);
    }
    let after = h.resident_bytes().unwrap();
    assert!(after > before, "touched pages must become resident");
    // Four touched pages (huge shmem pages at most, if the host enables them): far below 64 GiB.
    assert!(after <= 4 * (2 << 20), "{after} bytes resident");
    assert_guarded_layout(&h);
}

#[test]
fn out_of_range_host_accesses_are_refused() {
    let h = Heap::create(HeapConfig::new(1 << 16)).unwrap();
    h.write(h.size() - 4, b"keep").unwrap();
    let cases: [(u64, usize); 5] = [
        (h.size(), 1),
        (h.size() - 3, 4),
        (u64::MAX, 1),
        (u64::MAX - 2, 8),
        (h.size() + h.guard(), 1),
    ];
    for (off, len) in cases {
        let data = vec![0xAAu8; len];
        let err = h.write(off, &data).unwrap_err();
        assert!(
            matches!(err, HeapError::OutOfRange { offset, .. } if offset == off),
            "{err}"
        );
        let mut buf = vec![0u8; len];
        assert!(h.read(off, &mut buf).is_err());
    }
    let mut b = [0u8; 4];
    h.read(h.size() - 4, &mut b).unwrap();
    assert_eq!(&b, b"keep", "refused writes must not change the heap");
    // Zero-length accesses at the very end are inside; one past is not.
    h.read(h.size(), &mut []).unwrap();
    assert!(h.read(h.size() + 1, &mut []).is_err());
}

#[test]
fn region_is_the_whole_heap_and_the_memory_map_accepts_it() {
    let h = Heap::create(HeapConfig::new(1 << 20)).unwrap();
    let r = h.region();
    assert_eq!(
        (r.start, r.len, r.kind, r.writable),
        (h.base(), h.size(), RegionKind::Heap, true)
    );
    let mut mm = MemoryMap::new();
    // SAFETY: the heap stays mapped until after `mm` is dropped, and is never borrowed.
    unsafe { mm.insert(r).unwrap() };
    mm.store(h.base() + 100, 8, 0x1122_3344_5566_7788).unwrap();
    let mut b = [0u8; 8];
    h.read(100, &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0x1122_3344_5566_7788);
    assert!(mm.load(h.base() + h.size() - 4, 8).is_err());
    assert!(mm.load(h.base() - 8, 8).is_err());
    drop(mm);
}

#[test]
fn fixed_addresses_are_honoured_and_never_clobbered() {
    let size = 1u64 << 24;
    let addr = 0x5a00_0000_0000u64;
    let h = Heap::create(HeapConfig {
        address: Some(addr),
        init: Some(b"first"),
        ..HeapConfig::new(size)
    })
    .unwrap();
    assert_eq!(h.base(), addr);
    let again = Heap::create(HeapConfig {
        address: Some(addr),
        ..HeapConfig::new(size)
    });
    assert!(
        matches!(again, Err(HeapError::AddressTaken { .. })),
        "{again:?}"
    );
    // A shared view at the same address is refused the same way.
    let fd = h.share_fd().inheritable_fd().unwrap();
    let view = SharedHeap::attach(fd, addr, size);
    assert!(
        matches!(view, Err(HeapError::AddressTaken { .. })),
        "{view:?}"
    );
    let mut b = [0u8; 5];
    h.read(0, &mut b).unwrap();
    assert_eq!(&b, b"first", "the failed attempts left the heap intact");
    let misaligned = Heap::create(HeapConfig {
        address: Some(addr + page_size()),
        ..HeapConfig::new(size)
    });
    assert!(matches!(misaligned, Err(HeapError::Config(_))));
}

#[test]
fn drop_releases_the_whole_range() {
    let h = Heap::create(HeapConfig::new(1 << 30)).unwrap();
    h.write(4096, b"x").unwrap();
    let (start, end) = (h.base() - h.guard(), h.base() + h.size() + h.guard());
    // Allocate the /proc buffer up front so no allocation can land in the freed range.
    let mut buf = String::with_capacity(1 << 20);
    let (before, _) = perms_over(&read_maps(&mut buf), start, end);
    assert!(!before.is_empty());
    drop(h);
    let (after, _) = perms_over(&read_maps(&mut buf), start, end);
    assert!(after.is_empty(), "still mapped after drop: {after:?}");
}

/// Child role: performs the access named by `KFLEX_HEAP_FAULT` on a fresh heap. An access inside
/// the heap exits normally; one in a guard zone must be killed by SIGSEGV.
#[test]
fn guard_fault_child() {
    let Ok(which) = std::env::var("KFLEX_HEAP_FAULT") else {
        return;
    };
    let h = Heap::create(HeapConfig::new(1 << 16)).unwrap();
    let addr = match which.as_str() {
        "last-byte" => h.base() + h.size() - 1,
        "below" => h.base() - 1,
        "below-far" => h.base() - h.guard(),
        "above" => h.base() + h.size(),
        "above-far" => h.base() + h.size() + h.guard() - 1,
        other => panic!("unknown access {other}"),
    };
    // SAFETY: deliberately probing the heap edges in a throwaway child process; an access in the
    // guard zone must fault (and kill this process), one inside the heap is a valid write.
    unsafe { std::ptr::write_volatile(addr as *mut u8, 1) };
}

fn probe(which: &str) -> std::process::ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "guard_fault_child",
            "--test-threads=1",
            "--quiet",
        ])
        .env("KFLEX_HEAP_FAULT", which)
        .output()
        .unwrap()
        .status
}

#[test]
fn guard_zones_fault_on_access() {
    if std::env::var_os("KFLEX_HEAP_FAULT").is_some() {
        return;
    }
    assert!(probe("last-byte").success());
    for which in ["below", "below-far", "above", "above-far"] {
        let status = probe(which);
        assert_eq!(status.signal(), Some(libc::SIGSEGV), "{which}: {status:?}");
    }
}
