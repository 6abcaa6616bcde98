//! SFI guards against a real extension heap: forged pointers are forced into the heap (canary
//! mappings beyond the guard zones and a host stack buffer stay intact), reads through forged
//! pointers read heap bytes, every mode matches the interpreter on valid pointers, accesses past
//! the heap end are cancelled, and the guard instructions are present exactly where the verifier
//! asked for them.

use iced_x86::{Decoder, DecoderOptions, Mnemonic, OpKind, Register};
use kflex_interp::{Vm, run};
use kflex_isa::asm::assemble;
use kflex_isa::decode::Program;
use kflex_isa::insn::Insn;
use kflex_isa::op;
use kflex_jit::{
    HeapAccess, HeapLayout, JitEnv, JitError, JitFault, JitFaultKind, JitOptions, JitProgram,
    SfiMode,
};
use kflex_object::{MapSpec, MapType, ProgType};
use kflex_runtime::exec::CancelReason;
use kflex_runtime::heap::{Heap, HeapConfig};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};
use kflex_verify::{VerifiedProgram, VerifyInput, VerifyOptions, verify};

const HEAP_SIZE: u64 = 1 << 20;
const PAGE: usize = 4096;
const MARK: u64 = 0x5afe_5afe_5afe_5afe;
const GUARDED_MODES: [SfiMode; 3] = [SfiMode::AndMask, SfiMode::Base, SfiMode::WritesOnly];

/// Assembles the conformance dialect plus `map_value %rN, OFF` (`lddw` of the arena map's value
/// at OFF) and `cast_kern %rD, %rS` (`addr_space_cast` from address space 1 to 0).
fn assemble_heap(src: &str) -> Vec<Insn> {
    let (mut lines, mut patches, mut slot) = (Vec::new(), Vec::new(), 0usize);
    for line in src.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (m, rest) = line.split_once(' ').unwrap_or((line, ""));
        let args: Vec<&str> = rest.split(',').map(str::trim).collect();
        let text = match m {
            "map_value" => {
                patches.push((slot, true));
                let off: u64 = args[1].parse().unwrap();
                format!("lddw {}, {:#x}", args[0], off << 32)
            }
            "cast_kern" => {
                patches.push((slot, false));
                format!("mov {}, {}", args[0], args[1])
            }
            _ => line.to_string(),
        };
        if !text.ends_with(':') {
            slot += if text.starts_with("lddw") { 2 } else { 1 };
        }
        lines.push(text);
    }
    let mut slots = assemble(&lines.join("\n")).unwrap_or_else(|e| panic!("{e}\n{src}"));
    for (at, map_value) in patches {
        if map_value {
            slots[at].src = op::PSEUDO_MAP_VALUE;
        } else {
            slots[at].off = op::ADDR_SPACE_CAST;
            slots[at].imm = 1;
        }
    }
    slots
}

/// Verifies the program (one arena map) and returns the verifier's facts.
fn verified(slots: &[Insn]) -> VerifiedProgram {
    let program = Program::decode(slots).unwrap();
    let maps = [MapSpec {
        name: "heap".into(),
        map_type: MapType::Arena,
        key_size: 0,
        value_size: 0,
        max_entries: (HEAP_SIZE / PAGE as u64) as u32,
        flags: 0,
        map_extra: 0,
        global: None,
        initial_value: None,
    }];
    let helpers = HelperRegistry::linux_default();
    let input = VerifyInput {
        program: &program,
        prog_type: ProgType::Syscall,
        maps: &maps,
        helpers: &helpers,
        line_info: &[],
        func_info: &[],
    };
    verify(&input, &VerifyOptions::default()).unwrap_or_else(|e| panic!("rejected: {e}"))
}

/// Resolves `map_value` loads to the heap's address (what linking does).
fn link(slots: &[Insn], heap: &Heap) -> Program {
    let mut slots = slots.to_vec();
    for i in 0..slots.len() {
        if slots[i].opcode == op::LD | op::IMM | op::DW && slots[i].src == op::PSEUDO_MAP_VALUE {
            let addr = heap.base() + u64::from(slots[i + 1].imm as u32);
            slots[i].src = 0;
            slots[i].imm = addr as u32 as i32;
            slots[i + 1].imm = (addr >> 32) as u32 as i32;
        }
    }
    Program::decode(&slots).unwrap()
}

/// A program ready to compile: linked code plus the verifier's heap facts.
struct Case {
    program: Program,
    facts: Vec<(usize, HeapAccess)>,
    verified: VerifiedProgram,
}

impl Case {
    fn new(src: &str, heap: &Heap) -> Case {
        let slots = assemble_heap(src);
        let verified = verified(&slots);
        let facts = verified
            .insns
            .iter()
            .enumerate()
            .filter_map(|(pc, f)| f.heap.map(|h| (pc, h)))
            .collect();
        Case {
            program: link(&slots, heap),
            facts,
            verified,
        }
    }

    fn compile(&self, mode: SfiMode, heap: &Heap) -> JitProgram {
        let options = JitOptions {
            sfi: mode,
            heap: Some(HeapLayout {
                base: heap.base(),
                size: heap.size(),
            }),
            heap_facts: self.facts.clone(),
            ..JitOptions::default()
        };
        JitProgram::compile(&self.program, &options).expect("compiles")
    }
}

fn jit_run(jit: &JitProgram, heap: &Heap) -> Result<u64, JitFault> {
    let (mut mem, helpers, mut env) = (
        MemoryMap::new(),
        HelperRegistry::linux_default(),
        ExecEnv::default(),
    );
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.heap_base = heap.base();
    jit.run([0; 5], &mut jenv)
}

fn interp_run(program: &Program, heap: &Heap) -> u64 {
    let (mut mem, helpers, mut env) = (
        MemoryMap::new(),
        HelperRegistry::linux_default(),
        ExecEnv::default(),
    );
    // SAFETY: the heap outlives the memory map and is only accessed through it during the run.
    unsafe { mem.insert(heap.region()).unwrap() };
    let mut vm = Vm::new(&mut mem, &helpers, &mut env);
    run(program, [0; 5], &mut vm)
        .expect("interpreter run")
        .retval
}

fn heap() -> Heap {
    Heap::create(HeapConfig::new(HEAP_SIZE)).expect("heap")
}

fn read_u64(heap: &Heap, offset: u64) -> u64 {
    let mut b = [0u8; 8];
    heap.read(offset, &mut b).unwrap();
    u64::from_le_bytes(b)
}

fn write_u64(heap: &Heap, offset: u64, v: u64) {
    heap.write(offset, &v.to_le_bytes()).unwrap();
}

/// An anonymous mapping filled with a pattern, placed at a fixed address.
struct Canary {
    addr: u64,
    len: usize,
}

impl Canary {
    const BYTE: u8 = 0xc5;

    fn at(addr: u64, len: usize) -> Canary {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert_eq!(p as u64, addr, "canary mapping at {addr:#x}");
        // SAFETY: the mapping was just created with this length, read-write.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), Canary::BYTE, len) };
        Canary { addr, len }
    }

    fn intact(&self) -> bool {
        // SAFETY: the mapping lives until drop.
        let bytes = unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) };
        bytes.iter().all(|&b| b == Canary::BYTE)
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `at`.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// Canaries right below and right above the guard zones.
fn canaries(heap: &Heap) -> [Canary; 2] {
    let below = heap.base() - heap.guard() - PAGE as u64;
    let above = heap.base() + heap.size() + heap.guard();
    [Canary::at(below, PAGE), Canary::at(above, PAGE)]
}

/// A small xorshift generator (deterministic test inputs).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
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

/// Loads a (possibly forged) pointer from heap offset 0 and returns the word it points to.
const FORGED_LOAD: &str = "
    map_value %r1, 0
    ldxdw %r2, [%r1]
    cast_kern %r2, %r2
    ldxdw %r0, [%r2]
    exit";

#[test]
fn forged_pointer_writes_land_inside_the_heap() {
    let heap = heap();
    let guards = canaries(&heap);
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
    let heap = heap();
    let guards = canaries(&heap);
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
    let heap = heap();
    let guards = canaries(&heap);
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

/// Machine instructions of slot `pc`'s body.
fn body(jit: &JitProgram, pc: usize) -> Vec<iced_x86::Instruction> {
    let (start, end) = (
        jit.code_offset(pc).unwrap(),
        jit.code_offset(pc + 1).unwrap(),
    );
    let bytes = &jit.code()[start..end];
    let mut d = Decoder::with_ip(64, bytes, start as u64, DecoderOptions::NONE);
    let mut out = Vec::new();
    while d.can_decode() {
        out.push(d.decode());
    }
    out
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
