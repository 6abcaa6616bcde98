//! Whether this process may use `bpf(2)` at all.

use std::sync::OnceLock;

use kflex_isa::{Insn, op};
use kflex_object::ProgType;

use crate::prog::prog_load;
use crate::sys::errno_text;

/// `Ok(())` when this process can load programs with `BPF_PROG_LOAD` (checked once, by loading
/// `r0 = 0; exit` as a socket filter), or the reason it cannot: not root / no `CAP_BPF` (`EPERM`),
/// a kernel without BPF (`ENOSYS`), a seccomp filter, ... The result is cached.
pub fn bpf_available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    if cfg!(not(target_os = "linux")) {
        return Err("bpf(2) exists only on Linux".into());
    }
    let insns = [
        Insn::new(op::ALU64 | op::MOV | op::K, 0, 0, 0, 0),
        Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0),
    ];
    match prog_load(ProgType::SocketFilter, &insns, &[], "GPL", 0) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.errno {
            libc::EPERM | libc::EACCES => format!(
                "BPF_PROG_LOAD not permitted ({}): run as root or with CAP_BPF",
                errno_text(e.errno)
            ),
            libc::ENOSYS => "the kernel has no bpf(2) system call (ENOSYS)".into(),
            errno => format!(
                "BPF_PROG_LOAD of a trivial program failed: {}",
                errno_text(errno)
            ),
        }),
    }
}
