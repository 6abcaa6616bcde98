//! The Rust mirror of the allocator state matches the C header as gcc lays it out.

mod support;

use std::collections::HashMap;
use std::mem::{offset_of, size_of};

use kflex_sdk::block;
use kflex_sdk::layout::{self, AllocCpu, AllocState};

#[test]
fn rust_mirror_matches_gcc_offsets_and_constants() {
    if !support::have_gcc() {
        return;
    }
    let out = support::run_native(&support::c_file("sdk_layout.c"));
    let c: HashMap<&str, u64> = out
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').expect("name value");
            (k, v.parse().expect("number"))
        })
        .collect();
    let rust: [(&str, u64); 31] = [
        ("sizeof_alloc", size_of::<AllocState>() as u64),
        ("sizeof_cpu", size_of::<AllocCpu>() as u64),
        ("sizeof_lock", 8),
        ("alloc.magic", offset_of!(AllocState, magic) as u64),
        ("alloc.version", offset_of!(AllocState, version) as u64),
        ("alloc.cpu", offset_of!(AllocState, cpu) as u64),
        ("cpu.free_head", offset_of!(AllocCpu, free_head) as u64),
        ("cpu.free_count", offset_of!(AllocCpu, free_count) as u64),
        ("cpu.refill", offset_of!(AllocCpu, refill) as u64),
        ("cpu.starved", offset_of!(AllocCpu, starved) as u64),
        ("cpu.journal", offset_of!(AllocCpu, journal) as u64),
        ("cpu.journal_pos", offset_of!(AllocCpu, journal_pos) as u64),
        ("cpu.held_locks", offset_of!(AllocCpu, held_locks) as u64),
        ("cpu.scratch", offset_of!(AllocCpu, scratch) as u64),
        ("cpu.self_id", offset_of!(AllocCpu, self_id) as u64),
        ("cpu.keep", offset_of!(AllocCpu, keep) as u64),
        ("cpu.giveback", offset_of!(AllocCpu, giveback) as u64),
        ("max_cpus", layout::MAX_CPUS as u64),
        ("nr_classes", layout::NR_CLASSES as u64),
        ("journal_len", layout::JOURNAL_LEN as u64),
        ("held_locks", layout::HELD_LOCKS as u64),
        ("max_alloc", layout::MAX_ALLOC),
        ("block_header", layout::BLOCK_HEADER),
        ("alloc_magic", layout::ALLOC_MAGIC),
        ("alloc_version", layout::ALLOC_VERSION),
        ("block_magic", block::BLOCK_MAGIC),
        ("hdr_allocated", block::ALLOCATED),
        ("hdr_host", block::HOST),
        ("class_size_3", layout::class_size(3)),
        ("size_class_100", layout::size_class(100).unwrap() as u64),
        ("size_class_4096", layout::size_class(4096).unwrap() as u64),
    ];
    assert_eq!(c.len(), rust.len(), "every printed line is compared: {out}");
    for (name, v) in rust {
        assert_eq!(c.get(name), Some(&v), "{name}");
    }
}
