//! The exploration engine: depth-first over every feasible path, with a stack of pending branch
//! states, state pruning by subsumption at prune points (jump targets and branch fall-throughs),
//! widening at loop heads, the complexity budget, and the exploration log.
//!
//! Pruning is sound for states still being explored (inside a loop): exploration only ends
//! without error once every pending state has been explored, so every stored state's
//! continuations are eventually all checked, and a state it covers has no behaviour it lacks.

use std::fmt::Write as _;
use std::time::Instant;

use kflex_isa::decode::Instruction;

use crate::check::mem::{self, Site};
use crate::check::resources::live_resources;
use crate::check::{CheckResult, Cx, alu, branch, call, exit};
use crate::cycles::Cycles;
use crate::error::VerifyError;
use crate::liveness::{self, Liveness};
use crate::state::State;
use crate::{Stats, TerminationKind, VerifiedProgram, VerifyInput, VerifyOptions, hints};

/// Unpruned arrivals at a loop head after which states there are widened. Two: one more
/// iteration than that is rarely more precise, and every extra round before widening repeats the
/// whole loop body, subprogram calls included (the data-structure batch loops re-explored their
/// per-op function for each of the first counter values: 2 instead of 4 cut their processed
/// instructions by 30-40% with the same guard decisions).
const WIDEN_AFTER: u32 = 2;
/// States stored per instruction for pruning (beyond this, states are still explored, just
/// not stored).
const MAX_STATES_PER_INSN: usize = 64;

/// Static shape of the program: where pruning and widening happen.
struct Shape {
    /// Jump targets, fall-throughs of conditional jumps and call returns.
    prune_point: Vec<bool>,
    /// Targets of backward jumps, where states are widened (all of them, also those of jumps
    /// that close no cycle: only termination points are restricted to cycles).
    loop_head: Vec<bool>,
}

impl Shape {
    fn of(input: &VerifyInput<'_>) -> Self {
        let len = input.program.len();
        let mut prune_point = vec![false; len];
        let mut loop_head = vec![false; len];
        let mark = |v: &mut Vec<bool>, pc: usize| {
            if let Some(b) = v.get_mut(pc) {
                *b = true;
            }
        };
        for (pc, insn) in input.program.iter() {
            match insn {
                Instruction::Ja { .. } | Instruction::Jump { .. } | Instruction::MayGoto { .. } => {
                    if let Some(t) = insn.target(pc) {
                        mark(&mut prune_point, t);
                        if t <= pc {
                            mark(&mut loop_head, t);
                        }
                    }
                    if !matches!(insn, Instruction::Ja { .. }) {
                        mark(&mut prune_point, pc + 1);
                    }
                }
                Instruction::CallLocal { .. } | Instruction::Call { .. } => {
                    mark(&mut prune_point, pc + 1)
                }
                _ => {}
            }
        }
        Shape {
            prune_point,
            loop_head,
        }
    }
}

/// Exploration bookkeeping.
struct Engine<'a> {
    cx: Cx<'a>,
    shape: Shape,
    visited: Vec<Vec<State>>,
    visits: Vec<u32>,
    pending: Vec<(usize, State)>,
    stats: Stats,
    log: String,
    start: Instant,
    stored: u64,
    /// The heap's guaranteed size (the widening threshold of start-relative heap offsets).
    heap: Option<u64>,
    /// Registers live at each instruction (dead ones are not compared when pruning).
    live: Liveness,
    /// Which backward jumps close a cycle (only those are termination points).
    cycles: Cycles,
}

/// Verifies `input` (the body of [`crate::verify`]).
pub fn run(
    input: &VerifyInput<'_>,
    options: &VerifyOptions,
) -> Result<VerifiedProgram, Box<VerifyError>> {
    let len = input.program.len();
    let mut engine = Engine {
        cx: Cx::new(input, options),
        shape: Shape::of(input),
        visited: vec![Vec::new(); len],
        visits: vec![0; len],
        pending: vec![(0, State::entry(input.prog_type))],
        stats: Stats::default(),
        log: String::new(),
        start: Instant::now(),
        stored: 0,
        heap: crate::check::heap::heap_size(input),
        live: Liveness::of(input.program),
        cycles: Cycles::of(input.program),
    };
    match engine.explore() {
        Ok(()) => {
            engine.stats.time = engine.start.elapsed();
            let max_per_insn = engine.visited.iter().map(Vec::len).max().unwrap_or(0);
            if options.log_level >= 1 {
                let _ = writeln!(
                    engine.log,
                    "{}",
                    engine.stats.summary(options.max_processed, max_per_insn)
                );
                let _ = writeln!(
                    engine.log,
                    "verification time {} usec",
                    engine.stats.time.as_micros()
                );
            }
            let Engine { cx, stats, log, .. } = engine;
            Ok(cx.facts.finish(stats, log))
        }
        Err(mut e) => {
            engine.stats.time = engine.start.elapsed();
            engine.stats.back_edges = engine.cx.facts.back_edges();
            if options.log_level >= 1 {
                let _ = writeln!(engine.log, "{e}");
                let max_per_insn = engine.visited.iter().map(Vec::len).max().unwrap_or(0);
                let _ = writeln!(
                    engine.log,
                    "{}",
                    engine.stats.summary(options.max_processed, max_per_insn)
                );
            }
            e.log = std::mem::take(&mut engine.log);
            e.stats = engine.stats.clone();
            Err(e)
        }
    }
}

impl Engine<'_> {
    fn explore(&mut self) -> CheckResult {
        while let Some((pc, state)) = self.pending.pop() {
            if self.cx.options.log_level >= 2 {
                let _ = writeln!(self.log, "from pending branch to {pc}: {state}");
            }
            self.path(pc, state)?;
        }
        Ok(())
    }

    /// Follows one path until it exits the program or is pruned.
    fn path(&mut self, mut pc: usize, mut state: State) -> CheckResult {
        loop {
            self.stats.insns_processed += 1;
            if self.stats.insns_processed > self.cx.options.max_processed {
                return Err(self.budget_error(pc, &state));
            }
            if self.shape.prune_point.get(pc).copied().unwrap_or(false) {
                match self.prune_or_store(pc, state) {
                    Some(s) => state = s,
                    None => return Ok(()),
                }
            }
            self.cx.facts.reached(pc);
            let Some(insn) = self.cx.input.program.get(pc).copied() else {
                return Err(self.cx.error(
                    pc,
                    &state,
                    format!(
                        "jump into the middle of an instruction or past the end (instruction {pc})"
                    ),
                    "",
                ));
            };
            if self.cx.options.log_level >= 2 {
                let _ = writeln!(
                    self.log,
                    "{pc}: {} ; {state}",
                    kflex_isa::disasm::format(&insn)
                );
            }
            match self.step(pc, insn, &mut state)? {
                Some(next) => pc = next,
                None => return Ok(()),
            }
        }
    }

    /// Checks a state against those stored at `pc`: `None` if one covers it (prune), else the
    /// state to continue with (widened at loop heads after a few visits), now stored.
    fn prune_or_store(&mut self, pc: usize, mut state: State) -> Option<State> {
        let live = self.live_masks(pc, &state);
        for (frame, mask) in state.frames.iter_mut().zip(live) {
            frame.forget_dead_numbers(mask);
        }
        let stored = self.visited.get(pc)?;
        if stored.iter().any(|old| old.covers(&state)) {
            self.stats.states_pruned += 1;
            if self.cx.options.log_level >= 2 {
                let _ = writeln!(self.log, "{pc}: safe (pruned)");
            }
            return None;
        }
        let visits = self.visits.get_mut(pc)?;
        *visits += 1;
        let loop_head = self.shape.loop_head.get(pc).copied().unwrap_or(false);
        let list = self.visited.get_mut(pc)?;
        if loop_head
            && *visits > WIDEN_AFTER
            && let Some(i) = list
                .iter()
                .rposition(|old| old.widen(&state, self.heap).is_some())
            && let Some(w) = list.get(i).and_then(|old| old.widen(&state, self.heap))
        {
            state = w;
            list.remove(i);
            self.stored = self.stored.saturating_sub(1);
        }
        if list.len() < MAX_STATES_PER_INSN {
            list.push(state.clone());
            self.stored += 1;
            self.stats.states_explored += 1;
        }
        let live = self.stored + self.pending.len() as u64;
        self.stats.peak_states = self.stats.peak_states.max(live);
        Some(state)
    }

    /// Per frame of `state` at `pc`, the registers a continuation may still read: for the
    /// innermost frame those live at `pc`; for a caller, those live where the call returns,
    /// except r0-r5, which the return overwrites.
    fn live_masks(&self, pc: usize, state: &State) -> Vec<u16> {
        let mut masks: Vec<u16> = state
            .frames
            .iter()
            .skip(1)
            .map(|callee| match callee.callsite {
                Some(site) => self.live.at(site + 1) & !liveness::CALL_CLOBBERED,
                None => liveness::ALL_REGS,
            })
            .collect();
        masks.push(self.live.at(pc));
        masks
    }

    fn branch_to(&mut self, target: usize, state: State) {
        self.pending.push((target, state));
        let live = self.stored + self.pending.len() as u64;
        self.stats.peak_states = self.stats.peak_states.max(live);
    }

    /// Records the jump `pc -> target` taken in `state` as a termination point if it is a
    /// back-edge (`target <= pc`) that lies on a cycle of the control-flow graph. Backward jumps
    /// that close no cycle (clang's jumps back to a shared tail) need no check: every cycle has a
    /// backward edge on it, so every cycle keeps a termination point (see [`crate::cycles`]).
    fn record_back_edge(&mut self, pc: usize, target: usize, state: &State) {
        if target <= pc && self.cycles.on_cycle(pc, target) {
            let live = live_resources(state, self.cx.input.helpers);
            self.cx
                .facts
                .termination(pc, TerminationKind::BackEdge { target }, live);
        }
    }

    /// Executes one instruction abstractly: the next pc on this path, or `None` at its end.
    fn step(
        &mut self,
        pc: usize,
        insn: Instruction,
        state: &mut State,
    ) -> CheckResult<Option<usize>> {
        let cx = &mut self.cx;
        let next = pc + insn.slot_count();
        match insn {
            Instruction::Alu {
                width,
                op,
                dst,
                src,
            } => alu::binary(cx, pc, state, width, op, dst, src)?,
            Instruction::Neg { width, dst } => alu::neg(cx, pc, state, width, dst)?,
            Instruction::Mov { width, dst, src } => alu::mov(cx, pc, state, width, dst, src)?,
            Instruction::MovSx {
                width,
                dst,
                src,
                bits,
            } => alu::movsx(cx, pc, state, width, dst, src, bits)?,
            Instruction::AddrSpaceCast {
                dst,
                src,
                dst_as,
                src_as,
            } => alu::addr_space_cast(cx, pc, state, dst, src, dst_as, src_as)?,
            Instruction::Endian { dst, bits, kind } => alu::endian(cx, pc, state, dst, bits, kind)?,
            Instruction::LoadImm64 { dst, pseudo, imm } => {
                alu::load_imm64(cx, pc, state, dst, pseudo, imm)?
            }
            Instruction::Load {
                size,
                dst,
                src,
                off,
                sign_extend,
            } => {
                let site = Site {
                    pc,
                    base: src,
                    off,
                    size: size.bytes(),
                };
                mem::load(cx, state, site, dst, sign_extend)?
            }
            Instruction::LoadAcquire {
                size,
                dst,
                src,
                off,
            } => {
                let site = Site {
                    pc,
                    base: src,
                    off,
                    size: size.bytes(),
                };
                mem::load(cx, state, site, dst, false)?
            }
            Instruction::Store {
                size,
                dst,
                off,
                src,
            } => {
                let site = Site {
                    pc,
                    base: dst,
                    off,
                    size: size.bytes(),
                };
                mem::store(cx, state, site, src)?
            }
            Instruction::StoreRelease {
                size,
                dst,
                src,
                off,
            } => {
                let site = Site {
                    pc,
                    base: dst,
                    off,
                    size: size.bytes(),
                };
                mem::store(cx, state, site, kflex_isa::decode::Operand::Reg(src))?
            }
            Instruction::Atomic {
                size,
                op,
                fetch,
                dst,
                src,
                off,
            } => {
                let site = Site {
                    pc,
                    base: dst,
                    off,
                    size: size.bytes(),
                };
                mem::atomic(cx, state, site, op, fetch, src)?
            }
            Instruction::Ja { .. } => {
                let target = self.target(pc, &insn, state)?;
                self.record_back_edge(pc, target, state);
                return Ok(Some(target));
            }
            Instruction::Jump {
                width,
                op,
                dst,
                src,
                ..
            } => {
                let target = self.target(pc, &insn, state)?;
                let succ = branch::cond_jump(&mut self.cx, pc, state.clone(), width, op, dst, src)?;
                if let Some(taken) = &succ.taken {
                    self.record_back_edge(pc, target, taken);
                }
                return Ok(match (succ.fall, succ.taken) {
                    (Some(fall), Some(taken)) => {
                        self.branch_to(target, taken);
                        *state = fall;
                        Some(next)
                    }
                    (Some(fall), None) => {
                        *state = fall;
                        Some(next)
                    }
                    (None, Some(taken)) => {
                        *state = taken;
                        Some(target)
                    }
                    (None, None) => None,
                });
            }
            Instruction::MayGoto { .. } => {
                let target = self.target(pc, &insn, state)?;
                let live = live_resources(&*state, self.cx.input.helpers);
                self.cx
                    .facts
                    .termination(pc, TerminationKind::MayGoto, live);
                self.branch_to(target, state.clone());
                return Ok(Some(next));
            }
            Instruction::Call { helper } => call::helper(cx, pc, state, helper)?,
            Instruction::CallLocal { .. } => {
                let target = self.target(pc, &insn, state)?;
                return call::local(&mut self.cx, pc, state, target).map(Some);
            }
            Instruction::CallKfunc { btf_id } => return Err(call::kfunc(cx, pc, state, btf_id)),
            Instruction::Callx { reg } => return Err(call::callx(cx, pc, state, reg)),
            Instruction::Exit => return exit::exit(cx, pc, state),
        }
        Ok(Some(next))
    }

    fn target(&self, pc: usize, insn: &Instruction, state: &State) -> CheckResult<usize> {
        match insn.target(pc) {
            Some(t) if self.cx.input.program.get(t).is_some() => Ok(t),
            _ => Err(self.cx.error(
                pc,
                state,
                "jump out of range or into the middle of an instruction",
                "",
            )),
        }
    }

    fn budget_error(&self, pc: usize, state: &State) -> Box<VerifyError> {
        let limit = self.cx.options.max_processed;
        let hot = self
            .visits
            .iter()
            .enumerate()
            .filter(|(i, _)| self.shape.loop_head.get(*i).copied().unwrap_or(false))
            .max_by_key(|(_, v)| **v)
            .filter(|(_, v)| **v > 0);
        let place = match hot {
            Some((head, visits)) => format!(
                "the loop starting at instruction {head} was entered {visits} times with new states"
            ),
            None => format!("the path reached instruction {pc}"),
        };
        self.cx.error(
            pc,
            state,
            format!(
                "the program is too complex: {limit} instructions processed (the limit) without finishing; {place}"
            ),
            hints::complexity(limit),
        )
    }
}
