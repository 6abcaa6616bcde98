//! Guarded stacks: each in its own mapping with a `PROT_NONE` guard page below (where an
//! overflow runs into) and one above, taken from a per-thread LIFO cache of ready stacks so the
//! common case costs no system call.
//!
//! [`with_guarded_stack`] runs a closure on such a stack by switching `rsp` with inline assembly
//! and switching back afterwards. While it runs, the stack's guard pages are the thread's
//! *active guards*, which the fault handler uses to recognise a stack overflow.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

use thiserror::Error;

/// Default usable size of a guarded stack.
pub const DEFAULT_STACK_SIZE: usize = 64 * 1024;

/// Ready stacks kept per thread.
pub const CACHE_LIMIT: usize = 4;

/// Why a guarded stack could not be provided.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StackError {
    /// The requested size overflows when rounded to pages and guards are added.
    #[error("stack size {0:#x} is too large")]
    TooLarge(usize),
    /// `mmap` or `mprotect` failed.
    #[error("{what}: {error}")]
    Os {
        /// The failing call.
        what: &'static str,
        /// The OS error text.
        error: String,
    },
}

/// The page size (queried once; every run rounds its stack size with it).
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf has no memory-safety preconditions.
            let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let p = usize::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096);
            PAGE.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

fn os_error(what: &'static str) -> StackError {
    StackError::Os {
        what,
        error: std::io::Error::last_os_error().to_string(),
    }
}

/// A stack mapping: `[guard page][usable bytes][guard page]`; unmapped on drop.
#[derive(Debug)]
pub struct GuardedStack {
    map: *mut c_void,
    map_len: usize,
    size: usize,
    page: usize,
}

// SAFETY: the value exclusively owns its mapping; nothing in it is tied to a thread.
unsafe impl Send for GuardedStack {}

impl GuardedStack {
    /// Maps a stack with at least `size` usable bytes (rounded up to whole pages, at least one).
    pub fn new(size: usize) -> Result<Self, StackError> {
        let page = page_size();
        let size = size
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or(StackError::TooLarge(size))?;
        let map_len = size
            .checked_add(2 * page)
            .ok_or(StackError::TooLarge(size))?;
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(os_error("mmap"));
        }
        let stack = GuardedStack {
            map,
            map_len,
            size,
            page,
        };
        // SAFETY: the range lies strictly inside the mapping just created (between the guards).
        let rc = unsafe {
            libc::mprotect(
                map.cast::<u8>().add(page).cast(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if rc != 0 {
            return Err(os_error("mprotect"));
        }
        Ok(stack)
    }

    /// Usable bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Lowest usable address.
    pub fn bottom(&self) -> usize {
        self.map as usize + self.page
    }

    /// One past the highest usable address (the initial stack pointer, 16-byte aligned).
    pub fn top(&self) -> usize {
        self.bottom() + self.size
    }

    /// The guard pages: `[below, above]`, each as `start..end`.
    pub fn guards(&self) -> [std::ops::Range<usize>; 2] {
        let lo = self.map as usize;
        [lo..lo + self.page, self.top()..self.top() + self.page]
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` describe the mapping this value owns; no code runs on it
        // (stacks in use are owned by `with_guarded_stack` until it switched back).
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

thread_local! {
    static CACHE: RefCell<Vec<GuardedStack>> = const { RefCell::new(Vec::new()) };
    /// Guard ranges of the stack this thread runs on: `[lo.start, lo.end, hi.start, hi.end]`.
    static ACTIVE: Cell<[usize; 4]> = const { Cell::new([0; 4]) };
}

/// A ready stack of `size` usable bytes (rounded up to pages) from this thread's cache, or a new
/// one. The most recently returned matching stack is reused first.
pub fn take(size: usize) -> Result<GuardedStack, StackError> {
    let page = page_size();
    let want = size.max(1).checked_next_multiple_of(page);
    // `try_with`: during thread exit the cache may already be destroyed; map a new stack then.
    let cached = CACHE
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let pos = c.iter().rposition(|s| Some(s.size) == want)?;
            Some(c.remove(pos))
        })
        .ok()
        .flatten();
    match cached {
        Some(s) => Ok(s),
        None => GuardedStack::new(size),
    }
}

/// Returns a stack to this thread's cache (unmapped if the cache is full, or already destroyed
/// because the thread is exiting).
pub fn give_back(stack: GuardedStack) {
    let mut spill = Some(stack);
    let _ = CACHE.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < CACHE_LIMIT {
            c.extend(spill.take());
        }
    });
    drop(spill);
}

/// Stacks in this thread's cache.
pub fn cached() -> usize {
    CACHE.with(|c| c.borrow().len())
}

/// Unmaps every stack in this thread's cache.
pub fn clear_cache() {
    let stacks = CACHE.with(|c| std::mem::take(&mut *c.borrow_mut()));
    drop(stacks);
}

/// True if `addr` is in a guard page of the guarded stack the calling thread is running on.
/// Async-signal-safe.
pub(crate) fn guard_hit(addr: usize) -> bool {
    let [a, b, c, d] = ACTIVE.with(Cell::get);
    (a..b).contains(&addr) || (c..d).contains(&addr)
}

/// What the trampoline hands back across the stack switch.
struct Call<F, R> {
    f: Option<F>,
    out: Option<Result<R, Box<dyn Any + Send>>>,
}

/// Runs on the guarded stack; never unwinds (panics are caught and carried back).
extern "C" fn trampoline<F: FnOnce() -> R, R>(call: *mut c_void) {
    // SAFETY: `with_guarded_stack` passes a pointer to its live `Call<F, R>`, which it does not
    // touch until this function has returned.
    let call = unsafe { &mut *call.cast::<Call<F, R>>() };
    if let Some(f) = call.f.take() {
        call.out = Some(catch_unwind(AssertUnwindSafe(f)));
    }
}

/// Calls `entry(data)` with the stack pointer set to `top`, then switches back.
///
/// The frame keeps the caller's stack pointer in `rbp` and describes its canonical frame address
/// through `rbp` in the unwind tables, so unwinders and backtraces walk from the guarded stack
/// back into the caller's frames.
///
/// # Safety
/// `top` must be the 16-byte aligned end of a mapped, writable stack large enough for `entry`,
/// and `entry` must follow the C ABI and never unwind.
#[unsafe(naked)]
unsafe extern "C" fn switch_and_call(
    data: *mut c_void,
    entry: extern "C" fn(*mut c_void),
    top: usize,
) {
    core::arch::naked_asm!(
        ".cfi_startproc",
        "push rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset rbp, -16",
        "mov rbp, rsp",
        ".cfi_def_cfa_register rbp",
        "mov rsp, rdx",
        "call rsi",
        "mov rsp, rbp",
        "pop rbp",
        ".cfi_def_cfa rsp, 8",
        "ret",
        ".cfi_endproc",
    )
}

/// Runs `f` on a guarded stack of at least `size` usable bytes (from the thread's cache) and
/// returns its result; a panic in `f` is propagated after switching back. Fails only if a new
/// stack had to be mapped and could not be.
pub fn with_guarded_stack<R, F: FnOnce() -> R>(size: usize, f: F) -> Result<R, StackError> {
    let mut stack = take(size)?;
    let out = catch_unwind(AssertUnwindSafe(|| run_on(&mut stack, f)));
    give_back(stack);
    match out {
        Ok(r) => Ok(r),
        Err(payload) => resume_unwind(payload),
    }
}

/// Runs `f` on `stack` (which the caller holds, e.g. across a series of runs, instead of taking
/// it from the cache every time) and returns its result; a panic in `f` is propagated after
/// switching back. While `f` runs, `stack`'s guard pages are the thread's active guards.
///
/// The exclusive borrow keeps `f` (and anything nested in it) from switching to the same stack
/// again while it is in use.
pub fn run_on<R, F: FnOnce() -> R>(stack: &mut GuardedStack, f: F) -> R {
    let [lo, hi] = stack.guards();
    let prev = ACTIVE.with(|a| a.replace([lo.start, lo.end, hi.start, hi.end]));
    let mut call = Call::<F, R> {
        f: Some(f),
        out: None,
    };
    let data = (&mut call as *mut Call<F, R>).cast::<c_void>();
    let entry = trampoline::<F, R> as extern "C" fn(*mut c_void);
    // SAFETY: `top` is the 16-byte aligned end of a mapped read-write stack owned by `stack`,
    // which the caller keeps alive (exclusively borrowed) until after the switch back, so no
    // other frame of this thread runs on it; `entry` is a C-ABI function that takes `data` and never
    // unwinds.
    unsafe { switch_and_call(data, entry, stack.top()) };
    ACTIVE.with(|a| a.set(prev));
    match call.out {
        Some(Ok(r)) => r,
        Some(Err(payload)) => resume_unwind(payload),
        None => unreachable!("the trampoline always stores an outcome"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsp() -> usize {
        let sp: usize;
        // SAFETY: reads the stack pointer only.
        unsafe { std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack)) };
        sp
    }

    #[test]
    fn closure_runs_on_the_guarded_stack_and_returns() {
        clear_cache();
        let outer = rsp();
        let (inner, guards) =
            with_guarded_stack(DEFAULT_STACK_SIZE, || (rsp(), ACTIVE.with(Cell::get))).unwrap();
        let s = take(DEFAULT_STACK_SIZE).unwrap();
        assert!(
            (s.bottom()..s.top()).contains(&inner),
            "ran on the cached stack"
        );
        assert_eq!(guards[1], s.bottom());
        assert_eq!(guards[2], s.top());
        assert_eq!(rsp(), outer);
        assert_eq!(
            ACTIVE.with(Cell::get),
            [0; 4],
            "guards reset after the switch back"
        );
        give_back(s);
    }

    #[test]
    fn stacks_taken_and_returned_during_thread_exit_do_not_abort() {
        struct TakesAtExit;
        impl Drop for TakesAtExit {
            fn drop(&mut self) {
                // Runs after this thread's cache was destroyed (see below).
                let s = take(8192).expect("a fresh stack without the cache");
                give_back(s);
            }
        }
        thread_local! {
            static AT_EXIT: std::cell::RefCell<Option<TakesAtExit>> =
                const { std::cell::RefCell::new(None) };
        }
        std::thread::spawn(|| {
            // Thread-local destructors run in reverse order of first use: registering ours
            // before the cache's makes the cache go first.
            AT_EXIT.with(|t| *t.borrow_mut() = Some(TakesAtExit));
            give_back(GuardedStack::new(8192).unwrap());
            assert_eq!(cached(), 1);
        })
        .join()
        .expect("the thread exits cleanly");
    }

    #[test]
    fn cache_is_lifo_and_bounded() {
        clear_cache();
        let stacks: Vec<_> = (0..CACHE_LIMIT + 2)
            .map(|_| GuardedStack::new(8192).unwrap())
            .collect();
        let last_top = stacks[CACHE_LIMIT - 1].top();
        for s in stacks {
            give_back(s);
        }
        assert_eq!(cached(), CACHE_LIMIT);
        assert_eq!(take(8192).unwrap().top(), last_top);
        assert_eq!(cached(), CACHE_LIMIT - 1);
        let other = take(3 * 4096 * 4).unwrap();
        assert_eq!(other.size(), 3 * 4096 * 4);
        assert_eq!(cached(), CACHE_LIMIT - 1, "size mismatch maps a new stack");
        clear_cache();
        assert_eq!(cached(), 0);
    }

    #[test]
    fn sizes_round_to_pages_and_guards_surround() {
        let s = GuardedStack::new(100).unwrap();
        let page = page_size();
        assert_eq!(s.size(), page);
        assert_eq!(s.top() % 16, 0);
        let [lo, hi] = s.guards();
        assert_eq!(lo.end, s.bottom());
        assert_eq!(hi.start, s.top());
        assert_eq!(lo.len(), page);
        assert!(GuardedStack::new(usize::MAX).is_err());
    }

    #[test]
    fn callee_saved_registers_and_results_survive_nesting() {
        let v = with_guarded_stack(16 * 1024, || {
            let big = [7u8; 4096];
            let inner =
                with_guarded_stack(16 * 1024, || big.iter().map(|&b| b as u64).sum::<u64>())
                    .unwrap();
            inner + 1
        })
        .unwrap();
        assert_eq!(v, 7 * 4096 + 1);
    }

    #[test]
    fn panics_propagate_after_switching_back() {
        let r = std::panic::catch_unwind(|| {
            with_guarded_stack(DEFAULT_STACK_SIZE, || panic!("inside")).unwrap()
        });
        let payload = r.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"inside"));
        assert_eq!(ACTIVE.with(Cell::get), [0; 4]);
    }
}
