//! One-sentence fixes for the common verification failures.
//!
//! Every rejection carries a `hint`: what the programmer should change, in terms of the C source
//! where possible. The checks build hints with the functions here, so that the same failure always
//! gets the same advice; [`infer`] supplies one from the rule text when a check gave none.

use kflex_object::ProgType;
use kflex_runtime::helpers::ResourceKind;

/// Reading a register that was never written (or was scratched by a call).
pub fn uninit_register(reg: u8) -> String {
    if (1..=5).contains(&reg) {
        format!(
            "r{reg} is scratched by every call; assign it after the last call before using it, \
             or keep the value in r6-r9 (callee-saved) across the call"
        )
    } else {
        format!("assign r{reg} on every path that reaches this instruction before reading it")
    }
}

/// Reading stack bytes that were never written.
pub fn uninit_stack(offset: i64, size: u64) -> String {
    format!(
        "initialise the {size} stack byte(s) at fp{offset:+} before reading them \
         (e.g. zero the whole struct with `= {{}}` or memset, padding included)"
    )
}

/// A packet access not covered by a `data + N > data_end` check.
pub fn packet_range(needed_end: u64) -> String {
    format!(
        "compare data + {needed_end} against data_end first \
         (`if (data + {needed_end} > data_end) return ...;`) and access the packet only after it"
    )
}

/// Dereferencing a pointer that may be NULL.
pub fn possibly_null(what: &str) -> String {
    if what.contains("map") {
        "check the pointer returned by bpf_map_lookup_elem against NULL \
         (`if (!value) return ...;`) before using it"
            .to_string()
    } else {
        format!("check {what} against NULL (`if (!p) return ...;`) before using it")
    }
}

/// A reference still held at program exit.
pub fn leaked_reference(kind: ResourceKind, release_helper: Option<&str>) -> String {
    match (kind, release_helper) {
        (ResourceKind::RingbufSample, _) => "call bpf_ringbuf_submit or bpf_ringbuf_discard on \
             the reserved sample on every path, including early returns"
            .to_string(),
        (ResourceKind::Lock, _) => lock_not_released(),
        (ResourceKind::Host(k), Some(h)) => {
            format!("release the {k} with {h} on every path, including early returns")
        }
        (ResourceKind::Host(k), None) => {
            format!("release the {k} on every path, including early returns")
        }
    }
}

/// A lock still held at exit (or at a call that is not allowed under a lock).
pub fn lock_not_released() -> String {
    "call bpf_spin_unlock on every path after bpf_spin_lock, including early returns and error paths"
        .to_string()
}

/// A helper that may not be called while a lock is held.
pub fn call_under_lock(helper: &str) -> String {
    format!(
        "move the call to {helper} out of the critical section: call bpf_spin_unlock first, \
         or make the call before taking the lock"
    )
}

/// Releasing something that is not a live reference.
pub fn bad_release(helper: &str) -> String {
    format!(
        "pass {helper} exactly the pointer the acquiring helper returned, once, \
         after checking it against NULL"
    )
}

/// A helper argument of the wrong kind or size.
pub fn bad_helper_arg(helper: &str, arg: u8, expected: &str) -> String {
    format!("pass {helper} {expected} as argument {arg} (r{arg})")
}

/// An unknown helper number.
pub fn unknown_helper(nearby: &[String]) -> String {
    if nearby.is_empty() {
        "call only helpers the host registers (see `kflex_runtime::HelperRegistry`)".to_string()
    } else {
        format!(
            "call one of the available helpers, e.g. {}",
            nearby.join(", ")
        )
    }
}

/// The complexity budget ran out.
pub fn complexity(limit: u64) -> String {
    format!(
        "the verifier processed {limit} instructions without finishing: reduce the number of \
         paths (fewer branches inside loops, move independent work into subprograms), or raise \
         the budget with VerifyOptions::max_processed"
    )
}

/// A context access outside the fields the program type exposes.
pub fn invalid_ctx_field(prog_type: ProgType) -> String {
    let ctx = match prog_type {
        ProgType::Xdp => "struct xdp_md",
        ProgType::SocketFilter | ProgType::SchedCls | ProgType::SkSkb => "struct __sk_buff",
        ProgType::Syscall => "the syscall context",
    };
    format!(
        "access only the fields of {ctx} a {} program may use, with their own size \
         (read through the struct members instead of computed offsets)",
        prog_type.name()
    )
}

/// A hint for a rule sentence that came without one, by recognising the failure it describes.
/// Returns `None` when nothing specific applies.
pub fn infer(rule: &str) -> Option<String> {
    let r = rule.to_ascii_lowercase();
    let reg = || {
        r.split(|c: char| !c.is_ascii_alphanumeric())
            .find_map(|w| w.strip_prefix('r').and_then(|n| n.parse::<u8>().ok()))
    };
    if r.contains("uninit") || r.contains("not initiali") || r.contains("!read_ok") {
        if r.contains("stack") {
            return Some(
                "initialise the stack bytes before reading them (zero the whole struct, padding \
                 included)"
                    .to_string(),
            );
        }
        return Some(uninit_register(reg().unwrap_or(0)));
    }
    if r.contains("packet") && (r.contains("range") || r.contains("bounds")) {
        return Some(
            "compare data + N against data_end first, where N covers the bytes accessed, and \
             access the packet only after it"
                .to_string(),
        );
    }
    if r.contains("null") {
        return Some(possibly_null(if r.contains("map") {
            "map value"
        } else {
            "the pointer"
        }));
    }
    if r.contains("lock") {
        return Some(lock_not_released());
    }
    if r.contains("leak") || r.contains("unreleased") || r.contains("still held") {
        return Some(
            "release every acquired reference on every path, including early returns".to_string(),
        );
    }
    if r.contains("too complex") || r.contains("budget") || r.contains("processed") {
        return Some(
            "reduce the number of paths (fewer branches inside loops) or raise \
             VerifyOptions::max_processed"
                .to_string(),
        );
    }
    if r.contains("ctx") || r.contains("context") {
        return Some(
            "access only documented context fields with their own size, at constant offsets"
                .to_string(),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_hint_names_the_bound() {
        let h = packet_range(14);
        assert!(
            h.contains("compare data + 14 against data_end first"),
            "{h}"
        );
    }

    #[test]
    fn register_hints_distinguish_scratched_args() {
        assert!(uninit_register(3).contains("scratched"));
        assert!(!uninit_register(7).contains("scratched"));
        assert!(uninit_stack(-16, 4).contains("fp-16"));
    }

    #[test]
    fn null_and_resource_hints() {
        assert!(possibly_null("map value").contains("bpf_map_lookup_elem against NULL"));
        assert!(
            leaked_reference(ResourceKind::RingbufSample, None).contains("bpf_ringbuf_discard")
        );
        assert!(leaked_reference(ResourceKind::Lock, None).contains("bpf_spin_unlock"));
        let host = leaked_reference(ResourceKind::Host("socket"), Some("host_sock_put"));
        assert!(
            host.contains("socket") && host.contains("host_sock_put"),
            "{host}"
        );
        assert!(call_under_lock("bpf_ktime_get_ns").contains("bpf_ktime_get_ns"));
    }

    #[test]
    fn ctx_hint_names_the_struct() {
        assert!(invalid_ctx_field(ProgType::Xdp).contains("struct xdp_md"));
        assert!(invalid_ctx_field(ProgType::SchedCls).contains("struct __sk_buff"));
    }

    #[test]
    fn infer_recognises_common_rules() {
        let h = infer("R2 !read_ok: r2 is not initialised").unwrap();
        assert!(h.contains("r2"), "{h}");
        assert!(
            infer("invalid access to packet, off=14 size=4, R2 range is 0")
                .unwrap()
                .contains("data_end")
        );
        assert!(
            infer("R0 invalid mem access 'map_value_or_null'")
                .unwrap()
                .contains("bpf_map_lookup_elem")
        );
        assert!(
            infer("program exits while holding lock taken at instruction 4")
                .unwrap()
                .contains("bpf_spin_unlock")
        );
        assert_eq!(infer("division by zero in a constant"), None);
    }
}
