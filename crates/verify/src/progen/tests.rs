//! Unit tests of the program generator.

use super::*;
use kflex_isa::Program;

#[test]
fn generation_is_deterministic_per_seed() {
    for t in PROG_TYPES {
        assert_eq!(generate(42, t), generate(42, t));
    }
    assert_ne!(
        generate(1, ProgType::Xdp).insns,
        generate(2, ProgType::Xdp).insns
    );
}

#[test]
fn generated_programs_decode() {
    for seed in 0..2000 {
        let g = generate(seed, PROG_TYPES[(seed % 4) as usize]);
        if let Err(e) = Program::decode(&g.insns) {
            panic!("seed {seed} ({}): {e:?}", g.note);
        }
    }
}

#[test]
fn mutated_programs_are_marked_and_rate_is_respected() {
    let mut opts = Options::new(ProgType::Xdp);
    opts.mutation_percent = 100;
    for seed in 0..50 {
        let g = generate_with(seed, &opts);
        assert_eq!(g.expect, Some(false));
        assert!(g.note.contains("mutation:"), "{}", g.note);
    }
    opts.mutation_percent = 0;
    for seed in 0..50 {
        assert_eq!(generate_with(seed, &opts).expect, Some(true));
    }
}

#[test]
fn packet_mutations_only_for_packet_types() {
    assert!(!Mutation::PacketNoCheck.applies_to(ProgType::Syscall));
    assert!(Mutation::PacketNoCheck.applies_to(ProgType::SchedCls));
    assert!(!Mutation::CtxWriteReadonly.applies_to(ProgType::Syscall));
}

#[test]
fn straight_line_reaches_the_requested_size_without_back_edges() {
    let g = straight_line(7, 5000, ProgType::Xdp);
    assert!(
        g.insns.len() >= 5000 && g.insns.len() < 5100,
        "{}",
        g.insns.len()
    );
    let p = Program::decode(&g.insns).unwrap();
    for (pc, insn) in p.iter() {
        if let Some(t) = insn.target(pc) {
            assert!(t > pc, "back-edge at {pc}");
        }
    }
}

#[test]
fn tags_and_heap_map() {
    let mut opts = Options::new(ProgType::Syscall);
    opts.heap = true;
    opts.fragments = 60;
    let found = (0..40).any(|s| generate_with(s, &opts).has_tag(TAG_HEAP));
    assert!(found);
    assert_eq!(generate_with(0, &opts).maps.len(), 4);
    opts.heap = false;
    assert!((0..40).all(|s| !generate_with(s, &opts).has_tag(TAG_HEAP)));
}
