//! Verifier log text: the context attached to an error (instruction text, C source line).
//!
//! The exploration log itself (log level 2, one line per processed instruction) is produced by the
//! exploration engine; this module formats the pieces an error report is made of.

use kflex_isa::decode::Program;
use kflex_object::LineInfo;

use crate::VerifyInput;
use crate::error::VerifyError;

/// The C source line covering instruction `pc` — the line-info record with the greatest
/// instruction index at or before `pc` — as `file.c:42: text` (text trimmed). `None` when no
/// record precedes `pc`. The records need not be sorted.
pub fn source_line(line_info: &[LineInfo], pc: usize) -> Option<String> {
    let li = line_info
        .iter()
        .filter(|l| l.insn <= pc)
        .max_by_key(|l| l.insn)?;
    let text = li.source.trim();
    Some(if text.is_empty() {
        format!("{}:{}", li.file, li.line)
    } else {
        format!("{}:{}: {}", li.file, li.line, text)
    })
}

/// The disassembly of the instruction at `pc`, or a description of why there is none.
pub fn insn_text(program: &Program, pc: usize) -> String {
    match program.get(pc) {
        Some(insn) => kflex_isa::disasm::format(insn),
        None if pc < program.len() => "(second slot of a lddw)".to_string(),
        None => "(past the end of the program)".to_string(),
    }
}

/// An error at instruction `pc` of the program being verified, with its disassembly, its source
/// line and the given state text filled in.
pub fn error_at(
    input: &VerifyInput<'_>,
    pc: usize,
    rule: impl Into<String>,
    hint: impl Into<String>,
    state: Option<String>,
) -> VerifyError {
    let mut e = VerifyError::new(rule)
        .at(pc, insn_text(input.program, pc))
        .with_source(source_line(input.line_info, pc))
        .with_hint(hint);
    e.state = state.filter(|s| !s.is_empty());
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_isa::Insn;
    use kflex_isa::op;

    fn line(insn: usize, line: u32, source: &str) -> LineInfo {
        LineInfo {
            insn,
            file: "fw.c".into(),
            line,
            column: 3,
            source: source.into(),
        }
    }

    #[test]
    fn nearest_line_at_or_before() {
        let li = [
            line(0, 10, "int x = 0;"),
            line(4, 12, "  if (x) "),
            line(2, 11, ""),
        ];
        assert_eq!(source_line(&li, 0).as_deref(), Some("fw.c:10: int x = 0;"));
        assert_eq!(source_line(&li, 3).as_deref(), Some("fw.c:11"));
        assert_eq!(source_line(&li, 99).as_deref(), Some("fw.c:12: if (x)"));
        assert_eq!(source_line(&li[1..2], 1), None);
        assert_eq!(source_line(&[], 0), None);
    }

    #[test]
    fn insn_text_handles_lddw_second_slots() {
        let slots = [
            Insn::new(op::LD | op::IMM | op::DW, 1, 0, 0, 7),
            Insn::new(0, 0, 0, 0, 0),
            Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0),
        ];
        let p = Program::decode(&slots).unwrap();
        assert_eq!(insn_text(&p, 0), "r1 = 0x7 ll");
        assert!(insn_text(&p, 1).contains("second slot"));
        assert_eq!(insn_text(&p, 2), "exit");
        assert!(insn_text(&p, 3).contains("past the end"));
    }
}
