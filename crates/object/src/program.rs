//! Linked programs and their debug information.

use kflex_isa::Insn;

use crate::prog_type::ProgType;

/// One entry function, linked with every subprogram it (transitively) calls or takes the
/// address of, and relocated (see the crate documentation for the encoding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The entry function's symbol name.
    pub name: String,
    /// The ELF section the entry function lives in (e.g. `xdp`, `tc/ingress`).
    pub section: String,
    /// Program type selected by the section name, if kflex supports it.
    pub prog_type: Option<ProgType>,
    /// True for sleepable programs (`*.s` sections and `syscall`).
    pub sleepable: bool,
    /// Entry function first, then the appended subprograms.
    pub insns: Vec<Insn>,
    /// Source lines, sorted by instruction index (indices into `insns`).
    pub line_info: Vec<LineInfo>,
    /// Function starts, sorted by instruction index; the first is the entry function.
    pub func_info: Vec<FuncInfo>,
}

/// The source position of an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// Index into [`Program::insns`].
    pub insn: usize,
    /// Source file name.
    pub file: String,
    /// Line number (1-based).
    pub line: u32,
    /// Column number.
    pub column: u32,
    /// The source line's text.
    pub source: String,
}

/// Where a function starts in a linked program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    /// Index into [`Program::insns`] of the function's first instruction.
    pub insn: usize,
    /// Function name.
    pub name: String,
}

impl Program {
    /// The source line covering instruction `pc`: the last line record at or before `pc`.
    pub fn line_at(&self, pc: usize) -> Option<&LineInfo> {
        let n = self.line_info.partition_point(|l| l.insn <= pc);
        self.line_info.get(n.checked_sub(1)?)
    }

    /// The function containing instruction `pc`.
    pub fn func_at(&self, pc: usize) -> Option<&FuncInfo> {
        if pc >= self.insns.len() {
            return None;
        }
        let n = self.func_info.partition_point(|f| f.insn <= pc);
        self.func_info.get(n.checked_sub(1)?)
    }

    /// True if the section name marks a sleepable program: a base name (before `/`) ending in
    /// `.s`, or the `syscall` program type.
    pub fn is_sleepable_section(section: &str) -> bool {
        let base = section.split('/').next().unwrap_or(section);
        base.ends_with(".s") || ProgType::from_section(section) == Some(ProgType::Syscall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog() -> Program {
        let line = |insn, line| LineInfo {
            insn,
            file: "a.c".into(),
            line,
            column: 1,
            source: String::new(),
        };
        Program {
            name: "p".into(),
            section: "xdp".into(),
            prog_type: Some(ProgType::Xdp),
            sleepable: false,
            insns: vec![Insn::default(); 10],
            line_info: vec![line(0, 5), line(3, 6), line(7, 20)],
            func_info: vec![
                FuncInfo {
                    insn: 0,
                    name: "p".into(),
                },
                FuncInfo {
                    insn: 7,
                    name: "sub".into(),
                },
            ],
        }
    }

    #[test]
    fn lookups() {
        let p = prog();
        assert_eq!(p.line_at(0).map(|l| l.line), Some(5));
        assert_eq!(p.line_at(2).map(|l| l.line), Some(5));
        assert_eq!(p.line_at(3).map(|l| l.line), Some(6));
        assert_eq!(p.line_at(9).map(|l| l.line), Some(20));
        assert_eq!(p.func_at(6).map(|f| f.name.as_str()), Some("p"));
        assert_eq!(p.func_at(7).map(|f| f.name.as_str()), Some("sub"));
        assert_eq!(p.func_at(10), None);
    }

    #[test]
    fn sleepable_sections() {
        assert!(Program::is_sleepable_section("syscall"));
        assert!(Program::is_sleepable_section("fentry.s/foo"));
        assert!(Program::is_sleepable_section("xdp.s"));
        assert!(!Program::is_sleepable_section("xdp"));
        assert!(!Program::is_sleepable_section("tc/x.s"));
    }
}
