//! The single error type of the loader: where in the object a problem is, and what it is.

/// Why an object could not be loaded, and where.
///
/// Displays as e.g. `section xdp, instruction 12: relocation against unknown symbol foo`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", location(.section, .insn), .reason)]
pub struct LoadError {
    /// The ELF section the problem was found in, if it belongs to one.
    pub section: Option<String>,
    /// The instruction index (in units of 8-byte slots, within `section`), if one is concerned.
    pub insn: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

fn location(section: &Option<String>, insn: &Option<usize>) -> String {
    match (section, insn) {
        (Some(s), Some(i)) => format!("section {s}, instruction {i}: "),
        (Some(s), None) => format!("section {s}: "),
        (None, Some(i)) => format!("instruction {i}: "),
        (None, None) => String::new(),
    }
}

impl LoadError {
    /// An error not tied to one section.
    pub fn new(reason: impl Into<String>) -> Self {
        LoadError {
            section: None,
            insn: None,
            reason: reason.into(),
        }
    }

    /// An error in the named section.
    pub fn in_section(section: impl Into<String>, reason: impl Into<String>) -> Self {
        LoadError {
            section: Some(section.into()),
            insn: None,
            reason: reason.into(),
        }
    }

    /// An error at an instruction of the named section.
    pub fn at_insn(section: impl Into<String>, insn: usize, reason: impl Into<String>) -> Self {
        LoadError {
            section: Some(section.into()),
            insn: Some(insn),
            reason: reason.into(),
        }
    }

    /// Attaches a section to an error that has none yet.
    pub(crate) fn or_section(mut self, section: &str) -> Self {
        if self.section.is_none() {
            self.section = Some(section.to_string());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_location() {
        let e = LoadError::at_insn("xdp", 12, "relocation against unknown symbol foo");
        assert_eq!(
            e.to_string(),
            "section xdp, instruction 12: relocation against unknown symbol foo"
        );
        assert_eq!(
            LoadError::in_section(".BTF", "bad magic").to_string(),
            "section .BTF: bad magic"
        );
        assert_eq!(LoadError::new("empty").to_string(), "empty");
    }
}
