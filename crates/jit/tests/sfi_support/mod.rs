//! Helpers shared by the SFI tests (`sfi.rs`, `sfi_segment.rs`): assembling and verifying heap
//! programs, linking them to a real heap, running them on both engines, canary mappings.

#![allow(dead_code)]

use iced_x86::{Decoder, DecoderOptions};
use kflex_interp::{Vm, run};
use kflex_isa::asm::assemble;
use kflex_isa::decode::Instruction as I;
use kflex_isa::decode::{Program, encode_all};
use kflex_isa::insn::Insn;
use kflex_isa::op;
use kflex_jit::sfi::segment;
use kflex_jit::{HeapAccess, HeapLayout, JitEnv, JitFault, JitOptions, JitProgram, SfiMode};
use kflex_object::{MapSpec, MapType, ProgType};
use kflex_runtime::heap::{Heap, HeapConfig};
use kflex_runtime::{ExecEnv, HelperRegistry, MemoryMap};
use kflex_verify::{VerifiedProgram, VerifyInput, VerifyOptions, verify};

/// Size of the test heap.
pub const HEAP_SIZE: u64 = 1 << 20;
/// Page size the tests assume.
pub const PAGE: usize = 4096;

/// The word [`FORGED_STORE`] writes.
pub const MARK: u64 = 0x5afe_5afe_5afe_5afe;

/// Loads a (possibly forged) pointer from heap offset 0, stores [`MARK`] through it, returns 1.
pub const FORGED_STORE: &str = "
    map_value %r1, 0
    ldxdw %r2, [%r1]
    cast_kern %r2, %r2
    lddw %r3, 0x5afe5afe5afe5afe
    stxdw [%r2], %r3
    mov %r0, 1
    exit";

/// Assembles the conformance dialect plus `map_value %rN, OFF` (`lddw` of the arena map's value
/// at OFF) and `cast_kern %rD, %rS` (`addr_space_cast` from address space 1 to 0).
pub fn assemble_heap(src: &str) -> Vec<Insn> {
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
pub fn verified(slots: &[Insn]) -> VerifiedProgram {
    let program = Program::decode(slots).unwrap();
    let pages = (HEAP_SIZE / PAGE as u64) as u32;
    let maps = [MapSpec::new("heap", MapType::Arena, 0, 0, pages)];
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
pub fn link(slots: &[Insn], heap: &Heap) -> Program {
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
pub struct Case {
    /// The linked program.
    pub program: Program,
    /// The verifier's heap facts.
    pub facts: Vec<(usize, HeapAccess)>,
    /// The whole verification result.
    pub verified: VerifiedProgram,
}

impl Case {
    pub fn new(src: &str, heap: &Heap) -> Case {
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

    pub fn compile(&self, mode: SfiMode, heap: &Heap) -> JitProgram {
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

pub fn jit_run(jit: &JitProgram, heap: &Heap) -> Result<u64, JitFault> {
    let (mut mem, helpers, mut env) = (
        MemoryMap::new(),
        HelperRegistry::linux_default(),
        ExecEnv::default(),
    );
    let mut jenv = JitEnv::new(&mut mem, &helpers, &mut env);
    jenv.heap_base = heap.base();
    jit.run([0; 5], &mut jenv)
}

pub fn interp_run(program: &Program, heap: &Heap) -> u64 {
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

pub fn heap() -> Heap {
    Heap::create(HeapConfig::new(HEAP_SIZE)).expect("heap")
}

pub fn read_u64(heap: &Heap, offset: u64) -> u64 {
    let mut b = [0u8; 8];
    heap.read(offset, &mut b).unwrap();
    u64::from_le_bytes(b)
}

pub fn write_u64(heap: &Heap, offset: u64, v: u64) {
    heap.write(offset, &v.to_le_bytes()).unwrap();
}

/// An anonymous mapping filled with a pattern, placed at a fixed address.
pub struct Canary {
    /// First byte.
    pub addr: u64,
    len: usize,
}

impl Canary {
    pub const BYTE: u8 = 0xc5;

    /// The canary, or `None` when something (another test thread's heap) already maps `addr`.
    pub fn try_at(addr: u64, len: usize) -> Option<Canary> {
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
        if p == libc::MAP_FAILED {
            return None;
        }
        if p as u64 != addr {
            // An old kernel without MAP_FIXED_NOREPLACE treats the address as a hint.
            // SAFETY: unmaps exactly the mapping just created.
            unsafe { libc::munmap(p, len) };
            return None;
        }
        // SAFETY: the mapping was just created with this length, read-write.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), Canary::BYTE, len) };
        Some(Canary { addr, len })
    }

    pub fn intact(&self) -> bool {
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

/// Canaries right below and right above the unmapped zones around the heap (above it, that is
/// the end of the heap's 4 GiB segment window, when it has one), or `None` when a page is taken.
fn try_canaries(heap: &Heap) -> Option<[Canary; 2]> {
    let below = heap.base() - heap.guard() - PAGE as u64;
    let above = heap.base() + heap.size() + heap.unmapped_above();
    Some([Canary::try_at(below, PAGE)?, Canary::try_at(above, PAGE)?])
}

/// A fresh heap with canary pages right beside its unmapped zones. Left to itself, mmap packs
/// new mappings against old ones (another test thread's heap, the previous heap), so the heap is
/// placed at a fixed address chosen inside a hole that was just free with room for both canary
/// pages (a hole another thread takes first only costs another attempt).
pub fn heap_with_canaries() -> (Heap, [Canary; 2]) {
    let probe = heap();
    let below = probe.guard() + PAGE as u64;
    let above = probe.size() + probe.unmapped_above() + PAGE as u64;
    let align = if probe.segment_window() {
        kflex_runtime::heap::SEGMENT_WINDOW
    } else {
        probe.size()
    };
    drop(probe);
    let span = below + above + align;
    for _ in 0..64 {
        // SAFETY: a fresh inaccessible reservation, used only to find a free hole and unmapped
        // right away; nothing is ever accessed through it.
        let hole = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(hole, libc::MAP_FAILED, "reserving {span:#x} bytes");
        let base = (hole as u64 + below).next_multiple_of(align);
        // SAFETY: unmaps exactly the reservation made above.
        unsafe { libc::munmap(hole, span as usize) };
        let config = HeapConfig {
            address: Some(base),
            ..HeapConfig::new(HEAP_SIZE)
        };
        let Ok(heap) = Heap::create(config) else {
            continue;
        };
        if let Some(guards) = try_canaries(&heap) {
            return (heap, guards);
        }
    }
    panic!("no heap with free canary pages beside it in 64 attempts")
}

/// A small xorshift generator (deterministic test inputs).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Machine instructions of slot `pc`'s body.
pub fn body(jit: &JitProgram, pc: usize) -> Vec<iced_x86::Instruction> {
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

/// Builds a heap program of random stores, loads and atomics through the heap base (`r6`,
/// verifier-elided accesses) and through pointers loaded back from the heap (`r7`, guarded),
/// ending with a checksum of the registers in r0.
pub fn random_heap_program(rng: &mut Rng) -> String {
    let mut src = String::from("map_value %r6, 0\n");
    // Slot 0 holds a pointer to heap offset 256 + k, loaded into r7 whenever it is refreshed.
    let k = (rng.next() % 64) * 8;
    src += &format!("mov %r7, %r6\nadd %r7, {}\nstxdw [%r6], %r7\n", 256 + k);
    src += "mov %r0, 0\nmov %r1, 1\nmov %r2, 2\nmov %r3, 3\nmov %r4, 4\n";
    let sizes = ["b", "h", "w", "dw"];
    for _ in 0..(8 + rng.next() % 24) {
        let base = if rng.next().is_multiple_of(2) {
            "%r6"
        } else {
            "%r7"
        };
        let reg = format!("%r{}", 1 + rng.next() % 4);
        let size = sizes[(rng.next() % 4) as usize];
        let off = 8 + (rng.next() % 28) * 8;
        match rng.next() % 8 {
            0 => src += &format!("stx{size} [{base}+{off}], {reg}\n"),
            1 => src += &format!("st{size} [{base}+{off}], {}\n", rng.next() as i16),
            2 => src += &format!("ldx{size} {reg}, [{base}+{off}]\n"),
            3 => {
                src += &format!(
                    "ldxs{} {reg}, [{base}+{off}]\n",
                    &sizes[(rng.next() % 3) as usize]
                )
            }
            4 => {
                let op = ["add", "or", "and", "xor"][(rng.next() % 4) as usize];
                let fetch = if rng.next().is_multiple_of(2) {
                    "fetch "
                } else {
                    ""
                };
                let w = if rng.next().is_multiple_of(2) {
                    "32"
                } else {
                    ""
                };
                src += &format!("lock {fetch}{op}{w} [{base}+{off}], {reg}\n");
            }
            5 => src += &format!("lock xchg [{base}+{off}], {reg}\n"),
            6 => src += &format!("mov %r0, {reg}\nlock cmpxchg [{base}+{off}], {reg}\n"),
            _ => src += "ldxdw %r7, [%r6]\ncast_kern %r7, %r7\n",
        }
        src += &format!("mul {reg}, 7\nadd {reg}, {}\n", rng.next() % 1000);
    }
    src += "add %r0, %r1\nadd %r0, %r2\nadd %r0, %r3\nadd %r0, %r4\nexit";
    src
}

/// False (after printing the skip line) when segment mode cannot run here.
pub fn supported() -> bool {
    if segment::available() {
        return true;
    }
    kflex_testutil::skip("no user-space FSGSBASE (AT_HWCAP2 bit 1): segment SFI mode unavailable");
    false
}

/// A program of `body` followed by `exit`, with a `Guard` fact on every memory access.
pub fn guarded(body: &[I]) -> (Program, Vec<(usize, HeapAccess)>) {
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

pub fn options(mode: SfiMode, base: u64, size: u64, facts: &[(usize, HeapAccess)]) -> JitOptions {
    JitOptions {
        sfi: mode,
        heap: Some(HeapLayout { base, size }),
        heap_facts: facts.to_vec(),
        ..JitOptions::default()
    }
}
