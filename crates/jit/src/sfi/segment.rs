//! The GS-segment SFI mode ([`SfiMode::Segment`](super::SfiMode::Segment)): CPU support and the GS
//! base switch at the entry stub (the segment-relative accesses themselves are emitted with the
//! other loads, stores and atomics in `codegen::mem`).
//!
//! Every heap access is emitted as `gs:[r32 + disp]` (prefixes `0x65` and `0x67`): the CPU forms
//! the effective address modulo 2^32 and adds the GS base, which holds the heap base for the whole
//! run. The heap sits at the start of a 4 GiB-aligned window whose rest is reserved inaccessible
//! (`kflex_runtime::heap::Heap::segment_window`), so the access lands in the heap or faults into
//! the cancellation path whatever the register holds, with no instruction besides the access.
//!
//! The host's GS base is saved by the entry stub (`rdgsbase`) in the entry frame's spare slot and
//! restored (`wrgsbase`) on the one path every run leaves by: the normal return and the fault exit
//! the signal handler resumes at both pass the same restore before the callee-saved registers are
//! popped. A helper that runs another extension on the same thread enters that extension's entry
//! stub, which saves the outer run's GS base and restores it on the way out, so nested runs each
//! see their own heap. Nothing in Rust std or glibc uses GS on x86-64 Linux (thread-local storage
//! is FS-based; the kernel keeps the GS base per thread and across signal delivery), so host code
//! running while GS holds a heap base (helpers, the signal handler) is unaffected.

use std::sync::OnceLock;

use crate::codegen::{Emitter, x64};

/// Size of the window a segment-mode heap is addressed in (`2^32`: 32-bit effective addresses).
pub const WINDOW: u64 = 1 << 32;

/// `HWCAP2_FSGSBASE`: the kernel allows `rdgsbase`/`wrgsbase` in user space (Linux 5.9+).
const HWCAP2_FSGSBASE: u64 = 1 << 1;

/// True if this CPU and kernel let user space switch the GS base with `wrgsbase` (checked once,
/// from `getauxval(AT_HWCAP2)`); without it [`SfiMode::Segment`](super::SfiMode::Segment) falls
/// back to and-mask.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        // SAFETY: getauxval only reads the process's auxiliary vector.
        let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
        cfg!(target_arch = "x86_64") && hwcap2 & HWCAP2_FSGSBASE != 0
    })
}

/// The calling thread's GS base (`rdgsbase`), or `None` where [`available`] is false. Lets tests
/// and hosts check that runs leave it unchanged.
pub fn gs_base() -> Option<u64> {
    if !available() {
        return None;
    }
    let value: u64;
    // SAFETY: `available` confirmed the kernel enabled FSGSBASE for user space, so `rdgsbase`
    // does not trap; it only reads the GS base into a register.
    unsafe {
        std::arch::asm!("rdgsbase {}", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    Some(value)
}

/// True if a heap of `size` bytes at `base` can be addressed in segment mode: at most 4 GiB, at a
/// multiple of 4 GiB, on a CPU with user-space FSGSBASE. The caller guarantees that the rest of
/// the window above the heap is reserved inaccessible (heaps from `kflex_runtime::heap` do).
pub(crate) fn usable(base: u64, size: u64) -> bool {
    size <= WINDOW && base.is_multiple_of(WINDOW) && available()
}

/// Entry stub, after `r12` holds the heap base and `rsp` points at the entry frame's spare slot:
/// saves the host's GS base in that slot and installs the heap base.
pub(crate) fn enter(e: &mut Emitter<'_>) {
    if e.sfi.segment() {
        x64!(e.ops ; rdgsbase r11 ; mov [rsp], r11 ; wrgsbase r12);
    }
}

/// Entry stub, on the common exit path (normal return and fault exit, `rsp` back at the entry
/// frame's spare slot, `rax` holding the result): restores the host's GS base.
pub(crate) fn leave(e: &mut Emitter<'_>) {
    if e.sfi.segment() {
        x64!(e.ops ; mov r11, [rsp] ; wrgsbase r11);
    }
}
