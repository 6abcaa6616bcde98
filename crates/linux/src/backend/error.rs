//! Errors of the libbpf-based back end.

/// How many trailing lines of a verifier log an error message shows (the whole log stays in
/// [`BackendError::Rejected::log`]).
const LOG_TAIL_LINES: usize = 40;

/// Something the Linux back end could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// This process cannot use the back end at all (see [`backend_available`](super::backend_available)).
    #[error("the Linux back end is unavailable: {0}")]
    Unavailable(String),
    /// libbpf could not open or prepare the object (bad ELF, unsupported relocation, a map the
    /// kernel refused, ...). `message` carries libbpf's own warnings.
    #[error("{object}: libbpf cannot load the object: {message}")]
    Open {
        /// Object name.
        object: String,
        /// libbpf's error and the warnings it printed.
        message: String,
    },
    /// The kernel verifier rejected a program.
    #[error(
        "{object}: the kernel rejected program {program}: {message}\n{}",
        log_tail(log)
    )]
    Rejected {
        /// Object name.
        object: String,
        /// The rejected program.
        program: String,
        /// libbpf's error (the errno).
        message: String,
        /// The whole verifier log.
        log: String,
    },
    /// No program or map of that name.
    #[error("{object} has no {kind} {name:?} (it has: {})", available.join(", "))]
    NotFound {
        /// Object name.
        object: String,
        /// `program` or `map`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The names that exist.
        available: Vec<String>,
    },
    /// A `bpf(2)` operation on a loaded object failed.
    #[error("{op}: {message}")]
    Op {
        /// What was being done (`BPF_PROG_TEST_RUN of xdp_firewall`).
        op: String,
        /// libbpf's or the kernel's error.
        message: String,
    },
    /// The request cannot be expressed (wrong key size, address outside the arena, ...).
    #[error("{0}")]
    Invalid(String),
}

/// The last [`LOG_TAIL_LINES`] lines of a verifier log, marked when lines were left out.
fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log.trim_end().lines().collect();
    let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut out = String::new();
    if skip > 0 {
        out.push_str(&format!("... ({skip} earlier log lines)\n"));
    }
    out.push_str(&lines[skip..].join("\n"));
    out
}

/// Result of the back end.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_message_shows_the_log_tail_only() {
        let log: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let e = BackendError::Rejected {
            object: "o".into(),
            program: "p".into(),
            message: "Permission denied".into(),
            log,
        };
        let text = e.to_string();
        assert!(text.contains("o: the kernel rejected program p: Permission denied"));
        assert!(text.contains("(60 earlier log lines)"), "{text}");
        assert!(text.contains("line 99") && text.contains("line 60"));
        assert!(!text.contains("line 59\n"), "{text}");
    }
}
