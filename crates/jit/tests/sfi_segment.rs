//! The GS-segment SFI mode at run time (its encodings: `sfi_segment_encoding.rs`): forged
//! pointers land inside the heap's 4 GiB window or cancel the run (canaries around the heap and a
//! host buffer stay intact), verified programs
//! leave exactly the interpreter's heap, the host's GS base survives normal exits, cancellations
//! and nested runs, and heaps the mode cannot address fall back to and-mask.
//!
//! Every test prints `SKIPPED:` and passes when the CPU or kernel lacks user-space FSGSBASE.

mod sfi_support;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use iced_x86::{Mnemonic, Register};
use kflex_isa::decode::{Instruction as I, JmpOp, Operand, Size};
use kflex_jit::sfi::segment;
use kflex_jit::{
    HeapLayout, JitEnv, JitFault, JitFaultKind, JitOptions, JitProgram, SfiMode, TerminationMode,
};
use kflex_runtime::exec::CancelReason;
use kflex_runtime::heap::{Heap, HeapConfig, SEGMENT_WINDOW};
use kflex_runtime::helpers::{HelperError, RetKind};
use kflex_runtime::{ExecEnv, HelperDef, HelperRegistry, MemoryMap, Signature};
use sfi_support::{
    Canary, Case, FORGED_STORE, HEAP_SIZE, MARK, PAGE, Rng, body, guarded, heap,
    heap_with_canaries, interp_run, jit_run, options, random_heap_program, read_u64, supported,
    write_u64,
};

/// Where a forged 64-bit pointer lands in segment mode: its low 32 bits as a heap offset, if
/// inside the heap (else the access faults in the reserved rest of the window).
fn landing(heap: &Heap, forged: u64, len: u64) -> Option<u64> {
    let off = forged & (SEGMENT_WINDOW - 1);
    (off + len <= heap.size()).then_some(off)
}

fn is_cancelled(r: &Result<u64, JitFault>) -> bool {
    matches!(
        r,
        Err(JitFault {
            kind: JitFaultKind::Cancelled { .. },
            ..
        })
    )
}

/// Forged pointer targets: the host buffer, the canaries, the heap edges, and random words.
fn targets(heap: &Heap, host: u64, guards: &[Canary; 2], seed: u64, n: usize) -> Vec<u64> {
    let mut rng = Rng(seed);
    let mut t = vec![
        host,
        host + 64,
        guards[0].addr,
        guards[1].addr + 8,
        heap.base() - 8,
        heap.base() + heap.size(),
        heap.base() + heap.size() - 8,
        0,
        !7,
        0xdead_0000_0000_0010,
        // Straddling the window's end: 4 bytes below it, 4 past it.
        heap.base() + SEGMENT_WINDOW - 4,
        0xffff_fffc,
    ];
    // Random words, half of them with a low half inside the heap.
    t.extend((0..n).map(|i| {
        let r = rng.next() & !7;
        if i % 2 == 0 {
            r & !(SEGMENT_WINDOW - heap.size())
        } else {
            r
        }
    }));
    t
}

#[test]
fn forged_pointer_writes_land_in_the_heap_or_cancel() {
    if !supported() {
        return;
    }
    let (heap, guards) = heap_with_canaries();
    assert!(heap.segment_window());

    let mut host = [0xa7u8; PAGE];
    let case = Case::new(FORGED_STORE, &heap);
    let jit = case.compile(SfiMode::Segment, &heap);
    let (mut landed, mut cancelled) = (0, 0);
    for forged in targets(&heap, host.as_mut_ptr() as u64, &guards, 0x9e37_79b9, 300) {
        write_u64(&heap, 0, forged);
        let r = jit_run(&jit, &heap);
        match landing(&heap, forged, 8) {
            Some(off) => {
                assert_eq!(r, Ok(1), "{forged:#x}");
                assert_eq!(read_u64(&heap, off), MARK, "{forged:#x}");
                write_u64(&heap, off, 0);
                landed += 1;
            }
            None => {
                assert!(is_cancelled(&r), "{forged:#x}: {r:?}");
                assert_eq!(read_u64(&heap, 0), forged, "nothing written");
                cancelled += 1;
            }
        }
    }
    assert!(landed > 100 && cancelled > 100, "{landed} {cancelled}");
    assert!(guards.iter().all(Canary::intact));
    assert!(std::hint::black_box(&mut host).iter().all(|&b| b == 0xa7));
}

#[test]
fn forged_pointer_atomics_land_in_the_heap_or_cancel() {
    if !supported() {
        return;
    }
    let (heap, guards) = heap_with_canaries();

    let host = [0u64; 512];
    let mut forged_all = targets(&heap, host.as_ptr() as u64 + 8, &guards, 0xfeed, 60);
    // Never heap offset 0 (it holds the forged pointer, which cmpxchg would not match).
    forged_all.retain(|&f| f & (SEGMENT_WINDOW - 1) != 0);
    for atomic in [
        "lock add [%r2], %r3",
        "lock fetch add [%r2], %r3",
        "lock fetch or [%r2], %r3",
        "lock and32 [%r2], %r3",
        "lock fetch xor32 [%r2], %r3",
        "lock xchg [%r2], %r3",
        "lock cmpxchg [%r2], %r3",
        "lock cmpxchg32 [%r2], %r3",
    ] {
        let src = format!(
            "map_value %r1, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nmov %r3, 5\nmov %r0, 0\n{atomic}\nmov %r0, 1\nexit"
        );
        let case = Case::new(&src, &heap);
        let jit = case.compile(SfiMode::Segment, &heap);
        for &forged in &forged_all {
            write_u64(&heap, 0, forged);
            let r = jit_run(&jit, &heap);
            match landing(&heap, forged, 8) {
                Some(off) => {
                    assert_eq!(r, Ok(1), "{atomic} {forged:#x}");
                    let expect = if atomic.starts_with("lock and") { 0 } else { 5 };
                    assert_eq!(read_u64(&heap, off), expect, "{atomic} {forged:#x}");
                    write_u64(&heap, off, 0);
                }
                None => assert!(is_cancelled(&r), "{atomic} {forged:#x}: {r:?}"),
            }
        }
    }
    assert!(guards.iter().all(Canary::intact));
    assert!(std::hint::black_box(&host).iter().all(|&w| w == 0));
}

#[test]
fn forged_pointer_reads_read_heap_bytes_or_cancel() {
    if !supported() {
        return;
    }
    let (heap, guards) = heap_with_canaries();

    let case = Case::new(
        "map_value %r1, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nldxdw %r0, [%r2]\nexit",
        &heap,
    );
    for off in (8..HEAP_SIZE).step_by(8) {
        write_u64(&heap, off, off ^ 0xdead_0000_0000);
    }
    let jit = case.compile(SfiMode::Segment, &heap);
    let host = [0x11u8; 64];
    for forged in targets(&heap, host.as_ptr() as u64, &guards, 12345, 200) {
        write_u64(&heap, 0, forged);
        let r = jit_run(&jit, &heap);
        match landing(&heap, forged, 8) {
            Some(0) => assert_eq!(r, Ok(forged)),
            Some(off) => assert_eq!(r, Ok(off ^ 0xdead_0000_0000), "{forged:#x}"),
            None => assert!(is_cancelled(&r), "{forged:#x}: {r:?}"),
        }
    }
}

#[test]
fn accesses_past_the_heap_end_are_cancelled() {
    if !supported() {
        return;
    }
    let (heap, guards) = heap_with_canaries();

    let case = Case::new(
        "map_value %r1, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nldxdw %r0, [%r2]\nstdw [%r2+32000], 7\nexit",
        &heap,
    );
    let jit = case.compile(SfiMode::Segment, &heap);
    let last = heap.base() + heap.size() - 8;
    write_u64(&heap, 0, last);
    match jit_run(&jit, &heap) {
        Err(JitFault {
            pc: 5,
            kind:
                JitFaultKind::Cancelled {
                    reason: CancelReason::MemoryFault { addr },
                },
            ..
        }) => assert_eq!(addr, last + 32000),
        other => panic!("{other:?}"),
    }
    // A word straddling the end, and a negative offset below the heap start (it wraps to the top
    // of the window).
    write_u64(&heap, 0, heap.base() + heap.size() - 4);
    assert!(is_cancelled(&jit_run(&jit, &heap)));
    let below = Case::new(
        "map_value %r1, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nstdw [%r2-16], 7\nmov %r0, 1\nexit",
        &heap,
    );
    let jit = below.compile(SfiMode::Segment, &heap);
    write_u64(&heap, 0, heap.base() + 8);
    assert!(is_cancelled(&jit_run(&jit, &heap)));
    write_u64(&heap, 0, heap.base() + 24);
    assert_eq!(jit_run(&jit, &heap), Ok(1));
    assert_eq!(read_u64(&heap, 8), 7);
    assert!(guards.iter().all(Canary::intact));
}

#[test]
fn verified_programs_leave_the_interpreters_heap() {
    if !supported() {
        return;
    }
    let heap = heap();
    let mut rng = Rng(0xc0ff_ee00_1234);
    let image_len = 1024;
    let mut guarded_sites = 0;
    for _ in 0..150 {
        let src = random_heap_program(&mut rng);
        let case = Case::new(&src, &heap);
        let seed: Vec<u8> = (0..image_len).map(|_| rng.next() as u8).collect();
        heap.write(0, &seed).unwrap();
        let expected = interp_run(&case.program, &heap);
        let mut image = vec![0u8; image_len];
        heap.read(0, &mut image).unwrap();
        for mode in [SfiMode::Segment, SfiMode::AndMask] {
            heap.write(0, &seed).unwrap();
            let jit = case.compile(mode, &heap);
            assert_eq!(jit_run(&jit, &heap), Ok(expected), "{mode:?}\n{src}");
            let mut after = vec![0u8; image_len];
            heap.read(0, &mut after).unwrap();
            assert!(after == image, "{mode:?}: heap differs\n{src}");
            let stats = &case.verified.stats;
            assert_eq!(jit.guards(), (stats.guards_emitted, stats.guards_elided));
        }
        guarded_sites += case.verified.stats.guards_emitted;
    }
    assert!(guarded_sites > 100, "the corpus exercises guarded accesses");
}

/// Sets the calling thread's GS base (the tests own their threads' GS: nothing else uses it).
fn set_gs_base(v: u64) {
    // SAFETY: `supported()` confirmed user-space FSGSBASE; nothing in this process uses GS on
    // x86-64 Linux, so changing this thread's GS base affects only the JIT runs under test.
    unsafe { std::arch::asm!("wrgsbase {}", in(reg) v, options(nostack, preserves_flags)) };
}

#[test]
fn the_hosts_gs_base_survives_exits_and_cancellations() {
    if !supported() {
        return;
    }
    let heap = heap();
    let store = Case::new(FORGED_STORE, &heap).compile(SfiMode::Segment, &heap);
    let sentinel = 0x7e57_0000_1000u64;
    let before = segment::gs_base().unwrap();
    set_gs_base(sentinel);
    // Normal exit.
    write_u64(&heap, 0, heap.base() + 64);
    assert_eq!(jit_run(&store, &heap), Ok(1));
    assert_eq!(segment::gs_base(), Some(sentinel));
    // Cancelled by a memory fault in the window above the heap.
    write_u64(&heap, 0, heap.base() + heap.size() + 4096);
    assert!(is_cancelled(&jit_run(&store, &heap)));
    assert_eq!(segment::gs_base(), Some(sentinel));
    // Cancelled by the watchdog in an endless loop that keeps writing the heap.
    let endless = Case::new(
        "map_value %r1, 0\nmov %r2, 0\nloop:\nstxdw [%r1+8], %r2\nadd %r2, 1\nja loop",
        &heap,
    );
    let options = JitOptions {
        sfi: SfiMode::Segment,
        heap: Some(HeapLayout {
            base: heap.base(),
            size: heap.size(),
        }),
        heap_facts: endless.facts.clone(),
        termination: TerminationMode::OneLoad,
        termination_points: endless
            .verified
            .termination_points
            .iter()
            .map(|t| t.pc)
            .collect(),
        ..JitOptions::default()
    };
    let jit = JitProgram::compile(&endless.program, &options).unwrap();
    let (mut mem, helpers, mut env) = (
        MemoryMap::new(),
        HelperRegistry::linux_default(),
        ExecEnv::default(),
    );
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.heap_base = heap.base();
    jenv.budget = Some(Duration::from_millis(5));
    let r = jit.run([0; 5], &mut jenv);
    assert!(
        matches!(
            r,
            Err(JitFault {
                kind: JitFaultKind::Cancelled {
                    reason: CancelReason::Terminated
                },
                ..
            })
        ),
        "{r:?}"
    );
    assert!(read_u64(&heap, 8) > 0, "the loop ran");
    assert_eq!(segment::gs_base(), Some(sentinel));
    set_gs_base(before);
}

thread_local! {
    /// The inner program a helper runs (nested run), and its heap.
    static INNER: RefCell<Option<(JitProgram, Heap)>> = const { RefCell::new(None) };
    /// The GS base the helper saw before and after its nested run.
    static SEEN: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// `r6 = base; [r6+off] = value` for a hand-built program.
fn store_at(base: u64, off: i16, value: i32) -> [I; 3] {
    [
        I::LoadImm64 {
            dst: 6,
            pseudo: 0,
            imm: base,
        },
        I::Mov {
            width: kflex_isa::decode::Width::W64,
            dst: 1,
            src: Operand::Imm(value),
        },
        I::Store {
            size: Size::DW,
            dst: 6,
            off,
            src: Operand::Reg(1),
        },
    ]
}

#[test]
fn a_helper_running_another_extension_sees_each_heap_in_turn() {
    if !supported() {
        return;
    }
    let (outer_heap, inner_heap) = (heap(), heap());
    let inner_prog = {
        let (p, facts) = guarded(&store_at(inner_heap.base(), 16, 0x1111));
        let o = options(
            SfiMode::Segment,
            inner_heap.base(),
            inner_heap.size(),
            &facts,
        );
        JitProgram::compile(&p, &o).unwrap()
    };
    INNER.with(|c| *c.borrow_mut() = Some((inner_prog, inner_heap)));
    let mut helpers = HelperRegistry::empty();
    helpers
        .register(HelperDef {
            id: 1,
            name: "run_inner".into(),
            sig: Signature::new(&[], RetKind::Scalar),
            func: Arc::new(|_| {
                SEEN.with(|s| s.borrow_mut().push(segment::gs_base().unwrap()));
                let r = INNER.with(|c| {
                    let c = c.borrow();
                    let (jit, heap) = c.as_ref().unwrap();
                    jit_run(jit, heap)
                });
                SEEN.with(|s| s.borrow_mut().push(segment::gs_base().unwrap()));
                Ok(r.map_or(99, |_| 7))
            }),
        })
        .unwrap();
    let mut insns = store_at(outer_heap.base(), 8, 0x2222).to_vec();
    insns.push(I::Call { helper: 1 });
    insns.extend(store_at(outer_heap.base(), 24, 0x3333));
    insns.push(I::Load {
        size: Size::DW,
        dst: 0,
        src: 6,
        off: 8,
        sign_extend: false,
    });
    insns.push(I::Jump {
        width: kflex_isa::decode::Width::W64,
        op: JmpOp::Eq,
        dst: 0,
        src: Operand::Imm(0x2222),
        off: 1,
    });
    insns.push(I::Exit);
    insns.push(I::Mov {
        width: kflex_isa::decode::Width::W64,
        dst: 0,
        src: Operand::Imm(0x600d),
    });
    let (program, facts) = guarded(&insns);
    let o = options(
        SfiMode::Segment,
        outer_heap.base(),
        outer_heap.size(),
        &facts,
    );
    let outer = JitProgram::compile(&program, &o).unwrap();
    let before = segment::gs_base().unwrap();
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.heap_base = outer_heap.base();
    assert_eq!(outer.run([0; 5], &mut jenv), Ok(0x600d));
    assert_eq!(segment::gs_base(), Some(before));
    // The helper ran with the outer heap in GS, and the nested run gave it back.
    let seen = SEEN.with(|s| s.borrow().clone());
    assert_eq!(seen, [outer_heap.base(), outer_heap.base()]);
    assert_eq!(read_u64(&outer_heap, 8), 0x2222);
    assert_eq!(read_u64(&outer_heap, 24), 0x3333);
    assert_eq!(
        read_u64(&outer_heap, 16),
        0,
        "the inner store went to its own heap"
    );
    INNER.with(|c| {
        let c = c.borrow();
        let (_, inner_heap) = c.as_ref().unwrap();
        assert_eq!(read_u64(inner_heap, 16), 0x1111);
    });
}

#[test]
fn a_failing_helper_leaves_through_the_restore_too() {
    if !supported() {
        return;
    }
    let heap = heap();
    let mut helpers = HelperRegistry::empty();
    helpers
        .register(HelperDef {
            id: 2,
            name: "fail".into(),
            sig: Signature::new(&[], RetKind::Scalar),
            func: Arc::new(|_| Err(HelperError::Unavailable("refused".into()))),
        })
        .unwrap();
    let mut insns = store_at(heap.base(), 8, 0x4444).to_vec();
    insns.push(I::Call { helper: 2 });
    insns.extend(store_at(heap.base(), 16, 0x5555));
    let (program, facts) = guarded(&insns);
    let jit = JitProgram::compile(
        &program,
        &options(SfiMode::Segment, heap.base(), heap.size(), &facts),
    )
    .unwrap();
    let sentinel = 0x7e57_0000_2000u64;
    let before = segment::gs_base().unwrap();
    set_gs_base(sentinel);
    let (mut mem, mut env) = (MemoryMap::new(), ExecEnv::default());
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.heap_base = heap.base();
    let r = jit.run([0; 5], &mut jenv);
    let after = segment::gs_base();
    set_gs_base(before);
    assert!(r.is_err(), "{r:?}");
    assert_eq!(after, Some(sentinel));
    assert_eq!(read_u64(&heap, 8), 0x4444);
    assert_eq!(read_u64(&heap, 16), 0, "the run stopped at the helper");
}

#[test]
fn heaps_segment_mode_cannot_address_fall_back_to_and_mask() {
    if !supported() {
        return;
    }
    let is_segment = |jit: &JitProgram, pc| {
        body(jit, pc)
            .iter()
            .any(|i| i.segment_prefix() == Register::GS)
    };
    let has_mask =
        |jit: &JitProgram, pc| body(jit, pc).iter().any(|i| i.mnemonic() == Mnemonic::Or);
    // An 8 GiB heap: larger than the window.
    let big = Heap::create(HeapConfig::new(SEGMENT_WINDOW * 2)).expect("8 GiB heap");
    assert!(!big.segment_window());
    let case = Case::new(FORGED_STORE, &big);
    let jit = case.compile(SfiMode::Segment, &big);
    assert!(!is_segment(&jit, 6) && has_mask(&jit, 6));
    let forged = 0x1234_5678_9abc_def0u64;
    write_u64(&big, 0, forged);
    assert_eq!(jit_run(&jit, &big), Ok(1));
    assert_eq!(read_u64(&big, forged & big.mask()), MARK);
    // A heap at a fixed base that is not 4 GiB-aligned.
    let fixed = Heap::create(HeapConfig {
        address: Some(0x5e00_0010_0000),
        ..HeapConfig::new(HEAP_SIZE)
    })
    .expect("fixed heap");
    let case = Case::new(FORGED_STORE, &fixed);
    let jit = case.compile(SfiMode::Segment, &fixed);
    assert!(!is_segment(&jit, 6) && has_mask(&jit, 6));
    write_u64(&fixed, 0, forged);
    assert_eq!(jit_run(&jit, &fixed), Ok(1));
    assert_eq!(read_u64(&fixed, forged & fixed.mask()), MARK);
    // And a heap that can: segment-relative, no mask.
    let h = heap();
    let jit = Case::new(FORGED_STORE, &h).compile(SfiMode::Segment, &h);
    assert!(is_segment(&jit, 6) && !has_mask(&jit, 6));
    assert_eq!(
        kflex_jit::sfi::effective(
            SfiMode::Segment,
            HeapLayout {
                base: big.base(),
                size: big.size()
            }
        ),
        SfiMode::AndMask
    );
}
