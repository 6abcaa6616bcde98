//! The per-thread record of the extension invocation currently running.
//!
//! An engine creates an [`Invocation`] for every run, makes it current with [`Invocation::enter`]
//! for the run's duration, and afterwards asks [`Invocation::fault`] whether the run was
//! cancelled. The fault handler reads the current record of the faulting thread only, so a fault
//! on one thread never touches another thread's invocation. Records nest (an extension run from
//! inside a helper of another one): the guard restores the previous record on drop.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use thiserror::Error;

use super::fault::trap_page;

/// What the fault handler classified a fault as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The address is a guard page of the guarded stack the invocation runs on (stack overflow).
    GuardPage,
    /// The address is in the trap page a poisoned terminate word points at.
    TerminateWord,
    /// Any other faulting access by extension code.
    Other,
}

impl FaultKind {
    fn code(self) -> u8 {
        match self {
            FaultKind::GuardPage => 1,
            FaultKind::TerminateWord => 2,
            FaultKind::Other => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(FaultKind::GuardPage),
            2 => Some(FaultKind::TerminateWord),
            3 => Some(FaultKind::Other),
            _ => None,
        }
    }
}

/// A fault the handler turned into cancellation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultInfo {
    /// The faulting data address (`si_addr`).
    pub addr: u64,
    /// The instruction pointer at the fault.
    pub rip: u64,
    /// How the fault was classified.
    pub kind: FaultKind,
}

impl FaultInfo {
    /// Why the invocation was cancelled.
    pub fn reason(&self) -> CancelReason {
        match self.kind {
            FaultKind::GuardPage => CancelReason::StackOverflow,
            FaultKind::TerminateWord => CancelReason::Terminated,
            FaultKind::Other => CancelReason::MemoryFault { addr: self.addr },
        }
    }
}

/// Why an invocation was cancelled (shared by every engine's error type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Error)]
pub enum CancelReason {
    /// Extension code accessed memory that is not mapped (or not accessible that way).
    #[error("memory fault at {addr:#x}")]
    MemoryFault {
        /// The faulting address.
        addr: u64,
    },
    /// The invocation ran into the guard page of its stack.
    #[error("stack overflow")]
    StackOverflow,
    /// The invocation's terminate word was poisoned (by a watchdog).
    #[error("terminated")]
    Terminated,
}

/// Readable words; the terminate word points at the second one while the invocation may
/// continue, so its live value is 8 modulo 64 (see [`Invocation::terminate_word`]).
#[repr(C, align(64))]
struct LiveWords([u64; 2]);

/// The words a live terminate word points into.
static LIVE_WORDS: LiveWords = LiveWords([0; 2]);

/// The value of a terminate word whose invocation may continue.
fn live_value() -> u64 {
    std::ptr::addr_of!(LIVE_WORDS.0[1]) as u64
}

/// The record of one invocation (see the module docs and [`super`] for the termination design).
#[derive(Debug)]
pub struct Invocation {
    /// The terminate word: holds the address of a readable word while the invocation may run;
    /// a watchdog stores [`trap_page`]'s address to stop it at the next termination check.
    terminate: AtomicU64,
    /// The word used instead of `terminate` when non-null ([`Invocation::use_terminate_word`]).
    external: AtomicPtr<AtomicU64>,
    landing_pad: usize,
    context: u64,
    resume_rsp: AtomicUsize,
    fault_kind: AtomicU8,
    fault_addr: AtomicU64,
    fault_rip: AtomicU64,
}

thread_local! {
    static CURRENT: Cell<*const Invocation> = const { Cell::new(std::ptr::null()) };
}

impl Invocation {
    /// A record for a run of code whose fault exit is at `landing_pad` and expects `context` in
    /// its context register (x86 `r9` for kflex's JIT).
    pub fn new(landing_pad: usize, context: u64) -> Self {
        Invocation {
            terminate: AtomicU64::new(live_value()),
            external: AtomicPtr::new(std::ptr::null_mut()),
            landing_pad,
            context,
            resume_rsp: AtomicUsize::new(0),
            fault_kind: AtomicU8::new(0),
            fault_addr: AtomicU64::new(0),
            fault_rip: AtomicU64::new(0),
        }
    }

    /// The per-invocation terminate word: the record's own, or the one installed with
    /// [`Invocation::use_terminate_word`].
    ///
    /// Its value is always the address of a readable word while the invocation may continue,
    /// and that address's low byte is never zero (it is 8 modulo 64); a poisoned word holds the
    /// page-aligned [`trap_page`] address, whose low byte is zero. Engines may rely on both: a
    /// load through the word faults once it is poisoned, and a test of its low byte tells the
    /// two states apart without a fault.
    pub fn terminate_word(&self) -> &AtomicU64 {
        let external = self.external.load(Ordering::Acquire);
        // SAFETY: a non-null pointer was installed by `use_terminate_word`, whose caller keeps
        // the word alive (and unmoved) for as long as the record is used.
        unsafe { external.as_ref() }.unwrap_or(&self.terminate)
    }

    /// Makes `word` this invocation's terminate word (for an engine that keeps the word inside
    /// its own per-run state, one load closer to its code) and stores the live value into it;
    /// [`Invocation::request_termination`] poisons it from then on. Call it before the record is
    /// armed with a watchdog or entered.
    ///
    /// # Safety
    ///
    /// `word` must stay valid and unmoved for as long as this record is used (armed with a
    /// watchdog, current, or asked for its terminate word).
    pub unsafe fn use_terminate_word(&self, word: *const AtomicU64) {
        // SAFETY: the caller guarantees `word` is valid.
        unsafe { (*word).store(live_value(), Ordering::Relaxed) };
        self.external.store(word.cast_mut(), Ordering::Release);
    }

    /// Poisons the terminate word so the next termination check faults and cancels the run
    /// (callable from any thread holding a reference, such as a watchdog).
    pub fn request_termination(&self) {
        self.terminate_word()
            .store(trap_page() as u64, Ordering::Release);
    }

    /// Tells the handler where the landing pad's stack pointer is stored: after a fault the
    /// handler sets `rsp` to the value at `slot` (when non-zero) before resuming. The slot must
    /// stay valid while the record is current.
    pub fn set_resume_rsp_slot(&self, slot: *const u64) {
        self.resume_rsp.store(slot as usize, Ordering::Relaxed);
    }

    /// Makes this record the current one of the calling thread until the guard is dropped.
    pub fn enter(&self) -> InvocationGuard<'_> {
        let prev = CURRENT.with(|c| c.replace(self as *const Invocation));
        InvocationGuard {
            prev,
            _record: PhantomData,
        }
    }

    /// The fault that cancelled this invocation, if one did.
    pub fn fault(&self) -> Option<FaultInfo> {
        let kind = FaultKind::from_code(self.fault_kind.load(Ordering::Acquire))?;
        Some(FaultInfo {
            addr: self.fault_addr.load(Ordering::Relaxed),
            rip: self.fault_rip.load(Ordering::Relaxed),
            kind,
        })
    }

    /// Address execution resumes at after a fault.
    pub fn landing_pad(&self) -> usize {
        self.landing_pad
    }

    /// Value the landing pad expects in its context register.
    pub fn context(&self) -> u64 {
        self.context
    }

    /// The stack pointer to resume with (0: keep the faulting one). Async-signal-safe.
    pub(crate) fn resume_rsp(&self) -> u64 {
        let slot = self.resume_rsp.load(Ordering::Relaxed) as *const u64;
        if slot.is_null() {
            return 0;
        }
        // SAFETY: `set_resume_rsp_slot` requires the slot to stay valid while the record is
        // current, and the handler only calls this on the current record.
        unsafe { slot.read_volatile() }
    }

    /// Records a fault (called by the handler on the faulting thread). Async-signal-safe.
    pub(crate) fn record(&self, info: FaultInfo) {
        self.fault_addr.store(info.addr, Ordering::Relaxed);
        self.fault_rip.store(info.rip, Ordering::Relaxed);
        self.fault_kind.store(info.kind.code(), Ordering::Release);
    }
}

/// The calling thread's current invocation, if any. Async-signal-safe (a plain thread-local
/// read without lazy initialisation).
pub(crate) fn current() -> Option<&'static Invocation> {
    let p = CURRENT.with(Cell::get);
    // SAFETY: a non-null pointer was set by `enter` from a live record, and the guard (which
    // borrows that record) resets it before the record can be moved or dropped. The `'static`
    // lifetime never escapes the handler, which runs while the record is current.
    unsafe { p.as_ref() }
}

/// Keeps an [`Invocation`] current; restores the previous one on drop.
#[derive(Debug)]
pub struct InvocationGuard<'a> {
    prev: *const Invocation,
    _record: PhantomData<&'a Invocation>,
}

impl Drop for InvocationGuard<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_nests_and_restores() {
        assert!(current().is_none());
        let a = Invocation::new(1, 10);
        let b = Invocation::new(2, 20);
        {
            let _ga = a.enter();
            assert_eq!(current().map(|r| r.context()), Some(10));
            {
                let _gb = b.enter();
                assert_eq!(current().map(|r| r.landing_pad()), Some(2));
            }
            assert_eq!(current().map(|r| r.context()), Some(10));
        }
        assert!(current().is_none());
    }

    #[test]
    fn faults_are_recorded_and_classified() {
        let r = Invocation::new(1, 0);
        assert_eq!(r.fault(), None);
        let info = FaultInfo {
            addr: 0x40,
            rip: 0x1234,
            kind: FaultKind::Other,
        };
        r.record(info);
        assert_eq!(r.fault(), Some(info));
        assert_eq!(info.reason(), CancelReason::MemoryFault { addr: 0x40 });
        let guard = FaultInfo {
            kind: FaultKind::GuardPage,
            ..info
        };
        assert_eq!(guard.reason(), CancelReason::StackOverflow);
    }

    #[test]
    fn termination_poisons_the_word_with_the_trap_page() {
        let r = Invocation::new(1, 0);
        let live = r.terminate_word().load(Ordering::Relaxed);
        // SAFETY: the live word is a readable static.
        assert_eq!(unsafe { *(live as *const u64) }, 0);
        assert_ne!(live & 0xff, 0, "a live word's low byte is never zero");
        r.request_termination();
        let poisoned = r.terminate_word().load(Ordering::Relaxed);
        assert_eq!(poisoned, trap_page() as u64);
        assert_eq!(poisoned & 0xff, 0, "a poisoned word's low byte is zero");
    }

    #[test]
    fn an_external_word_is_set_live_and_is_the_one_poisoned() {
        let r = Invocation::new(1, 0);
        let own = r.terminate_word().load(Ordering::Relaxed);
        let word = AtomicU64::new(0);
        // SAFETY: `word` outlives `r`'s use below.
        unsafe { r.use_terminate_word(&word) };
        assert!(std::ptr::eq(r.terminate_word(), &word));
        assert_eq!(word.load(Ordering::Relaxed), own, "the live value");
        r.request_termination();
        assert_eq!(word.load(Ordering::Relaxed), trap_page() as u64);
        assert_eq!(
            r.terminate.load(Ordering::Relaxed),
            own,
            "own word untouched"
        );
    }

    #[test]
    fn resume_rsp_reads_the_slot() {
        let r = Invocation::new(1, 0);
        assert_eq!(r.resume_rsp(), 0);
        let slot = 0xdead_beef_u64;
        r.set_resume_rsp_slot(&slot);
        assert_eq!(r.resume_rsp(), 0xdead_beef);
    }
}
