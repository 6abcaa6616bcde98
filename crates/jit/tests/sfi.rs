//! SFI guards against a real extension heap: forged pointers are forced into the heap (canary
//! mappings beyond the guard zones and a host stack buffer stay intact), reads through forged
//! pointers read heap bytes, every mode matches the interpreter on valid pointers, accesses past
//! the heap end are cancelled, and the guard instructions are present exactly where the verifier
//! asked for them.

mod sfi_support;

use iced_x86::{Mnemonic, OpKind, Register};
use kflex_jit::{
    HeapAccess, HeapLayout, JitEnv, JitError, JitFault, JitFaultKind, JitOptions, JitProgram,
    SfiMode,
};
use kflex_runtime::exec::CancelReason;
use kflex_runtime::heap::{Heap, HeapConfig};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};
use sfi_support::{
    Canary, Case, FORGED_STORE, HEAP_SIZE, MARK, PAGE, Rng, body, heap, heap_with_canaries,
    interp_run, jit_run, read_u64, write_u64,
};

const GUARDED_MODES: [SfiMode; 3] = [SfiMode::AndMask, SfiMode::Base, SfiMode::WritesOnly];

/// Loads a (possibly forged) pointer from heap offset 0 and returns the word it points to.
const FORGED_LOAD: &str = "
    map_value %r1, 0
    ldxdw %r2, [%r1]
    cast_kern %r2, %r2
    ldxdw %r0, [%r2]
    exit";

#[test]
fn forged_pointer_writes_land_inside_the_heap() {
    let (heap, guards) = heap_with_canaries();

    let mut host = [0xa7u8; PAGE];
    let host_addr = host.as_mut_ptr() as u64;
    let case = Case::new(FORGED_STORE, &heap);
    assert!(
        case.facts
            .iter()
            .any(|&(pc, f)| pc == 6 && f == HeapAccess::Guard { reg: 2 })
    );
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut targets = vec![
        host_addr,
        host_addr + 64,
        guards[0].addr,
        guards[1].addr + 8,
        heap.base() - 8,
        heap.base() + heap.size(),
        0,
        !7,
    ];
    targets.extend((0..300).map(|_| rng.next() & !7));
    for mode in GUARDED_MODES {
        let jit = case.compile(mode, &heap);
        for &forged in &targets {
            write_u64(&heap, 0, forged);
            let offset = forged & heap.mask();
            assert_eq!(jit_run(&jit, &heap), Ok(1), "{mode:?} {forged:#x}");
            assert_eq!(read_u64(&heap, offset), MARK, "{mode:?} {forged:#x}");
            write_u64(&heap, offset, 0);
        }
        assert!(guards.iter().all(Canary::intact), "{mode:?}");
        assert!(host.iter().all(|&b| b == 0xa7), "{mode:?}");
    }
    std::hint::black_box(&mut host);
}

#[test]
fn forged_pointer_atomics_land_inside_the_heap() {
    let (heap, guards) = heap_with_canaries();

    let host = [0u64; 512];
    let host_addr = host.as_ptr() as u64;
    let mut rng = Rng(0xfeed_f00d);
    let mut targets = vec![host_addr + 8, guards[0].addr + 16, guards[1].addr + 8];
    // Never heap offset 0 (it holds the forged pointer, which cmpxchg would not match).
    targets.extend((0..100).map(|_| rng.next() & !7 | 8));
    for atomic in [
        "lock add [%r2], %r3",
        "lock fetch or [%r2], %r3",
        "lock fetch xor32 [%r2], %r3",
        "lock xchg [%r2], %r3",
        "lock cmpxchg [%r2], %r3",
    ] {
        let src = format!(
            "map_value %r1, 0\nldxdw %r2, [%r1]\ncast_kern %r2, %r2\nmov %r3, 5\nmov %r0, 0\n{atomic}\nmov %r0, 1\nexit"
        );
        let case = Case::new(&src, &heap);
        assert!(
            case.facts.contains(&(6, HeapAccess::Guard { reg: 2 })),
            "{atomic}"
        );
        for mode in GUARDED_MODES {
            let jit = case.compile(mode, &heap);
            for &forged in &targets {
                write_u64(&heap, 0, forged);
                let offset = forged & heap.mask();
                assert_eq!(jit_run(&jit, &heap), Ok(1), "{atomic} {mode:?} {forged:#x}");
                assert_eq!(read_u64(&heap, offset), 5, "{atomic} {mode:?} {forged:#x}");
                write_u64(&heap, offset, 0);
            }
        }
    }
    assert!(guards.iter().all(Canary::intact));
    assert!(std::hint::black_box(&host).iter().all(|&w| w == 0));
}

#[test]
fn forged_pointer_reads_read_heap_bytes() {
    let heap = heap();
    let host = [0x11u8; 64];
    let case = Case::new(FORGED_LOAD, &heap);
    // Every word holds its offset mixed with a pattern (offset 0 holds the forged pointer).
    for off in (8..HEAP_SIZE).step_by(8) {
        write_u64(&heap, off, off ^ 0xdead_0000_0000);
    }
    let mut rng = Rng(12345);
    let mut targets = vec![host.as_ptr() as u64 + 8, 0x1000, u64::MAX - 7];
    targets.extend((0..200).map(|_| rng.next() & !7));
    for mode in [SfiMode::AndMask, SfiMode::Base] {
        let jit = case.compile(mode, &heap);
        for &forged in &targets {
            write_u64(&heap, 0, forged);
            let offset = forged & heap.mask();
            let expected = if offset == 0 {
                forged
            } else {
                offset ^ 0xdead_0000_0000
            };
            assert_eq!(jit_run(&jit, &heap), Ok(expected), "{mode:?} {forged:#x}");
        }
    }
}

/// Builds a linked list in the heap (through guarded pointers: `next` values are loaded from the
/// heap), sums it, and writes the sum and a checksum back.
const LIST_WALK: &str = "
    map_value %r6, 0
    mov %r1, 16
    mov %r4, 1
fill:
    mov %r2, %r6
    add %r2, %r1
    stxdw [%r2+8], %r4
    mov %r3, %r2
    add %r3, 16
    stxdw [%r2], %r3
    mov %r2, %r3
    add %r1, 16
    add %r4, 3
    jlt %r1, 4096, fill
    stdw [%r2], 0
    stxdw [%r2+8], %r4
    mov %r2, %r6
    add %r2, 16
    mov %r0, 0
walk:
    ldxdw %r3, [%r2+8]
    add %r0, %r3
    ldxdw %r2, [%r2]
    cast_kern %r2, %r2
    jne %r2, 0, walk
    stxdw [%r6+8], %r0
    exit";

#[test]
fn every_mode_matches_the_interpreter_on_valid_pointers() {
    let heap = heap();
    let case = Case::new(LIST_WALK, &heap);
    let expected = interp_run(&case.program, &heap);
    let mut image = vec![0u8; 8192];
    heap.read(0, &mut image).unwrap();
    assert_ne!(expected, 0);
    for mode in [
        SfiMode::AndMask,
        SfiMode::Base,
        SfiMode::WritesOnly,
        SfiMode::None,
    ] {
        heap.write(0, &[0u8; 8192]).unwrap();
        let jit = case.compile(mode, &heap);
        assert_eq!(jit_run(&jit, &heap), Ok(expected), "{mode:?}");
        let mut after = vec![0u8; 8192];
        heap.read(0, &mut after).unwrap();
        assert!(
            after == image,
            "{mode:?}: heap differs from the interpreter's"
        );
    }
}

#[test]
fn accesses_past_the_heap_end_are_cancelled() {
    let (heap, guards) = heap_with_canaries();

    // A guarded pointer to the last word, then an access with a large instruction offset.
    let case = Case::new(
        "
        map_value %r1, 0
        ldxdw %r2, [%r1]
        cast_kern %r2, %r2
        ldxdw %r0, [%r2]
        stdw [%r2+32000], 7
        exit",
        &heap,
    );
    let last = heap.base() + heap.size() - 8;
    for mode in GUARDED_MODES {
        let jit = case.compile(mode, &heap);
        write_u64(&heap, 0, last);
        match jit_run(&jit, &heap) {
            Err(JitFault {
                pc: 5,
                kind:
                    JitFaultKind::Cancelled {
                        reason: CancelReason::MemoryFault { addr },
                    },
                ..
            }) => assert_eq!(addr, last + 32000, "{mode:?}"),
            other => panic!("{mode:?}: {other:?}"),
        }
        // A word straddling the end is cancelled too.
        write_u64(&heap, 0, heap.base() + heap.size() - 4);
        let r = jit_run(&jit, &heap);
        assert!(
            matches!(
                r,
                Err(JitFault {
                    kind: JitFaultKind::Cancelled { .. },
                    ..
                })
            ),
            "{mode:?}: {r:?}"
        );
    }
    assert!(guards.iter().all(Canary::intact));
}

fn uses_r12(i: &iced_x86::Instruction) -> bool {
    (0..i.op_count()).any(|n| match i.op_kind(n) {
        OpKind::Register => i.op_register(n) == Register::R12,
        OpKind::Memory => i.memory_base() == Register::R12 || i.memory_index() == Register::R12,
        _ => false,
    })
}

#[test]
fn guard_instructions_are_present_exactly_where_asked() {
    let heap = heap();
    // pc 2: elided (lddw-derived); pc 5: guarded load; pc 6: elided after the guard; pc 7: store.
    let case = Case::new(
        "
        map_value %r1, 0
        ldxdw %r2, [%r1]
        cast_kern %r2, %r2
        mov %r0, 0
        ldxdw %r0, [%r2+8]
        ldxdw %r3, [%r2+16]
        stxdw [%r2+24], %r3
        exit",
        &heap,
    );
    let fact = |pc| case.facts.iter().find(|f| f.0 == pc).map(|f| f.1);
    assert!(matches!(fact(2), Some(HeapAccess::Elided { .. })));
    assert_eq!(fact(5), Some(HeapAccess::Guard { reg: 2 }));
    assert!(matches!(fact(6), Some(HeapAccess::Elided { .. })));
    assert!(matches!(fact(7), Some(HeapAccess::Elided { .. })));
    let has = |jit: &JitProgram, pc, m: Mnemonic| {
        body(jit, pc)
            .iter()
            .any(|i| i.mnemonic() == m && (m == Mnemonic::And || uses_r12(i)))
    };
    let and_mask = case.compile(SfiMode::AndMask, &heap);
    assert!(has(&and_mask, 5, Mnemonic::And) && has(&and_mask, 5, Mnemonic::Or));
    for pc in [2, 6, 7] {
        assert!(!body(&and_mask, pc).iter().any(uses_r12), "pc {pc}");
        assert_eq!(body(&and_mask, pc).len(), 1, "pc {pc}: only the access");
    }
    assert_eq!(and_mask.guards(), (1, 3));
    let stats = &case.verified.stats;
    assert_eq!(
        and_mask.guards(),
        (stats.guards_emitted, stats.guards_elided)
    );

    let base = case.compile(SfiMode::Base, &heap);
    assert!(has(&base, 5, Mnemonic::Lea) && has(&base, 5, Mnemonic::And));
    assert_eq!(base.guards(), (1, 3));

    // Writes only: the load at pc 5 is unguarded, every store is guarded.
    let writes = case.compile(SfiMode::WritesOnly, &heap);
    assert_eq!(body(&writes, 5).len(), 1);
    assert!(has(&writes, 7, Mnemonic::Or));
    assert_eq!(writes.guards(), (1, 3));

    let none = case.compile(SfiMode::None, &heap);
    assert_eq!(
        none.guards(),
        (0, 4),
        "every heap access compiled without a guard"
    );
    assert!(!body(&none, 5).iter().any(uses_r12));
}

#[test]
fn a_4gib_heap_masks_with_a_32_bit_move() {
    let heap = Heap::create(HeapConfig::new(1 << 32)).expect("4 GiB heap");
    let case = Case::new(FORGED_STORE, &heap);
    for mode in [SfiMode::AndMask, SfiMode::Base] {
        let jit = case.compile(mode, &heap);
        let forged = 0x1234_5678_9abc_def0u64;
        write_u64(&heap, 0, forged);
        assert_eq!(jit_run(&jit, &heap), Ok(1));
        assert_eq!(read_u64(&heap, forged & 0xffff_ffff), MARK, "{mode:?}");
        assert!(
            body(&jit, 6).iter().any(|i| i.mnemonic() == Mnemonic::Mov
                && matches!(i.op0_register(), Register::R11D | Register::ESI)),
            "{mode:?}"
        );
    }
}

#[test]
fn configuration_errors_are_reported() {
    let heap = heap();
    let case = Case::new(FORGED_STORE, &heap);
    let no_heap = JitOptions {
        heap_facts: case.facts.clone(),
        ..JitOptions::default()
    };
    assert!(matches!(
        JitProgram::compile(&case.program, &no_heap),
        Err(JitError::Instruction { pc: 6, .. })
    ));
    let unaligned = JitOptions {
        heap: Some(HeapLayout {
            base: heap.base() + 4096,
            size: heap.size(),
        }),
        ..no_heap.clone()
    };
    assert!(JitProgram::compile(&case.program, &unaligned).is_err());
    // A run whose heap base differs from the compiled layout is refused before it starts.
    let jit = case.compile(SfiMode::AndMask, &heap);
    let (mut mem, helpers, mut env) = (
        MemoryMap::new(),
        HelperRegistry::linux_default(),
        ExecEnv::default(),
    );
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.heap_base = heap.base() + heap.size();
    assert!(matches!(
        jit.run([0; 5], &mut jenv),
        Err(JitFault {
            kind: JitFaultKind::StackSetup(_),
            ..
        })
    ));
}
