//! Parser for bpf_conformance `.data` test files.
//!
//! A file is a sequence of sections introduced by `-- name` lines. `-- asm` holds the program in the
//! dialect of [`crate::asm`], `-- mem` the input memory as hex bytes, `-- result` the expected r0 in
//! hex, `-- raw` the expected encoding as one 64-bit hex word per slot, and `-- c` the C source the
//! program came from (kept, not interpreted). Any other section (such as `-- no register offset`,
//! meaning r2 does not hold the memory length) is kept by name with its text. `#` starts a comment
//! line outside `-- asm` and `-- c`.

use crate::asm::{AsmError, assemble};
use crate::insn::Insn;

/// One parsed conformance test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConformanceTest {
    /// The program text (`-- asm`), comments included.
    pub asm: String,
    /// Input memory (`-- mem`); empty when absent.
    pub mem: Vec<u8>,
    /// Expected r0 (`-- result`).
    pub result: Option<u64>,
    /// Expected encoding (`-- raw`).
    pub raw: Option<Vec<Insn>>,
    /// The C source the program was compiled from (`-- c`), if given.
    pub c: Option<String>,
    /// True when the file has a `-- no register offset` section.
    pub no_register_offset: bool,
    /// Every other section as (name, text), in file order (including `no register offset`).
    pub other: Vec<(String, String)>,
}

/// Error from [`ConformanceTest::parse`]: 1-based line and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ConformanceError {
    /// 1-based line number.
    pub line: usize,
    /// Human-readable reason.
    pub reason: String,
}

impl ConformanceTest {
    /// Parses the text of a `.data` file.
    pub fn parse(text: &str) -> Result<ConformanceTest, ConformanceError> {
        let mut test = ConformanceTest::default();
        let mut section: Option<(String, usize)> = None;
        let mut body: Vec<(usize, &str)> = Vec::new();
        for (idx, line) in text.lines().enumerate() {
            let n = idx + 1;
            if let Some(name) = line.strip_prefix("--") {
                if let Some((name, start)) = section.take() {
                    test.finish(&name, start, &body)?;
                }
                body.clear();
                section = Some((name.trim().to_string(), n));
                continue;
            }
            if section.is_some() {
                body.push((n, line));
            } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
                return Err(ConformanceError {
                    line: n,
                    reason: "text before the first `-- section` line".to_string(),
                });
            }
        }
        if let Some((name, start)) = section {
            test.finish(&name, start, &body)?;
        }
        Ok(test)
    }

    /// Assembles the `-- asm` section.
    pub fn program(&self) -> Result<Vec<Insn>, AsmError> {
        assemble(&self.asm)
    }

    fn finish(
        &mut self,
        name: &str,
        start: usize,
        body: &[(usize, &str)],
    ) -> Result<(), ConformanceError> {
        let joined = || {
            let mut s = String::new();
            for (_, l) in body {
                s.push_str(l);
                s.push('\n');
            }
            s
        };
        // Lines with content, comments removed.
        let data = || {
            body.iter()
                .map(|(n, l)| (*n, l.split('#').next().unwrap_or("").trim()))
                .filter(|(_, l)| !l.is_empty())
        };
        match name {
            "asm" => self.asm = joined(),
            "c" => self.c = Some(joined()),
            "mem" => {
                for (n, l) in data() {
                    for tok in l.split_whitespace() {
                        let b = u8::from_str_radix(tok, 16).map_err(|_| ConformanceError {
                            line: n,
                            reason: format!("invalid memory byte `{tok}` (two hex digits)"),
                        })?;
                        self.mem.push(b);
                    }
                }
            }
            "result" => {
                let mut lines = data();
                let Some((n, l)) = lines.next() else {
                    return Err(ConformanceError {
                        line: start,
                        reason: "empty result section".to_string(),
                    });
                };
                self.result = Some(hex_u64(l).ok_or_else(|| ConformanceError {
                    line: n,
                    reason: format!("invalid result `{l}` (hex number)"),
                })?);
                if let Some((n, l)) = lines.next() {
                    return Err(ConformanceError {
                        line: n,
                        reason: format!("unexpected text `{l}` after the result"),
                    });
                }
            }
            "raw" => {
                let mut raw = Vec::new();
                for (n, l) in data() {
                    for tok in l.split_whitespace() {
                        let w = hex_u64(tok).ok_or_else(|| ConformanceError {
                            line: n,
                            reason: format!("invalid raw instruction `{tok}` (64-bit hex word)"),
                        })?;
                        raw.push(Insn::from_bytes(w.to_le_bytes()));
                    }
                }
                self.raw = Some(raw);
            }
            other => {
                if other == "no register offset" {
                    self.no_register_offset = true;
                }
                self.other.push((other.to_string(), joined()));
            }
        }
        Ok(())
    }
}

fn hex_u64(s: &str) -> Option<u64> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_sections() {
        let text = "# Copyright\n-- asm\nmov %r0, 1 # one\nexit\n-- mem\n00 01 ff\n0a\n\
                    -- raw\n0x00000001000000b7\n0x0000000000000095\n-- result\n0x1\n\
                    -- no register offset\ncall instruction\n-- c\n#include <x.h>\n";
        let t = ConformanceTest::parse(text).unwrap();
        assert_eq!(t.asm, "mov %r0, 1 # one\nexit\n");
        assert_eq!(t.mem, vec![0x00, 0x01, 0xff, 0x0a]);
        assert_eq!(t.result, Some(1));
        assert_eq!(
            t.raw,
            Some(vec![
                Insn::new(0xb7, 0, 0, 0, 1),
                Insn::new(0x95, 0, 0, 0, 0)
            ])
        );
        assert!(t.no_register_offset);
        assert_eq!(
            t.other,
            vec![(
                "no register offset".to_string(),
                "call instruction\n".to_string()
            )]
        );
        assert_eq!(t.c.as_deref(), Some("#include <x.h>\n"));
        assert_eq!(t.program().unwrap(), t.raw.unwrap());
    }

    #[test]
    fn missing_sections_are_empty() {
        let t = ConformanceTest::parse("-- asm\nexit\n").unwrap();
        assert_eq!(t.result, None);
        assert_eq!(t.raw, None);
        assert!(t.mem.is_empty());
        assert!(!t.no_register_offset);
    }

    #[test]
    fn reports_bad_lines() {
        let e = ConformanceTest::parse("-- asm\nexit\n-- mem\n00 zz\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("`zz`"));
        let e = ConformanceTest::parse("-- result\n0xgg\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = ConformanceTest::parse("-- result\n1\n2\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = ConformanceTest::parse("-- result\n# nothing\n").unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (1, "empty result section"));
        let e = ConformanceTest::parse("stray\n-- asm\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = ConformanceTest::parse("-- raw\n0x1 nothex\n").unwrap_err();
        assert_eq!(e.line, 2);
    }
}
