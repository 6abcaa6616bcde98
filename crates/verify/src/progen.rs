//! A generator of random but structured, mostly valid eBPF programs, for differential testing
//! against the Linux verifier, fuzzing and benchmarks.
//!
//! [`generate`] builds a program for one program type from a seed (deterministically) out of
//! fragments that each exercise one part of the verifier: ALU on initialised registers with random
//! operations and widths, stack spills and fills, branches that refine bounds, bounded loops,
//! unbounded loops (a kflex relaxation), map lookups and updates, packet accesses behind
//! `data + N > data_end` checks, context field reads and writes, helper calls, ring-buffer
//! reservations, BPF-to-BPF calls and heap (arena) accesses. With some probability one
//! [`Mutation`] is inserted that breaks exactly one rule; the program is then expected to be
//! rejected by both kflex and Linux.
//!
//! Register conventions inside generated programs: `r6` holds the context, `r7`..`r9` are
//! initialised scalars, `r0`..`r5` are scratch. Stack: `fp-32..fp-1` is scratch for helper keys
//! and values, `fp-128..fp-40` holds spill slots.

use kflex_isa::{Insn, op};
use kflex_object::{MapSpec, MapType, ProgType};

mod asm;
mod mutate;
#[cfg(test)]
mod tests;

use asm::*;
pub use mutate::Mutation;

/// Tag in [`Generated::note`] of programs with a loop Linux cannot prove bounded.
pub const TAG_UNBOUNDED_LOOP: &str = "unbounded-loop";
/// Tag in [`Generated::note`] of programs that access the heap (arena map).
pub const TAG_HEAP: &str = "heap";

/// Index of the array map (4-byte key, 32-byte value, 8 entries) in [`Generated::maps`].
pub const MAP_ARRAY: i32 = 0;
/// Index of the hash map (8-byte key, 16-byte value).
pub const MAP_HASH: i32 = 1;
/// Index of the ring buffer (4096 bytes).
pub const MAP_RINGBUF: i32 = 2;
/// Index of the arena map (4 pages), present only when heap fragments are allowed.
pub const MAP_ARENA: i32 = 3;
pub(crate) const ARRAY_VALUE: i16 = 32;

/// A generated program and what the generator expects of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// The instructions (unlinked: `lddw` map references name indices into `maps`).
    pub insns: Vec<Insn>,
    /// The maps the program refers to.
    pub maps: Vec<MapSpec>,
    /// The program type it was generated for.
    pub prog_type: ProgType,
    /// `Some(true)`: every rule is respected; `Some(false)`: one rule is broken on purpose;
    /// `None`: unknown.
    pub expect: Option<bool>,
    /// What was generated: fragment names separated by spaces, the mutation as `mutation:<name>`
    /// and the tags [`TAG_UNBOUNDED_LOOP`] and [`TAG_HEAP`].
    pub note: String,
}

impl Generated {
    /// True if `note` carries the word `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.note.split_whitespace().any(|w| w == tag)
    }
}

/// How to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The program type.
    pub prog_type: ProgType,
    /// Number of fragments in the main function.
    pub fragments: usize,
    /// Percentage (0..=100) of programs that get one mutation.
    pub mutation_percent: u32,
    /// Allow loops Linux cannot bound (a kflex relaxation).
    pub unbounded_loops: bool,
    /// Allow heap (arena) fragments and include the arena map.
    pub heap: bool,
}

impl Options {
    /// Defaults for `prog_type`: 12 fragments, 30% mutated, no unbounded loops, no heap.
    pub fn new(prog_type: ProgType) -> Self {
        Options {
            prog_type,
            fragments: 12,
            mutation_percent: 30,
            unbounded_loops: false,
            heap: false,
        }
    }
}

/// The four program types the generator targets.
pub const PROG_TYPES: [ProgType; 4] = [
    ProgType::Xdp,
    ProgType::SocketFilter,
    ProgType::SchedCls,
    ProgType::Syscall,
];

/// Generates a program with [`Options::new`] defaults for `prog_type` plus, for some seeds,
/// unbounded loops and heap use.
pub fn generate(seed: u64, prog_type: ProgType) -> Generated {
    let mut opts = Options::new(prog_type);
    let mut rng = Rng::new(seed ^ 0x9e37_79b9);
    opts.fragments = 4 + rng.below(16) as usize;
    opts.unbounded_loops = rng.below(10) == 0;
    opts.heap = rng.below(12) == 0;
    generate_with(seed, &opts)
}

/// Generates a program as `opts` says; the same seed and options give the same program.
pub fn generate_with(seed: u64, opts: &Options) -> Generated {
    let mut g = Gen::new(seed, opts);
    g.prologue();
    let mutation = if g.rng.below(100) < u64::from(opts.mutation_percent) {
        let candidates: Vec<Mutation> = Mutation::ALL
            .into_iter()
            .filter(|m| m.applies_to(opts.prog_type))
            .collect();
        Some(candidates[g.rng.below(candidates.len() as u64) as usize])
    } else {
        None
    };
    let at = g.rng.below(opts.fragments.max(1) as u64) as usize;
    for i in 0..opts.fragments {
        if i == at
            && let Some(m) = mutation
        {
            g.note(&format!("mutation:{m:?}"));
            g.mutation(m);
        }
        g.fragment();
    }
    g.epilogue();
    g.finish(mutation.is_none())
}

/// A large program for benchmarks: about `insns` instructions of straight-line ALU code, spills
/// and context reads, with conditional early exits (to a nearby `r0 = 2; exit` block every 1000
/// instructions, so jumps stay short), and no loops, calls or maps. Paths never rejoin, so both
/// kflex and Linux verify it in time linear in its size.
pub fn straight_line(seed: u64, insns: usize, prog_type: ProgType) -> Generated {
    const ISLAND_EVERY: usize = 1000;
    let mut g = Gen::new(seed, &Options::new(prog_type));
    g.prologue();
    let mut island = g.asm.label();
    let mut island_start = g.asm.insns.len();
    while g.asm.insns.len() < insns {
        // At most ~1 branch in 12 fragments: Linux keeps at most 8192 pending branches.
        match g.rng.below(12) {
            0..=6 => g.alu(),
            7 | 8 => g.spill_fill(),
            9 | 10 => g.ctx_read(),
            _ => {
                // Branch on a fresh context value, so that neither direction is decided.
                let (off, size) = g.ctx_field();
                g.asm.emit(ldx(size, 1, 6, off));
                let o = g
                    .rng
                    .pick(&[op::JEQ, op::JGT, op::JGE, op::JSET, op::JNE, op::JLT]);
                let imm = 1 + g.rng.below(250) as i32;
                g.asm.jump(op::JMP | o | op::K, 1, 0, imm, island);
            }
        }
        if g.asm.insns.len() - island_start >= ISLAND_EVERY || g.asm.insns.len() >= insns {
            let over = g.asm.label();
            g.asm.jump(op::JMP | op::JA, 0, 0, 0, over);
            g.asm.bind(island);
            g.asm.emit(mov(0, 2));
            g.asm.emit(exit());
            g.asm.bind(over);
            island = g.asm.label();
            island_start = g.asm.insns.len();
        }
    }
    // The last island label may have no jumps; bind it to the epilogue.
    g.asm.bind(island);
    g.epilogue();
    let mut out = g.finish(true);
    out.note = format!("straight-line {insns}");
    out
}

/// The maps of generated programs (the arena only with `heap`).
pub fn maps(heap: bool) -> Vec<MapSpec> {
    let spec = |name: &str, map_type, key_size, value_size, max_entries, flags| {
        MapSpec::new(name, map_type, key_size, value_size, max_entries).with_flags(flags)
    };
    let mut maps = vec![
        spec("arr", MapType::Array, 4, ARRAY_VALUE as u32, 8, 0),
        spec("hash", MapType::Hash, 8, 16, 64, 0),
        spec("rb", MapType::Ringbuf, 0, 0, 4096, 0),
    ];
    if heap {
        maps.push(spec(
            "heap",
            MapType::Arena,
            0,
            0,
            4,
            kflex_object::BPF_F_MMAPABLE,
        ));
    }
    maps
}

pub(crate) fn has_packet(t: ProgType) -> bool {
    matches!(t, ProgType::Xdp | ProgType::SchedCls)
}

/// splitmix64: small, fast, and the same on every platform.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const SCALARS: [u8; 3] = [7, 8, 9];
const ALU_OPS: [u8; 12] = [
    op::ADD,
    op::SUB,
    op::MUL,
    op::DIV,
    op::OR,
    op::AND,
    op::LSH,
    op::RSH,
    op::MOD,
    op::XOR,
    op::ARSH,
    op::MOV,
];
const JMP_OPS: [u8; 11] = [
    op::JEQ,
    op::JGT,
    op::JGE,
    op::JSET,
    op::JNE,
    op::JSGT,
    op::JSGE,
    op::JLT,
    op::JLE,
    op::JSLT,
    op::JSLE,
];

pub(crate) struct Gen {
    pub(crate) rng: Rng,
    opts: Options,
    pub(crate) asm: Asm,
    /// Subprograms to emit after the main function: (label, body kind).
    subprogs: Vec<(Label, u64)>,
    /// Spill slots (index k: fp-40-8k) written so far.
    spilled: u16,
    note: Vec<String>,
}

impl Gen {
    fn new(seed: u64, opts: &Options) -> Self {
        Gen {
            rng: Rng::new(seed),
            opts: opts.clone(),
            asm: Asm::default(),
            subprogs: Vec::new(),
            spilled: 0,
            note: Vec::new(),
        }
    }

    pub(crate) fn note(&mut self, s: &str) {
        if !self.note.iter().any(|n| n == s) {
            self.note.push(s.to_string());
        }
    }

    pub(crate) fn t(&self) -> ProgType {
        self.opts.prog_type
    }

    fn finish(self, valid: bool) -> Generated {
        Generated {
            insns: self.asm.resolve(),
            maps: maps(self.opts.heap),
            prog_type: self.opts.prog_type,
            expect: Some(valid),
            note: self.note.join(" "),
        }
    }

    /// `r6 = ctx`; `r7..r9` initialised with constants or a random value.
    fn prologue(&mut self) {
        self.asm.emit(movx(6, 1));
        for r in SCALARS {
            if self.rng.chance(30) {
                self.asm.emit(call(7));
                self.asm.emit(movx(r, 0));
            } else {
                let v = self.rng.next() as i32 >> self.rng.below(32);
                self.asm.emit(mov(r, v));
            }
        }
    }

    /// `r0 = <valid return value>; exit`, then the subprograms.
    fn epilogue(&mut self) {
        let ret = match self.t() {
            ProgType::Xdp => self.rng.pick(&[1, 2]),
            ProgType::SchedCls => self.rng.pick(&[0, 2]),
            _ => self.rng.pick(&[0, 1]),
        };
        self.asm.emit(mov(0, ret));
        self.asm.emit(exit());
        for (label, kind) in std::mem::take(&mut self.subprogs) {
            self.asm.bind(label);
            self.asm.emit(movx(0, 1));
            if kind % 2 == 0 {
                self.asm.emit(stx(op::DW, 10, 1, -8));
                self.asm.emit(ldx(op::DW, 0, 10, -8));
            }
            let o = self.rng.pick(&[op::ADD, op::XOR, op::MUL, op::AND]);
            self.asm.emit(alu64(o, 0, self.rng.below(1000) as i32));
            self.asm.emit(exit());
        }
    }

    fn fragment(&mut self) {
        let packet = has_packet(self.t());
        loop {
            match self.rng.below(15) {
                0..=2 => self.alu(),
                3 => self.spill_fill(),
                4 => self.branch(),
                5 => self.bounded_loop(),
                6 if self.opts.unbounded_loops => self.unbounded_loop(),
                7 => self.map_lookup(),
                8 => self.map_update(),
                9 if packet => self.packet(),
                10 => self.ctx_read(),
                11 => self.helper(),
                12 => self.ringbuf(),
                13 => self.subprog_call(),
                14 if self.opts.heap => self.heap(),
                _ => continue,
            }
            return;
        }
    }

    pub(crate) fn scalar(&mut self) -> u8 {
        self.rng.pick(&SCALARS)
    }

    /// One ALU instruction on a scalar register, random op, width and operand.
    fn alu(&mut self) {
        self.note("alu");
        let dst = self.scalar();
        let class = if self.rng.chance(70) {
            op::ALU64
        } else {
            op::ALU
        };
        let bits = if class == op::ALU64 { 64 } else { 32 };
        match self.rng.below(10) {
            0 => self.asm.emit(Insn::new(class | op::NEG, dst, 0, 0, 0)),
            1 => {
                let w = self.rng.pick(&[16, 32, 64]);
                let kind = self.rng.pick(&[op::TO_LE, op::TO_BE]);
                self.asm
                    .emit(Insn::new(op::ALU | op::END | kind, dst, 0, 0, w));
            }
            2 => {
                let src = self.scalar();
                let ext = if class == op::ALU64 {
                    self.rng.pick(&[8, 16, 32])
                } else {
                    self.rng.pick(&[8, 16])
                };
                self.asm
                    .emit(Insn::new(class | op::MOV | op::X, dst, src, ext, 0));
            }
            _ => {
                let o = self.rng.pick(&ALU_OPS);
                let signed = matches!(o, op::DIV | op::MOD) && self.rng.chance(30);
                let off = i16::from(signed);
                if self.rng.chance(50) {
                    let src = self.scalar();
                    self.asm
                        .emit(Insn::new(class | o | op::X, dst, src, off, 0));
                } else {
                    let imm = match o {
                        op::LSH | op::RSH | op::ARSH => self.rng.below(bits) as i32,
                        op::DIV | op::MOD => 1 + self.rng.below(1000) as i32,
                        _ => self.rng.next() as i32 >> self.rng.below(32),
                    };
                    self.asm
                        .emit(Insn::new(class | o | op::K, dst, 0, off, imm));
                }
            }
        }
    }

    fn spill_fill(&mut self) {
        self.note("spill");
        let k = self.rng.below(12) as u16;
        let off = -40 - 8 * k as i16;
        if self.spilled & (1 << k) == 0 || self.rng.chance(40) {
            let src = self.scalar();
            self.asm.emit(stx(op::DW, 10, src, off));
            self.spilled |= 1 << k;
        }
        let dst = self.scalar();
        let size = self.rng.pick(&[op::DW, op::DW, op::W, op::B]);
        self.asm.emit(ldx(size, dst, 10, off));
    }

    /// A conditional forward jump over a few ALU instructions.
    fn branch(&mut self) {
        self.note("branch");
        let a = self.scalar();
        let class = self.rng.pick(&[op::JMP, op::JMP32]);
        let o = self.rng.pick(&JMP_OPS);
        let skip = self.asm.label();
        if self.rng.chance(50) {
            let b = self.scalar();
            self.asm.jump(class | o | op::X, a, b, 0, skip);
        } else {
            let imm = self.rng.next() as i32 >> self.rng.below(32);
            self.asm.jump(class | o | op::K, a, 0, imm, skip);
        }
        for _ in 0..1 + self.rng.below(3) {
            self.alu();
        }
        self.asm.bind(skip);
    }

    fn bounded_loop(&mut self) {
        self.note("loop");
        let n = 2 + self.rng.below(14) as i32;
        self.asm.emit(mov(5, 0));
        let head = self.asm.label();
        self.asm.bind(head);
        for _ in 0..1 + self.rng.below(2) {
            self.alu();
        }
        self.asm.emit(alu64(op::ADD, 5, 1));
        self.asm.jump(op::JMP | op::JLT | op::K, 5, 0, n, head);
    }

    /// `do { } while (bpf_get_prandom_u32());`: no bound Linux can prove.
    fn unbounded_loop(&mut self) {
        self.note(TAG_UNBOUNDED_LOOP);
        let head = self.asm.label();
        self.asm.bind(head);
        self.alu();
        self.asm.emit(call(7));
        self.asm.jump(op::JMP | op::JNE | op::K, 0, 0, 0, head);
    }

    pub(crate) fn lddw_map(&mut self, dst: u8, src: u8, map: i32, off: i32) {
        self.asm
            .emit(Insn::new(op::LD | op::IMM | op::DW, dst, src, 0, map));
        self.asm.emit(Insn::new(0, 0, 0, 0, off));
    }

    /// `r0 = bpf_map_lookup_elem(map, key)` with the key written to the scratch stack.
    pub(crate) fn lookup(&mut self, array: bool, key_reg: Option<u8>) {
        if array {
            self.asm.emit(st(op::W, 10, -4, self.rng.below(10) as i32));
            self.asm.emit(movx(2, 10));
            self.asm.emit(alu64(op::ADD, 2, -4));
            self.lddw_map(1, op::PSEUDO_MAP_FD, MAP_ARRAY, 0);
        } else {
            self.asm.emit(st(op::DW, 10, -8, self.rng.below(10) as i32));
            self.asm.emit(movx(2, 10));
            self.asm.emit(alu64(op::ADD, 2, -8));
            self.lddw_map(1, op::PSEUDO_MAP_FD, MAP_HASH, 0);
        }
        if let Some(r) = key_reg {
            self.asm.emit(movx(1, r));
        }
        self.asm.emit(call(1));
    }

    fn map_lookup(&mut self) {
        self.note("map");
        let array = self.rng.chance(60);
        let value = if array { ARRAY_VALUE } else { 16 };
        self.lookup(array, None);
        let out = self.asm.label();
        self.asm.jump(op::JMP | op::JEQ | op::K, 0, 0, 0, out);
        let size = self.rng.pick(&[op::B, op::H, op::W, op::DW]);
        let n = size_bytes(size);
        let off = n * self.rng.below(((value - n) / n + 1) as u64) as i16;
        let r = self.scalar();
        match self.rng.below(4) {
            0 => self.asm.emit(ldx(size, r, 0, off)),
            1 => self.asm.emit(stx(size, 0, r, off)),
            2 if n >= 4 => self.asm.emit(Insn::new(
                op::STX | op::ATOMIC | size,
                0,
                r,
                off,
                i32::from(op::ADD),
            )),
            _ => {
                // Variable offset, bounded by a mask or a branch.
                self.asm.emit(movx(1, r));
                if self.rng.chance(50) {
                    self.asm.emit(alu64(op::AND, 1, i32::from(value - 8)));
                } else {
                    self.asm
                        .jump(op::JMP | op::JGT | op::K, 1, 0, i32::from(value - 8), out);
                }
                self.asm.emit(alu64x(op::ADD, 0, 1));
                self.asm.emit(ldx(op::DW, r, 0, 0));
            }
        }
        self.asm.bind(out);
    }

    fn map_update(&mut self) {
        self.note("map-update");
        self.asm.emit(st(op::DW, 10, -8, self.rng.below(10) as i32));
        let v = self.scalar();
        self.asm.emit(stx(op::DW, 10, v, -24));
        self.asm.emit(st(op::DW, 10, -16, 0));
        self.asm.emit(movx(2, 10));
        self.asm.emit(alu64(op::ADD, 2, -8));
        self.lddw_map(1, op::PSEUDO_MAP_FD, MAP_HASH, 0);
        if self.rng.chance(70) {
            self.asm.emit(movx(3, 10));
            self.asm.emit(alu64(op::ADD, 3, -24));
            self.asm.emit(mov(4, 0));
            self.asm.emit(call(2));
        } else {
            self.asm.emit(call(3));
        }
    }

    pub(crate) fn packet_regs(&mut self) {
        let (data, end) = if self.t() == ProgType::Xdp {
            (0, 4)
        } else {
            (76, 80)
        };
        self.asm.emit(ldx(op::W, 2, 6, data));
        self.asm.emit(ldx(op::W, 3, 6, end));
    }

    fn packet(&mut self) {
        self.note("packet");
        self.packet_regs();
        let n = 1 + self.rng.below(64) as i32;
        self.asm.emit(movx(4, 2));
        self.asm.emit(alu64(op::ADD, 4, n));
        let out = self.asm.label();
        self.asm.jump(op::JMP | op::JGT | op::X, 4, 3, 0, out);
        let size = self.rng.pick(&[op::B, op::H, op::W, op::DW]);
        let sz = i32::from(size_bytes(size));
        if sz <= n {
            let off = self.rng.below((n - sz + 1) as u64) as i16;
            let r = self.scalar();
            if self.rng.chance(70) {
                self.asm.emit(ldx(size, r, 2, off));
            } else {
                self.asm.emit(stx(size, 2, r, off));
            }
        }
        self.asm.bind(out);
    }

    /// A valid scalar context field: (offset, size).
    fn ctx_field(&mut self) -> (i16, u8) {
        match self.t() {
            // egress_ifindex (20) is readable only by devmap programs in Linux.
            ProgType::Xdp => (self.rng.pick(&[12, 16]), op::W),
            ProgType::Syscall => {
                let size = self.rng.pick(&[op::B, op::H, op::W, op::DW]);
                let n = size_bytes(size);
                (n * self.rng.below((64 / n) as u64) as i16, size)
            }
            _ => {
                let off = self.rng.pick(&[0, 8, 16, 32, 40, 48, 52]);
                (off, self.rng.pick(&[op::W, op::W, op::H, op::B]))
            }
        }
    }

    fn ctx_read(&mut self) {
        self.note("ctx");
        let (off, size) = self.ctx_field();
        let r = self.scalar();
        let write = match self.t() {
            ProgType::SchedCls => [8, 32, 48].contains(&off),
            ProgType::SocketFilter => off == 48,
            ProgType::Syscall => true,
            ProgType::Xdp | ProgType::SkSkb => false,
        };
        if write && size == op::W && self.rng.chance(40) {
            self.asm.emit(stx(op::W, 6, r, off));
        } else {
            self.asm.emit(ldx(size, r, 6, off));
        }
    }

    fn helper(&mut self) {
        self.note("helper");
        let id = self.rng.pick(&[5, 7, 8]);
        self.asm.emit(call(id));
        let r = self.scalar();
        self.asm.emit(movx(r, 0));
    }

    pub(crate) fn ringbuf_reserve(&mut self, size: i32) {
        self.lddw_map(1, op::PSEUDO_MAP_FD, MAP_RINGBUF, 0);
        self.asm.emit(mov(2, size));
        self.asm.emit(mov(3, 0));
        self.asm.emit(call(131));
    }

    fn ringbuf(&mut self) {
        self.note("ringbuf");
        let size = 8 * (1 + self.rng.below(8) as i32);
        self.ringbuf_reserve(size);
        let out = self.asm.label();
        self.asm.jump(op::JMP | op::JEQ | op::K, 0, 0, 0, out);
        let r = self.scalar();
        let off = 8 * self.rng.below((size / 8) as u64) as i16;
        self.asm.emit(stx(op::DW, 0, r, off));
        self.asm.emit(movx(1, 0));
        self.asm.emit(mov(2, 0));
        let release = self.rng.pick(&[132, 133]);
        self.asm.emit(call(release));
        self.asm.bind(out);
    }

    fn subprog_call(&mut self) {
        self.note("call");
        let label = self.asm.label();
        let kind = self.rng.below(4);
        self.subprogs.push((label, kind));
        let arg = self.scalar();
        self.asm.emit(movx(1, arg));
        self.asm.call_local(label);
        let r = self.scalar();
        self.asm.emit(movx(r, 0));
    }

    /// Loads and stores through an arena pointer.
    fn heap(&mut self) {
        self.note(TAG_HEAP);
        let base = 8 * self.rng.below(256) as i32;
        self.lddw_map(1, op::PSEUDO_MAP_VALUE, MAP_ARENA, base);
        // addr_space_cast(r1, 0, 1): from the user (as 1) to the kernel (as 0) address.
        self.asm.emit(Insn::new(
            op::ALU64 | op::MOV | op::X,
            1,
            1,
            op::ADDR_SPACE_CAST,
            1,
        ));
        let r = self.scalar();
        let off = 8 * self.rng.below(64) as i16;
        if self.rng.chance(50) {
            self.asm.emit(ldx(op::DW, r, 1, off));
        } else {
            self.asm.emit(stx(op::DW, 1, r, off));
        }
    }
}
