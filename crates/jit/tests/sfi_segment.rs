//! The GS-segment SFI mode: every heap access is `gs:[r32 + disp]` (checked instruction by
//! instruction with iced-x86's decoder), forged pointers land inside the heap's 4 GiB window or
//! cancel the run (canaries around the heap and a host buffer stay intact), verified programs
//! leave exactly the interpreter's heap, the host's GS base survives normal exits, cancellations
//! and nested runs, and heaps the mode cannot address fall back to and-mask.
//!
//! Every test prints `SKIPPED:` and passes when the CPU or kernel lacks user-space FSGSBASE.

mod sfi_support;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use iced_x86::{Formatter, IntelFormatter, MemorySizeOptions, Mnemonic, OpKind, Register};
use kflex_isa::decode::{AtomicOp, Instruction as I, JmpOp, Operand, Program, Size, encode_all};
use kflex_jit::sfi::segment;
use kflex_jit::{
    HeapAccess, HeapLayout, JitEnv, JitFault, JitFaultKind, JitOptions, JitProgram, SfiMode,
    TerminationMode,
};
use kflex_runtime::exec::CancelReason;
use kflex_runtime::heap::{Heap, HeapConfig, SEGMENT_WINDOW};
use kflex_runtime::helpers::{HelperError, RetKind};
use kflex_runtime::{ExecEnv, HelperDef, HelperRegistry, MemoryMap, Signature};
use sfi_support::{
    Canary, Case, HEAP_SIZE, PAGE, Rng, body, canaries, heap, interp_run, jit_run,
    random_heap_program, read_u64, write_u64,
};

const MARK: u64 = 0x5afe_5afe_5afe_5afe;

/// False (after printing the skip line) when segment mode cannot run here.
fn supported() -> bool {
    if segment::available() {
        return true;
    }
    kflex_testutil::skip("no user-space FSGSBASE (AT_HWCAP2 bit 1): segment SFI mode unavailable");
    false
}

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

/// BPF register -> the 32-bit x86 register segment-mode accesses address through.
const BASE32: [Register; 11] = [
    Register::EAX,
    Register::EDI,
    Register::ESI,
    Register::EDX,
    Register::ECX,
    Register::R8D,
    Register::EBX,
    Register::R13D,
    Register::R14D,
    Register::R15D,
    Register::EBP,
];

/// A program of `body` followed by `exit`, with a `Guard` fact on every memory access.
fn guarded(body: &[I]) -> (Program, Vec<(usize, HeapAccess)>) {
    let mut insns = body.to_vec();
    insns.push(I::Exit);
    let program = Program::decode(&encode_all(&insns)).expect("decodes");
    let facts = program
        .iter()
        .filter_map(|(pc, insn)| match *insn {
            I::Load { src, .. } | I::LoadAcquire { src, .. } => Some((pc, src)),
            I::Store { dst, .. } | I::StoreRelease { dst, .. } | I::Atomic { dst, .. } => {
                Some((pc, dst))
            }
            _ => None,
        })
        .map(|(pc, reg)| (pc, HeapAccess::Guard { reg }))
        .collect();
    (program, facts)
}

fn options(mode: SfiMode, base: u64, size: u64, facts: &[(usize, HeapAccess)]) -> JitOptions {
    JitOptions {
        sfi: mode,
        heap: Some(HeapLayout { base, size }),
        heap_facts: facts.to_vec(),
        ..JitOptions::default()
    }
}

/// Bytes the memory operand of `i` accesses, from the Intel syntax with explicit size hints.
fn operand_bytes(i: &iced_x86::Instruction) -> usize {
    let mut f = IntelFormatter::new();
    f.options_mut()
        .set_memory_size_options(MemorySizeOptions::Always);
    let mut text = String::new();
    f.format(i, &mut text);
    [
        ("qword ptr", 8),
        ("dword ptr", 4),
        ("word ptr", 2),
        ("byte ptr", 1),
    ]
    .iter()
    .find(|(hint, _)| text.contains(hint))
    .map_or(0, |&(_, n)| n)
}

/// The x86 instructions that access the heap for `insn`, in order.
fn access_mnemonics(insn: &I) -> Vec<Mnemonic> {
    use Mnemonic as M;
    match *insn {
        I::Load {
            size, sign_extend, ..
        } => vec![match (size, sign_extend) {
            (Size::B | Size::H, false) => M::Movzx,
            (Size::B | Size::H, true) => M::Movsx,
            (Size::W, true) => M::Movsxd,
            _ => M::Mov,
        }],
        I::LoadAcquire { size, .. } => vec![match size {
            Size::B | Size::H => M::Movzx,
            _ => M::Mov,
        }],
        I::Store { .. } | I::StoreRelease { .. } => vec![M::Mov],
        I::Atomic { op, fetch, .. } => match (op, fetch) {
            (AtomicOp::Add, true) => vec![M::Xadd],
            (AtomicOp::Add, false) => vec![M::Add],
            (AtomicOp::Xchg, _) => vec![M::Xchg],
            (AtomicOp::Cmpxchg, _) => vec![M::Cmpxchg],
            (_, true) => vec![M::Mov, M::Cmpxchg],
            (AtomicOp::Or, false) => vec![M::Or],
            (AtomicOp::And, false) => vec![M::And],
            (AtomicOp::Xor, false) => vec![M::Xor],
        },
        _ => Vec::new(),
    }
}

#[test]
fn every_access_form_is_gs_relative_with_32_bit_addressing() {
    if !supported() {
        return;
    }
    let sizes = [Size::B, Size::H, Size::W, Size::DW];
    let ops = [
        AtomicOp::Add,
        AtomicOp::Or,
        AtomicOp::And,
        AtomicOp::Xor,
        AtomicOp::Xchg,
        AtomicOp::Cmpxchg,
    ];
    let offsets = [0i16, 8, -8, 127, 128, -129, 32767, -32768];
    let mut rng = Rng(0x5e6_0001);
    for (base, &base32) in BASE32.iter().enumerate() {
        let b = base as u8;
        // (instruction, memory operand bytes, expected GS-relative operands in the body)
        let mut cases: Vec<(I, usize, usize)> = Vec::new();
        for &off in &offsets {
            let other = (b + 1 + (rng.next() % 9) as u8) % 10;
            for &size in &sizes {
                let len = usize::from(size.bytes());
                for sign_extend in [false, true] {
                    if !(sign_extend && size == Size::DW) {
                        let ld = I::Load {
                            size,
                            dst: other,
                            src: b,
                            off,
                            sign_extend,
                        };
                        cases.push((ld, len, 1));
                    }
                }
                cases.push((
                    I::Store {
                        size,
                        dst: b,
                        off,
                        src: Operand::Reg(other),
                    },
                    len,
                    1,
                ));
                cases.push((
                    I::Store {
                        size,
                        dst: b,
                        off,
                        src: Operand::Imm(-5),
                    },
                    len,
                    1,
                ));
                cases.push((
                    I::LoadAcquire {
                        size,
                        dst: other,
                        src: b,
                        off,
                    },
                    len,
                    1,
                ));
                cases.push((
                    I::StoreRelease {
                        size,
                        dst: b,
                        src: other,
                        off,
                    },
                    len,
                    1,
                ));
            }
            for size in [Size::W, Size::DW] {
                for op in ops {
                    for fetch in [false, true] {
                        if !fetch && matches!(op, AtomicOp::Xchg | AtomicOp::Cmpxchg) {
                            continue;
                        }
                        // The fetch and/or/xor loop reads once, then retries a cmpxchg.
                        let operands = if fetch
                            && matches!(op, AtomicOp::Or | AtomicOp::And | AtomicOp::Xor)
                        {
                            2
                        } else {
                            1
                        };
                        let at = I::Atomic {
                            size,
                            op,
                            fetch,
                            dst: b,
                            src: other,
                            off,
                        };
                        cases.push((at, usize::from(size.bytes()), operands));
                    }
                }
            }
        }
        let insns: Vec<I> = cases.iter().map(|c| c.0).collect();
        let (program, facts) = guarded(&insns);
        let jit = JitProgram::compile(
            &program,
            &options(SfiMode::Segment, SEGMENT_WINDOW * 3, HEAP_SIZE, &facts),
        )
        .expect("compiles");
        assert_eq!(jit.guards(), (cases.len() as u64, 0));
        for (pc, &(insn, len, expected)) in cases.iter().enumerate() {
            let code = body(&jit, pc);
            let heap_operands: Vec<_> = code
                .iter()
                .filter(|i| (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory))
                .filter(|i| i.memory_base() != Register::RSP && i.mnemonic() != Mnemonic::Lea)
                .collect();
            assert_eq!(heap_operands.len(), expected, "{insn:?}: {code:?}");
            let mnemonics: Vec<_> = heap_operands.iter().map(|i| i.mnemonic()).collect();
            assert_eq!(mnemonics, access_mnemonics(&insn), "{insn:?}: {code:?}");
            for i in heap_operands {
                assert_eq!(i.segment_prefix(), Register::GS, "{insn:?}: {i}");
                assert_eq!(i.memory_index(), Register::None, "{insn:?}: {i}");
                assert_eq!(operand_bytes(i), len, "{insn:?}: {i}");
                if expected == 2 {
                    // Through the address formed in r10 first.
                    assert_eq!(i.memory_base(), Register::R10D, "{insn:?}: {i}");
                } else {
                    assert_eq!(i.memory_base(), base32, "{insn:?}: {i}");
                    let off = match insn {
                        I::Load { off, .. }
                        | I::Store { off, .. }
                        | I::LoadAcquire { off, .. }
                        | I::StoreRelease { off, .. }
                        | I::Atomic { off, .. } => off,
                        _ => unreachable!(),
                    };
                    assert_eq!(i.memory_displacement32() as i32, i32::from(off), "{i}");
                }
                let rmw = i.mnemonic() != Mnemonic::Mov;
                if rmw && matches!(insn, I::Atomic { op, .. } if op != AtomicOp::Xchg) {
                    assert!(i.has_lock_prefix(), "{insn:?}: {i}");
                }
            }
            // No guard instruction: loads and stores are the access alone.
            if matches!(insn, I::Load { .. } | I::Store { .. }) {
                assert_eq!(code.len(), 1, "{insn:?}: {code:?}");
            }
        }
    }
}

/// Loads a (possibly forged) pointer from heap offset 0, stores `MARK` through it, returns 1.
const FORGED_STORE: &str = "
    map_value %r1, 0
    ldxdw %r2, [%r1]
    cast_kern %r2, %r2
    lddw %r3, 0x5afe5afe5afe5afe
    stxdw [%r2], %r3
    mov %r0, 1
    exit";

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
    let heap = heap();
    assert!(heap.segment_window());
    let guards = canaries(&heap);
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
    let heap = heap();
    let guards = canaries(&heap);
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
    let heap = heap();
    let guards = canaries(&heap);
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
    let heap = heap();
    let guards = canaries(&heap);
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
