//! The SDK allocator and heap lock in the Linux kernel: tests/c/sdk_list.c (built with
//! `-DSDK_LIST_PORTABLE`, so every loop the kernel cannot bound has a `kflex_cond_break`) passes
//! the Linux verifier, runs through `BPF_PROG_TEST_RUN` on the BPF arena, and
//! `kflex_sdk::HeapAllocator` refills it through the arena's user mapping (pages touched from
//! user space first). A contended lock makes `kflex_lock` give up after the `may_goto` budget.

use std::collections::HashSet;
use std::path::Path;

use kflex_linux::backend::{LinuxExtension, backend_available};
use kflex_sdk::layout::STATE_SIZE;
use kflex_sdk::{AllocConfig, HeapAllocator};

/// Offsets in `struct list_globals` and `struct item` of sdk_list.c.
const LOCK: u64 = 0;
const HEAD: u64 = 8;
const LEN: u64 = 16;
const KEY_SUM: u64 = 24;
const ITEM_NEXT: u64 = 48;

fn ctx(n: u64, first_key: u64) -> Vec<u8> {
    [n, first_key, 0, 0, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

fn field(ctx: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(ctx[i * 8..i * 8 + 8].try_into().unwrap())
}

/// Pins the calling thread to the first CPU it may run on and returns that CPU's id, so that
/// every run uses one CPU id's allocator state.
fn pin_to_one_cpu() -> u32 {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity/sched_setaffinity act
    // on the calling thread (pid 0) with the set's real size; CPU_ISSET/CPU_SET stay within
    // CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        let cpu = (0..libc::CPU_SETSIZE as usize)
            .find(|&c| libc::CPU_ISSET(c, &set))
            .expect("the thread may run somewhere");
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one),
            0,
            "pin to CPU {cpu}"
        );
        cpu as u32
    }
}

struct Linux {
    ext: LinuxExtension,
    globals: u64,
    arena: std::ops::Range<u64>,
}

impl Linux {
    fn word(&self, addr: u64) -> u64 {
        assert!(addr.is_multiple_of(8) && addr >= self.arena.start && addr + 8 <= self.arena.end);
        // SAFETY: an aligned word inside the arena's user mapping, which lives as long as
        // `ext`; no program runs concurrently.
        unsafe { std::ptr::read_volatile(addr as *const u64) }
    }

    fn set_word(&self, addr: u64, v: u64) {
        assert!(addr.is_multiple_of(8) && addr >= self.arena.start && addr + 8 <= self.arena.end);
        // SAFETY: as in `word`.
        unsafe { std::ptr::write_volatile(addr as *mut u64, v) }
    }

    fn run(&self, program: &str, n: u64, first_key: u64) -> i32 {
        let mut c = ctx(n, first_key);
        self.ext.run_syscall(program, &mut c).expect("test run") as i32
    }

    /// Length of the list after checking it against its counters.
    fn list_len(&self) -> u64 {
        let g = self.globals;
        let (mut len, mut sum, mut keys) = (0u64, 0u64, HashSet::new());
        let mut at = self.word(g + HEAD);
        while at != 0 {
            assert!(len < 100_000);
            let key = self.word(at);
            assert!(keys.insert(key));
            sum = sum.wrapping_add(key);
            len += 1;
            at = self.word(at + ITEM_NEXT);
        }
        assert_eq!(len, self.word(g + LEN));
        assert_eq!(sum, self.word(g + KEY_SUM));
        len
    }
}

#[test]
fn allocator_and_lock_run_in_the_kernel() {
    if let Err(why) = backend_available() {
        kflex_testutil::skip(&format!("Linux back end unavailable: {why}"));
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/sdk_list.c");
    let Some(bytes) = kflex_testutil::compile_c_with(&src, &["-Werror", "-DSDK_LIST_PORTABLE"])
    else {
        return;
    };
    let cpu = pin_to_one_cpu();
    let ext = LinuxExtension::load("sdk_list", &bytes).expect("the Linux verifier accepts it");
    let arena = ext.arena().expect("an arena").range();
    let mut c = ctx(0, 0);
    assert_eq!(ext.run_syscall("sdk_init", &mut c).unwrap(), 0);
    let (state, globals, globals_size) = (field(&c, 3), field(&c, 4), field(&c, 5));
    assert!(arena.contains(&state) && arena.contains(&globals));
    // Carve from the larger side of the arena around the globals (libbpf puts them at its start
    // or its end depending on the kernel).
    let lo = state.min(globals) & !4095;
    let hi = (state + STATE_SIZE as u64)
        .max(globals + globals_size)
        .next_multiple_of(4096);
    let carve = if lo - arena.start >= arena.end - hi {
        arena.start..lo
    } else {
        hi..arena.end
    };
    let cfg = AllocConfig {
        cpu_mask: Some(1 << (cpu % 64)),
        chain_bytes: 64 * 1024,
        heap: Some(arena.clone()),
        ..AllocConfig::default()
    };
    // SAFETY: the state and carve range lie in the arena's user mapping, where heap addresses
    // are host addresses; it lives as long as `ext`, and `alloc` is not used after `lx` (which
    // owns `ext`) is dropped.
    let alloc = unsafe { HeapAllocator::attach_with(state as *mut u8, carve, cfg) }.unwrap();
    let lx = Linux {
        ext,
        globals,
        arena,
    };
    assert!(alloc.refill() > 0);
    assert_eq!(
        lx.run("sdk_add", 100, 1),
        100,
        "kflex_malloc works in the kernel"
    );
    assert_eq!(lx.list_len(), 100);
    assert_eq!(
        lx.run("sdk_pop", 30, 0),
        30,
        "kflex_free works in the kernel"
    );
    assert_eq!(lx.list_len(), 70);
    let st = alloc.stats();
    assert_eq!(st.in_flight, 0);
    assert_eq!(st.carved_total(), st.free_total() + 70, "{st:?}");
    assert_eq!(lx.word(globals + LOCK), 0);
    // Drain the CPU's stocks past one chain: the program takes the refill stack itself.
    alloc.refill();
    assert_eq!(lx.run("sdk_add", 1500, 1000), 1500);
    assert_eq!(lx.list_len(), 1570);
    // A lock held by another CPU: the spin ends with the may_goto budget and reports -1.
    lx.set_word(globals + LOCK, 42);
    assert_eq!(lx.run("sdk_add", 1, 5000), -1, "kflex_lock gives up");
    let st = alloc.stats();
    assert_eq!(st.in_flight, 0);
    let report = alloc.release_after_cancel(cpu);
    assert_eq!(
        report.locks_released, 0,
        "a lock it never took is not released"
    );
    assert_eq!(lx.word(globals + LOCK), 42);
    lx.set_word(globals + LOCK, 0);
    assert_eq!(lx.run("sdk_add", 2, 6000), 2);
    assert_eq!(lx.list_len(), 1572);
}
