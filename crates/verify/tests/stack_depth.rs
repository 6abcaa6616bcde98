//! `VerifiedProgram::stack_depth`: every stack byte any path can touch lies within that many
//! bytes below r10 (the runtime zeroes only those after a run).

mod support;

use kflex_isa::decode::{Instruction, Program};
use kflex_object::ProgType::{SchedCls, Syscall};
use kflex_object::{Object, ProgType};
use kflex_verify::progen::{self, PROG_TYPES};
use kflex_verify::{VerifiedProgram, VerifyOptions};
use support::*;

fn depth(src: &str) -> u32 {
    accept(src, SchedCls, &[hash(8)]).stack_depth
}

#[test]
fn no_stack_use_is_depth_zero() {
    assert_eq!(depth("mov %r0, 0\nexit"), 0);
    // Copying r10 around touches nothing.
    assert_eq!(depth("mov %r2, %r10\nadd %r2, -64\nmov %r0, 0\nexit"), 0);
}

#[test]
fn constant_accesses_count_their_lowest_byte_rounded_up_to_8() {
    assert_eq!(depth("stdw [%r10-8], 0\nmov %r0, 0\nexit"), 8);
    assert_eq!(depth("stb [%r10-13], 1\nmov %r0, 0\nexit"), 16);
    assert_eq!(
        depth("stw [%r10-4], 1\nldxw %r0, [%r10-4]\nstdw [%r10-40], 0\nexit"),
        40
    );
    assert_eq!(depth("stdw [%r10-512], 0\nmov %r0, 0\nexit"), 512);
}

#[test]
fn the_deepest_path_counts_even_when_it_is_not_taken_first() {
    let src = "call 7\njeq %r0, 0, deep\nstdw [%r10-16], 0\nmov %r0, 0\nexit\ndeep:\n\
               stdw [%r10-200], 0\nmov %r0, 0\nexit";
    assert_eq!(depth(src), 200);
}

#[test]
fn a_variable_offset_store_counts_from_the_lowest_offset_its_bounds_allow() {
    // r2 = fp-100 + (random & 15): the store may land anywhere in fp-100..fp-85.
    let src = "call 7\nand %r0, 15\nmov %r2, %r10\nadd %r2, -100\nadd %r2, %r0\n\
               stb [%r2+0], 1\nmov %r0, 0\nexit";
    assert_eq!(depth(src), 104);
    // A negative instruction offset moves it further down.
    let src = "call 7\nand %r0, 7\nmov %r2, %r10\nadd %r2, -100\nadd %r2, %r0\n\
               stb [%r2-30], 1\nmov %r0, 0\nexit";
    assert_eq!(depth(src), 136);
}

#[test]
fn a_helper_writing_a_stack_buffer_counts() {
    // bpf_skb_load_bytes(ctx, 0, fp-300, 16): the helper writes 16 bytes the program never
    // touches itself.
    let src = "mov %r2, 0\nmov %r3, %r10\nadd %r3, -300\nmov %r4, 16\ncall 26\nmov %r0, 0\nexit";
    assert_eq!(depth(src), 304);
    // The same with a variable destination fp-300 + (random & 7).
    let src = "mov %r6, %r1\ncall 7\nand %r0, 7\nmov %r3, %r10\nadd %r3, -300\nadd %r3, %r0\n\
               mov %r1, %r6\nmov %r2, 0\nmov %r4, 16\ncall 26\nmov %r0, 0\nexit";
    assert_eq!(depth(src), 304);
}

#[test]
fn a_map_key_read_by_a_helper_counts() {
    let src = "stdw [%r10-8], 0\nmap_fd %r1, 0\nmov %r2, %r10\nadd %r2, -8\ncall 1\n\
               mov %r0, 0\nexit";
    assert_eq!(depth(src), 8);
    // Only helpers touch fp-72: bpf_skb_load_bytes writes the 4-byte key there, then
    // bpf_map_lookup_elem reads it.
    let src = "mov %r6, %r1\nmov %r2, 0\nmov %r3, %r10\nadd %r3, -72\nmov %r4, 4\ncall 26\n\
               map_fd %r1, 0\nmov %r2, %r10\nadd %r2, -72\ncall 1\nmov %r0, 0\nexit";
    assert_eq!(depth(src), 72);
}

#[test]
fn callee_frames_and_pointers_into_the_caller_count() {
    // The callee writes 24 bytes below its own r10.
    let own = "call local f\nexit\nf:\nstdw [%r10-24], 0\nmov %r0, 0\nexit";
    assert_eq!(depth(own), 24);
    // The callee writes through a pointer 400 bytes into its caller's frame.
    let caller = "mov %r1, %r10\nadd %r1, -400\ncall local f\nmov %r0, 0\nexit\nf:\n\
                  stdw [%r1+0], 0\nmov %r0, 0\nexit";
    assert_eq!(depth(caller), 400);
}

#[test]
fn accesses_in_loops_count_every_offset_the_index_allows() {
    // for (i = 0; i < 100; i++) fp[-64 + 8 * (i & 7)] = i: reaches fp-64.
    let src = "mov %r6, 0\nloop:\nmov %r3, %r6\nand %r3, 7\nlsh %r3, 3\nmov %r2, %r10\n\
               add %r2, -64\nadd %r2, %r3\nstxdw [%r2+0], %r6\nadd %r6, 1\njlt %r6, 100, loop\n\
               mov %r0, 0\nexit";
    assert_eq!(accept(src, Syscall, &[]).stack_depth, 64);
}

/// Asserts that every reachable access through r10 itself lies within `v.stack_depth`.
fn assert_covers_fp_accesses(what: &str, code: &Program, v: &VerifiedProgram) {
    assert!(
        v.stack_depth <= 512 && v.stack_depth.is_multiple_of(8),
        "{what}"
    );
    for (pc, insn) in code.iter() {
        let at = match *insn {
            Instruction::Load { src: 10, off, .. } => off,
            Instruction::Store { dst: 10, off, .. } | Instruction::Atomic { dst: 10, off, .. } => {
                off
            }
            _ => continue,
        };
        if v.insns[pc].reachable {
            assert!(
                -i64::from(at) <= i64::from(v.stack_depth),
                "{what}: fp{at} at {pc} below the depth {}",
                v.stack_depth
            );
        }
    }
}

fn verify_code(
    code: &Program,
    prog_type: ProgType,
    maps: &[kflex_object::MapSpec],
) -> Option<VerifiedProgram> {
    let helpers = helpers_for(prog_type);
    verify_decoded(code, prog_type, maps, &helpers, &VerifyOptions::default()).ok()
}

#[test]
fn generated_programs_cover_every_frame_pointer_access() {
    let mut checked = 0;
    for seed in 0..300u64 {
        let g = progen::generate(seed, PROG_TYPES[(seed % 4) as usize]);
        let code = Program::decode(&g.insns).expect("generated programs decode");
        let Some(v) = verify_code(&code, g.prog_type, &g.maps) else {
            continue;
        };
        assert_covers_fp_accesses(&format!("seed {seed}"), &code, &v);
        checked += 1;
    }
    assert!(checked >= 150, "only {checked} generated programs verified");
}

#[test]
fn bundled_examples_cover_every_frame_pointer_access() {
    for ex in kflex_examples::all() {
        let obj = Object::parse(ex.name, ex.object).expect("example parses");
        for prog in &obj.programs {
            let prog_type = prog.prog_type.expect("known program type");
            let code = Program::decode(&prog.insns).expect("example decodes");
            let v = verify_code(&code, prog_type, &obj.maps).expect("example verifies");
            assert_covers_fp_accesses(ex.name, &code, &v);
            eprintln!("{}/{}: stack_depth {}", ex.name, prog.name, v.stack_depth);
        }
    }
}
