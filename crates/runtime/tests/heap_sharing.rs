//! A heap shared with a second process at the same address: pointers written by one side are
//! followed unchanged by the other.
//!
//! The parent test re-runs this test binary with `KFLEX_HEAP_SHARE=fd,base,size` selecting the
//! child role; the child inherits a duplicate of the memfd (close-on-exec cleared), attaches at the
//! same base, walks a linked list of absolute pointers, and appends a node.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;

use kflex_runtime::heap::{Heap, HeapConfig, HeapError, SharedHeap};

/// Heap layout: offset 0 holds the list head (absolute address, 0 = empty), offset 8 the bump
/// allocator's next free offset; nodes are `{ next: u64, value: u64 }`.
const HEAD: u64 = 0;
const TOP: u64 = 8;
const FIRST_NODE: u64 = 64;
const NODE: u64 = 16;

fn get(h: &Heap, off: u64) -> u64 {
    let mut b = [0u8; 8];
    h.read(off, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn put(h: &Heap, off: u64, v: u64) {
    h.write(off, &v.to_le_bytes()).unwrap();
}

/// Heap offset of the absolute address `ptr`, which must point at a whole node inside the heap.
fn offset_of(h: &Heap, ptr: u64) -> u64 {
    assert!(h.contains(ptr, NODE), "pointer {ptr:#x} leaves the heap");
    ptr - h.base()
}

/// Values along the list, following absolute pointers.
fn walk(h: &Heap) -> Vec<u64> {
    let mut out = Vec::new();
    let mut p = get(h, HEAD);
    while p != 0 {
        let off = offset_of(h, p);
        out.push(get(h, off + 8));
        p = get(h, off);
        assert!(out.len() < 1000, "cycle in the list");
    }
    out
}

/// Allocates a node holding `value` and links it at the tail.
fn append(h: &Heap, value: u64) {
    let top = get(h, TOP).max(FIRST_NODE);
    put(h, TOP, top + NODE);
    put(h, top, 0);
    put(h, top + 8, value);
    let node = h.base() + top;
    let mut link = HEAD;
    loop {
        let next = get(h, link);
        if next == 0 {
            break;
        }
        link = offset_of(h, next);
    }
    put(h, link, node);
}

/// Child role (only with `KFLEX_HEAP_SHARE`): attach, check the parent's list, append 99.
#[test]
fn shared_heap_child() {
    let Ok(spec) = std::env::var("KFLEX_HEAP_SHARE") else {
        return;
    };
    let parts: Vec<u64> = spec.split(',').map(|s| s.parse().unwrap()).collect();
    let [fd, base, size] = parts[..] else {
        panic!("bad KFLEX_HEAP_SHARE {spec}");
    };
    // SAFETY: the parent passed this inherited descriptor number for us to own; nothing else in
    // this process uses it.
    let fd = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap()) };
    let h = SharedHeap::attach(fd, base, size).unwrap();
    assert_eq!((h.base(), h.size()), (base, size));
    assert_eq!(walk(&h), [10, 20, 30]);
    append(&h, 99);
}

#[test]
fn a_child_process_follows_and_extends_a_list_at_the_same_address() {
    if std::env::var_os("KFLEX_HEAP_SHARE").is_some() {
        return;
    }
    let h = Heap::create(HeapConfig::new(1 << 20)).unwrap();
    for v in [10, 20, 30] {
        append(&h, v);
    }
    let share = h.share_fd();
    let fd = share.inheritable_fd().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "shared_heap_child", "--test-threads=1"])
        .env(
            "KFLEX_HEAP_SHARE",
            format!("{},{},{}", fd.as_raw_fd(), share.base, share.size),
        )
        .output()
        .unwrap();
    drop(fd);
    assert!(
        out.status.success(),
        "child failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(walk(&h), [10, 20, 30, 99]);
}

#[test]
fn attach_checks_its_arguments() {
    let h = Heap::create(HeapConfig::new(1 << 16)).unwrap();
    let dup = || h.share_fd().inheritable_fd().unwrap();
    // Larger than the file behind the descriptor.
    let big = SharedHeap::attach(dup(), 0x5b00_0000_0000, 1 << 20);
    assert!(matches!(big, Err(HeapError::Config(_))), "{big:?}");
    // Not size-aligned, not a power of two.
    let mis = SharedHeap::attach(dup(), 0x5b00_0000_1000, 1 << 16);
    assert!(matches!(mis, Err(HeapError::Config(_))), "{mis:?}");
    let odd = SharedHeap::attach(dup(), 0x5b00_0000_0000, 3 << 12);
    assert!(matches!(odd, Err(HeapError::Config(_))), "{odd:?}");
}

#[test]
fn a_second_view_in_the_same_process_sees_the_same_memory() {
    let h = Heap::create(HeapConfig::new(1 << 16)).unwrap();
    let other = 0x5c00_0000_0000u64;
    let view = SharedHeap::attach_guarded(
        h.share_fd().inheritable_fd().unwrap(),
        other,
        h.size(),
        h.guard(),
    )
    .unwrap();
    assert_eq!(view.base(), other);
    assert_eq!(view.guard(), h.guard());
    h.write(40, b"from the owner").unwrap();
    let mut b = [0u8; 14];
    view.read(40, &mut b).unwrap();
    assert_eq!(&b, b"from the owner");
    view.write(0, b"back").unwrap();
    let mut c = [0u8; 4];
    h.read(0, &mut c).unwrap();
    assert_eq!(&c, b"back");
    // Pointers translate by masking and or-ing the other base (KFlex's rule for distinct bases).
    let ptr_owner = h.base() + 40;
    assert_eq!(view.base() | (ptr_owner & view.mask()), other + 40);
    drop(view);
    h.read(0, &mut c).unwrap();
    assert_eq!(&c, b"back", "dropping a view leaves the heap mapped");
}
