//! Native execution support for JIT-compiled extensions: guarded stacks, the process-wide fault
//! handler and the per-thread invocation record that turns a fault into cancellation.
//!
//! * [`stack`]: stacks in their own mappings with `PROT_NONE` guard pages on both sides, taken
//!   from a small per-thread cache of ready stacks, and [`with_guarded_stack`] which runs a
//!   closure on one by switching `rsp`.
//! * [`registry`]: the lock-free table of extension code ranges `(start, end, landing pad)` the
//!   fault handler consults; engines register code when they compile it and unregister it on drop.
//! * [`invocation`]: the per-thread [`Invocation`] record of the extension currently running,
//!   where the handler finds how to resume (landing pad, the value the landing pad expects in its
//!   context register, the stack pointer to restore) and where it records the [`FaultInfo`].
//! * [`watchdog`]: the per-process thread that poisons the terminate word of an invocation whose
//!   deadline passed, and the process-wide cancellation counters.
//! * [`fault`]: the `SIGSEGV`/`SIGBUS` handler ([`fault::install`]). A fault whose instruction
//!   pointer lies in registered extension code, or whose address is a guard page of the guarded
//!   stack this thread is running an extension on, cancels that thread's innermost invocation
//!   only: the handler records the fault and rewrites the signal context to resume at the
//!   program's fault-exit stub, which returns to the host. Every other fault is handed to the
//!   handler that was installed before ours (or to the default action), so host bugs still crash.
//!
//! # Termination
//!
//! [`watchdog`] stops invocations that outlive their time budget.
//! [`Invocation::terminate_word`] is the per-invocation terminate word that JIT back-edges load
//! through (the JIT installs the first field of its per-run state block as that word with
//! [`Invocation::use_terminate_word`], so a check is two dependent loads). To stop a
//! runaway invocation the watchdog stores the address of the process-wide [`trap_page`] into
//! that word (an atomic store, the only thing the watchdog needs to do); the next back-edge load
//! then faults inside extension code with an address in the trap page, the handler classifies it
//! as [`FaultKind::TerminateWord`] and the run ends with [`CancelReason::Terminated`]. Because
//! the word belongs to one invocation, a watchdog stops exactly one invocation on one thread;
//! other threads running the same program are unaffected.
//!
//! # Limits
//!
//! A guard-page fault inside host code (a helper called by the extension) also cancels the
//! invocation; the host frames between the extension and the fault are discarded without running
//! their destructors, so whatever they owned (heap allocations, held locks) is leaked. Helpers
//! must therefore keep their stack use small and bounded, which the registry's helpers do.

pub mod fault;
pub mod invocation;
pub mod registry;
pub mod stack;
pub mod watchdog;

pub use fault::{install as install_fault_handler, trap_page};
pub use invocation::{CancelReason, FaultInfo, FaultKind, Invocation, InvocationGuard};
pub use registry::{CodeRange, RegistryError};
pub use stack::{DEFAULT_STACK_SIZE, GuardedStack, StackError, run_on, with_guarded_stack};
pub use watchdog::{CancellationStats, WatchGuard, Watchdog, cancellation_stats};
