//! Runs one after another on the same thread reuse cached stack buffers: each run must still start
//! from zeroed frames, see only its own frames, and leave the memory map as it found it.

mod common;
use common::*;

/// Reads 8 bytes at `r10 + off` into r0, then writes `marker` there.
fn read_then_scribble(off: i16, marker: i32) -> Vec<Instruction> {
    vec![
        ld(Size::DW, 0, 10, off),
        st(Size::DW, 10, off, Imm(marker)),
        I::Exit,
    ]
}

#[test]
fn every_run_starts_with_a_zeroed_frame_zero() {
    let mut h = Harness::new();
    for off in [-8i16, -256, -512] {
        for round in 0..3 {
            let out = h.run(&read_then_scribble(off, 0x5a5a), [0; 5]).unwrap();
            assert_eq!(out.retval, 0, "offset {off}, round {round}");
        }
    }
}

/// `main` calls `sub`, which returns what its frame holds at `r10 - 64` and then writes 7 there.
fn deep_frame_program() -> Vec<Instruction> {
    vec![
        // main: r0 = sub() ; return r0
        I::CallLocal { imm: 1 },
        I::Exit,
        // sub (frame 1): r0 = *(r10 - 64); *(r10 - 64) = 7; return r0
        ld(Size::DW, 0, 10, -64),
        st(Size::DW, 10, -64, Imm(7)),
        I::Exit,
    ]
}

#[test]
fn deeper_frames_are_zeroed_for_each_run() {
    let mut h = Harness::new();
    for round in 0..3 {
        let out = h.run(&deep_frame_program(), [0; 5]).unwrap();
        assert_eq!(out.retval, 0, "round {round}");
    }
}

#[test]
fn a_frame_entered_twice_in_one_run_keeps_what_the_first_call_wrote() {
    // main: sub(); r0 = sub(); exit — the second call reads what the first one wrote (the
    // stack is not re-zeroed within a run), and the next run starts from zero again.
    let insns = vec![
        I::CallLocal { imm: 2 },
        I::CallLocal { imm: 1 },
        I::Exit,
        ld(Size::DW, 0, 10, -64),
        st(Size::DW, 10, -64, Imm(7)),
        I::Exit,
    ];
    let mut h = Harness::new();
    for round in 0..3 {
        assert_eq!(h.run(&insns, [0; 5]).unwrap().retval, 7, "round {round}");
    }
}

#[test]
fn the_stack_of_a_finished_run_is_not_accessible() {
    let mut h = Harness::new();
    let top = h.run(&[movr(0, 10), I::Exit], [0; 5]).unwrap().retval;
    let access = h.mem.check(top - 8, 8, kflex_runtime::Access::Read);
    assert!(access.is_err(), "{access:?}");
    // A later run handed that address cannot reach memory above its own frame top either.
    let f = h
        .run(&[ld(Size::DW, 0, 1, 0), I::Exit], [top, 0, 0, 0, 0])
        .unwrap_err();
    assert!(matches!(f.kind, FaultKind::Memory(_)), "{f}");
}

#[test]
fn the_memory_map_is_left_as_it_was_after_runs_and_faults() {
    let mut h = Harness::new();
    let mut buf = [0u8; 16];
    h.map(&mut buf, RegionKind::Input, true);
    let before = h.mem.regions().to_vec();
    h.run(&[mov(0, 1), I::Exit], [0; 5]).unwrap();
    assert_eq!(h.mem.regions(), &before[..]);
    // Faulting in a nested frame removes every frame too.
    let insns = [
        I::CallLocal { imm: 1 },
        I::Exit,
        ld(Size::DW, 0, 10, 0),
        I::Exit,
    ];
    h.run(&insns, [0; 5]).unwrap_err();
    assert_eq!(h.mem.regions(), &before[..]);
}

#[test]
fn a_call_depth_limit_smaller_than_an_earlier_run_still_applies() {
    let recurse = [I::CallLocal { imm: -1 }, I::Exit];
    let mut h = Harness::new();
    h.limits.max_call_depth = 8;
    let f = h.run(&recurse, [0; 5]).unwrap_err();
    assert_eq!(f.kind, FaultKind::CallDepth { limit: 8 });
    h.limits.max_call_depth = 3;
    let f = h.run(&recurse, [0; 5]).unwrap_err();
    assert_eq!(f.kind, FaultKind::CallDepth { limit: 3 });
    h.limits.max_call_depth = 20;
    let f = h.run(&recurse, [0; 5]).unwrap_err();
    assert_eq!(f.kind, FaultKind::CallDepth { limit: 20 });
}
