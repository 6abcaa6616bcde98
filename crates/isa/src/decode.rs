//! Checked decoding of eBPF programs into [`Instruction`]s, and the inverse encoder.
//!
//! [`Program::decode`] validates a whole slice of raw slots: every opcode must be defined by RFC 9669
//! (cpu v1..v4) or by the Linux extensions kflex supports (`may_goto`, `addr_space_cast`,
//! load-acquire/store-release, `gotol`, `callx`), every reserved field must be zero, every used register
//! must be r0..r10, and every control-flow target must land on the first slot of an instruction inside
//! the program. Decoding never panics, whatever the input.

mod encode;
mod slot;
mod types;

pub use encode::encode_all;
pub use slot::MAX_REG;
pub use types::{AluOp, AtomicOp, EndianKind, Instruction, JmpOp, Operand, Size, Width};

use crate::insn::Insn;

/// Error from [`Program::decode`]: the slot index and why it is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instruction {pc}: {reason}")]
pub struct DecodeError {
    /// Index of the offending slot.
    pub pc: usize,
    /// Human-readable reason.
    pub reason: String,
}

/// A decoded, structurally valid program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    slots: Vec<Insn>,
    insns: Vec<Option<Instruction>>,
}

impl Program {
    /// Decodes and validates a whole program (see the module documentation for the rules).
    pub fn decode(slots: &[Insn]) -> Result<Program, DecodeError> {
        if slots.is_empty() {
            return Err(DecodeError {
                pc: 0,
                reason: "empty program".to_string(),
            });
        }
        let mut insns: Vec<Option<Instruction>> = Vec::with_capacity(slots.len());
        let mut pc = 0;
        while let Some(&first) = slots.get(pc) {
            let second = pc.checked_add(1).and_then(|n| slots.get(n)).copied();
            let insn =
                Instruction::decode(first, second).map_err(|reason| DecodeError { pc, reason })?;
            insns.push(Some(insn));
            if insn.slot_count() == 2 {
                insns.push(None);
            }
            pc += insn.slot_count();
        }
        for (pc, insn) in insns.iter().enumerate() {
            let Some(insn) = insn else { continue };
            if insn.relative_target().is_none() {
                continue;
            }
            let err = |what: &str| DecodeError {
                pc,
                reason: format!(
                    "{} target {} {what}",
                    target_kind(insn),
                    pc as i64 + 1 + insn.relative_target().unwrap_or(0)
                ),
            };
            match insn.target(pc) {
                Some(t) if t < insns.len() => {
                    if insns.get(t).is_some_and(Option::is_none) {
                        return Err(err("is the second slot of a lddw"));
                    }
                }
                _ => {
                    return Err(err(&format!("is outside the program (0..{})", insns.len())));
                }
            }
        }
        let last = insns.iter().rev().find_map(|i| i.as_ref());
        let last_pc = insns.iter().rposition(Option::is_some).unwrap_or(0);
        match last {
            Some(Instruction::Exit | Instruction::Ja { .. }) => {}
            _ => {
                return Err(DecodeError {
                    pc: last_pc,
                    reason: "last instruction must be exit or an unconditional jump".to_string(),
                });
            }
        }
        Ok(Program {
            slots: slots.to_vec(),
            insns,
        })
    }

    /// The raw slots the program was decoded from.
    pub fn slots(&self) -> &[Insn] {
        &self.slots
    }

    /// Number of slots (a `lddw` counts twice).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: an empty program does not decode.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The instruction starting at slot `pc`; `None` for the second slot of a `lddw` or out of range.
    pub fn get(&self, pc: usize) -> Option<&Instruction> {
        self.insns.get(pc).and_then(Option::as_ref)
    }

    /// Iterates over `(pc, instruction)` pairs in slot order, skipping `lddw` second slots.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Instruction)> + '_ {
        self.insns
            .iter()
            .enumerate()
            .filter_map(|(pc, i)| i.as_ref().map(|i| (pc, i)))
    }
}

fn target_kind(insn: &Instruction) -> &'static str {
    match insn {
        Instruction::CallLocal { .. } => "call",
        Instruction::MayGoto { .. } => "may_goto",
        Instruction::LoadImm64 { .. } => "subprogram address",
        _ => "jump",
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
