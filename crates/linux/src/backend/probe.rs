//! Whether the Linux back end can run here, and if not, a reason a user can act on.

use std::sync::OnceLock;

use kflex_object::{BPF_F_MMAPABLE, MapSpec, MapType};

use crate::map::map_create;

/// `Ok(())` when this process can load and test-run the objects kflex runs in the kernel, or the
/// reason it cannot, naming the cause: not Linux, not root and without `CAP_BPF` (with the
/// `kernel.unprivileged_bpf_disabled` setting), no `bpf(2)` system call (or a seccomp filter
/// refusing it), or a kernel without BPF arenas (Linux before 6.9). Checked once per process.
pub fn backend_available() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    if cfg!(not(target_os = "linux")) {
        return Err("the Linux back end runs on Linux only".into());
    }
    crate::bpf_available().map_err(|reason| {
        let mut why = reason;
        if !privileged() {
            why.push_str(&format!(
                "; this process (euid {}) has neither CAP_BPF nor CAP_SYS_ADMIN",
                // SAFETY: geteuid has no preconditions and cannot fail.
                unsafe { libc::geteuid() }
            ));
        }
        if let Some(setting) = unprivileged_bpf_disabled() {
            why.push_str(&format!("; kernel.unprivileged_bpf_disabled = {setting}"));
        }
        why
    })?;
    let arena = MapSpec::new("kflex_probe", MapType::Arena, 0, 0, 1).with_flags(BPF_F_MMAPABLE);
    map_create(&arena).map(drop).map_err(|e| {
        format!(
            "the kernel ({}) cannot create a BPF arena map, which kflex's heap needs (Linux 6.9 or later): {e}",
            kernel_release()
        )
    })
}

/// Whether the effective capability set holds `CAP_BPF` (39) or `CAP_SYS_ADMIN` (21), read
/// from `/proc/self/status`; `true` when that cannot be read (the load probe decides then).
fn privileged() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return true;
    };
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    caps.is_none_or(|c| c & (1 << CAP_BPF | 1 << CAP_SYS_ADMIN) != 0)
}

fn unprivileged_bpf_disabled() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/unprivileged_bpf_disabled")
        .ok()
        .map(|s| s.trim().to_string())
}

/// `uname -r`, or `unknown`.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "unknown".into())
}
