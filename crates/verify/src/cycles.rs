//! Which backward jumps close a cycle of the control-flow graph, so that only those become
//! termination points.
//!
//! clang's BPF output is full of backward jumps to shared tails (a common `return` block, an
//! error exit) that close no cycle; counting them as loop back-edges would give loop-free
//! programs termination checks and make the runtime arm a watchdog on every run of them.
//!
//! The graph has one node per instruction and the intra-function edges of liveness
//! ([`crate::liveness::successors`]): fall-throughs, jump targets, and a call's return to the next
//! instruction (a call is not a cycle edge: recursion is rejected and the call depth is bounded,
//! so a callee's own loops are cycles of the callee's graph). Its strongly connected components
//! are computed once per program (Tarjan's algorithm, iterative so that long programs cannot
//! overflow the thread's stack); an edge `pc -> target` lies on a cycle exactly when both ends are
//! in the same component (then `target` reaches `pc`, and the edge closes the cycle).
//!
//! Soundness: instruction slots are totally ordered and every edge other than a jump goes
//! forward, so every cycle contains at least one edge to a lower-or-equal slot, a jump; that jump
//! is on the cycle, so it is recorded, and every cycle still contains a termination point. Each
//! pass around a cycle at run time therefore passes a check.

use kflex_isa::decode::Program;

use crate::liveness::successors;

/// Component number of slots that are not instruction starts (the second slot of a `lddw`).
const NONE: u32 = u32::MAX;

/// The strongly connected components of a program's control-flow graph.
#[derive(Clone, Debug)]
pub struct Cycles {
    /// Component per slot (`NONE` for slots that start no instruction, and for every slot of a
    /// program without a backward jump, which has no cycle).
    comp: Vec<u32>,
}

impl Cycles {
    /// Computes the components of `program`'s control-flow graph.
    pub fn of(program: &Program) -> Self {
        let len = program.len();
        let mut comp = vec![NONE; len];
        // Without a backward jump there is no cycle, and every component is a single node.
        let backward = program
            .iter()
            .any(|(pc, insn)| successors(pc, insn).into_iter().flatten().any(|t| t <= pc));
        let (Ok(len32), true) = (u32::try_from(len), backward) else {
            return Cycles { comp };
        };
        let mut is_start = vec![false; len];
        for (pc, _) in program.iter() {
            is_start[pc] = true;
        }
        // Successors that start an instruction, `NONE` for none.
        let mut succ = vec![[NONE; 2]; len];
        for (pc, insn) in program.iter() {
            for (slot, s) in succ[pc].iter_mut().zip(successors(pc, insn)) {
                if let Some(w) = s.filter(|&w| w < len && is_start[w]) {
                    *slot = w as u32;
                }
            }
        }
        let mut t = Tarjan {
            index: vec![NONE; len],
            low: vec![0; len],
            on_stack: vec![false; len],
            stack: Vec::new(),
            comp: &mut comp,
            next_index: 0,
            next_comp: 0,
        };
        // Explicit call stack: (node, number of its successors already looked at).
        let mut calls: Vec<(u32, u8)> = Vec::new();
        for root in 0..len32 {
            if !is_start[root as usize] || t.index[root as usize] != NONE {
                continue;
            }
            t.enter(root);
            calls.push((root, 0));
            while let Some(&mut (v, ref mut i)) = calls.last_mut() {
                let v = v as usize;
                if let Some(&w) = succ[v].get(usize::from(*i)) {
                    *i += 1;
                    if w == NONE {
                        continue;
                    }
                    if t.index[w as usize] == NONE {
                        t.enter(w);
                        calls.push((w, 0));
                    } else if t.on_stack[w as usize] {
                        t.low[v] = t.low[v].min(t.index[w as usize]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(u, _)) = calls.last() {
                    t.low[u as usize] = t.low[u as usize].min(t.low[v]);
                }
                if t.low[v] == t.index[v] {
                    t.close(v as u32);
                }
            }
        }
        Cycles { comp }
    }

    /// Whether the edge `from -> to` (an edge of the graph) lies on a cycle.
    pub fn on_cycle(&self, from: usize, to: usize) -> bool {
        match (self.comp.get(from), self.comp.get(to)) {
            (Some(&a), Some(&b)) => a != NONE && a == b,
            _ => false,
        }
    }
}

/// Working state of Tarjan's algorithm (node numbers are `u32`: programs have fewer slots).
struct Tarjan<'c> {
    index: Vec<u32>,
    low: Vec<u32>,
    on_stack: Vec<bool>,
    stack: Vec<u32>,
    comp: &'c mut [u32],
    next_index: u32,
    next_comp: u32,
}

impl Tarjan<'_> {
    fn enter(&mut self, v: u32) {
        let i = v as usize;
        self.index[i] = self.next_index;
        self.low[i] = self.next_index;
        self.next_index += 1;
        self.stack.push(v);
        self.on_stack[i] = true;
    }

    /// Pops the component whose root is `v`.
    fn close(&mut self, v: u32) {
        while let Some(w) = self.stack.pop() {
            self.on_stack[w as usize] = false;
            self.comp[w as usize] = self.next_comp;
            if w == v {
                break;
            }
        }
        self.next_comp += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::program;

    #[test]
    fn a_jump_back_to_a_shared_tail_closes_no_cycle() {
        // 0: jeq r1, 0, +2 (-> 3); 1: mov r0, 1; 2: ja +2 (-> 5); 3: mov r0, 2; 4: exit;
        // 5: ja -2 (-> 4, the shared exit, backward but acyclic).
        let p = program("jeq %r1, 0, +2\nmov %r0, 1\nja +2\nmov %r0, 2\nexit\nja -2");
        let c = Cycles::of(&p);
        assert!(!c.on_cycle(5, 4));
        assert!(!c.on_cycle(0, 3));
    }

    #[test]
    fn loops_and_self_loops_are_cycles() {
        // 0: mov r0, 0; 1: add r0, 1; 2: jlt r0, 5, -2 (-> 1); 3: ja -1 (-> 3); 4: exit
        let p = program("mov %r0, 0\nadd %r0, 1\njlt %r0, 5, -2\nja -1\nexit");
        let c = Cycles::of(&p);
        assert!(c.on_cycle(2, 1));
        assert!(c.on_cycle(3, 3));
        assert!(!c.on_cycle(0, 1));
        assert!(!c.on_cycle(2, 3), "leaving the loop is not on a cycle");
    }

    #[test]
    fn programs_without_backward_jumps_have_no_cycles() {
        let p = program("jeq %r1, 0, +1\nmov %r0, 1\nexit");
        let c = Cycles::of(&p);
        assert!((0..3).all(|pc| !c.on_cycle(pc, pc)));
    }

    #[test]
    fn the_second_slot_of_lddw_is_no_node() {
        let p = program("lddw %r0, 5\nja -3\nexit");
        let c = Cycles::of(&p);
        assert!(c.on_cycle(2, 0));
        assert!(!c.on_cycle(1, 1));
        assert!(!c.on_cycle(9, 9), "outside the program");
    }
}
