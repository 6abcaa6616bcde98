//! One frame's 512-byte stack, tracked per byte, with spilled registers in 8-byte slots.

use std::fmt;

use crate::domains::Scalar;

use super::ids::IdMap;
use super::reg::RegState;

/// Bytes of stack per frame.
pub const STACK_SIZE: usize = 512;
/// Number of 8-byte slots per frame.
pub const SLOTS: usize = STACK_SIZE / 8;

/// What is known about one stack byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackByte {
    /// Never written: reading it is an error.
    Invalid,
    /// Some initialised scalar byte.
    Misc,
    /// Known to be zero.
    Zero,
    /// Part of a spilled register (the slot's spill holds its full state).
    Spill,
}

impl StackByte {
    fn symbol(self) -> char {
        match self {
            StackByte::Invalid => '?',
            StackByte::Misc => 'm',
            StackByte::Zero => '0',
            StackByte::Spill => 'r',
        }
    }
}

/// What a fixed-offset stack read yields.
#[derive(Clone, Debug, PartialEq)]
pub enum StackRead {
    /// A full 8-byte spilled register, restored with its state.
    Fill(RegState),
    /// Initialised bytes that are all zero.
    Zero,
    /// Part of a spilled constant: these bytes' value (zero-extended).
    Const(u64),
    /// Initialised bytes of unknown value.
    Unknown,
}

/// Why a stack access is not allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackError {
    /// The byte at this offset (from r10) is uninitialised.
    Uninit {
        /// Offset of the first uninitialised byte.
        off: i64,
    },
    /// A part of a spilled pointer is read.
    PartialFill {
        /// Offset of the slot holding the pointer.
        slot_off: i64,
    },
}

/// One frame's stack.
#[derive(Clone, Debug, PartialEq)]
pub struct Stack {
    bytes: Vec<StackByte>,
    /// Spilled registers by slot number, sorted and without duplicates (sparse: a frame
    /// spills a few registers, and states are cloned and stored by the thousand).
    spills: Vec<(u8, RegState)>,
    /// Index of the lowest byte that is not [`StackByte::Invalid`] (`STACK_SIZE` when every
    /// byte is): every byte below it is invalid, so comparisons start there. Exact, because a
    /// byte only becomes invalid again in [`Stack::widen`], which recomputes it.
    low: usize,
}

impl Default for Stack {
    fn default() -> Self {
        Stack {
            bytes: vec![StackByte::Invalid; STACK_SIZE],
            spills: Vec::new(),
            low: STACK_SIZE,
        }
    }
}

/// Index of the byte at `off` (from r10), which the caller has checked is in `[-512, 0)`.
fn index(off: i64) -> usize {
    usize::try_from(off + STACK_SIZE as i64)
        .unwrap_or(0)
        .min(STACK_SIZE - 1)
}

impl Stack {
    /// An all-uninitialised stack.
    pub fn new() -> Self {
        Stack::default()
    }

    /// The byte at `off` (from r10), if it is inside the stack.
    pub fn byte(&self, off: i64) -> Option<StackByte> {
        if (-(STACK_SIZE as i64)..0).contains(&off) {
            self.bytes.get(index(off)).copied()
        } else {
            None
        }
    }

    /// The register spilled in the 8-byte slot starting at `off`, if any.
    pub fn spill(&self, off: i64) -> Option<&RegState> {
        if off % 8 != 0 || self.byte(off) != Some(StackByte::Spill) {
            return None;
        }
        self.spill_at(index(off) / 8)
    }

    /// The register spilled in slot `slot` (0 is the lowest), if any.
    fn spill_at(&self, slot: usize) -> Option<&RegState> {
        let slot = u8::try_from(slot).ok()?;
        self.spills
            .binary_search_by_key(&slot, |(s, _)| *s)
            .ok()
            .and_then(|i| self.spills.get(i))
            .map(|(_, r)| r)
    }

    /// Removes and returns the register spilled in slot `slot`.
    fn take_spill(&mut self, slot: usize) -> Option<RegState> {
        let slot = u8::try_from(slot).ok()?;
        let i = self.spills.binary_search_by_key(&slot, |(s, _)| *s).ok()?;
        Some(self.spills.remove(i).1)
    }

    /// Records `value` as spilled in slot `slot`.
    fn set_spill(&mut self, slot: usize, value: RegState) {
        let Ok(slot) = u8::try_from(slot) else {
            return;
        };
        match self.spills.binary_search_by_key(&slot, |(s, _)| *s) {
            Ok(i) => {
                if let Some(entry) = self.spills.get_mut(i) {
                    entry.1 = value;
                }
            }
            Err(i) => self.spills.insert(i, (slot, value)),
        }
    }

    /// Every spilled register with the offset of its slot.
    pub fn spills(&self) -> impl Iterator<Item = (i64, &RegState)> + '_ {
        self.spills.iter().filter_map(|(slot, r)| {
            let i = usize::from(*slot);
            let off = (i * 8) as i64 - STACK_SIZE as i64;
            (self.bytes.get(i * 8) == Some(&StackByte::Spill)).then_some((off, r))
        })
    }

    /// Mutable access to every spilled register.
    pub fn spills_mut(&mut self) -> impl Iterator<Item = &mut RegState> + '_ {
        self.spills.iter_mut().map(|(_, r)| r)
    }

    /// Turns the spill of every slot overlapping `[lo, hi)` into plain bytes: a spilled scalar's
    /// bytes become `Misc` (or `Zero` when it was the constant 0), a pointer's become `Misc`.
    fn break_spills(&mut self, lo: i64, hi: i64) {
        let first = index(lo) / 8;
        let last = index(hi - 1) / 8;
        for slot in first..=last {
            let Some(spilled) = self.take_spill(slot) else {
                continue;
            };
            let fill = if spilled.const_value() == Some(0) {
                StackByte::Zero
            } else {
                StackByte::Misc
            };
            for b in self.bytes.iter_mut().skip(slot * 8).take(8) {
                if *b == StackByte::Spill {
                    *b = fill;
                }
            }
        }
    }

    /// Records a `size`-byte store at constant offset `off` (inside the stack, checked by the
    /// caller). An aligned 8-byte store of an initialised register spills it with its full
    /// state; a smaller store of the constant 0 writes zero bytes; anything else writes
    /// initialised scalar bytes.
    pub fn write(&mut self, off: i64, size: u8, value: &RegState) {
        let hi = off + i64::from(size);
        self.break_spills(off, hi);
        let start = index(off);
        self.low = self.low.min(start);
        if size == 8 && off % 8 == 0 && !matches!(value, RegState::Uninit) {
            self.set_spill(start / 8, value.clone());
            for b in self.bytes.iter_mut().skip(start).take(8) {
                *b = StackByte::Spill;
            }
            return;
        }
        let fill = if value.const_value() == Some(0) {
            StackByte::Zero
        } else {
            StackByte::Misc
        };
        for b in self.bytes.iter_mut().skip(start).take(usize::from(size)) {
            *b = fill;
        }
    }

    /// Marks `[lo, hi)` as initialised unknown bytes (a store at a variable offset, or memory a
    /// helper writes), destroying any spill it touches.
    pub fn write_unknown(&mut self, lo: i64, hi: i64) {
        if lo >= hi {
            return;
        }
        self.break_spills(lo, hi);
        let start = index(lo);
        let len = usize::try_from(hi - lo).unwrap_or(0);
        if len > 0 {
            self.low = self.low.min(start);
        }
        for b in self.bytes.iter_mut().skip(start).take(len) {
            *b = StackByte::Misc;
        }
    }

    /// The first uninitialised byte in `[lo, hi)`, if any.
    pub fn first_uninit(&self, lo: i64, hi: i64) -> Option<i64> {
        (lo..hi).find(|&o| {
            self.byte(o) != Some(StackByte::Misc)
                && self.byte(o) != Some(StackByte::Zero)
                && self.byte(o) != Some(StackByte::Spill)
        })
    }

    /// Reads `size` bytes at constant offset `off` (inside the stack, checked by the caller).
    pub fn read(&self, off: i64, size: u8) -> Result<StackRead, StackError> {
        let hi = off + i64::from(size);
        if let Some(u) = self.first_uninit(off, hi) {
            return Err(StackError::Uninit { off: u });
        }
        if size == 8
            && off % 8 == 0
            && let Some(r) = self.spill(off)
        {
            return Ok(StackRead::Fill(r.clone()));
        }
        // A narrow read inside one slot holding a spilled constant reads its bytes.
        let slot_off = off.div_euclid(8) * 8;
        if hi <= slot_off + 8
            && let Some(v) = self.spill(slot_off).and_then(RegState::const_value)
        {
            let shift = 8 * u32::try_from(off - slot_off).unwrap_or(0);
            let bits = 8 * u32::from(size);
            let mask = if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            return Ok(StackRead::Const(v.checked_shr(shift).unwrap_or(0) & mask));
        }
        let mut all_zero = true;
        for o in off..hi {
            match self.byte(o) {
                Some(StackByte::Spill) => {
                    let slot_off = o.div_euclid(8) * 8;
                    match self.spill(slot_off) {
                        Some(r) if r.is_pointer() => {
                            return Err(StackError::PartialFill { slot_off });
                        }
                        Some(r) if r.const_value() == Some(0) => {}
                        _ => all_zero = false,
                    }
                }
                Some(StackByte::Zero) => {}
                _ => all_zero = false,
            }
        }
        Ok(if all_zero {
            StackRead::Zero
        } else {
            StackRead::Unknown
        })
    }

    /// The value of a `size`-byte map key stored at constant offset `off`, when it is known the
    /// way Linux knows it (`get_constant_map_key`): every byte from the key start is known zero
    /// within one slot, or the key starts `size` bytes before the end of a slot holding a spilled
    /// constant (then the whole spilled value is returned, as Linux does: when it is below a
    /// bound, so are the key's bytes).
    pub fn const_map_key(&self, off: i64, size: u8) -> Option<u64> {
        let size = i64::from(size);
        if size == 0 || off < -(STACK_SIZE as i64) || off.checked_add(size)? > 0 {
            return None;
        }
        let slot_off = off.div_euclid(8) * 8;
        let to_slot_end = slot_off + 8 - off;
        let zeros = (off..slot_off + 8)
            .take_while(|&o| self.byte(o) == Some(StackByte::Zero))
            .count();
        if i64::try_from(zeros).ok()? >= size {
            return Some(0);
        }
        if to_slot_end == size {
            return self.spill(slot_off).and_then(RegState::const_value);
        }
        None
    }

    /// Whether `self` (an old, safely explored stack) covers `cur`.
    pub fn covers(&self, cur: &Stack, ids: &mut IdMap) -> bool {
        // Slots below `self.low` are invalid in the old stack, which covers anything.
        for slot in self.low / 8..SLOTS {
            let range = slot * 8..slot * 8 + 8;
            let (Some(ob), Some(cb)) = (self.bytes.get(range.clone()), cur.bytes.get(range)) else {
                return false;
            };
            let old_spill = self.spill_at(slot);
            let cur_spill = cur.spill_at(slot);
            if ob[0] == StackByte::Spill && cb[0] == StackByte::Spill {
                match (old_spill, cur_spill) {
                    (Some(o), Some(c)) if o.covers(c, ids) => continue,
                    _ => return false,
                }
            }
            for (o, c) in ob.iter().zip(cb) {
                let ok = match (o, c) {
                    (StackByte::Invalid, _) => true,
                    (StackByte::Misc, StackByte::Misc | StackByte::Zero) => true,
                    (StackByte::Misc, StackByte::Spill) => {
                        cur_spill.is_some_and(|r| !r.is_pointer())
                    }
                    (StackByte::Zero, StackByte::Zero) => true,
                    (StackByte::Zero, StackByte::Spill) => {
                        cur_spill.is_some_and(|r| r.const_value() == Some(0))
                    }
                    (StackByte::Spill, StackByte::Misc | StackByte::Zero) => {
                        old_spill.and_then(RegState::as_scalar).is_some_and(|s| {
                            s.subsumes(&Scalar::unknown())
                                || (*c == StackByte::Zero && s.contains(0))
                        })
                    }
                    _ => false,
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }

    /// The widening of `self` (older) by `cur`, or `None` if a spill cannot be combined.
    pub fn widen(&self, cur: &Stack, heap: Option<u64>) -> Option<Stack> {
        let mut out = Stack::new();
        // Below both stacks' lowest valid byte everything stays invalid.
        for slot in self.low.min(cur.low) / 8..SLOTS {
            let lo = slot * 8;
            let (ob, cb) = (self.bytes.get(lo..lo + 8)?, cur.bytes.get(lo..lo + 8)?);
            let old_spill = self.spill_at(slot);
            let cur_spill = cur.spill_at(slot);
            if ob[0] == StackByte::Spill && cb[0] == StackByte::Spill {
                let w = old_spill?.widen(cur_spill?, heap)?;
                out.set_spill(slot, w);
                out.bytes.get_mut(lo..lo + 8)?.fill(StackByte::Spill);
                continue;
            }
            for (i, (o, c)) in ob.iter().zip(cb).enumerate() {
                let spill_of = |b: StackByte, s: Option<&RegState>| match b {
                    StackByte::Spill if s.is_some_and(RegState::is_pointer) => None,
                    StackByte::Spill => Some(StackByte::Misc),
                    other => Some(other),
                };
                let (o, c) = (spill_of(*o, old_spill)?, spill_of(*c, cur_spill)?);
                *out.bytes.get_mut(lo + i)? = match (o, c) {
                    (StackByte::Invalid, _) | (_, StackByte::Invalid) => StackByte::Invalid,
                    (StackByte::Zero, StackByte::Zero) => StackByte::Zero,
                    _ => StackByte::Misc,
                };
            }
        }
        out.low = out
            .bytes
            .iter()
            .position(|b| *b != StackByte::Invalid)
            .unwrap_or(STACK_SIZE);
        Some(out)
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for slot in (0..SLOTS).rev() {
            let lo = slot * 8;
            let Some(bytes) = self.bytes.get(lo..lo + 8) else {
                continue;
            };
            if bytes.iter().all(|b| *b == StackByte::Invalid) {
                continue;
            }
            let off = lo as i64 - STACK_SIZE as i64;
            if !first {
                write!(f, " ")?;
            }
            first = false;
            match self.spill_at(slot) {
                Some(r) if bytes.iter().all(|b| *b == StackByte::Spill) => {
                    write!(f, "fp{off}={r}")?
                }
                _ => {
                    write!(f, "fp{off}=")?;
                    for b in bytes.iter().rev() {
                        write!(f, "{}", b.symbol())?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_look_at_every_byte_written_deep_in_the_stack() {
        let mut old = Stack::new();
        old.write(-8, 8, &RegState::constant(1));
        let mut cur = old.clone();
        cur.write(-500, 4, &RegState::unknown());
        // Bytes the old stack never wrote cover anything.
        assert!(old.covers(&cur, &mut IdMap::new()));
        // A deep byte the old stack wrote must be initialised in the new one too.
        assert!(!cur.covers(&old, &mut IdMap::new()));
        let mut deep = Stack::new();
        deep.write_unknown(-512, -504);
        assert!(!deep.covers(&Stack::new(), &mut IdMap::new()));
        // Widening keeps what both wrote and forgets what only one did.
        let w = cur.widen(&old, None).unwrap();
        assert_eq!(w, old.widen(&old, None).unwrap());
        let w = cur.widen(&cur, None).unwrap();
        assert!(!w.covers(&old, &mut IdMap::new()));
        assert!(w.covers(&cur, &mut IdMap::new()));
    }

    #[test]
    fn spill_and_fill_keep_the_register_state() {
        let mut s = Stack::new();
        s.write(-8, 8, &RegState::Ctx { off: 0 });
        assert_eq!(s.read(-8, 8), Ok(StackRead::Fill(RegState::Ctx { off: 0 })));
        assert_eq!(s.read(-8, 4), Err(StackError::PartialFill { slot_off: -8 }));
        assert_eq!(s.to_string(), "fp-8=ctx()");
    }

    #[test]
    fn uninitialised_bytes_are_reported() {
        let mut s = Stack::new();
        s.write(-16, 4, &RegState::unknown());
        assert_eq!(s.read(-16, 4), Ok(StackRead::Unknown));
        assert_eq!(s.read(-16, 8), Err(StackError::Uninit { off: -12 }));
        assert_eq!(s.to_string(), "fp-16=????mmmm");
    }

    #[test]
    fn zero_stores_read_back_as_zero() {
        let mut s = Stack::new();
        s.write(-8, 4, &RegState::constant(0));
        s.write(-4, 4, &RegState::constant(0));
        assert_eq!(s.read(-8, 8), Ok(StackRead::Zero));
        s.write(-6, 1, &RegState::constant(3));
        assert_eq!(s.read(-8, 8), Ok(StackRead::Unknown));
    }

    #[test]
    fn narrow_reads_of_a_spilled_constant_see_its_bytes() {
        let mut s = Stack::new();
        s.write(-16, 8, &RegState::constant(0x1122_3344_5566_7788));
        assert_eq!(s.read(-16, 4), Ok(StackRead::Const(0x5566_7788)));
        assert_eq!(s.read(-12, 2), Ok(StackRead::Const(0x3344)));
        assert_eq!(s.read(-9, 1), Ok(StackRead::Const(0x11)));
    }

    #[test]
    fn constant_map_keys_are_known_as_linux_knows_them() {
        let mut s = Stack::new();
        s.write(-4, 4, &RegState::constant(0));
        assert_eq!(s.const_map_key(-4, 4), Some(0), "zero bytes");
        s.write(-4, 4, &RegState::constant(3));
        assert_eq!(
            s.const_map_key(-4, 4),
            None,
            "a narrow non-zero store is not tracked"
        );
        s.write(-16, 8, &RegState::constant(5));
        assert_eq!(s.const_map_key(-16, 8), Some(5), "8-byte spill, 8-byte key");
        assert_eq!(s.const_map_key(-12, 4), Some(5), "key ends at the slot end");
        assert_eq!(
            s.const_map_key(-16, 4),
            None,
            "spill size differs from key size"
        );
        s.write(-24, 8, &RegState::constant(0));
        assert_eq!(
            s.const_map_key(-24, 4),
            None,
            "a spilled 0 is not zero bytes"
        );
        s.write(-24, 8, &RegState::unknown());
        assert_eq!(s.const_map_key(-20, 4), None, "unknown spill");
        s.write(-36, 4, &RegState::constant(0));
        s.write(-32, 4, &RegState::constant(0));
        assert_eq!(s.const_map_key(-36, 8), None, "zero bytes across two slots");
        assert_eq!(s.const_map_key(-4, 8), None, "key past the frame");
        assert_eq!(s.const_map_key(-600, 4), None, "key below the frame");
        assert_eq!(s.const_map_key(-48, 4), None, "uninitialised");
    }

    #[test]
    fn partial_overwrite_breaks_a_pointer_spill() {
        let mut s = Stack::new();
        s.write(-8, 8, &RegState::Ctx { off: 0 });
        s.write(-8, 2, &RegState::constant(7));
        assert_eq!(s.spill(-8), None);
        assert_eq!(s.read(-8, 8), Ok(StackRead::Unknown));
    }

    #[test]
    fn old_invalid_covers_everything_but_not_the_reverse() {
        let old = Stack::new();
        let mut cur = Stack::new();
        cur.write(-8, 8, &RegState::Ctx { off: 0 });
        assert!(old.covers(&cur, &mut IdMap::new()));
        assert!(!cur.covers(&old, &mut IdMap::new()));
        let mut misc = Stack::new();
        misc.write(-8, 8, &RegState::constant(5));
        let mut unknown = Stack::new();
        unknown.write(-8, 8, &RegState::unknown());
        assert!(unknown.covers(&misc, &mut IdMap::new()));
        assert!(!misc.covers(&unknown, &mut IdMap::new()));
    }
}
