//! Termination points only where a cycle can close: backward jumps to shared tails get no check,
//! every loop (nested, conditional back-edge, generated or random) keeps one on each cycle.

mod support;

use std::collections::BTreeSet;

use kflex_isa::decode::{Instruction, Program};
use kflex_isa::{Insn, op};
use kflex_object::{Object, ProgType};
use kflex_verify::progen::{self, PROG_TYPES};
use kflex_verify::{TerminationKind, VerifiedProgram, VerifyOptions};
use proptest::prelude::*;
use support::*;

fn back_edges(p: &VerifiedProgram) -> Vec<(usize, usize)> {
    p.termination_points
        .iter()
        .filter_map(|t| match t.kind {
            TerminationKind::BackEdge { target } => Some((t.pc, target)),
            TerminationKind::MayGoto => None,
        })
        .collect()
}

#[test]
fn a_loop_free_program_jumping_back_to_a_shared_tail_has_no_termination_points() {
    // The shape clang emits: both arms end in the shared `r0 = r6; exit` tail, one of them by a
    // backward jump (slot 7 -> 3).
    let p = accept(
        "call 7\nmov %r6, 0\njeq %r0, 0, arm\ntail:\nmov %r0, %r6\nexit\narm:\nmov %r6, 2\n\
         add %r6, 1\nja tail",
        ProgType::Syscall,
        &[],
    );
    assert!(
        p.termination_points.is_empty(),
        "{:?}",
        p.termination_points
    );
    assert_eq!(p.stats.back_edges, 0);
    assert!(p.insns[7].reachable, "the backward jump was explored");
}

#[test]
fn a_conditional_backward_jump_to_a_shared_tail_is_no_termination_point() {
    let p = accept(
        "call 7\nmov %r6, %r0\nja body\ntail:\nmov %r0, 1\nexit\nbody:\njgt %r6, 10, tail\n\
         mov %r0, 0\nexit",
        ProgType::Syscall,
        &[],
    );
    assert!(
        p.termination_points.is_empty(),
        "{:?}",
        p.termination_points
    );
}

#[test]
fn nested_loops_keep_both_back_edges() {
    // for (i = 0; i < 4; i++) for (j = 0; j < 3; j++) sum++;
    let p = accept(
        "mov %r0, 0\nmov %r6, 0\nouter:\nmov %r7, 0\ninner:\nadd %r0, 1\nadd %r7, 1\n\
         jlt %r7, 3, inner\nadd %r6, 1\njlt %r6, 4, outer\nexit",
        ProgType::Syscall,
        &[],
    );
    assert_eq!(back_edges(&p), vec![(5, 3), (7, 2)]);
    assert_eq!(p.stats.back_edges, 2);
}

#[test]
fn an_unconditional_back_edge_closing_a_loop_through_a_shared_tail_is_kept() {
    // The loop's own back-edge is a forward jump into the tail, which jumps back to the head: the
    // backward `ja` is the only backward edge of the cycle.
    let p = accept(
        "mov %r6, 0\nhead:\ncall 7\njeq %r0, 0, out\nadd %r6, 1\nja next\nout:\nmov %r0, %r6\n\
         exit\nnext:\nja head",
        ProgType::Syscall,
        &[],
    );
    assert_eq!(back_edges(&p), vec![(7, 1)]);
}

#[test]
fn may_goto_points_stay_as_they_are() {
    let p = accept(
        "mov %r0, 0\nhead:\nmay_goto out\nadd %r0, 1\nja head\nout:\nexit",
        ProgType::Syscall,
        &[],
    );
    let kinds: Vec<_> = p
        .termination_points
        .iter()
        .map(|t| (t.pc, t.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (1, TerminationKind::MayGoto),
            (3, TerminationKind::BackEdge { target: 1 })
        ]
    );
}

fn verify_example(name: &str) -> Vec<VerifiedProgram> {
    let ex = kflex_examples::get(name).unwrap_or_else(|| panic!("example {name} is bundled"));
    let obj = Object::parse(ex.name, ex.object).expect("example parses");
    let mut out = Vec::new();
    for prog in &obj.programs {
        let code = Program::decode(&prog.insns).expect("example decodes");
        let v = verify_object_program(&obj, prog, &code, &VerifyOptions::default())
            .unwrap_or_else(|e| panic!("{name}/{} rejected: {e}", prog.name));
        assert_cycles_covered(&code, &v);
        out.push(v);
    }
    assert!(!out.is_empty(), "{name} has programs");
    out
}

#[test]
fn loop_free_packet_examples_have_no_termination_points() {
    for name in ["xdp_firewall", "tc_classifier"] {
        let code = kflex_examples::get(name).expect("bundled");
        let obj = Object::parse(name, code.object).unwrap();
        // The point of the change: clang's output has backward jumps that close no cycle.
        let backward = obj.programs.iter().any(|p| {
            let code = Program::decode(&p.insns).unwrap();
            code.iter().any(|(pc, i)| {
                !matches!(i, Instruction::CallLocal { .. }) && i.target(pc).is_some_and(|t| t <= pc)
            })
        });
        assert!(backward, "{name} has a backward jump");
        for v in verify_example(name) {
            assert!(
                v.termination_points.is_empty(),
                "{name}: {:?}",
                v.termination_points
            );
            assert_eq!(v.stats.back_edges, 0);
        }
    }
}

#[test]
fn the_looping_example_keeps_its_termination_points() {
    let total: usize = verify_example("syscall_events")
        .iter()
        .map(|v| back_edges(v).len())
        .sum();
    assert!(total >= 1, "syscall_events loops");
}

/// The control-flow successors of every reachable instruction, computed here independently of
/// the verifier: fall-through, jump target, and a call's return to the next instruction.
fn cfg(code: &Program, v: &VerifiedProgram) -> Vec<Vec<usize>> {
    let mut succ = vec![Vec::new(); code.len()];
    for (pc, insn) in code.iter() {
        if !v.insns[pc].reachable {
            continue;
        }
        let next = pc + insn.slot_count();
        let mut out = match insn {
            Instruction::Exit => vec![],
            Instruction::Ja { .. } => vec![],
            _ => vec![next],
        };
        if !matches!(insn, Instruction::CallLocal { .. })
            && let Some(t) = insn.target(pc)
        {
            out.push(t);
        }
        out.retain(|&s| s < code.len() && v.insns[s].reachable);
        succ[pc] = out;
    }
    succ
}

/// Asserts that the recorded back-edges are exactly the backward jumps on a cycle: removing
/// them (and every edge out of a `may_goto`) leaves an acyclic graph, and each recorded one
/// closes a cycle (its target reaches it).
fn assert_cycles_covered(code: &Program, v: &VerifiedProgram) {
    let mut succ = cfg(code, v);
    let recorded: BTreeSet<(usize, usize)> = back_edges(v).into_iter().collect();
    for &(pc, target) in &recorded {
        assert!(target <= pc);
        // Breadth-first search from the target in the full graph.
        let mut seen = vec![false; code.len()];
        let mut queue = vec![target];
        while let Some(n) = queue.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            queue.extend(succ[n].iter().copied());
        }
        assert!(
            seen[pc],
            "recorded back-edge {pc}->{target} closes no cycle"
        );
    }
    for t in &v.termination_points {
        match t.kind {
            TerminationKind::BackEdge { target } => succ[t.pc].retain(|&s| s != target),
            TerminationKind::MayGoto => succ[t.pc].clear(),
        }
    }
    // Kahn's algorithm: every node is removed iff the graph is acyclic.
    let mut indegree = vec![0usize; code.len()];
    for out in &succ {
        for &s in out {
            indegree[s] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..code.len()).filter(|&n| indegree[n] == 0).collect();
    let mut removed = 0;
    while let Some(n) = ready.pop() {
        removed += 1;
        for &s in &succ[n] {
            indegree[s] -= 1;
            if indegree[s] == 0 {
                ready.push(s);
            }
        }
    }
    let left: Vec<usize> = (0..code.len()).filter(|&n| indegree[n] > 0).collect();
    assert_eq!(
        removed,
        code.len(),
        "a cycle without a termination point through {left:?}"
    );
}

fn verify_slots(
    slots: &[Insn],
    prog_type: ProgType,
    maps: &[kflex_object::MapSpec],
) -> Option<(Program, VerifiedProgram)> {
    let code = Program::decode(slots).ok()?;
    let helpers = helpers_for(prog_type);
    let v = verify_decoded(&code, prog_type, maps, &helpers, &VerifyOptions::default()).ok()?;
    Some((code, v))
}

#[test]
fn every_cycle_of_generated_programs_has_a_termination_point() {
    let mut loops = 0;
    let mut checked = 0;
    for seed in 0..300u64 {
        let t = PROG_TYPES[(seed % 4) as usize];
        let mut opts = progen::Options::new(t);
        opts.mutation_percent = 0;
        opts.unbounded_loops = seed % 3 == 0;
        opts.fragments = 6 + (seed % 10) as usize;
        let g = progen::generate_with(seed, &opts);
        let Some((code, v)) = verify_slots(&g.insns, g.prog_type, &g.maps) else {
            continue;
        };
        assert_cycles_covered(&code, &v);
        loops += back_edges(&v).len();
        checked += 1;
    }
    assert!(checked >= 200, "only {checked} generated programs verified");
    assert!(loops >= 50, "only {loops} loops generated");
}

/// What one block of a random jump program does after its `call bpf_get_prandom_u32`.
#[derive(Clone, Debug)]
enum Step {
    /// Nothing more (falls through).
    Keep,
    /// `ja` to block `t`.
    Ja(usize),
    /// `if r0 != k goto` block `t`.
    Jne(i32, usize),
    /// `exit`.
    Exit,
}

fn step(n: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Keep),
        2 => (0..n).prop_map(Step::Ja),
        4 => (0..3i32, 0..n).prop_map(|(k, t)| Step::Jne(k, t)),
        1 => Just(Step::Exit),
    ]
}

/// One two-slot block per step, `r0 = bpf_get_prandom_u32()` then the step, and a final `exit`
/// block. Jumps go to block starts, forward or backward, so any control-flow graph shape comes
/// up, and r0 is unknown at every branch, so both of its directions are feasible.
fn jump_program(steps: &[Step]) -> Vec<Insn> {
    let call = Insn::new(op::JMP | op::CALL, 0, 0, 0, 7);
    let exit = Insn::new(op::JMP | op::EXIT, 0, 0, 0, 0);
    let mut slots = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let pc = 2 * i + 1;
        let off = |t: usize| (2 * t.min(steps.len()) as i64 - pc as i64 - 1) as i16;
        slots.push(call);
        slots.push(match *s {
            Step::Keep => Insn::new(op::ALU64 | op::MOV | op::X, 6, 0, 0, 0),
            Step::Ja(t) => Insn::new(op::JMP | op::JA, 0, 0, off(t), 0),
            Step::Jne(k, t) => Insn::new(op::JMP | op::JNE | op::K, 0, 0, off(t), k),
            Step::Exit => exit,
        });
    }
    slots.push(call);
    slots.push(exit);
    slots
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_cycle_of_random_jump_programs_has_a_termination_point(
        steps in (3usize..24).prop_flat_map(|n| proptest::collection::vec(step(n), n))
    ) {
        let slots = jump_program(&steps);
        let (code, v) = verify_slots(&slots, ProgType::Syscall, &[])
            .unwrap_or_else(|| panic!("rejected: {steps:?}"));
        assert_cycles_covered(&code, &v);
    }
}
