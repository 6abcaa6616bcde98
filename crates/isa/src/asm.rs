//! Assembler for the bpf_conformance text dialect.
//!
//! One instruction per line, `mnemonic operand, operand`, with `%r0`..`%r10` registers, decimal or
//! hexadecimal (optionally negative) immediates, memory operands `[%rN]`, `[%rN+off]`, `[%rN-off]`,
//! labels `name:`, jump targets given as a label or a relative `+N`/`-N`, and `#` comments. As in the
//! upstream assembler, the target `exit` names the first `exit` instruction unless a label of that
//! name exists.
//!
//! Mnemonics: the ALU operations `add sub mul div sdiv mod smod or and xor lsh rsh arsh mov neg` and
//! their 32-bit forms with a `32` suffix, `movsx{864,1664,3264,832,1632}`, `be/le/swap/bswap{16,32,64}`,
//! `ldx{b,h,w,dw}`, `ldxs{b,h,w}`, `st{b,h,w,dw}`, `stx{b,h,w,dw}`, `lddw`, `ja`, `ja32` (gotol),
//! `j{eq,gt,ge,set,ne,sgt,sge,lt,le,slt,sle}` and their `32` forms, `call N`, `call local label`,
//! `call %rN`, `exit`, and `lock [fetch] {add,and,or,xor}[32]`, `lock xchg[32]`, `lock cmpxchg[32]`.

use std::collections::HashMap;

use crate::decode::{AluOp, AtomicOp, EndianKind, Instruction, JmpOp, Operand, Size, Width};
use crate::insn::{Insn, op};

/// Assembly error: the 1-based source line and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct AsmError {
    /// 1-based line number in the source.
    pub line: usize,
    /// Human-readable reason.
    pub reason: String,
}

/// A jump or call destination before label resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A relative displacement given literally (`+N`, `-N`).
    Relative(i64),
    /// A label name (`exit` falls back to the first `exit` instruction).
    Label(String),
}

/// Which field of the first slot receives the resolved displacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// The 16-bit `off` field (ordinary jumps).
    Off,
    /// The 32-bit `imm` field (`ja32`, `call local`).
    Imm,
}

/// One assembled line: its slots and, for branches, the target to patch in.
struct Item {
    line: usize,
    pc: usize,
    slots: Vec<Insn>,
    fixup: Option<(Target, Field)>,
}

/// Assembles bpf_conformance assembly text into raw instruction slots.
pub fn assemble(src: &str) -> Result<Vec<Insn>, AsmError> {
    let mut labels: HashMap<String, usize> = HashMap::new();
    let mut items: Vec<Item> = Vec::new();
    let mut pc = 0usize;
    let mut first_exit: Option<usize> = None;
    for (idx, raw) in src.lines().enumerate() {
        let line = idx + 1;
        let err = |reason: String| AsmError { line, reason };
        let mut text = raw.split('#').next().unwrap_or("").trim();
        // Leading labels (`name:`), possibly followed by an instruction on the same line.
        while let Some((name, rest)) = split_label(text) {
            if labels.insert(name.to_string(), pc).is_some() {
                return Err(err(format!("duplicate label `{name}`")));
            }
            text = rest.trim();
        }
        if text.is_empty() {
            continue;
        }
        let (slots, fixup) = parse_instruction(text).map_err(err)?;
        if first_exit.is_none() && slots.first().is_some_and(|s| *s == EXIT_SLOT) {
            first_exit = Some(pc);
        }
        let n = slots.len();
        items.push(Item {
            line,
            pc,
            slots,
            fixup,
        });
        pc += n;
    }
    let mut out = Vec::with_capacity(pc);
    for item in items {
        let mut slots = item.slots;
        if let Some((target, field)) = item.fixup {
            let err = |reason: String| AsmError {
                line: item.line,
                reason,
            };
            let disp = match target {
                Target::Relative(d) => d,
                Target::Label(name) => {
                    let dest = labels
                        .get(&name)
                        .copied()
                        .or(if name == "exit" { first_exit } else { None })
                        .ok_or_else(|| err(format!("undefined label `{name}`")))?;
                    // Both values are bounded by the number of source lines.
                    dest as i64 - item.pc as i64 - 1
                }
            };
            let Some(first) = slots.first_mut() else {
                return Err(err("internal: branch without a slot".to_string()));
            };
            match field {
                Field::Off => {
                    first.off = i16::try_from(disp).map_err(|_| {
                        err(format!("jump displacement {disp} does not fit in 16 bits"))
                    })?;
                }
                Field::Imm => {
                    first.imm = i32::try_from(disp)
                        .map_err(|_| err(format!("displacement {disp} does not fit in 32 bits")))?;
                }
            }
        }
        out.extend(slots);
    }
    Ok(out)
}

const EXIT_SLOT: Insn = Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0);

/// Splits `name: rest` when the text starts with an identifier followed by a colon.
fn split_label(text: &str) -> Option<(&str, &str)> {
    let (name, rest) = text.split_once(':')?;
    is_identifier(name).then_some((name, rest))
}

/// Label names: ASCII letters, digits, `_` and `.`, not starting with a digit.
fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

type Parsed = (Vec<Insn>, Option<(Target, Field)>);

fn parse_instruction(text: &str) -> Result<Parsed, String> {
    let (mnemonic, rest) = match text.split_once(char::is_whitespace) {
        Some((m, r)) => (m, r.trim()),
        None => (text, ""),
    };
    let mnemonic = mnemonic.to_ascii_lowercase();
    if mnemonic == "lock" {
        return parse_lock(rest).map(|i| (i.encode(), None));
    }
    let ops: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(',').map(str::trim).collect()
    };
    let fixed = |i: Instruction| Ok((i.encode(), None));
    let m = mnemonic.as_str();
    match m {
        "exit" => {
            arity(&ops, 0)?;
            fixed(Instruction::Exit)
        }
        "lddw" => {
            arity(&ops, 2)?;
            fixed(Instruction::LoadImm64 {
                dst: register(ops[0])?,
                pseudo: 0,
                imm: imm64(ops[1])?,
            })
        }
        "ja" | "ja32" => {
            arity(&ops, 1)?;
            let (opcode, field) = if m == "ja" {
                (op::JMP | op::JA, Field::Off)
            } else {
                (op::JMP32 | op::JA, Field::Imm)
            };
            Ok((
                vec![Insn::new(opcode, 0, 0, 0, 0)],
                Some((target(ops[0])?, field)),
            ))
        }
        "call" => parse_call(rest),
        _ => {
            if let Some(r) = parse_alu(m, &ops)? {
                return fixed(r);
            }
            if let Some(r) = parse_mem(m, &ops)? {
                return fixed(r);
            }
            if let Some(r) = parse_jump(m, &ops)? {
                return Ok(r);
            }
            Err(format!("unknown mnemonic `{m}`"))
        }
    }
}

fn arity(ops: &[&str], n: usize) -> Result<(), String> {
    if ops.len() == n {
        Ok(())
    } else {
        Err(format!("expected {n} operand(s), found {}", ops.len()))
    }
}

fn register(s: &str) -> Result<u8, String> {
    let n = s
        .strip_prefix("%r")
        .ok_or_else(|| format!("expected a register %r0..%r10, found `{s}`"))?;
    match n.parse::<u8>() {
        Ok(r) if r <= 10 && !n.starts_with('+') => Ok(r),
        _ => Err(format!("invalid register `{s}` (expected %r0..%r10)")),
    }
}

/// Parses a decimal or `0x` hexadecimal integer with an optional sign.
fn integer(s: &str) -> Result<i128, String> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let parsed = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else {
        body.parse::<u64>()
    };
    let v = i128::from(parsed.map_err(|_| format!("invalid number `{s}`"))?);
    Ok(if neg { -v } else { v })
}

/// A 32-bit immediate: signed, or unsigned up to `u32::MAX` (reinterpreted as two's complement).
fn imm32(s: &str) -> Result<i32, String> {
    let v = integer(s)?;
    if let Ok(x) = i32::try_from(v) {
        Ok(x)
    } else if let Ok(x) = u32::try_from(v) {
        Ok(x as i32)
    } else {
        Err(format!("immediate `{s}` does not fit in 32 bits"))
    }
}

fn imm64(s: &str) -> Result<u64, String> {
    let v = integer(s)?;
    if let Ok(x) = i64::try_from(v) {
        Ok(x as u64)
    } else {
        u64::try_from(v).map_err(|_| format!("immediate `{s}` does not fit in 64 bits"))
    }
}

fn operand(s: &str) -> Result<Operand, String> {
    if s.starts_with('%') {
        register(s).map(Operand::Reg)
    } else {
        imm32(s).map(Operand::Imm)
    }
}

/// Parses `[%rN]`, `[%rN+off]` or `[%rN-off]`.
fn memory(s: &str) -> Result<(u8, i16), String> {
    let inner = s
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("expected a memory operand [%rN+off], found `{s}`"))?;
    let inner: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
    let split = inner.find(['+', '-']);
    let (base, off) = match split {
        Some(i) => (&inner[..i], &inner[i..]),
        None => (inner.as_str(), "0"),
    };
    let off = integer(off)?;
    let off = i16::try_from(off).map_err(|_| format!("offset {off} does not fit in 16 bits"))?;
    Ok((register(base)?, off))
}

fn target(s: &str) -> Result<Target, String> {
    if s.starts_with(['+', '-']) || s.starts_with(|c: char| c.is_ascii_digit()) {
        let v = integer(s)?;
        let v = i64::try_from(v).map_err(|_| format!("jump offset `{s}` out of range"))?;
        Ok(Target::Relative(v))
    } else if is_identifier(s) {
        Ok(Target::Label(s.to_string()))
    } else {
        Err(format!("invalid jump target `{s}`"))
    }
}

fn parse_call(rest: &str) -> Result<Parsed, String> {
    if let Some(label) = rest.strip_prefix("local") {
        let label = label.trim();
        let t = target(label)?;
        let slot = Insn::new(op::JMP | op::CALL, 0, op::PSEUDO_CALL, 0, 0);
        return Ok((vec![slot], Some((t, Field::Imm))));
    }
    if rest.starts_with('%') {
        let reg = register(rest)?;
        return Ok((Instruction::Callx { reg }.encode(), None));
    }
    if rest.is_empty() {
        return Err("call needs a helper number, `local label` or a register".to_string());
    }
    Ok((
        Instruction::Call {
            helper: imm32(rest)?,
        }
        .encode(),
        None,
    ))
}

/// Splits a `32` suffix off an ALU or jump mnemonic.
fn width_of(m: &str) -> (&str, Width) {
    match m.strip_suffix("32") {
        Some(base) => (base, Width::W32),
        None => (m, Width::W64),
    }
}

fn parse_alu(m: &str, ops: &[&str]) -> Result<Option<Instruction>, String> {
    let movsx = match m {
        "movsx864" => Some((Width::W64, 8)),
        "movsx1664" => Some((Width::W64, 16)),
        "movsx3264" => Some((Width::W64, 32)),
        "movsx832" => Some((Width::W32, 8)),
        "movsx1632" => Some((Width::W32, 16)),
        _ => None,
    };
    if let Some((width, bits)) = movsx {
        arity(ops, 2)?;
        return Ok(Some(Instruction::MovSx {
            width,
            dst: register(ops[0])?,
            src: register(ops[1])?,
            bits,
        }));
    }
    for (prefix, kind) in [
        ("be", EndianKind::ToBe),
        ("le", EndianKind::ToLe),
        ("bswap", EndianKind::Swap),
        ("swap", EndianKind::Swap),
    ] {
        if let Some(bits) = m.strip_prefix(prefix) {
            let bits = match bits {
                "16" => 16,
                "32" => 32,
                "64" => 64,
                _ => continue,
            };
            arity(ops, 1)?;
            return Ok(Some(Instruction::Endian {
                dst: register(ops[0])?,
                bits,
                kind,
            }));
        }
    }
    let (base, width) = width_of(m);
    let aop = match base {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "sdiv" => AluOp::SDiv,
        "or" => AluOp::Or,
        "and" => AluOp::And,
        "lsh" => AluOp::Lsh,
        "rsh" => AluOp::Rsh,
        "mod" => AluOp::Mod,
        "smod" => AluOp::SMod,
        "xor" => AluOp::Xor,
        "arsh" => AluOp::Arsh,
        "neg" => {
            arity(ops, 1)?;
            return Ok(Some(Instruction::Neg {
                width,
                dst: register(ops[0])?,
            }));
        }
        "mov" => {
            arity(ops, 2)?;
            return Ok(Some(Instruction::Mov {
                width,
                dst: register(ops[0])?,
                src: operand(ops[1])?,
            }));
        }
        _ => return Ok(None),
    };
    arity(ops, 2)?;
    Ok(Some(Instruction::Alu {
        width,
        op: aop,
        dst: register(ops[0])?,
        src: operand(ops[1])?,
    }))
}

fn size_suffix(s: &str) -> Option<Size> {
    Some(match s {
        "b" => Size::B,
        "h" => Size::H,
        "w" => Size::W,
        "dw" => Size::DW,
        _ => return None,
    })
}

fn parse_mem(m: &str, ops: &[&str]) -> Result<Option<Instruction>, String> {
    if let Some(sz) = m.strip_prefix("ldxs").and_then(size_suffix) {
        if sz == Size::DW {
            return Err("ldxsdw does not exist (sign extension needs a smaller size)".to_string());
        }
        arity(ops, 2)?;
        let (src, off) = memory(ops[1])?;
        return Ok(Some(Instruction::Load {
            size: sz,
            dst: register(ops[0])?,
            src,
            off,
            sign_extend: true,
        }));
    }
    if let Some(sz) = m.strip_prefix("ldx").and_then(size_suffix) {
        arity(ops, 2)?;
        let (src, off) = memory(ops[1])?;
        return Ok(Some(Instruction::Load {
            size: sz,
            dst: register(ops[0])?,
            src,
            off,
            sign_extend: false,
        }));
    }
    if let Some(sz) = m.strip_prefix("stx").and_then(size_suffix) {
        arity(ops, 2)?;
        let (dst, off) = memory(ops[0])?;
        return Ok(Some(Instruction::Store {
            size: sz,
            dst,
            off,
            src: Operand::Reg(register(ops[1])?),
        }));
    }
    if let Some(sz) = m.strip_prefix("st").and_then(size_suffix) {
        arity(ops, 2)?;
        let (dst, off) = memory(ops[0])?;
        return Ok(Some(Instruction::Store {
            size: sz,
            dst,
            off,
            src: Operand::Imm(imm32(ops[1])?),
        }));
    }
    Ok(None)
}

fn parse_jump(m: &str, ops: &[&str]) -> Result<Option<Parsed>, String> {
    let (base, width) = width_of(m);
    let jop = match base {
        "jeq" => JmpOp::Eq,
        "jgt" => JmpOp::Gt,
        "jge" => JmpOp::Ge,
        "jset" => JmpOp::Set,
        "jne" => JmpOp::Ne,
        "jsgt" => JmpOp::Sgt,
        "jsge" => JmpOp::Sge,
        "jlt" => JmpOp::Lt,
        "jle" => JmpOp::Le,
        "jslt" => JmpOp::Slt,
        "jsle" => JmpOp::Sle,
        _ => return Ok(None),
    };
    arity(ops, 3)?;
    let insn = Instruction::Jump {
        width,
        op: jop,
        dst: register(ops[0])?,
        src: operand(ops[1])?,
        off: 0,
    };
    Ok(Some((insn.encode(), Some((target(ops[2])?, Field::Off)))))
}

/// Parses the text after `lock`: `[fetch] op[32] [%rN+off], %rM`.
fn parse_lock(rest: &str) -> Result<Instruction, String> {
    let (mut word, mut rest) = rest
        .split_once(char::is_whitespace)
        .ok_or_else(|| "lock needs an operation and two operands".to_string())?;
    let mut fetch = false;
    if word == "fetch" {
        fetch = true;
        (word, rest) = rest
            .trim_start()
            .split_once(char::is_whitespace)
            .ok_or_else(|| "lock fetch needs an operation and two operands".to_string())?;
    }
    let (base, width) = width_of(word);
    let aop = match base {
        "add" => AtomicOp::Add,
        "and" => AtomicOp::And,
        "or" => AtomicOp::Or,
        "xor" => AtomicOp::Xor,
        "xchg" => AtomicOp::Xchg,
        "cmpxchg" => AtomicOp::Cmpxchg,
        other => return Err(format!("unknown atomic operation `{other}`")),
    };
    let ops: Vec<&str> = rest.split(',').map(str::trim).collect();
    arity(&ops, 2)?;
    let (dst, off) = memory(ops[0])?;
    let src = register(ops[1])?;
    Ok(Instruction::Atomic {
        size: if width == Width::W32 {
            Size::W
        } else {
            Size::DW
        },
        op: aop,
        fetch: fetch || matches!(aop, AtomicOp::Xchg | AtomicOp::Cmpxchg),
        dst,
        src,
        off,
    })
}

#[cfg(test)]
mod tests;
