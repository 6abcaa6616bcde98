//! The libbpf back end on an arena object of its own (`c/arena_shared.c`): `__arena` globals,
//! a heap shared with this process at identical addresses (each side sees the other's writes),
//! and syscall programs reporting through their context. Each test prints `SKIPPED: <reason>`
//! and returns when the back end or clang is unavailable.

use std::path::Path;

use kflex_linux::backend::{LinuxExtension, TestRunInput, backend_available};
use kflex_object::ProgType;

/// `struct args` of arena_shared.c, as u64 fields in order.
const HEAD: usize = 0;
const SUM: usize = 1;
const NODES: usize = 2;
const MARKER_ADDR: usize = 3;
const MARKER: usize = 4;
const COUNTER: usize = 5;
const BUF_ADDR: usize = 6;
const ARGS_FIELDS: usize = 7;
/// The arena's size: `max_entries` 8 pages.
const ARENA_PAGES: u64 = 8;
/// `marker`'s initial value ("kflex").
const MARKER_INIT: u64 = 0x6b666c6578;

fn load() -> Option<LinuxExtension> {
    if let Err(reason) = backend_available() {
        kflex_testutil::skip(&reason);
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/arena_shared.c");
    let bytes = kflex_testutil::compile_c_with(&src, &["-Werror"])?;
    Some(LinuxExtension::load("arena_shared", &bytes).expect("arena_shared loads"))
}

fn ctx_bytes(fields: &[u64; ARGS_FIELDS]) -> Vec<u8> {
    fields.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn ctx_fields(bytes: &[u8]) -> [u64; ARGS_FIELDS] {
    assert_eq!(bytes.len(), ARGS_FIELDS * 8, "ctx_out size");
    let mut out = [0u64; ARGS_FIELDS];
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        out[i] = u64::from_ne_bytes(chunk.try_into().unwrap());
    }
    out
}

fn run(ext: &LinuxExtension, program: &str, fields: [u64; ARGS_FIELDS]) -> (u32, [u64; 7]) {
    let ctx = ctx_bytes(&fields);
    let input = TestRunInput {
        data_in: &[],
        ctx_in: Some(&ctx),
        repeat: 1,
    };
    let out = ext.test_run(program, &input).expect("test run");
    assert!(out.data_out.is_empty());
    (
        out.retval,
        ctx_fields(&out.ctx_out.expect("syscall ctx_out")),
    )
}

fn read_u64(ext: &LinuxExtension, addr: u64) -> u64 {
    let mut b = [0u8; 8];
    ext.arena_read(addr, &mut b).expect("arena read");
    u64::from_ne_bytes(b)
}

#[test]
fn programs_and_maps_are_listed() {
    let Some(ext) = load() else { return };
    let names: Vec<(&str, Option<ProgType>)> = ext
        .programs()
        .iter()
        .map(|p| (p.name.as_str(), p.prog_type))
        .collect();
    assert_eq!(
        names,
        [
            ("globals", Some(ProgType::Syscall)),
            ("walk", Some(ProgType::Syscall))
        ]
    );
    assert!(ext.programs().iter().all(|p| p.section == "syscall"));
    let heap = ext
        .maps()
        .iter()
        .find(|m| m.name == "heap")
        .expect("heap map listed");
    assert_eq!(heap.map_type, Some(kflex_object::MapType::Arena));
    assert_eq!(heap.max_entries as u64, ARENA_PAGES);
}

#[test]
fn arena_globals_are_shared_both_ways_at_identical_addresses() {
    let Some(ext) = load() else { return };
    let arena = ext.arena().expect("arena mapped").clone();
    assert_eq!(arena.map, "heap");
    assert_eq!(arena.size, ARENA_PAGES * 4096);
    assert_eq!(arena.base % 4096, 0, "mapping is page aligned");

    let (ret, out) = run(&ext, "globals", [0; ARGS_FIELDS]);
    assert_eq!(ret, 7);
    assert_eq!(out[MARKER], MARKER_INIT, "initialised arena global");
    assert_eq!(out[COUNTER], 1);
    // The program's pointers are this process's addresses, inside the reported globals range.
    for addr in [out[MARKER_ADDR], out[BUF_ADDR]] {
        assert!(
            arena.globals.contains(&addr),
            "{addr:#x} outside globals {:#x?} (arena {:#x?})",
            arena.globals,
            arena.range()
        );
    }
    assert!(arena.globals.end <= arena.base + arena.size);
    assert_eq!(read_u64(&ext, out[MARKER_ADDR]), MARKER_INIT);
    // What the program wrote is visible through the mapping.
    for i in 0..32u64 {
        assert_eq!(read_u64(&ext, out[BUF_ADDR] + 8 * i), 3 * i, "buf[{i}]");
    }
    // What this process writes is visible to the program; heap state persists between runs.
    ext.arena_write(out[MARKER_ADDR], &0x1234_5678_9abc_u64.to_ne_bytes())
        .unwrap();
    let (_, again) = run(&ext, "globals", [0; ARGS_FIELDS]);
    assert_eq!(again[MARKER], 0x1234_5678_9abc);
    assert_eq!(again[COUNTER], 2);
    assert_eq!(again[MARKER_ADDR], out[MARKER_ADDR]);
}

#[test]
fn libbpf_places_globals_where_the_module_docs_say() {
    let Some(ext) = load() else { return };
    let arena = ext.arena().unwrap();
    let (_, out) = run(&ext, "globals", [0; ARGS_FIELDS]);
    let page = 4096;
    // Three u64 globals plus a 32-entry buffer fit in one page: it is the first or the last.
    let first_page = arena.base..arena.base + page;
    let last_page = arena.base + arena.size - page..arena.base + arena.size;
    let addr = out[MARKER_ADDR];
    assert!(first_page.contains(&addr) || last_page.contains(&addr));
    assert_eq!(
        last_page.contains(&addr),
        arena.globals.start == last_page.start,
        "globals range {:#x?} disagrees with where the program found them ({addr:#x})",
        arena.globals
    );
    eprintln!(
        "arena globals at the {} of the arena",
        if last_page.contains(&addr) {
            "end"
        } else {
            "start"
        }
    );
}

#[test]
fn a_list_built_by_user_space_is_walked_by_the_program() {
    let Some(ext) = load() else { return };
    let arena = ext.arena().unwrap().clone();
    // Build the list in a page the globals do not use.
    let region = if arena.globals.start == arena.base {
        arena.base + arena.size / 2
    } else {
        arena.base
    };
    const N: u64 = 200;
    for i in 0..N {
        let node = region + 16 * i;
        let next = if i + 1 < N { node + 16 } else { 0 };
        ext.arena_write(node, &(i + 1).to_ne_bytes()).unwrap();
        ext.arena_write(node + 8, &next.to_ne_bytes()).unwrap();
    }
    let mut args = [0; ARGS_FIELDS];
    args[HEAD] = region;
    let (_, out) = run(&ext, "walk", args);
    assert_eq!(out[NODES], N);
    assert_eq!(out[SUM], N * (N + 1) / 2);

    // Cut the list in user space: the program sees the change at once.
    ext.arena_write(region + 16 * 9 + 8, &0u64.to_ne_bytes())
        .unwrap();
    let (_, cut) = run(&ext, "walk", args);
    assert_eq!((cut[NODES], cut[SUM]), (10, 55));

    let (_, empty) = run(&ext, "walk", [0; ARGS_FIELDS]);
    assert_eq!((empty[NODES], empty[SUM]), (0, 0));
}

#[test]
fn heap_access_outside_the_arena_is_refused() {
    let Some(ext) = load() else { return };
    let arena = ext.arena().unwrap().clone();
    let mut b = [0u8; 16];
    assert!(ext.arena_read(arena.base + arena.size - 8, &mut b).is_err());
    assert!(ext.arena_read(arena.base - 1, &mut b[..1]).is_err());
    assert!(ext.arena_write(u64::MAX - 3, &b).is_err());
    ext.arena_read(arena.base + arena.size - 16, &mut b)
        .expect("last 16 bytes are inside");
}

#[test]
fn syscall_runs_repeat_from_the_same_context() {
    let Some(ext) = load() else { return };
    let ctx = ctx_bytes(&[0; ARGS_FIELDS]);
    let input = TestRunInput {
        data_in: &[],
        ctx_in: Some(&ctx),
        repeat: 5,
    };
    let out = ext.test_run("globals", &input).unwrap();
    assert!(!out.kernel_timed);
    assert!(out.duration_ns > 0);
    // Five runs happened (the heap counter says so); ctx_out is the last run's.
    assert_eq!(ctx_fields(&out.ctx_out.unwrap())[COUNTER], 5);
    let mut raw = ctx.clone();
    assert_eq!(ext.run_syscall("globals", &mut raw).unwrap(), 7);
    assert_eq!(ctx_fields(&raw)[COUNTER], 6);
}
