//! The process-wide `SIGSEGV`/`SIGBUS` handler that turns faults of extension code into
//! cancellation of the faulting thread's invocation.
//!
//! [`install`] installs the handler once per process (`SA_SIGINFO | SA_ONSTACK`, remembering the
//! previous action); [`prepare_thread`] additionally gives the calling thread an alternate signal
//! stack if it has none, so the handler can run after a stack overflow. The handler cancels only
//! when the thread has a current [`Invocation`] and either the faulting instruction lies in
//! registered extension code of that invocation or the faulting address is a guard page of the
//! guarded stack the thread runs on. Anything else goes to the previous action: its handler is
//! called, or the default action is restored and the fault re-raised.

use std::cell::{Cell, UnsafeCell};
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::invocation::{self, FaultInfo, FaultKind, Invocation};
use super::{registry, stack};

/// Size of the alternate signal stacks this module maps (for threads that have none).
const ALT_STACK_SIZE: usize = 64 * 1024;

/// The signals handled, and the index of their saved previous action.
const SIGNALS: [libc::c_int; 2] = [libc::SIGSEGV, libc::SIGBUS];

/// Previous actions, written once by [`install`] before `READY` is set.
struct OldActions(UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>);
// SAFETY: written only inside `INSTALL.call_once` before `READY` is published with release
// ordering; read only after observing `READY` with acquire ordering.
unsafe impl Sync for OldActions {}

static OLD: OldActions = OldActions(UnsafeCell::new([MaybeUninit::uninit(); 2]));
static READY: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static INSTALL_ERROR: AtomicUsize = AtomicUsize::new(0);
static TRAP: AtomicUsize = AtomicUsize::new(0);
static TRAP_INIT: Once = Once::new();

/// Installs the fault handler for the process (idempotent). Returns the OS error if
/// `sigaction` failed.
pub fn install() -> std::io::Result<()> {
    INSTALL.call_once(|| {
        trap_page();
        for (i, sig) in SIGNALS.into_iter().enumerate() {
            // SAFETY: a zeroed sigaction is a valid starting value; every field we rely on is
            // set below.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = on_fault as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: `act.sa_mask` is a valid sigset to initialise.
            unsafe { libc::sigemptyset(&mut act.sa_mask) };
            // SAFETY: only this `call_once` writes `OLD`, and readers wait for `READY`.
            let old = unsafe { (*OLD.0.get())[i].as_mut_ptr() };
            // SAFETY: valid pointers to a sigaction and to storage for the old one.
            if unsafe { libc::sigaction(sig, &act, old) } != 0 {
                let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(1);
                INSTALL_ERROR.store(errno as usize, Ordering::Relaxed);
                return;
            }
        }
        READY.store(true, Ordering::Release);
    });
    match INSTALL_ERROR.load(Ordering::Relaxed) {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e as i32)),
    }
}

/// Installs the handler and makes sure the calling thread has an alternate signal stack
/// (mapped here and released at thread exit if the thread had none). Cheap after the first
/// call on a thread.
pub fn prepare_thread() -> std::io::Result<()> {
    install()?;
    if ALT_READY.with(Cell::get) {
        return Ok(());
    }
    // SAFETY: querying the current alternate stack into a valid out-pointer.
    let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut cur) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if cur.ss_flags & libc::SS_DISABLE != 0 {
        let alt = stack::GuardedStack::new(ALT_STACK_SIZE)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let ss = libc::stack_t {
            ss_sp: alt.bottom() as *mut c_void,
            ss_flags: 0,
            ss_size: alt.size(),
        };
        // SAFETY: `ss` describes a mapped read-write region that `ALT_STACK` keeps alive until
        // the thread exits, when its destructor disables the alternate stack first.
        if unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        ALT_STACK.with(|a| *a.borrow_mut() = Some(AltStack { _mapping: alt }));
    }
    ALT_READY.with(|r| r.set(true));
    Ok(())
}

/// An alternate signal stack this module installed for a thread.
struct AltStack {
    /// Kept only to own (and finally unmap) the mapping.
    _mapping: stack::GuardedStack,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let ss = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the alternate stack before its mapping is released (the thread is
        // exiting and not running a handler).
        unsafe { libc::sigaltstack(&ss, std::ptr::null_mut()) };
    }
}

thread_local! {
    static ALT_READY: Cell<bool> = const { Cell::new(false) };
    static ALT_STACK: std::cell::RefCell<Option<AltStack>> = const { std::cell::RefCell::new(None) };
}

/// Address of a process-wide inaccessible page; a poisoned terminate word points here, so a
/// termination check faults with an address the handler recognises (0 if it could not be
/// mapped, in which case termination faults are reported as memory faults).
pub fn trap_page() -> usize {
    TRAP_INIT.call_once(|| {
        // SAFETY: a fresh inaccessible anonymous mapping, never unmapped.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                stack::page_size(),
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            TRAP.store(p as usize, Ordering::Release);
        }
    });
    TRAP.load(Ordering::Acquire)
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler.
    if unsafe { try_cancel(info, ctx) } {
        return;
    }
    // SAFETY: as above.
    unsafe { chain(sig, info, ctx) };
}

/// Cancels the current invocation if the fault is its; returns false to leave the fault alone.
///
/// # Safety
/// `info`/`ctx` must be the handler arguments of a synchronous fault on this thread.
unsafe fn try_cancel(info: *mut libc::siginfo_t, ctx: *mut c_void) -> bool {
    if info.is_null() || ctx.is_null() {
        return false;
    }
    let Some(inv) = invocation::current() else {
        return false;
    };
    // SAFETY: guaranteed by the caller.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code <= 0 {
        return false; // sent by a process (kill, tgkill), not a fault
    }
    // SAFETY: on x86-64 Linux the third handler argument is a `ucontext_t`.
    let gregs = unsafe { &mut (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let rip = gregs[libc::REG_RIP as usize] as usize;
    let guard = stack::guard_hit(addr);
    match registry::lookup(rip) {
        Some(pad) if pad != inv.landing_pad() => return false,
        None if !guard => return false,
        _ => {}
    }
    resume(inv, gregs, classify(addr, guard), addr, rip);
    true
}

fn classify(addr: usize, guard: bool) -> FaultKind {
    let trap = TRAP.load(Ordering::Acquire);
    if guard {
        FaultKind::GuardPage
    } else if trap != 0 && (trap..trap + stack::page_size()).contains(&addr) {
        FaultKind::TerminateWord
    } else {
        FaultKind::Other
    }
}

/// Records the fault and rewrites the context to continue at the landing pad.
fn resume(
    inv: &Invocation,
    gregs: &mut [libc::greg_t; 23],
    kind: FaultKind,
    addr: usize,
    rip: usize,
) {
    inv.record(FaultInfo {
        addr: addr as u64,
        rip: rip as u64,
        kind,
    });
    gregs[libc::REG_RIP as usize] = inv.landing_pad() as libc::greg_t;
    gregs[libc::REG_R9 as usize] = inv.context() as libc::greg_t;
    let rsp = inv.resume_rsp();
    if rsp != 0 {
        gregs[libc::REG_RSP as usize] = rsp as libc::greg_t;
    }
}

/// Hands a fault that is not an extension's to the previous action.
///
/// # Safety
/// The handler arguments, passed through unchanged.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let idx = SIGNALS.iter().position(|&s| s == sig);
    let old = match idx {
        Some(i) if READY.load(Ordering::Acquire) => {
            // SAFETY: `READY` was published after `OLD` was fully written.
            Some(unsafe { (*OLD.0.get())[i].assume_init_ref() })
        }
        _ => None,
    };
    let handler = old.map_or(libc::SIG_DFL, |o| o.sa_sigaction);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore the default action; returning re-executes the faulting instruction, which
        // then kills the process as if no handler had been installed.
        // SAFETY: a zeroed sigaction with SIG_DFL is valid.
        let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: valid sigaction pointer; sigaction is async-signal-safe.
        unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
        // SAFETY: `info` is valid if non-null (checked).
        if info.is_null() || unsafe { (*info).si_code } <= 0 {
            // SAFETY: raise is async-signal-safe.
            unsafe { libc::raise(sig) };
        }
        return;
    }
    let flags = old.map_or(0, |o| o.sa_flags);
    if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action was installed with SA_SIGINFO, so its handler has this
        // signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain `sa_handler` takes the signal number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_threads_get_an_alt_stack() {
        install().unwrap();
        install().unwrap();
        std::thread::spawn(|| {
            prepare_thread().unwrap();
            let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
            // SAFETY: query into a valid out-pointer.
            assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut cur) }, 0);
            assert_eq!(cur.ss_flags & libc::SS_DISABLE, 0);
            assert!(cur.ss_size >= libc::MINSIGSTKSZ);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn trap_page_is_stable_and_classified() {
        let t = trap_page();
        assert_ne!(t, 0);
        assert_eq!(trap_page(), t);
        assert_eq!(classify(t + 8, false), FaultKind::TerminateWord);
        assert_eq!(classify(t + 8, true), FaultKind::GuardPage);
        assert_eq!(classify(0, false), FaultKind::Other);
    }
}
