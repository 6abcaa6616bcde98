//! Errors of the `bpf(2)` wrappers.

use crate::sys::errno_text;

/// A `bpf(2)` command failed (or its input could not be expressed to the kernel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {}{}", errno_text(*errno), if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
pub struct BpfError {
    /// What was being done (`BPF_MAP_CREATE of map "counts"`).
    pub op: String,
    /// The errno the kernel returned (`EINVAL` for input rejected before the call).
    pub errno: i32,
    /// Extra context, possibly empty.
    pub detail: String,
}

impl BpfError {
    /// An error from the kernel.
    pub(crate) fn kernel(op: impl Into<String>, errno: i32) -> Self {
        BpfError {
            op: op.into(),
            errno,
            detail: String::new(),
        }
    }

    /// Input this crate refused before calling the kernel.
    pub(crate) fn invalid(op: impl Into<String>, detail: impl Into<String>) -> Self {
        BpfError {
            op: op.into(),
            errno: libc::EINVAL,
            detail: detail.into(),
        }
    }
}

/// Result of the `bpf(2)` wrappers.
pub type Result<T, E = BpfError> = std::result::Result<T, E>;
