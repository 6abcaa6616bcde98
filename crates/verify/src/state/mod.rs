//! The abstract state of one exploration path: call frames (registers and stacks), and the
//! references and locks held.
//!
//! Display follows the kernel log: the innermost frame's initialised registers, then its stack
//! slots that hold something, e.g. `R1=ctx() R2=pkt(off=14,r=14) R10=fp0 fp-8=mmmmmmmm`.

mod frame;
mod ids;
mod reg;
mod stack;

use std::fmt;

use kflex_object::ProgType;

pub use frame::{Frame, NUM_REGS};
pub use ids::IdMap;
pub use reg::{RegState, fmt_scalar};
pub use stack::{STACK_SIZE, Stack, StackByte, StackError, StackRead};

use crate::Location;
use crate::check::resources::{LockTarget, ResourceView, Resources};

/// Maximum call depth (frames), as in Linux.
pub const MAX_CALL_FRAMES: usize = 8;

/// Everything known on one path at one instruction.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    /// Call frames, the entry function first, the innermost last (never empty).
    pub frames: Vec<Frame>,
    /// References and locks held.
    pub resources: Resources,
}

impl State {
    /// The state at the program entry: r1 holds the context, r10 the frame pointer.
    pub fn entry(_prog_type: ProgType) -> Self {
        let mut frame = Frame::new(0, 0, None);
        frame.regs[1] = RegState::Ctx { off: 0 };
        State {
            frames: vec![frame],
            resources: Resources::default(),
        }
    }

    /// The innermost frame.
    pub fn cur(&self) -> &Frame {
        // The frame list is never empty: it is created with one frame and `pop_frame` keeps one.
        self.frames
            .last()
            .unwrap_or_else(|| unreachable!("state without frames"))
    }

    /// The innermost frame, mutably.
    pub fn cur_mut(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .unwrap_or_else(|| unreachable!("state without frames"))
    }

    /// Call depth of the innermost frame (0 for the entry function).
    pub fn depth(&self) -> u8 {
        u8::try_from(self.frames.len().saturating_sub(1)).unwrap_or(u8::MAX)
    }

    /// Register `r` of the innermost frame.
    pub fn reg(&self, r: u8) -> &RegState {
        self.cur().reg(r)
    }

    /// Sets register `r` of the innermost frame (ignored for numbers above r10).
    pub fn set_reg(&mut self, r: u8, value: RegState) {
        if let Some(slot) = self.cur_mut().regs.get_mut(usize::from(r)) {
            *slot = value;
        }
    }

    /// The stack of frame `frame`, if it exists.
    pub fn stack(&self, frame: u8) -> Option<&Stack> {
        self.frames.get(usize::from(frame)).map(|f| &f.stack)
    }

    /// The stack of frame `frame`, mutably.
    pub fn stack_mut(&mut self, frame: u8) -> Option<&mut Stack> {
        self.frames
            .get_mut(usize::from(frame))
            .map(|f| &mut f.stack)
    }

    /// Applies `f` to every register of every frame and every spilled register.
    pub fn for_each_value_mut(&mut self, mut f: impl FnMut(&mut RegState)) {
        for frame in &mut self.frames {
            frame.regs.iter_mut().for_each(&mut f);
            frame.stack.spills_mut().for_each(&mut f);
        }
    }

    /// Whether `self` (a state already explored, or being explored, at this instruction) covers
    /// `cur`, so that exploring `cur` cannot find anything new.
    pub fn covers(&self, cur: &State) -> bool {
        if self.frames.len() != cur.frames.len()
            || self.resources.refs.len() != cur.resources.refs.len()
            || self.resources.locks.len() != cur.resources.locks.len()
        {
            return false;
        }
        let mut ids = IdMap::new();
        let refs_match = self
            .resources
            .refs
            .iter()
            .zip(&cur.resources.refs)
            .all(|(o, c)| {
                o.kind == c.kind && o.acquired_at == c.acquired_at && ids.check(o.id, c.id)
            });
        let locks_match = self
            .resources
            .locks
            .iter()
            .zip(&cur.resources.locks)
            .all(|(o, c)| {
                same_lock_word(o.target, c.target, &mut ids)
                    && o.acquired_at == c.acquired_at
                    && ids.check(o.id, c.id)
            });
        refs_match
            && locks_match
            && self
                .frames
                .iter()
                .zip(&cur.frames)
                .all(|(o, c)| o.covers(c, &mut ids))
    }

    /// The widening of `self` (an older state at a loop head) by `cur`: a state covering both
    /// with scalar bounds widened. `None` when the states differ in shape (frames, references,
    /// pointer kinds), in which case exploration simply continues with `cur`.
    pub fn widen(&self, cur: &State, heap: Option<u64>) -> Option<State> {
        if self.frames.len() != cur.frames.len() || self.resources != cur.resources {
            return None;
        }
        let frames = self
            .frames
            .iter()
            .zip(&cur.frames)
            .map(|(o, c)| o.widen(c, heap))
            .collect::<Option<Vec<_>>>()?;
        Some(State {
            frames,
            resources: cur.resources.clone(),
        })
    }

    fn holders<T>(&self, mut pick: impl FnMut(&RegState) -> Option<T>) -> Vec<(Location, T)> {
        let mut out = Vec::new();
        for (depth, frame) in self.frames.iter().enumerate() {
            let depth = u8::try_from(depth).unwrap_or(u8::MAX);
            for (off, r) in frame.stack.spills() {
                if let Some(t) = pick(r) {
                    let offset = i16::try_from(off).unwrap_or(i16::MIN);
                    out.push((
                        Location::Stack {
                            frame: depth,
                            offset,
                        },
                        t,
                    ));
                }
            }
        }
        for (i, r) in self.cur().regs.iter().enumerate() {
            if let Some(t) = pick(r) {
                out.push((Location::Reg(u8::try_from(i).unwrap_or(0)), t));
            }
        }
        out
    }
}

/// Whether two lock targets name the same word, with map value ids mapped through `ids`.
fn same_lock_word(old: LockTarget, cur: LockTarget, ids: &mut IdMap) -> bool {
    match (old, cur) {
        (
            LockTarget::MapValue {
                map: ma,
                value: va,
                off: oa,
            },
            LockTarget::MapValue {
                map: mb,
                value: vb,
                off: ob,
            },
        ) => ma == mb && oa == ob && ids.check(va, vb),
        (a, b) => a == b,
    }
}

impl ResourceView for State {
    fn resources(&self) -> &Resources {
        &self.resources
    }

    fn ref_holders(&self) -> Vec<(Location, u32)> {
        self.holders(|r| if r.is_or_null() { None } else { r.ref_id() })
    }

    fn lock_holders(&self) -> Vec<(Location, LockTarget)> {
        self.holders(|r| match r {
            RegState::MapValue {
                map,
                off,
                id,
                or_null: false,
            } => off.is_const().map(|o| LockTarget::MapValue {
                map: *map,
                value: *id,
                off: o as i64,
            }),
            RegState::Heap { .. } => Some(LockTarget::Heap { off: None }),
            _ => None,
        })
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.depth() > 0 {
            write!(f, "frame{}: ", self.depth())?;
        }
        write!(f, "{}", self.cur())?;
        if !self.resources.refs.is_empty() {
            let refs: Vec<String> = self
                .resources
                .refs
                .iter()
                .map(|r| format!("{}", r.id))
                .collect();
            write!(f, " refs={}", refs.join(","))?;
        }
        if !self.resources.locks.is_empty() {
            write!(f, " locks={}", self.resources.locks.len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domains::Scalar;

    #[test]
    fn entry_state_display_is_kernel_style() {
        let mut s = State::entry(ProgType::Xdp);
        s.set_reg(
            2,
            RegState::Packet {
                id: 0,
                off: Scalar::constant(14),
                fixed: 14,
                range: 14,
            },
        );
        s.cur_mut().stack.write(-8, 8, &RegState::constant(3));
        s.cur_mut().stack.write(-16, 4, &RegState::unknown());
        assert_eq!(
            s.to_string(),
            "R1=ctx() R2=pkt(off=14,r=14) R10=fp0 fp-8=3 fp-16=????mmmm"
        );
    }

    #[test]
    fn covers_requires_consistent_ids() {
        let nullable = |id| RegState::MapValue {
            map: 0,
            off: Scalar::constant(0),
            id,
            or_null: true,
        };
        let mut old = State::entry(ProgType::Xdp);
        old.set_reg(6, nullable(1));
        old.set_reg(7, nullable(1));
        let mut cur = State::entry(ProgType::Xdp);
        cur.set_reg(6, nullable(5));
        cur.set_reg(7, nullable(5));
        assert!(old.covers(&cur));
        cur.set_reg(7, nullable(6));
        assert!(!old.covers(&cur), "old's copies share an id, cur's do not");
    }

    #[test]
    fn uninit_covers_and_widening_covers_both() {
        let mut a = State::entry(ProgType::Xdp);
        a.set_reg(0, RegState::constant(1));
        let mut b = a.clone();
        b.set_reg(0, RegState::constant(2));
        assert!(!a.covers(&b));
        let w = a.widen(&b, None).unwrap();
        assert!(w.covers(&a) && w.covers(&b));
        let mut fresh = State::entry(ProgType::Xdp);
        fresh.set_reg(1, RegState::Uninit);
        assert!(fresh.covers(&a));
    }
}
