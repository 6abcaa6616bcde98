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
    /// Component per slot (`NONE` for slots that start no instruction).
    comp: Vec<u32>,
}

impl Cycles {
    /// Computes the components of `program`'s control-flow graph.
    pub fn of(program: &Program) -> Self {
        let len = program.len();
        let mut succ: Vec<[Option<usize>; 2]> = vec![[None, None]; len];
        let mut is_start = vec![false; len];
        for (pc, insn) in program.iter() {
            if let (Some(s), Some(start)) = (succ.get_mut(pc), is_start.get_mut(pc)) {
                *s = successors(pc, insn);
                *start = true;
            }
        }
        let node = |s: Option<usize>| s.filter(|&w| is_start.get(w).copied().unwrap_or(false));
        let mut t = Tarjan {
            index: vec![NONE; len],
            low: vec![0; len],
            on_stack: vec![false; len],
            stack: Vec::new(),
            comp: vec![NONE; len],
            next_index: 0,
            next_comp: 0,
        };
        for (root, &start) in is_start.iter().enumerate() {
            if !start || t.index[root] != NONE {
                continue;
            }
            // Explicit call stack: (node, number of its successors already looked at).
            let mut calls: Vec<(usize, usize)> = vec![(root, 0)];
            t.enter(root);
            while let Some(&mut (v, ref mut i)) = calls.last_mut() {
                if let Some(&s) = succ[v].get(*i) {
                    *i += 1;
                    let Some(w) = node(s) else { continue };
                    if t.index[w] == NONE {
                        t.enter(w);
                        calls.push((w, 0));
                    } else if t.on_stack[w] {
                        t.low[v] = t.low[v].min(t.index[w]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(u, _)) = calls.last() {
                    t.low[u] = t.low[u].min(t.low[v]);
                }
                if t.low[v] == t.index[v] {
                    t.close(v);
                }
            }
        }
        Cycles { comp: t.comp }
    }

    /// Whether the edge `from -> to` (an edge of the graph) lies on a cycle.
    pub fn on_cycle(&self, from: usize, to: usize) -> bool {
        match (self.comp.get(from), self.comp.get(to)) {
            (Some(&a), Some(&b)) => a != NONE && a == b,
            _ => false,
        }
    }
}

/// Working state of Tarjan's algorithm.
struct Tarjan {
    index: Vec<u32>,
    low: Vec<u32>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    comp: Vec<u32>,
    next_index: u32,
    next_comp: u32,
}

impl Tarjan {
    fn enter(&mut self, v: usize) {
        self.index[v] = self.next_index;
        self.low[v] = self.next_index;
        self.next_index += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
    }

    /// Pops the component whose root is `v`.
    fn close(&mut self, v: usize) {
        while let Some(w) = self.stack.pop() {
            self.on_stack[w] = false;
            self.comp[w] = self.next_comp;
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
    use kflex_isa::Insn;

    fn program(src: &str) -> Program {
        let slots: Vec<Insn> = kflex_isa::asm::assemble(src).expect("assembles");
        Program::decode(&slots).expect("decodes")
    }

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
    fn the_second_slot_of_lddw_is_no_node() {
        let p = program("lddw %r0, 5\nja -3\nexit");
        let c = Cycles::of(&p);
        assert!(c.on_cycle(2, 0));
        assert!(!c.on_cycle(1, 1));
        assert!(!c.on_cycle(9, 9), "outside the program");
    }
}
