//! The wrappers against the running kernel. Each test prints `SKIPPED: <reason>` (uncaptured) and
//! returns when this process cannot use `bpf(2)`.

use std::os::fd::{AsFd, BorrowedFd};

use kflex_isa::{Insn, op};
use kflex_linux::{
    LOG_LEVEL_1, LOG_STATS, LinuxMap, bpf_available, map_create, prog_load, test_run,
};
use kflex_object::{GlobalKind, MapSpec, MapType, ProgType};

fn bpf_or_skip() -> bool {
    match bpf_available() {
        Ok(()) => true,
        Err(reason) => {
            kflex_testutil::skip(&reason);
            false
        }
    }
}

fn spec(name: &str, map_type: MapType, key: u32, value: u32, entries: u32) -> MapSpec {
    MapSpec::new(name, map_type, key, value, entries)
}

fn mov(dst: u8, imm: i32) -> Insn {
    Insn::new(op::ALU64 | op::MOV | op::K, dst, 0, 0, imm)
}
fn mov_x(dst: u8, src: u8) -> Insn {
    Insn::new(op::ALU64 | op::MOV | op::X, dst, src, 0, 0)
}
fn exit() -> Insn {
    Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0)
}
fn lddw(dst: u8, src: u8, imm: i32, imm2: i32) -> [Insn; 2] {
    [
        Insn::new(op::LD | op::IMM | op::DW, dst, src, 0, imm),
        Insn::new(0, 0, 0, 0, imm2),
    ]
}

#[test]
fn every_map_type_is_created() {
    if !bpf_or_skip() {
        return;
    }
    let arena = spec("heap", MapType::Arena, 0, 0, 4).with_flags(kflex_object::BPF_F_MMAPABLE);
    for s in [
        spec("arr", MapType::Array, 4, 8, 4),
        spec("pcpu", MapType::PercpuArray, 4, 8, 4),
        spec("hash", MapType::Hash, 8, 16, 64),
        spec("lru-hash", MapType::LruHash, 8, 16, 64),
        spec("rb", MapType::Ringbuf, 0, 0, 4096),
        arena,
    ] {
        map_create(&s).unwrap_or_else(|e| panic!("{}: {e}", s.name));
    }
}

#[test]
fn invalid_map_specs_are_refused_with_the_map_named() {
    if !bpf_or_skip() {
        return;
    }
    // A ring buffer's size must be a power-of-two number of pages.
    let err = map_create(&spec("bad_rb", MapType::Ringbuf, 0, 0, 1000)).unwrap_err();
    assert_eq!(err.errno, libc::EINVAL);
    assert!(err.to_string().contains("bad_rb"), "{err}");
    // Arrays need 4-byte keys.
    assert!(map_create(&spec("bad_arr", MapType::Array, 8, 8, 1)).is_err());
}

#[test]
fn global_data_is_initialised_and_rodata_frozen() {
    if !bpf_or_skip() {
        return;
    }
    let mut s = spec(".rodata", MapType::Array, 4, 8, 1);
    s.flags = kflex_object::BPF_F_RDONLY_PROG;
    s.global = Some(GlobalKind::Rodata);
    s.initial_value = Some(vec![1, 2, 3]);
    let map = LinuxMap::create(&s).unwrap();
    assert_eq!(
        map.lookup(&0u32.to_ne_bytes()).unwrap(),
        Some(vec![1, 2, 3, 0, 0, 0, 0, 0])
    );
    // Frozen: user space may no longer write it.
    let err = map.update(&0u32.to_ne_bytes(), &[9; 8], 0).unwrap_err();
    assert_eq!(err.errno, libc::EPERM, "{err}");
    // Wrong buffer sizes never reach the kernel.
    assert!(map.update(&0u32.to_ne_bytes(), &[9; 4], 0).is_err());
}

#[test]
fn accepted_program_reports_statistics_and_runs() {
    if !bpf_or_skip() {
        return;
    }
    let prog = prog_load(ProgType::Xdp, &[mov(0, 2), exit()], &[], "GPL", LOG_STATS).unwrap();
    assert_eq!(prog.insns_processed, Some(2), "{}", prog.verifier_log);
    assert!(prog.verification_time_us.is_some(), "{}", prog.verifier_log);
    let packet: Vec<u8> = (0..64).collect();
    let out = test_run(prog.fd.as_fd(), &packet, &[], 3).unwrap();
    assert_eq!(out.retval, 2);
    assert_eq!(out.data_out, packet);
}

#[test]
fn rejected_program_returns_the_kernel_reason() {
    if !bpf_or_skip() {
        return;
    }
    // r0 is never written.
    let err = prog_load(ProgType::Xdp, &[exit()], &[], "GPL", LOG_LEVEL_1).unwrap_err();
    assert_eq!(err.errno, libc::EACCES);
    assert!(err.reason().contains("R0 !read_ok"), "{}", err.log);
    // Out-of-bounds context read, error text available with statistics-only logging too.
    let insns = [Insn::new(op::LDX | op::MEM | op::W, 0, 1, 200, 0), exit()];
    let err = prog_load(ProgType::Xdp, &insns, &[], "GPL", LOG_STATS).unwrap_err();
    assert!(
        err.log.contains("invalid bpf_context access"),
        "{}",
        err.log
    );
}

#[test]
fn map_indices_resolve_to_descriptors_and_the_program_updates_the_map() {
    if !bpf_or_skip() {
        return;
    }
    let other = LinuxMap::create(&spec("other", MapType::Hash, 4, 4, 4)).unwrap();
    let arr = LinuxMap::create(&spec("arr", MapType::Array, 4, 8, 2)).unwrap();
    // r1 = &map[1]; *(u32*)(r10-4) = 1; r2 = r10 - 4; r0 = lookup(r1, r2);
    // if r0 == 0 goto out; *(u64*)(r0+0) = 77; out: r0 = 0; exit
    let mut insns = Vec::new();
    insns.extend(lddw(1, op::PSEUDO_MAP_FD, 1, 0));
    insns.push(Insn::new(op::ST | op::MEM | op::W, 10, 0, -4, 1));
    insns.push(mov_x(2, 10));
    insns.push(Insn::new(op::ALU64 | op::ADD | op::K, 2, 0, 0, -4));
    insns.push(Insn::new(op::JMP | op::CALL, 0, 0, 0, 1));
    insns.push(Insn::new(op::JMP | op::JEQ | op::K, 0, 0, 1, 0));
    insns.push(Insn::new(op::ST | op::MEM | op::DW, 0, 0, 0, 77));
    insns.push(mov(0, 0));
    insns.push(exit());
    let fds: Vec<BorrowedFd<'_>> = vec![other.as_fd(), arr.as_fd()];
    let prog = prog_load(ProgType::SocketFilter, &insns, &fds, "GPL", 0).unwrap();
    test_run(prog.fd.as_fd(), &[0u8; 64], &[], 1).unwrap();
    assert_eq!(
        arr.lookup(&1u32.to_ne_bytes()).unwrap(),
        Some(77u64.to_ne_bytes().to_vec())
    );
    // Without the lookup's NULL check the kernel refuses the store.
    let mut unchecked = insns.clone();
    unchecked[6] = mov(3, 0);
    let err = prog_load(ProgType::SocketFilter, &unchecked, &fds, "GPL", 0).unwrap_err();
    assert_eq!(err.errno, libc::EACCES);
}

#[test]
fn map_value_lddw_and_arena_programs_load() {
    if !bpf_or_skip() {
        return;
    }
    let mut data = spec(".data", MapType::Array, 4, 16, 1);
    data.global = Some(GlobalKind::Data);
    let data = LinuxMap::create(&data).unwrap();
    let heap = spec("heap", MapType::Arena, 0, 0, 2).with_flags(kflex_object::BPF_F_MMAPABLE);
    let heap = LinuxMap::create(&heap).unwrap();
    assert!(heap.arena_addr().is_some_and(|a| a != 0));
    // r1 = &.data + 8; *(u64*)(r1+0) = 5; r0 = 0; exit
    let mut insns = Vec::new();
    insns.extend(lddw(1, op::PSEUDO_MAP_VALUE, 0, 8));
    insns.push(Insn::new(op::ST | op::MEM | op::DW, 1, 0, 0, 5));
    insns.push(mov(0, 0));
    insns.push(exit());
    let fds = [data.as_fd(), heap.as_fd()];
    let prog = prog_load(ProgType::Syscall, &insns, &fds, "GPL", 0).unwrap();
    let out = test_run(prog.fd.as_fd(), &[], &[0u8; 8], 1).unwrap();
    assert_eq!(out.retval, 0);
    let value = data.lookup(&0u32.to_ne_bytes()).unwrap().unwrap();
    assert_eq!(value[8..16], 5u64.to_ne_bytes());
    // An arena program: r1 = addr_space_cast(r1 = heap map value, 0, 1) uses the arena map.
    let mut arena_insns = Vec::new();
    arena_insns.extend(lddw(1, op::PSEUDO_MAP_FD, 1, 0));
    arena_insns.push(mov(2, 0));
    arena_insns.push(Insn::new(
        op::ALU64 | op::MOV | op::X,
        3,
        2,
        op::ADDR_SPACE_CAST,
        1,
    ));
    arena_insns.push(mov(0, 0));
    arena_insns.push(exit());
    let loaded = prog_load(ProgType::Syscall, &arena_insns, &fds, "GPL", LOG_LEVEL_1);
    assert!(loaded.is_ok(), "{}", loaded.unwrap_err());
}

#[test]
fn syscall_context_round_trips_through_test_run() {
    if !bpf_or_skip() {
        return;
    }
    // r0 = *(u32*)(r1+0); *(u32*)(r1+4) = r0 + 1 ... syscall ctx is writable.
    let insns = [
        Insn::new(op::LDX | op::MEM | op::W, 0, 1, 0, 0),
        Insn::new(op::ALU64 | op::ADD | op::K, 0, 0, 0, 1),
        Insn::new(op::STX | op::MEM | op::W, 1, 0, 4, 0),
        exit(),
    ];
    let prog = prog_load(ProgType::Syscall, &insns, &[], "GPL", 0).unwrap();
    let mut ctx = 41u32.to_ne_bytes().to_vec();
    ctx.extend([0u8; 4]);
    let out = test_run(prog.fd.as_fd(), &[], &ctx, 1).unwrap();
    assert_eq!(out.retval, 42);
    assert_eq!(out.ctx_out[4..8], 42u32.to_ne_bytes());
}

#[test]
fn probe_is_stable() {
    assert_eq!(bpf_available(), bpf_available());
}
