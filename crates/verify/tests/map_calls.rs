//! `InsnFacts::map_call`: which map a lookup/update/delete call uses, exact over every path
//! (the JIT may inline the map's code there, so a wrong index would be a memory-safety bug).

mod support;

use kflex_object::ProgType::{SchedCls, Syscall};
use support::*;

/// The key `fp-4 = 0` in r2.
const KEY: &str = "stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\n";

/// The pc of the only `call` to helper `id` (calls are one slot, `lddw` two).
fn call_pc(p: &kflex_isa::decode::Program, id: i32) -> usize {
    let pcs: Vec<usize> = p
        .iter()
        .filter(
            |(_, i)| matches!(i, kflex_isa::decode::Instruction::Call { helper } if *helper == id),
        )
        .map(|(pc, _)| pc)
        .collect();
    assert_eq!(pcs.len(), 1, "one call of helper {id}");
    pcs[0]
}

fn map_call(src: &str, helper: i32) -> Option<usize> {
    let maps = [hash(8), hash(8), ringbuf()];
    let v = accept(src, Syscall, &maps);
    let pc = call_pc(&program(src), helper);
    assert!(v.insns[pc].reachable);
    for (at, f) in v.insns.iter().enumerate() {
        if at != pc {
            assert_eq!(f.map_call, None, "only the map call at {pc} has a map fact");
        }
    }
    v.insns[pc].map_call
}

#[test]
fn one_map_is_recorded_for_lookup_update_and_delete() {
    let lookup = format!("map_fd %r1, 1\n{KEY}call 1\nmov %r0, 0\nexit");
    assert_eq!(map_call(&lookup, 1), Some(1));
    let update = format!(
        "stdw [%r10-16], 7\nmap_fd %r1, 0\n{KEY}mov %r3, %r10\nadd %r3, -16\nmov %r4, 0\n\
         call 2\nmov %r0, 0\nexit"
    );
    assert_eq!(map_call(&update, 2), Some(0));
    let delete = format!("map_fd %r1, 1\n{KEY}call 3\nmov %r0, 0\nexit");
    assert_eq!(map_call(&delete, 3), Some(1));
}

#[test]
fn two_maps_selected_by_a_branch_give_none() {
    let src = format!(
        "call 7\njeq %r0, 0, other\nmap_fd %r1, 0\nja go\nother:\nmap_fd %r1, 1\ngo:\n{KEY}\
         call 1\nmov %r0, 0\nexit"
    );
    assert_eq!(map_call(&src, 1), None);
}

#[test]
fn the_same_map_on_both_branches_stays_known() {
    let src = format!(
        "call 7\njeq %r0, 0, other\nmap_fd %r1, 1\nja go\nother:\nmov %r6, 1\nmap_fd %r1, 1\n\
         go:\n{KEY}call 1\nmov %r0, 0\nexit"
    );
    assert_eq!(map_call(&src, 1), Some(1));
}

#[test]
fn maps_spilled_to_the_stack_are_compared_when_paths_join() {
    // Each arm spills a different map to fp-16; the join is a prune point, and the fill after it
    // must not let the second arm be pruned by the first.
    let src = format!(
        "call 7\njeq %r0, 0, other\nmap_fd %r1, 0\nstxdw [%r10-16], %r1\nja go\nother:\n\
         map_fd %r1, 1\nstxdw [%r10-16], %r1\ngo:\nmov %r1, 0\nldxdw %r1, [%r10-16]\n{KEY}\
         call 1\nmov %r0, 0\nexit"
    );
    assert_eq!(map_call(&src, 1), None);
}

#[test]
fn a_map_overwritten_after_the_join_is_the_one_used() {
    // r1 differs at the join but is dead there: the call always uses map 0.
    let src = format!(
        "call 7\njeq %r0, 0, other\nmap_fd %r1, 1\nja go\nother:\nmov %r1, 0\ngo:\n\
         map_fd %r1, 0\n{KEY}call 1\nmov %r0, 0\nexit"
    );
    assert_eq!(map_call(&src, 1), Some(0));
}

#[test]
fn a_subprogram_called_with_two_maps_gives_none_and_with_one_keeps_it() {
    let body = format!("exit\nf:\n{KEY}call 1\nmov %r0, 0\nexit");
    let two =
        format!("map_fd %r1, 0\ncall local f\nmap_fd %r1, 1\ncall local f\nmov %r0, 0\n{body}");
    assert_eq!(map_call(&two, 1), None);
    let one =
        format!("map_fd %r1, 1\ncall local f\nmap_fd %r1, 1\ncall local f\nmov %r0, 0\n{body}");
    assert_eq!(map_call(&one, 1), Some(1));
}

#[test]
fn a_map_in_a_loop_stays_known() {
    let src = format!(
        "mov %r6, 0\nloop:\nmap_fd %r1, 1\n{KEY}call 1\nadd %r6, 1\njlt %r6, 8, loop\n\
         mov %r0, 0\nexit"
    );
    assert_eq!(map_call(&src, 1), Some(1));
}

#[test]
fn other_helpers_have_no_map_fact_even_with_a_map_argument() {
    let rand = "call 7\nmov %r0, 0\nexit";
    assert_eq!(map_call(rand, 7), None);
    // bpf_ringbuf_output(map 2, fp-8, 8, 0): takes a map, but is not a map-element helper.
    let output = "stdw [%r10-8], 1\nmap_fd %r1, 2\nmov %r2, %r10\nadd %r2, -8\nmov %r3, 8\n\
                  mov %r4, 0\ncall 130\nmov %r0, 0\nexit";
    assert_eq!(map_call(output, 130), None);
}

#[test]
fn unreached_map_calls_have_no_fact() {
    let src =
        format!("mov %r0, 0\njeq %r0, 0, out\nmap_fd %r1, 0\n{KEY}call 1\nout:\nmov %r0, 0\nexit");
    let v = accept(&src, SchedCls, &[hash(8)]);
    let pc = call_pc(&program(&src), 1);
    assert!(!v.insns[pc].reachable);
    assert_eq!(v.insns[pc].map_call, None);
}
