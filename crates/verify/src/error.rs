//! [`VerifyError`]: why a program was rejected, in a form a person can act on.
//!
//! The Display is multi-line:
//!
//! ```text
//! R0 invalid mem access 'map_value_or_null': the pointer may be NULL
//!   at instruction 12: r0 = *(u32 *)(r1 + 0x4)
//!   source: xdp_firewall.c:57: if (ip->saddr == ...)
//!   state: R0=map_value_or_null(id=1,map=blocklist,off=0) R10=fp0
//!   hint: check the pointer returned by bpf_map_lookup_elem against NULL before using it
//! ```
//!
//! The first line is the rule that was broken (one sentence), then where (instruction index and
//! its disassembly, the C source line from `.BTF.ext` line info), the abstract state at the
//! failure, and one sentence saying what would fix it.

use crate::Stats;
use crate::hints;

/// Why verification failed.
#[derive(Clone, Debug, Default)]
pub struct VerifyError {
    /// Instruction (slot) index of the failure, when one instruction is to blame.
    pub pc: Option<usize>,
    /// That instruction's disassembly (llvm-objdump syntax).
    pub disasm: Option<String>,
    /// The C source line from line info, as `file.c:42: x = *p;`.
    pub source: Option<String>,
    /// Register and stack state at the failure, kernel-log style.
    pub state: Option<String>,
    /// One sentence: which rule was broken.
    pub rule: String,
    /// One sentence: what would fix it (empty when nothing specific applies).
    pub hint: String,
    /// The exploration log up to the failure (when the log level asked for one).
    pub log: String,
    /// Statistics of the exploration up to the failure.
    pub stats: Stats,
}

impl VerifyError {
    /// An error breaking `rule`, with no location yet.
    pub fn new(rule: impl Into<String>) -> Self {
        VerifyError {
            rule: rule.into(),
            ..VerifyError::default()
        }
    }

    /// Sets the instruction the error is about and its disassembly.
    pub fn at(mut self, pc: usize, disasm: impl Into<String>) -> Self {
        self.pc = Some(pc);
        self.disasm = Some(disasm.into());
        self
    }

    /// Sets the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }

    /// Sets the abstract state at the failure.
    pub fn with_state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Sets the C source line.
    pub fn with_source(mut self, source: Option<String>) -> Self {
        self.source = source;
        self
    }

    /// The hint to show: the error's own, else one inferred from the rule text.
    pub fn effective_hint(&self) -> Option<String> {
        if self.hint.is_empty() {
            hints::infer(&self.rule)
        } else {
            Some(self.hint.clone())
        }
    }
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rule)?;
        match (self.pc, &self.disasm) {
            (Some(pc), Some(d)) => write!(f, "\n  at instruction {pc}: {d}")?,
            (Some(pc), None) => write!(f, "\n  at instruction {pc}")?,
            _ => {}
        }
        if let Some(src) = &self.source {
            write!(f, "\n  source: {src}")?;
        }
        if let Some(state) = self.state.as_deref().filter(|s| !s.is_empty()) {
            write!(f, "\n  state: {state}")?;
        }
        if let Some(hint) = self.effective_hint() {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_every_part_in_order() {
        let e = VerifyError::new("R0 invalid mem access 'map_value_or_null'")
            .at(12, "r0 = *(u32 *)(r1 + 0x4)")
            .with_source(Some("fw.c:57: if (ip->saddr == v->addr)".into()))
            .with_state("R0=map_value_or_null(id=1,off=0) R10=fp0")
            .with_hint("check the pointer against NULL");
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "R0 invalid mem access 'map_value_or_null'");
        assert_eq!(lines[1], "  at instruction 12: r0 = *(u32 *)(r1 + 0x4)");
        assert_eq!(lines[2], "  source: fw.c:57: if (ip->saddr == v->addr)");
        assert!(lines[3].starts_with("  state: R0=map_value_or_null"));
        assert_eq!(lines[4], "  hint: check the pointer against NULL");
    }

    #[test]
    fn missing_parts_are_left_out_and_hints_inferred() {
        let e = VerifyError::new("R3 !read_ok: r3 is not initialised").at(0, "r0 = r3");
        let text = e.to_string();
        assert!(!text.contains("source:"), "{text}");
        assert!(!text.contains("state:"), "{text}");
        assert!(
            text.contains("hint: r3 is scratched by every call"),
            "{text}"
        );
        let bare = VerifyError::new("something odd");
        assert_eq!(bare.to_string(), "something odd");
    }
}
