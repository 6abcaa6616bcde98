//! One call frame: registers r0..r10 and the frame's stack.

use std::fmt;

use crate::domains::Scalar;

use super::ids::IdMap;
use super::reg::RegState;
use super::stack::Stack;

/// Number of registers (r0..r10).
pub const NUM_REGS: usize = 11;

/// The state of one function invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Registers r0..r10.
    pub regs: [RegState; NUM_REGS],
    /// The frame's 512-byte stack.
    pub stack: Stack,
    /// The `call` instruction that created this frame (`None` for the entry function).
    pub callsite: Option<usize>,
    /// First instruction of the function this frame runs.
    pub subprog: usize,
}

impl Frame {
    /// A fresh frame at call depth `depth` running the function at `subprog`: every register
    /// uninitialised except r10, the read-only frame pointer.
    pub fn new(depth: u8, subprog: usize, callsite: Option<usize>) -> Self {
        let mut regs: [RegState; NUM_REGS] = std::array::from_fn(|_| RegState::Uninit);
        regs[10] = RegState::Stack {
            frame: depth,
            off: Scalar::constant(0),
        };
        Frame {
            regs,
            stack: Stack::new(),
            callsite,
            subprog,
        }
    }

    /// The register `r` (r0..r10); out-of-range numbers read as uninitialised.
    pub fn reg(&self, r: u8) -> &RegState {
        self.regs.get(usize::from(r)).unwrap_or(&RegState::Uninit)
    }

    /// Whether `self` (old) covers `cur`.
    pub fn covers(&self, cur: &Frame, ids: &mut IdMap) -> bool {
        self.callsite == cur.callsite
            && self.subprog == cur.subprog
            && self
                .regs
                .iter()
                .zip(&cur.regs)
                .all(|(o, c)| o.covers(c, ids))
            && self.stack.covers(&cur.stack, ids)
    }

    /// Forgets the numbers in registers outside `live` (bit `i` for register `i`): no
    /// continuation reads them before writing them, so they cannot matter, and forgetting them
    /// lets states that differ only there prune each other. Pointers are kept, since the
    /// cancellation table may name any pointer register as the holder of a resource.
    pub fn forget_dead_numbers(&mut self, live: u16) {
        for (i, r) in self.regs.iter_mut().enumerate() {
            let dead = live & 1u16.checked_shl(i as u32).unwrap_or(0) == 0;
            if dead && matches!(r, RegState::Scalar(_)) {
                *r = RegState::Uninit;
            }
        }
    }

    /// The widening of `self` (older) by `cur`, if every register and slot can be combined
    /// (`heap`: see [`RegState::widen`]).
    pub fn widen(&self, cur: &Frame, heap: Option<u64>) -> Option<Frame> {
        if self.callsite != cur.callsite || self.subprog != cur.subprog {
            return None;
        }
        let mut regs: [RegState; NUM_REGS] = std::array::from_fn(|_| RegState::Uninit);
        for (i, out) in regs.iter_mut().enumerate() {
            *out = self.regs.get(i)?.widen(cur.regs.get(i)?, heap)?;
        }
        Some(Frame {
            regs,
            stack: self.stack.widen(&cur.stack, heap)?,
            callsite: self.callsite,
            subprog: self.subprog,
        })
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (i, r) in self.regs.iter().enumerate() {
            if matches!(r, RegState::Uninit) {
                continue;
            }
            if !first {
                write!(f, " ")?;
            }
            first = false;
            write!(f, "R{i}={r}")?;
        }
        let stack = self.stack.to_string();
        if !stack.is_empty() {
            write!(f, " {stack}")?;
        }
        Ok(())
    }
}
