//! Guarded stacks and the fault handler without a JIT: a closure overflowing its guarded stack
//! while an invocation is current is cancelled at a landing pad written in assembly, and the
//! stack cache hands the same mapping out again afterwards.

use std::arch::global_asm;

use kflex_runtime::exec::stack;
use kflex_runtime::exec::{
    CancelReason, FaultKind, Invocation, fault, registry, with_guarded_stack,
};

// `kflex_test_fault_code(addr)`: loads from `addr`, returns 1; the landing pad
// `kflex_test_fault_pad` restores rsp from [r9] and returns 0xdead.
global_asm!(
    ".globl kflex_test_fault_code",
    ".globl kflex_test_fault_pad",
    ".globl kflex_test_fault_end",
    "kflex_test_fault_code:",
    "mov [r9], rsp",
    "mov rax, [rdi]",
    "mov eax, 1",
    "ret",
    "kflex_test_fault_pad:",
    "mov rsp, [r9]",
    "mov eax, 0xdead",
    "ret",
    "kflex_test_fault_end:",
);

unsafe extern "C" {
    fn kflex_test_fault_code(addr: usize) -> u64;
    fn kflex_test_fault_pad();
    fn kflex_test_fault_end();
}

/// Calls the assembly routine with r9 pointing at `slot` (C ABI otherwise).
fn call_code(addr: usize, slot: *mut u64) -> u64 {
    let r: u64;
    // SAFETY: the routine reads `addr` (a fault is caught by the handler and resumes at the pad,
    // which restores the stack pointer saved in `*slot` and returns) and writes only `*slot`.
    unsafe {
        std::arch::asm!(
            "call {f}",
            f = in(reg) kflex_test_fault_code as *const () as usize,
            in("rdi") addr,
            in("r9") slot,
            lateout("rax") r,
            clobber_abi("C"),
        );
    }
    r
}

#[test]
fn fault_in_registered_code_resumes_at_its_landing_pad() {
    fault::prepare_thread().unwrap();
    let start = kflex_test_fault_code as *const () as usize;
    let end = kflex_test_fault_end as *const () as usize;
    let pad = kflex_test_fault_pad as *const () as usize;
    let _range = registry::register(start, end - start, pad).unwrap();
    let mut slot = 0u64;
    let inv = Invocation::new(pad, (&raw mut slot) as u64);
    let r = {
        let _g = inv.enter();
        call_code(8, &raw mut slot)
    };
    assert_eq!(r, 0xdead);
    let f = inv.fault().expect("fault recorded");
    assert_eq!(f.addr, 8);
    assert_eq!(f.kind, FaultKind::Other);
    assert!((start..end).contains(&(f.rip as usize)));
    assert_eq!(f.reason(), CancelReason::MemoryFault { addr: 8 });

    // A readable address runs to the end normally.
    let word = 3u64;
    let inv = Invocation::new(pad, (&raw mut slot) as u64);
    let _g = inv.enter();
    assert_eq!(call_code((&raw const word) as usize, &raw mut slot), 1);
    assert_eq!(inv.fault(), None);
}

#[test]
fn poisoned_terminate_word_is_classified_as_termination() {
    fault::prepare_thread().unwrap();
    let start = kflex_test_fault_code as *const () as usize;
    let end = kflex_test_fault_end as *const () as usize;
    let pad = kflex_test_fault_pad as *const () as usize;
    let _range = registry::register(start, end - start, pad).unwrap();
    let mut slot = 0u64;
    let inv = Invocation::new(pad, (&raw mut slot) as u64);
    inv.request_termination();
    let target = inv
        .terminate_word()
        .load(std::sync::atomic::Ordering::Relaxed) as usize;
    let _g = inv.enter();
    assert_eq!(call_code(target, &raw mut slot), 0xdead);
    assert_eq!(
        inv.fault().map(|f| f.reason()),
        Some(CancelReason::Terminated)
    );
}

#[test]
fn guarded_stack_is_reused_from_the_cache() {
    stack::clear_cache();
    let first = with_guarded_stack(32 * 1024, || {
        let x = 0u8;
        (&raw const x) as usize
    })
    .unwrap();
    assert_eq!(stack::cached(), 1);
    let second = with_guarded_stack(32 * 1024, || {
        let x = 0u8;
        (&raw const x) as usize
    })
    .unwrap();
    assert_eq!(first, second, "same mapping, same frame");
    assert_eq!(stack::cached(), 1);
}
