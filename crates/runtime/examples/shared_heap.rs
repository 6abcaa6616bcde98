//! A heap shared between two processes at the same address.
//!
//! The parent creates a heap, builds a linked list in it whose `next` fields are absolute
//! addresses, and re-runs this executable as a child (`shared_heap child FD BASE SIZE`), passing it
//! a duplicate of the heap's memfd with close-on-exec cleared. The child maps the memfd at the same
//! base, walks the list by following the very same pointers, appends a node and exits; the parent
//! then walks the extended list.
//!
//! Run with `cargo run -p kflex-runtime --example shared_heap`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail, ensure};
use kflex_runtime::heap::{Heap, HeapConfig, SharedHeap};

/// Offset of the list head (an absolute node address, 0 for an empty list).
const HEAD: u64 = 0;
/// Offset of the bump allocator's next free offset, shared by both processes.
const TOP: u64 = 8;
/// Offset of the first node.
const FIRST_NODE: u64 = 64;
/// A node: `next` (absolute address) then `value`.
const NODE: u64 = 16;

fn get(h: &Heap, off: u64) -> Result<u64> {
    let mut b = [0u8; 8];
    h.read(off, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn put(h: &Heap, off: u64, v: u64) -> Result<()> {
    Ok(h.write(off, &v.to_le_bytes())?)
}

/// The heap offset of node pointer `ptr`, refusing pointers that leave the heap.
fn node_offset(h: &Heap, ptr: u64) -> Result<u64> {
    ensure!(h.contains(ptr, NODE), "pointer {ptr:#x} leaves the heap");
    Ok(ptr - h.base())
}

/// The list's values and node addresses, in order.
fn walk(h: &Heap) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut p = get(h, HEAD)?;
    while p != 0 {
        ensure!(out.len() < 1 << 16, "the list does not end");
        let off = node_offset(h, p)?;
        out.push((p, get(h, off + 8)?));
        p = get(h, off)?;
    }
    Ok(out)
}

/// Allocates a node for `value` and links it at the tail.
fn append(h: &Heap, value: u64) -> Result<()> {
    let top = get(h, TOP)?.max(FIRST_NODE);
    ensure!(top + NODE <= h.size(), "heap full");
    put(h, TOP, top + NODE)?;
    put(h, top, 0)?;
    put(h, top + 8, value)?;
    let mut link = HEAD;
    loop {
        let next = get(h, link)?;
        if next == 0 {
            break;
        }
        link = node_offset(h, next)?;
    }
    put(h, link, h.base() + top)
}

fn print_list(who: &str, h: &Heap) -> Result<()> {
    for (addr, value) in walk(h)? {
        println!("{who}: node at {addr:#x} holds {value}");
    }
    Ok(())
}

fn child(args: &[String]) -> Result<()> {
    let [fd, base, size] = args else {
        bail!("usage: shared_heap child FD BASE SIZE");
    };
    let fd: i32 = fd.parse().context("FD")?;
    let base = u64::from_str_radix(base.trim_start_matches("0x"), 16).context("BASE")?;
    let size: u64 = size.parse().context("SIZE")?;
    // SAFETY: the parent passed us this inherited descriptor to own; nothing else here uses it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let heap = SharedHeap::attach(fd, base, size).context("attaching the shared heap")?;
    println!("child: attached {size} bytes at {base:#x}");
    print_list("child", &heap)?;
    append(&heap, 4)?;
    println!("child: appended 4");
    Ok(())
}

fn parent() -> Result<()> {
    let heap = Heap::create(HeapConfig::new(1 << 20))?;
    println!(
        "parent: heap of {} bytes at {:#x} (guard {} bytes each side)",
        heap.size(),
        heap.base(),
        heap.guard()
    );
    for v in 1..=3 {
        append(&heap, v)?;
    }
    print_list("parent", &heap)?;
    let share = heap.share_fd();
    let fd = share.inheritable_fd()?;
    let status = Command::new(std::env::current_exe()?)
        .arg("child")
        .arg(fd.as_raw_fd().to_string())
        .arg(format!("{:#x}", share.base))
        .arg(share.size.to_string())
        .status()
        .context("spawning the child")?;
    drop(fd);
    ensure!(status.success(), "child failed: {status}");
    let values: Vec<u64> = walk(&heap)?.into_iter().map(|(_, v)| v).collect();
    print_list("parent", &heap)?;
    ensure!(values == [1, 2, 3, 4], "unexpected list {values:?}");
    println!("parent: the child's node is linked with the same pointers");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((role, rest)) if role == "child" => child(rest),
        _ => parent(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
