//! Cancellation of JIT runs by the fault handler: memory faults and stack overflows inside a
//! program end that run with `JitFaultKind::Cancelled` and leave the host (and other threads)
//! running; faults in host code are not swallowed.

mod common;

use std::process::Command;
use std::sync::{Arc, Barrier, Mutex, MutexGuard};

use common::program;
use kflex_isa::decode::{Instruction as I, Operand, Program, Size, Width};
use kflex_jit::{JitEnv, JitFault, JitFaultKind, JitOptions, JitProgram};
use kflex_runtime::exec::{self, CancelReason};
use kflex_runtime::helpers::{ArgKind, RetKind};
use kflex_runtime::{ExecEnv, HelperDef, HelperRegistry, MemoryMap, Signature};

/// Serialises the tests of this file: the leak test counts the process's mappings.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn mov(dst: u8, imm: i32) -> I {
    I::Mov {
        width: Width::W64,
        dst,
        src: Operand::Imm(imm),
    }
}

fn load(dst: u8, src: u8, off: i16) -> I {
    I::Load {
        size: Size::DW,
        dst,
        src,
        off,
        sign_extend: false,
    }
}

/// `r0 = *(u64 *)(r1 + 0); exit` — faults when r1 is not readable.
fn load_r1() -> Program {
    program(&[load(0, 1, 0), I::Exit])
}

/// `r0 = 7; r0 += r1; exit`.
fn add_seven() -> Program {
    program(&[
        mov(0, 7),
        I::Alu {
            width: Width::W64,
            op: kflex_isa::decode::AluOp::Add,
            dst: 0,
            src: Operand::Reg(1),
        },
        I::Exit,
    ])
}

/// A subprogram that calls itself forever (slot 2).
fn endless_recursion() -> Program {
    program(&[
        I::CallLocal { imm: 1 },
        I::Exit,
        I::CallLocal { imm: -1 },
        I::Exit,
    ])
}

fn compile(p: &Program) -> JitProgram {
    JitProgram::compile(p, &JitOptions::default()).expect("program compiles")
}

fn run_with(
    jit: &JitProgram,
    args: [u64; 5],
    helpers: &HelperRegistry,
    tune: impl FnOnce(&mut JitEnv<'_>),
) -> Result<u64, JitFault> {
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    let mut jenv = JitEnv::new(&mut mem, helpers, &mut env);
    tune(&mut jenv);
    jit.run(args, &mut jenv)
}

fn run(jit: &JitProgram, args: [u64; 5]) -> Result<u64, JitFault> {
    run_with(jit, args, &HelperRegistry::empty(), |_| {})
}

/// An inaccessible page (unmapped at the end of the test).
struct NoAccessPage(usize);

impl NoAccessPage {
    fn new() -> Self {
        // SAFETY: a fresh anonymous inaccessible mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        NoAccessPage(p as usize)
    }
}

impl Drop for NoAccessPage {
    fn drop(&mut self) {
        // SAFETY: the mapping created in `new`.
        unsafe { libc::munmap(self.0 as *mut libc::c_void, 4096) };
    }
}

fn cancelled(addr: u64) -> JitFaultKind {
    JitFaultKind::Cancelled {
        reason: CancelReason::MemoryFault { addr },
    }
}

#[test]
fn null_load_is_cancelled_and_the_next_run_succeeds() {
    let _s = serial();
    let jit = compile(&program(&[mov(0, 1), mov(2, 0), load(0, 2, 16), I::Exit]));
    let fault = run(&jit, [0; 5]).unwrap_err();
    assert_eq!(fault.kind, cancelled(16));
    assert_eq!(fault.pc, 2, "the faulting load");
    let ok = compile(&add_seven());
    assert_eq!(run(&ok, [35, 0, 0, 0, 0]), Ok(42));
}

#[test]
fn unmapped_page_load_and_read_only_store_are_cancelled() {
    let _s = serial();
    let page = NoAccessPage::new();
    let jit = compile(&load_r1());
    let addr = page.0 as u64 + 0x80;
    let fault = run(&jit, [addr, 0, 0, 0, 0]).unwrap_err();
    assert_eq!((fault.pc, fault.kind), (0, cancelled(addr)));

    // A store into the program's own (read-execute) code.
    let store = compile(&program(&[
        mov(0, 0),
        I::Store {
            size: Size::W,
            dst: 1,
            off: 4,
            src: Operand::Imm(99),
        },
        I::Exit,
    ]));
    let code = store.code_addr() as u64;
    let fault = run(&store, [code, 0, 0, 0, 0]).unwrap_err();
    assert_eq!((fault.pc, fault.kind), (1, cancelled(code + 4)));
    // The same program still works on writable memory afterwards.
    let mut word = 0u64;
    let target = (&raw mut word) as u64 - 4;
    assert_eq!(run(&store, [target, 0, 0, 0, 0]), Ok(0));
    assert_eq!(word & 0xffff_ffff, 99);
}

#[test]
fn deep_recursion_on_a_small_stack_is_a_stack_overflow() {
    let _s = serial();
    let jit = compile(&endless_recursion());
    let helpers = HelperRegistry::empty();
    let fault = run_with(&jit, [0; 5], &helpers, |e| {
        e.max_call_depth = 256;
        e.native_stack_size = 4096;
    })
    .unwrap_err();
    assert_eq!(
        fault.kind,
        JitFaultKind::Cancelled {
            reason: CancelReason::StackOverflow
        }
    );
    assert_eq!(fault.pc, 2, "the recursive function's entry");
    // With the default native stack the frame limit is reached first.
    let fault = run_with(&jit, [0; 5], &helpers, |e| e.max_call_depth = 256).unwrap_err();
    assert_eq!(fault.kind, JitFaultKind::CallDepth { limit: 256 });
    assert_eq!(run(&compile(&add_seven()), [1, 0, 0, 0, 0]), Ok(8));
}

#[test]
fn helper_overflowing_the_stack_cancels_the_run() {
    let _s = serial();
    // Helper 1 uses far more stack than the run's 8 KiB native stack.
    let mut helpers = HelperRegistry::empty();
    helpers
        .register(HelperDef {
            id: 1,
            name: "stack_hog".into(),
            sig: Signature::new(&[ArgKind::Any; 5], RetKind::Scalar),
            func: Arc::new(|c| {
                let buf = std::hint::black_box([c.args[0] as u8; 64 * 1024]);
                Ok(buf.iter().map(|&b| u64::from(b)).sum())
            }),
        })
        .unwrap();
    let jit = compile(&program(&[mov(1, 1), I::Call { helper: 1 }, I::Exit]));
    let fault = run_with(&jit, [0; 5], &helpers, |e| e.native_stack_size = 8192).unwrap_err();
    assert_eq!(
        (fault.pc, fault.kind),
        (
            1,
            JitFaultKind::Cancelled {
                reason: CancelReason::StackOverflow
            }
        )
    );
    // On a large enough stack the helper runs normally.
    let ok = run_with(&jit, [0; 5], &helpers, |e| e.native_stack_size = 256 * 1024);
    assert_eq!(ok, Ok(64 * 1024));
}

fn maps_lines() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("procfs")
        .lines()
        .count()
}

fn rss_pages() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("procfs");
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm resident field")
}

/// Runs `test` alone in a child process (so no other test thread changes the process's
/// mappings while it counts them) and asserts it passed.
fn in_child(test: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "alone")
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "child {test} failed: {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "the test ran in the child"
    );
}

#[test]
fn thousands_of_cancellations_leak_no_mappings_or_memory() {
    if std::env::var(CHILD_ENV).as_deref() != Ok("alone") {
        in_child("thousands_of_cancellations_leak_no_mappings_or_memory");
        return;
    }
    let page = NoAccessPage::new();
    let fault = compile(&load_r1());
    let overflow = compile(&endless_recursion());
    let helpers = HelperRegistry::empty();
    let round = || {
        let e = run(&fault, [page.0 as u64, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.kind, cancelled(page.0 as u64));
        let e = run_with(&overflow, [0; 5], &helpers, |e| {
            e.max_call_depth = 256;
            e.native_stack_size = 4096;
        })
        .unwrap_err();
        assert!(matches!(e.kind, JitFaultKind::Cancelled { .. }));
    };
    for _ in 0..100 {
        round();
    }
    let (maps, rss) = (maps_lines(), rss_pages());
    for _ in 0..5000 {
        round();
    }
    assert_eq!(maps_lines(), maps, "no mappings leaked");
    let grown = rss_pages().saturating_sub(rss);
    assert!(
        grown < 256,
        "RSS grew by {grown} pages over 10000 cancellations"
    );
    assert!(exec::stack::cached() <= exec::stack::CACHE_LIMIT);
}

#[test]
fn faults_on_two_threads_cancel_only_their_own_invocations() {
    let _s = serial();
    let jit = Arc::new(compile(&load_r1()));
    let ok = Arc::new(compile(&add_seven()));
    let barrier = Arc::new(Barrier::new(3));
    let faulting: Vec<_> = (0..2)
        .map(|_| {
            let (jit, barrier) = (Arc::clone(&jit), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let page = NoAccessPage::new();
                barrier.wait();
                for i in 0..500u64 {
                    let addr = page.0 as u64 + 8 * (i % 512);
                    let e = run(&jit, [addr, 0, 0, 0, 0]).unwrap_err();
                    assert_eq!(e.kind, cancelled(addr), "this thread's own fault");
                }
            })
        })
        .collect();
    let healthy = {
        let (ok, jit, barrier) = (Arc::clone(&ok), Arc::clone(&jit), Arc::clone(&barrier));
        std::thread::spawn(move || {
            let word = 5u64;
            barrier.wait();
            for i in 0..2000u64 {
                assert_eq!(run(&ok, [i, 0, 0, 0, 0]), Ok(i + 7));
                assert_eq!(run(&jit, [(&raw const word) as u64, 0, 0, 0, 0]), Ok(5));
            }
        })
    };
    for t in faulting {
        t.join().expect("faulting thread finished normally");
    }
    healthy.join().expect("healthy thread was never cancelled");
}

const CHILD_ENV: &str = "KFLEX_CANCEL_TEST_CHILD";

/// In a child process (selected by `CHILD_ENV`): fault in host code in the given way.
fn child_fault(mode: &str) {
    let jit = compile(&add_seven());
    assert_eq!(run(&jit, [0; 5]), Ok(7), "handler installed by a run");
    match mode {
        "plain" => {
            let p = std::hint::black_box(16usize) as *const u64;
            // SAFETY: deliberately not sound: the test checks this fault kills the process.
            let v = unsafe { p.read_volatile() };
            println!("survived with {v}");
        }
        "helper" => {
            let mut helpers = HelperRegistry::empty();
            helpers
                .register(HelperDef {
                    id: 1,
                    name: "null_deref".into(),
                    sig: Signature::new(&[ArgKind::Any; 5], RetKind::Scalar),
                    func: Arc::new(|c| {
                        let p = std::hint::black_box(c.args[0] as usize + 16) as *const u64;
                        // SAFETY: deliberately not sound (see above).
                        Ok(unsafe { p.read_volatile() })
                    }),
                })
                .unwrap();
            let jit = compile(&program(&[mov(1, 0), I::Call { helper: 1 }, I::Exit]));
            let r = run_with(&jit, [0; 5], &helpers, |_| {});
            println!("survived with {r:?}");
        }
        other => panic!("unknown child mode {other}"),
    }
    std::process::exit(0);
}

fn expect_child_segv(test: &str, mode: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .output()
        .expect("spawn child");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "child ({mode}) must die of SIGSEGV; status {:?}, stdout {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn host_fault_outside_extension_code_is_not_swallowed() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        if mode == "plain" {
            child_fault(&mode);
        }
        return;
    }
    expect_child_segv(
        "host_fault_outside_extension_code_is_not_swallowed",
        "plain",
    );
}

#[test]
fn host_fault_inside_a_helper_is_not_swallowed() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        if mode == "helper" {
            child_fault(&mode);
        }
        return;
    }
    expect_child_segv("host_fault_inside_a_helper_is_not_swallowed", "helper");
}
